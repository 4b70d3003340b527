package signal

import (
	"math"
	"math/rand/v2"
	"time"

	"github.com/iot-producer/iot-producer/drivers"
)

// WaveShape selects the periodic shape of a Wave.
type WaveShape uint8

// Wave shapes.
const (
	// ShapeSine is a sine: a temperature following a slow process cycle.
	ShapeSine WaveShape = iota
	// ShapeTriangle rises and falls linearly: a tank filled and drained.
	ShapeTriangle
)

// WaveConfig describes a Wave.
type WaveConfig struct {
	Shape WaveShape
	// Base is the centre of the wave.
	Base float64
	// Amplitude is half the wave's peak-to-peak swing.
	Amplitude float64
	// Period is the length of one cycle; 0 or less gives a flat line at
	// Base.
	Period time.Duration
	// Phase shifts the wave by this fraction of a period, in [0, 1).
	Phase float64
	// Low and High bound the nominal range: the noise is at most
	// variation × (High − Low), and readings are clamped to [Low, High].
	Low, High float64
}

// Wave is a periodic signal of wall-clock time plus gaussian noise:
//
//	x(t) = Base + Amplitude·shape(t/Period + Phase) + noise
//
// The shape is a function of t alone (not of how often Next is called), so
// restarts and different tick rates stay on the same curve. The noise has a
// standard deviation of variation × (High − Low) / 3 and is clipped to
// ±variation × (High − Low); with variation 0 the output is the exact,
// noise-free shape.
type Wave struct {
	cfg    WaveConfig
	period int64 // nanoseconds
	bound  float64
	r      *rand.Rand
}

// NewWave returns a Wave drawing its noise from r. Variation is clamped to
// [0, 1]; a nil r is replaced by a fixed-seed source.
func NewWave(cfg WaveConfig, variation float64, r *rand.Rand) *Wave {
	return &Wave{
		cfg:    cfg,
		period: int64(cfg.Period),
		bound:  ClampVariation(variation) * math.Abs(cfg.High-cfg.Low),
		r:      orDefaultRand(r),
	}
}

// Kind returns drivers.KindFloat.
func (w *Wave) Kind() drivers.Kind { return drivers.KindFloat }

// Next returns the wave at t plus fresh noise.
func (w *Wave) Next(t time.Time) drivers.Value {
	x := w.cfg.Base + w.cfg.Amplitude*w.shape(t) + boundedNoise(w.r, w.bound)
	return drivers.Float(clamp(x, w.cfg.Low, w.cfg.High))
}

// shape returns the unit shape, in [-1, 1], at t.
func (w *Wave) shape(t time.Time) float64 {
	if w.period <= 0 {
		return 0
	}
	// The remainder in integer nanoseconds keeps full precision however
	// far t is from the epoch.
	rem := t.UnixNano() % w.period
	if rem < 0 {
		rem += w.period
	}
	frac := float64(rem)/float64(w.period) + w.cfg.Phase
	frac -= math.Floor(frac)
	switch w.cfg.Shape {
	case ShapeTriangle:
		// -1 at frac 0, +1 at frac 0.5, back to -1 at 1.
		return 1 - 4*math.Abs(frac-0.5)
	default:
		return math.Sin(2 * math.Pi * frac)
	}
}
