// Package modbus owns the Modbus driver: it reads coils, discrete inputs,
// holding and input registers from devices over Modbus TCP, RTU on a serial
// line, and RTU over TCP (serial gateways in transparent mode), decodes them
// into typed samples and reports every poll through a drivers.Emit.
//
// It knows the drivers.Sample model and nothing of the agent, the config
// file, the buffer or any sink: it learns its settings through Options and
// Endpoint, and reports errors through a callback.
//
// # Addresses
//
// A tag's address is written in one of two ways:
//
//   - 0-based, as on the wire: "0" to "65535", in the register type given
//     by the tag's register (coil, discrete, holding, input; default
//     holding). "100" with register holding is the 101st holding register.
//   - Modicon notation, when the tag's register is left empty: five or six
//     digits whose first digit names the register type and whose rest is
//     the 1-based register number: 0xxxx coils, 1xxxx discrete inputs,
//     3xxxx input registers, 4xxxx holding registers. "40001" and "400001"
//     are holding register 0; "30010" is input register 9; "465536" is
//     holding register 65535.
//
// With register set, the address is always 0-based, so "40001" with
// register holding means holding register 40001, not 0.
//
// # Types and byte orders
//
// bool (one coil or discrete input; on a register, true when the register
// is not 0, or the one bit given by Tag.Bit, 0 the least significant),
// int16, uint16 (1 register), int32, uint32, float32 (2), int64, uint64,
// float64 (4), string(n) (n bytes, (n+1)/2 registers, cut at the first NUL).
//
// Byte orders name the bytes of a value as they arrive on the wire, A the
// most significant: ABCD is big-endian (the Modbus default); CDAB swaps the
// 16-bit words (the most common PLC order for 32-bit values); BADC swaps the
// bytes inside each word; DCBA is little-endian. For 64-bit values they
// extend in the same way: CDAB means the last word arrives first
// (GH EF CD AB), BADC is BA DC FE HG, DCBA is HGFEDCBA. For 16-bit values
// only the byte swap matters: BADC and DCBA read the low byte first. For
// strings the byte swap applies inside each register.
//
// # Connections
//
// A Pool holds one connection per endpoint (host:port or serial device),
// shared by every unit id and every Driver that reads through it, with one
// request in flight at a time. A connection is closed and opened again
// after any error other than a Modbus exception, so a late reply is never
// read as the answer to a later request. A request the unit does not
// answer (a timeout, or a gateway's exception 0x0A or 0x0B for it) ends
// its poll: the rest of the poll's requests are not sent and their tags
// get bad samples. A unit with three such polls in a row is demoted: it is
// polled at most every 2^k poll intervals (k growing with each further such
// poll, up to one minute) with a quarter of its timeout (at least 100ms),
// so that a dead unit behind a gateway costs its neighbours little; its
// first answer restores it.
//
// # Polls
//
// Devices do not all poll at the same instant. Each device's polls keep a
// phase of their own within its interval (within each second of a longer
// one): one of the interval's 100ms slots, chosen from the device's name,
// so the same at every start, and counted from whole periods of the clock,
// so that a slot's devices poll together however far apart they started.
// A Pool keeps one timer for the polls of all its Drivers and runs the
// polls due on workers, a new one whenever none is idle, so a slow device
// never delays another; a Driver has no goroutine of its own (Start).
package modbus
