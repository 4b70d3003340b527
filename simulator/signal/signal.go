// Package signal owns the signal models of the simulated plant: the shapes
// of temperatures, pressures, part counters, alarms, motor speeds and the
// like, and the catalogue of tag profiles the simulator cycles through.
//
// Every model is deterministic given its random source, and every series
// gets its own source, seeded from (seed, device index, tag index) only, so a
// series never depends on which other series exist or in which order they
// are read. A model's noise and movement are scaled by a variation, the
// manual's device.data_variation: 0.1 means a disturbance of up to 10% of the
// signal's nominal range, and 0 leaves only the smooth deterministic shape.
//
// The package knows the drivers.Value type and nothing of devices, protocols,
// timers, the buffer or any sink. Models are not safe for concurrent use: one
// goroutine owns each.
package signal

import (
	"math"
	"math/rand/v2"
	"time"

	"github.com/iot-producer/iot-producer/drivers"
)

// Model produces the readings of one simulated tag.
type Model interface {
	// Kind is the kind of every Value that Next returns.
	Kind() drivers.Kind
	// Next advances the model by one tick taken at time t and returns the
	// reading. Time-driven shapes (waves) read t; state-driven shapes (walks,
	// counters, alarms) advance one step per call whatever t is.
	Next(t time.Time) drivers.Value
}

// NewRand returns the random source of one series: a PCG generator whose
// state is derived from seed, device and tag alone by SplitMix64 mixing, so
// that neighbouring indexes give unrelated streams.
func NewRand(seed int64, device, tag int) *rand.Rand {
	h := splitmix64(uint64(seed))
	h = splitmix64(h ^ uint64(device))
	h = splitmix64(h ^ uint64(tag))
	return rand.New(rand.NewPCG(h, splitmix64(h)))
}

// splitmix64 is the SplitMix64 finaliser: a bijective mix of all 64 bits.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// ClampVariation returns v limited to [0, 1]; NaN counts as 0. Constructors
// apply it, so a model never amplifies noise beyond the signal's range.
func ClampVariation(v float64) float64 {
	switch {
	case math.IsNaN(v) || v < 0:
		return 0
	case v > 1:
		return 1
	}
	return v
}

// orDefaultRand returns r, or a source seeded from zeros when r is nil.
func orDefaultRand(r *rand.Rand) *rand.Rand {
	if r == nil {
		return NewRand(0, 0, 0)
	}
	return r
}

// boundedNoise returns gaussian noise with a standard deviation of a third
// of bound, clipped to ±bound. It draws nothing when bound is 0.
func boundedNoise(r *rand.Rand, bound float64) float64 {
	if bound <= 0 {
		return 0
	}
	n := r.NormFloat64() * bound / 3
	return math.Max(-bound, math.Min(bound, n))
}

// clamp limits x to [lo, hi] when lo < hi and returns x unchanged otherwise.
func clamp(x, lo, hi float64) float64 {
	if lo >= hi {
		return x
	}
	return math.Max(lo, math.Min(hi, x))
}
