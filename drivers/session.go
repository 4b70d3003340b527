package drivers

import "time"

// SessionStatus is what a driver that holds a session with its device (an
// OPC UA client) reports for /ready and the metrics, beyond "running".
type SessionStatus struct {
	// Connected is true while the session reads or receives values.
	Connected bool
	// State names the session's state for an operator: connected,
	// connecting, reconnecting, stopped.
	State string
	// Subscriptions is the number of subscriptions of the session.
	Subscriptions int
	// ItemsGood and ItemsBad count the tags whose last sample was good (or
	// uncertain) and bad.
	ItemsGood, ItemsBad int
	// Recoveries counts the sessions rebuilt after a failure.
	Recoveries uint64
	// LastStatus names the last status that was not good, with its tag:
	// "oven_temp: BadSensorFailure"; empty when none.
	LastStatus string
	// LastError is the last failure, empty when none; LastErrorTime when.
	LastError     string
	LastErrorTime time.Time
}

// SessionReporter is implemented by drivers that hold a session. The agent
// reads SessionStatus for /ready and the metrics; it must be cheap and safe
// for concurrent use.
type SessionReporter interface {
	SessionStatus() SessionStatus
}
