// Package modbus owns the simulator's Modbus devices: a Bank of register
// tables per unit id, a Server that answers Modbus TCP and RTU (framed
// here, on a serial line or a pty) from it with optional misbehaviours for
// tests (slow answers, late duplicate answers, exceptions, Busy, silent
// units, a single accepted connection), an adapter that serves the same
// Bank through github.com/simonvetter/modbus's TCP server, and a Simulator
// that fills register maps from the signal models.
//
// It knows the drivers.Value model, the signal models and the Modbus
// encoding of drivers/modbus; nothing of the agent or its config file.
package modbus
