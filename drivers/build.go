package drivers

import (
	"log/slog"
	"sync"
)

// Env is what the agent gives a driver plug-in to build a driver with.
type Env struct {
	// Device is the device's name (plcs[].name), carried by every sample.
	Device string
	Logger *slog.Logger
	// OnError, when set, counts a failed read by kind; it must not block.
	OnError func(kind string)
	// OnReadError, when set, is given each failed read's error (naming
	// the device, address and cause), for /ready to show the last one; it
	// must not block.
	OnReadError func(err error)
	// Shared holds what the agent's drivers share for the agent's whole
	// life (a connection pool); never nil.
	Shared *Shared
	// StateDir is the gateway's state directory, for what a driver keeps
	// on disk (certificates).
	StateDir string
}

// Builder is implemented by a driver plug-in's settings (the
// config.Settings registered with config.RegisterDriver). Build makes the
// driver and everything that can be made without taking effect — parsed
// addresses, planned requests, files read — so that validating a file
// finds what starting it would refuse; it must not connect. The driver
// starts working only in Run.
type Builder interface {
	Build(env Env) (Driver, error)
}

// Shared holds objects that the drivers of one agent share, created on
// first use and released by Close. It is safe for concurrent use.
type Shared struct {
	mu      sync.Mutex
	objects map[string]any
	closers []func()
}

// Get returns the object stored under key, creating it with create on
// first use; create's close function (may be nil) runs at Close.
func (s *Shared) Get(key string, create func() (obj any, close func())) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	if o, ok := s.objects[key]; ok {
		return o
	}
	o, c := create()
	if s.objects == nil {
		s.objects = map[string]any{}
	}
	s.objects[key] = o
	if c != nil {
		s.closers = append(s.closers, c)
	}
	return o
}

// Close releases the shared objects, newest first.
func (s *Shared) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
	s.closers, s.objects = nil, nil
}
