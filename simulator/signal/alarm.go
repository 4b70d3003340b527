package signal

import (
	"math/rand/v2"
	"time"

	"github.com/iot-producer/iot-producer/drivers"
)

// AlarmConfig describes an Alarm.
type AlarmConfig struct {
	// Onset is the probability per tick, at variation 1, that a cleared
	// alarm is raised; the probability used is Onset × variation.
	Onset float64
	// MinTicks and MaxTicks bound how many ticks a raised alarm lasts
	// (uniformly drawn, at least 1).
	MinTicks, MaxTicks int
}

// Alarm is a boolean that is rarely true: while cleared, each tick raises it
// with probability Onset × variation, and once raised it stays true for a
// duration drawn uniformly from [MinTicks, MaxTicks] ticks, then clears for
// at least one tick. With variation
// 0.1 and Onset 0.05 an alarm is raised about every 200 ticks; with
// variation 0 it is never raised. It moves one step per Next call; t is
// ignored.
type Alarm struct {
	p        float64
	min, max int
	left     int  // ticks the current alarm lasts after this one
	raised   bool // the last reading was true
	r        *rand.Rand
}

// NewAlarm returns an Alarm drawing its events from r. Variation is clamped
// to [0, 1]; a nil r is replaced by a fixed-seed source.
func NewAlarm(cfg AlarmConfig, variation float64, r *rand.Rand) *Alarm {
	lo, hi := max(cfg.MinTicks, 1), max(cfg.MaxTicks, 1)
	if lo > hi {
		lo, hi = hi, lo
	}
	return &Alarm{
		p:   max(0, cfg.Onset) * ClampVariation(variation),
		min: lo,
		max: hi,
		r:   orDefaultRand(r),
	}
}

// Kind returns drivers.KindBool.
func (a *Alarm) Kind() drivers.Kind { return drivers.KindBool }

// Next advances one tick and reports whether the alarm is raised.
func (a *Alarm) Next(time.Time) drivers.Value {
	switch {
	case a.left > 0:
		a.left--
	case a.raised:
		// An alarm clears for at least one tick before it can return.
		a.raised = false
	case a.p > 0 && a.r.Float64() < a.p:
		a.left = a.min + a.r.IntN(a.max-a.min+1) - 1
		a.raised = true
	}
	return drivers.Bool(a.raised)
}
