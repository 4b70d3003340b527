package modbus

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/iot-producer/iot-producer/drivers"
	mb "github.com/iot-producer/iot-producer/drivers/modbus"
	"github.com/iot-producer/iot-producer/simulator/signal"
)

// Point is one value of a unit's register map.
type Point struct {
	Name     string
	Register mb.RegisterType
	// Address is 0-based.
	Address uint16
	Type    mb.Type
	Order   mb.ByteOrder
	// Signal names a signal profile (temperature, pressure, counter,
	// alarm, speed, vibration, flow, level, current, humidity) whose
	// readings fill the point; empty keeps Value.
	Signal string
	// Value is the point's fixed value when Signal is empty, and its
	// first value otherwise.
	Value drivers.Value
	// Scale and Offset turn an engineering value into the raw one as
	// (value - Offset) / Scale; Scale 0 means 1.
	Scale  float64
	Offset float64
}

// Unit is one unit id and its register map.
type Unit struct {
	ID     uint8
	Points []Point
	// Sizes, when larger, extend the tables beyond the points.
	Sizes Sizes
}

// SimOptions configures a Simulator.
type SimOptions struct {
	Units []Unit
	// Interval is the time between updates of the signal points; default
	// 1s.
	Interval time.Duration
	// Seed and Variation select and scale the signals, as for the
	// in-process simulator.
	Seed      int64
	Variation float64
}

type simPoint struct {
	unit  uint8
	p     Point
	model signal.Model
}

// Simulator fills a Bank from its register maps.
type Simulator struct {
	bank     *Bank
	interval time.Duration
	points   []simPoint
}

// NewSimulator builds the bank of opts' units, writes every point's first
// value and returns the simulator.
func NewSimulator(opts SimOptions) (*Simulator, error) {
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	profiles := signal.Profiles()
	s := &Simulator{bank: NewBank(), interval: opts.Interval}
	for ui, u := range opts.Units {
		sz := u.Sizes
		for _, p := range u.Points {
			n := p.Type.Registers()
			if p.Register.IsBit() {
				n = 1
			}
			end := int(p.Address) + n
			switch p.Register {
			case mb.Coil:
				sz.Coils = max(sz.Coils, end)
			case mb.Discrete:
				sz.Discrete = max(sz.Discrete, end)
			case mb.Holding:
				sz.Holding = max(sz.Holding, end)
			case mb.Input:
				sz.Input = max(sz.Input, end)
			}
		}
		s.bank.AddUnit(u.ID, sz)
		for pi, p := range u.Points {
			sp := simPoint{unit: u.ID, p: p}
			if p.Signal != "" {
				idx := -1
				for i, pr := range profiles {
					if pr.Name == p.Signal {
						idx = i
					}
				}
				if idx < 0 {
					return nil, fmt.Errorf("unit %d point %s: unknown signal %q", u.ID, p.Name, p.Signal)
				}
				// Tag index idx + k*len(profiles) keeps the profile and
				// gives each point its own series.
				sp.model = signal.NewSeries(opts.Seed, ui, idx+pi*len(profiles), opts.Variation)
				sp.p.Value = sp.model.Next(time.Now())
			}
			if err := s.write(&sp); err != nil {
				return nil, err
			}
			s.points = append(s.points, sp)
		}
	}
	return s, nil
}

// Bank returns the simulator's bank, to serve.
func (s *Simulator) Bank() *Bank { return s.bank }

// write stores the current value of one point.
func (s *Simulator) write(sp *simPoint) error {
	p := &sp.p
	if p.Register.IsBit() {
		return s.bank.SetBit(sp.unit, p.Register, p.Address, truthy(p.Value))
	}
	v := p.Value
	if (p.Scale != 0 && p.Scale != 1) || p.Offset != 0 {
		sc := p.Scale
		if sc == 0 {
			sc = 1
		}
		v = drivers.Float((v.Float64() - p.Offset) / sc)
	}
	regs, err := mb.Encode(v, p.Type, p.Order)
	if err != nil {
		return fmt.Errorf("unit %d point %s: %w", sp.unit, p.Name, err)
	}
	if err := s.bank.SetRegisters(sp.unit, p.Register, p.Address, regs); err != nil {
		return fmt.Errorf("point %s: %w", p.Name, err)
	}
	return nil
}

// Update advances every signal point to t and writes it.
func (s *Simulator) Update(t time.Time) {
	for i := range s.points {
		sp := &s.points[i]
		if sp.model == nil {
			continue
		}
		sp.p.Value = sp.model.Next(t)
		_ = s.write(sp) // points were checked by NewSimulator
	}
}

// Run updates the signal points every interval until ctx is done.
func (s *Simulator) Run(ctx context.Context) {
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s.Update(now)
		}
	}
}

func truthy(v drivers.Value) bool {
	switch v.Kind {
	case drivers.KindBool:
		return v.B
	case drivers.KindInt:
		return v.I != 0
	case drivers.KindUint:
		return v.U != 0
	case drivers.KindFloat:
		return v.F != 0 && !math.IsNaN(v.F)
	}
	return v.S != ""
}
