package signal

import (
	"math"
	"math/rand/v2"
	"time"

	"github.com/iot-producer/iot-producer/drivers"
)

// WalkConfig describes a Walk.
type WalkConfig struct {
	// Mean is the level the walk is pulled back to.
	Mean float64
	// Low and High are hard bounds (the walk reflects off them) and the
	// nominal range that variation is a fraction of.
	Low, High float64
	// Reversion is the fraction of the distance to Mean recovered each
	// tick, in (0, 1]; smaller values wander further and slower. Values
	// outside that interval count as 0.05.
	Reversion float64
}

// Walk is a bounded mean-reverting random walk (a discrete
// Ornstein-Uhlenbeck process), the shape of a line pressure or a flow:
//
//	x ← x + Reversion·(Mean − x) + σ·N(0, 1), reflected into [Low, High]
//
// σ is chosen so that the walk's stationary standard deviation is
// variation × (High − Low) / 4: with variation 0.1 it wanders about ±2.5% of
// the range, and with variation 0 it holds Mean exactly. The walk starts at
// a draw from its stationary distribution, so no warm-up is needed. It moves
// one step per Next call; t is ignored.
type Walk struct {
	cfg   WalkConfig
	sigma float64
	x     float64
	r     *rand.Rand
}

// NewWalk returns a Walk drawing its steps from r. Variation is clamped to
// [0, 1]; a nil r is replaced by a fixed-seed source.
func NewWalk(cfg WalkConfig, variation float64, r *rand.Rand) *Walk {
	if !(cfg.Reversion > 0 && cfg.Reversion <= 1) {
		cfg.Reversion = 0.05
	}
	if cfg.Low > cfg.High {
		cfg.Low, cfg.High = cfg.High, cfg.Low
	}
	r = orDefaultRand(r)
	sd := ClampVariation(variation) * (cfg.High - cfg.Low) / 4
	theta := cfg.Reversion
	w := &Walk{
		cfg: cfg,
		// Var(x) = σ² / (1 − (1 − θ)²) for the stationary process.
		sigma: sd * math.Sqrt(theta*(2-theta)),
		r:     r,
	}
	w.x = w.reflect(cfg.Mean + boundedNoise(r, 3*sd))
	return w
}

// Kind returns drivers.KindFloat.
func (w *Walk) Kind() drivers.Kind { return drivers.KindFloat }

// Next takes one step and returns the new level.
func (w *Walk) Next(time.Time) drivers.Value {
	step := 0.0
	if w.sigma > 0 {
		step = w.sigma * w.r.NormFloat64()
	}
	w.x = w.reflect(w.x + w.cfg.Reversion*(w.cfg.Mean-w.x) + step)
	return drivers.Float(w.x)
}

// reflect mirrors x back into [Low, High] and clamps what a single mirror
// cannot fix.
func (w *Walk) reflect(x float64) float64 {
	lo, hi := w.cfg.Low, w.cfg.High
	if lo >= hi {
		return x
	}
	if x > hi {
		x = 2*hi - x
	}
	if x < lo {
		x = 2*lo - x
	}
	return clamp(x, lo, hi)
}
