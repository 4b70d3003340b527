package signal

import (
	"math"
	"math/rand/v2"
	"time"

	"github.com/iot-producer/iot-producer/drivers"
)

// maxRate keeps an increment, noise included, far inside uint64.
const maxRate = 1 << 40

// CounterConfig describes a Counter.
type CounterConfig struct {
	// Start is the count before the first tick.
	Start uint64
	// Rate is the mean increment per tick; values below 1 count as 1 and
	// values above 2^40 as 2^40.
	Rate float64
}

// Counter is a monotonically increasing uint64, the shape of a
// parts-produced counter. Each tick adds
//
//	max(1, round(Rate + σ·N(0, 1))), σ = variation × Rate
//
// so the count rises strictly on every tick; with variation 0 it rises by
// exactly round(Rate). It wraps at 2^64 as a hardware counter would, which
// at any plausible rate takes longer than the hardware lasts. t is ignored.
type Counter struct {
	rate  float64
	sigma float64
	n     uint64
	r     *rand.Rand
}

// NewCounter returns a Counter drawing its increments from r. Variation is
// clamped to [0, 1]; a nil r is replaced by a fixed-seed source.
func NewCounter(cfg CounterConfig, variation float64, r *rand.Rand) *Counter {
	rate := cfg.Rate
	switch {
	case !(rate >= 1): // also NaN
		rate = 1
	case rate > maxRate:
		rate = maxRate
	}
	return &Counter{
		rate:  rate,
		sigma: ClampVariation(variation) * rate,
		n:     cfg.Start,
		r:     orDefaultRand(r),
	}
}

// Kind returns drivers.KindUint.
func (c *Counter) Kind() drivers.Kind { return drivers.KindUint }

// Next adds one tick's increment and returns the count.
func (c *Counter) Next(time.Time) drivers.Value {
	inc := c.rate
	if c.sigma > 0 {
		inc += c.sigma * c.r.NormFloat64()
	}
	c.n += uint64(math.Max(1, math.Round(inc)))
	return drivers.Uint(c.n)
}
