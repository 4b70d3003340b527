// Package simulator owns the simulated PLCs that let the gateway run without
// hardware: Source, an in-process drivers.Driver producing plant-like
// samples for many devices, built on the signal models of the signal
// sub-package.
//
// It knows the drivers.Sample model and nothing of the agent, the buffer or
// any sink; it learns its settings through SourceOptions, not the config
// package.
package simulator
