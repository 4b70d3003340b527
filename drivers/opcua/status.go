package opcua

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iot-producer/iot-producer/drivers"
)

// State is the state of a driver's session.
type State int32

// Session states.
const (
	StateConnecting State = iota
	StateConnected
	StateReconnecting
	StateStopped
)

// String returns connecting, connected, reconnecting or stopped.
func (s State) String() string {
	switch s {
	case StateConnecting:
		return "connecting"
	case StateConnected:
		return "connected"
	case StateReconnecting:
		return "reconnecting"
	}
	return "stopped"
}

// stats is what a driver counts, read by Status at any time.
type stats struct {
	state         atomic.Int32
	subscriptions atomic.Int64
	itemsGood     atomic.Int64
	itemsBad      atomic.Int64
	recoveries    atomic.Uint64
	polls         atomic.Uint64
	notifications atomic.Uint64
	probes        atomic.Uint64
	lastStatus    atomic.Value // string
	mu            sync.Mutex
	lastErr       string
	lastErrAt     time.Time
}

func (s *stats) setError(err error) {
	s.mu.Lock()
	s.lastErr, s.lastErrAt = err.Error(), time.Now()
	s.mu.Unlock()
}

// Status is a snapshot of a driver, for /ready and the metrics.
type Status struct {
	State State
	// Subscriptions is the number of subscriptions of the current session.
	Subscriptions int
	// ItemsGood and ItemsBad count the tags whose last sample was good
	// (or uncertain) and bad.
	ItemsGood, ItemsBad int
	// Recoveries counts the sessions rebuilt after a failure.
	Recoveries uint64
	// Polls counts completed polls; Notifications the data change
	// notifications received.
	Polls, Notifications uint64
	// Probes counts the watchdog's questions to a server whose
	// subscriptions were silent and which answered.
	Probes uint64
	// LastError and LastErrorTime describe the last failure; empty when
	// none.
	LastError     string
	LastErrorTime time.Time
	// LastStatus is the last non-good status, "tag: BadSomething".
	LastStatus string
}

// Status returns the driver's current state and counts.
func (d *Driver) Status() Status {
	s := &d.st
	st := Status{
		State:         State(s.state.Load()),
		Subscriptions: int(s.subscriptions.Load()),
		ItemsGood:     int(s.itemsGood.Load()),
		ItemsBad:      int(s.itemsBad.Load()),
		Recoveries:    s.recoveries.Load(),
		Polls:         s.polls.Load(),
		Notifications: s.notifications.Load(),
		Probes:        s.probes.Load(),
	}
	if v, ok := s.lastStatus.Load().(string); ok {
		st.LastStatus = v
	}
	s.mu.Lock()
	st.LastError, st.LastErrorTime = s.lastErr, s.lastErrAt
	s.mu.Unlock()
	return st
}

// tofuFile is the marker of an endpoint whose certificate was trusted on
// first use.
func tofuFile(stateDir, endpoint string) string {
	h := sha256.Sum256([]byte(endpoint))
	return filepath.Join(PKIDir(stateDir), "tofu", hex.EncodeToString(h[:8]))
}

// trustedAny reports whether a certificate was already trusted on first
// use for an endpoint: a changed certificate is then refused.
func trustedAny(stateDir, endpoint string) bool {
	_, err := os.Stat(tofuFile(stateDir, endpoint))
	return err == nil
}

// rememberEndpoint marks an endpoint's first certificate as trusted.
func rememberEndpoint(stateDir, endpoint string, der []byte) {
	p := tofuFile(stateDir, endpoint)
	if os.MkdirAll(filepath.Dir(p), 0o755) == nil {
		_ = os.WriteFile(p, []byte(endpoint+" "+Fingerprint(der)+"\n"), 0o644)
	}
}

// SessionStatus implements drivers.SessionReporter.
func (d *Driver) SessionStatus() drivers.SessionStatus {
	s := d.Status()
	return drivers.SessionStatus{
		Connected:     s.State == StateConnected,
		State:         s.State.String(),
		Subscriptions: s.Subscriptions,
		ItemsGood:     s.ItemsGood,
		ItemsBad:      s.ItemsBad,
		Recoveries:    s.Recoveries,
		LastStatus:    s.LastStatus,
		LastError:     s.LastError,
		LastErrorTime: s.LastErrorTime,
	}
}
