package agent_test

import (
	"io"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/iot-producer/iot-producer/agent"
	"github.com/iot-producer/iot-producer/agent/config"
)

// checkLeaks fails t if goroutines started during the test outlive it. It
// runs after every cleanup registered later (a kfake cluster's, say).
func checkLeaks(t *testing.T) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, append([]goleak.Option{ignore}, gopcuaServerLeaks...)...) })
}

// gopcuaServerLeaks are the goroutines gopcua v0.8.0's server leaves behind
// when it is closed while a message of a channel is on its way: the
// channel's RegisterConn sends it on the broker's unbuffered message
// channel without watching its context (channel_broker.go:115, "todo(fs):
// honor ctx"), nobody reads that channel once the server is closed, and
// Close's goroutine waiting for the channels (channel_broker.go:139) waits
// with it. They belong to the library and hold only that channel's memory.
var gopcuaServerLeaks = []goleak.Option{
	goleak.IgnoreTopFunction("github.com/gopcua/opcua/server.(*channelBroker).RegisterConn"),
	goleak.IgnoreAnyFunction("github.com/gopcua/opcua/server.(*channelBroker).Close.func1"),
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

// startAgent builds an agent from cfg, logging to the test's log, runs it
// until it is ready and returns it with a function that stops it and
// returns Run's error.
func startAgent(t *testing.T, cfg *config.Config) (*agent.Agent, func() error) {
	t.Helper()
	a, _, stop := startAgentOpts(t, cfg, agent.Options{})
	return a, stop
}
