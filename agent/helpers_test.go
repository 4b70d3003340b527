package agent_test

import (
	"io"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

// checkLeaks fails t if goroutines started during the test outlive it. It
// runs after every cleanup registered later (a kfake cluster's, say).
func checkLeaks(t *testing.T) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

// safeWriter serialises writes from the agent's goroutines.
type safeWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *safeWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
