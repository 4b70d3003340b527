package uplink

import (
	"log/slog"
	"time"
)

// SinkEnv is what the agent gives a sink plug-in to build a sink with.
type SinkEnv struct {
	// GatewayID is gateway.id, for topics and client ids.
	GatewayID string
	Logger    *slog.Logger
	// StateDir is the gateway's state directory.
	StateDir string
	// OnConnect and OnDisconnect, when set, report connections to the
	// sink's brokers.
	OnConnect, OnDisconnect func(broker string)
}

// LoopSettings are a sink's own send-loop settings: each sink batches and
// keeps batches in flight as its section says.
type LoopSettings struct {
	BatchSize     int
	FlushInterval time.Duration
	Workers       int
	LiveWindow    time.Duration
}

// Builder is implemented by a sink plug-in's settings (the
// config.Settings registered with config.RegisterSink). Build makes the
// sink and everything that can be made without taking effect — TLS files
// and password files read and parsed, the client configured — so that
// validating a file finds what starting it would refuse; it must not
// wait for a broker. Loop gives the sink's send-loop settings.
type Builder interface {
	Build(env SinkEnv) (Sink, error)
	Loop() LoopSettings
}

// Closer is implemented by sinks that hold connections to release.
type Closer interface {
	Close()
}
