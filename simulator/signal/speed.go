package signal

import (
	"math"
	"math/rand/v2"
	"time"

	"github.com/iot-producer/iot-producer/drivers"
)

// SpeedConfig describes a Speed.
type SpeedConfig struct {
	// Setpoint is the nominal speed, where the motor runs most of the time.
	Setpoint float64
	// Span is the width of the nominal range that variation is a fraction
	// of, for the measurement noise.
	Span float64
	// Lag is the fraction of the gap to the target closed each tick, in
	// (0, 1]; values outside that interval count as 0.2.
	Lag float64
	// Change is the probability per tick, at variation 1, that the target
	// changes; the probability used is Change × variation.
	Change float64
	// MinFactor bounds a reduced target: it is drawn from
	// [MinFactor × Setpoint, Setpoint).
	MinFactor float64
}

// Speed is a motor speed: the drive ramps towards a target with a
// first-order lag, and readings carry gaussian measurement noise of at most
// variation × Span (standard deviation a third of that). The target is
// Setpoint; now and then (probability Change × variation per tick) the line
// slows to a reduced target and, at a later change, returns to Setpoint.
// With variation 0 the speed is exactly Setpoint on every tick. Readings are
// never negative. It moves one step per Next call; t is ignored.
type Speed struct {
	cfg    SpeedConfig
	p      float64
	bound  float64
	target float64
	x      float64
	r      *rand.Rand
}

// NewSpeed returns a Speed drawing its events and noise from r. Variation is
// clamped to [0, 1]; a nil r is replaced by a fixed-seed source.
func NewSpeed(cfg SpeedConfig, variation float64, r *rand.Rand) *Speed {
	if !(cfg.Lag > 0 && cfg.Lag <= 1) {
		cfg.Lag = 0.2
	}
	cfg.MinFactor = clamp(cfg.MinFactor, 0, 1)
	v := ClampVariation(variation)
	return &Speed{
		cfg:    cfg,
		p:      max(0, cfg.Change) * v,
		bound:  v * math.Abs(cfg.Span),
		target: cfg.Setpoint,
		x:      cfg.Setpoint,
		r:      orDefaultRand(r),
	}
}

// Kind returns drivers.KindFloat.
func (s *Speed) Kind() drivers.Kind { return drivers.KindFloat }

// Next advances one tick and returns the measured speed.
func (s *Speed) Next(time.Time) drivers.Value {
	if s.p > 0 && s.r.Float64() < s.p {
		if s.target == s.cfg.Setpoint {
			f := s.cfg.MinFactor + (1-s.cfg.MinFactor)*s.r.Float64()
			s.target = f * s.cfg.Setpoint
		} else {
			s.target = s.cfg.Setpoint
		}
	}
	s.x += s.cfg.Lag * (s.target - s.x)
	return drivers.Float(math.Max(0, s.x+boundedNoise(s.r, s.bound)))
}
