package modbus

import (
	"fmt"
	"sync"

	mb "github.com/iot-producer/iot-producer/drivers/modbus"
)

// Sizes is the number of items in each table of a unit: reads past them
// are answered with exception 2 (illegal data address).
type Sizes struct {
	Coils, Discrete, Holding, Input int
}

// unitData is the four tables of one unit.
type unitData struct {
	coils, discrete []bool
	holding, input  []uint16
}

// Bank holds the tables of every unit a server answers for. It is safe for
// concurrent use: the simulator writes while servers read.
type Bank struct {
	mu    sync.RWMutex
	units map[uint8]*unitData
}

// NewBank returns a bank without units.
func NewBank() *Bank { return &Bank{units: map[uint8]*unitData{}} }

// AddUnit adds (or resizes, clearing) unit id with tables of the given
// sizes, each at most 65536.
func (b *Bank) AddUnit(id uint8, s Sizes) {
	c := func(n int) int { return max(0, min(n, 65536)) }
	b.mu.Lock()
	defer b.mu.Unlock()
	b.units[id] = &unitData{
		coils:    make([]bool, c(s.Coils)),
		discrete: make([]bool, c(s.Discrete)),
		holding:  make([]uint16, c(s.Holding)),
		input:    make([]uint16, c(s.Input)),
	}
}

// Units returns the unit ids of the bank.
func (b *Bank) Units() []uint8 {
	b.mu.RLock()
	defer b.mu.RUnlock()
	out := make([]uint8, 0, len(b.units))
	for id := range b.units {
		out = append(out, id)
	}
	return out
}

// SetRegisters writes registers given as big-endian byte pairs (as
// modbus.Encode returns them) at addr of a register table.
func (b *Bank) SetRegisters(unit uint8, reg mb.RegisterType, addr uint16, regs []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	u := b.units[unit]
	if u == nil {
		return fmt.Errorf("unit %d: no such unit", unit)
	}
	var t []uint16
	switch reg {
	case mb.Holding:
		t = u.holding
	case mb.Input:
		t = u.input
	default:
		return fmt.Errorf("unit %d: %s is not a register table", unit, reg)
	}
	n := len(regs) / 2
	if int(addr)+n > len(t) {
		return fmt.Errorf("unit %d: %s %d+%d is past the table's %d registers", unit, reg, addr, n, len(t))
	}
	for i := range n {
		t[int(addr)+i] = uint16(regs[2*i])<<8 | uint16(regs[2*i+1])
	}
	return nil
}

// SetBit writes one coil or discrete input.
func (b *Bank) SetBit(unit uint8, reg mb.RegisterType, addr uint16, v bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	u := b.units[unit]
	if u == nil {
		return fmt.Errorf("unit %d: no such unit", unit)
	}
	var t []bool
	switch reg {
	case mb.Coil:
		t = u.coils
	case mb.Discrete:
		t = u.discrete
	default:
		return fmt.Errorf("unit %d: %s is not a bit table", unit, reg)
	}
	if int(addr) >= len(t) {
		return fmt.Errorf("unit %d: %s %d is past the table's %d bits", unit, reg, addr, len(t))
	}
	t[addr] = v
	return nil
}

// Exception codes the bank answers with.
const (
	excIllegalFunction = 1
	excIllegalAddress  = 2
	excIllegalValue    = 3
	excBusy            = 6
)

// read answers a read PDU (function code and data) for unit: it returns the
// answer PDU, or false when the bank has no such unit (no answer at all).
func (b *Bank) read(unit uint8, req []byte, dst []byte) ([]byte, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	u := b.units[unit]
	if u == nil {
		return nil, false
	}
	if len(req) == 0 {
		return nil, false
	}
	fc := req[0]
	if fc < 1 || fc > 4 {
		return append(dst, fc|0x80, excIllegalFunction), true
	}
	if len(req) != 5 {
		return append(dst, fc|0x80, excIllegalValue), true
	}
	addr := int(req[1])<<8 | int(req[2])
	qty := int(req[3])<<8 | int(req[4])
	switch fc {
	case 1, 2:
		t := u.coils
		if fc == 2 {
			t = u.discrete
		}
		if qty < 1 || qty > 2000 {
			return append(dst, fc|0x80, excIllegalValue), true
		}
		if addr+qty > len(t) {
			return append(dst, fc|0x80, excIllegalAddress), true
		}
		n := (qty + 7) / 8
		dst = append(dst, fc, byte(n))
		start := len(dst)
		for range n {
			dst = append(dst, 0)
		}
		for i := range qty {
			if t[addr+i] {
				dst[start+i/8] |= 1 << (i % 8)
			}
		}
		return dst, true
	default:
		t := u.holding
		if fc == 4 {
			t = u.input
		}
		if qty < 1 || qty > 125 {
			return append(dst, fc|0x80, excIllegalValue), true
		}
		if addr+qty > len(t) {
			return append(dst, fc|0x80, excIllegalAddress), true
		}
		dst = append(dst, fc, byte(2*qty))
		for _, r := range t[addr : addr+qty] {
			dst = append(dst, byte(r>>8), byte(r))
		}
		return dst, true
	}
}
