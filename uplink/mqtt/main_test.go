package mqtt

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves a goroutine behind: every
// connection, timer and wait of the sink ends with Close.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
