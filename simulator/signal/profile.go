package signal

import (
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/iot-producer/iot-producer/drivers"
)

// Profile describes a kind of simulated tag: what it measures and in which
// range.
type Profile struct {
	// Name is the tag name: "temperature", or "temperature_2" for the
	// second round through the catalogue.
	Name string
	// Unit is the engineering unit, empty for counts and booleans.
	Unit string
	// Kind is the kind of the tag's values.
	Kind drivers.Kind
	// Low and High are the tag's nominal engineering range (both 0 for
	// counters and alarms). Readings stay inside it.
	Low, High float64
}

// profile is a catalogue entry: a Profile and how to build its model.
type profile struct {
	Profile
	build func(r *rand.Rand, variation float64) Model
}

// catalogue is the order in which a device's tags cycle through profiles.
// Per-series parameters (base levels, periods, phases) are drawn from the
// series' own source before any noise, so they depend on the seed alone.
var catalogue = [...]profile{
	{
		// A process temperature: a sine of 5 to 15 minutes, ±5 °C around
		// a base of 50 to 70 °C.
		Profile: Profile{Name: "temperature", Unit: "°C", Kind: drivers.KindFloat, Low: 40, High: 80},
		build: func(r *rand.Rand, v float64) Model {
			return NewWave(WaveConfig{
				Shape:     ShapeSine,
				Base:      uniform(r, 50, 70),
				Amplitude: 5,
				Period:    minutes(r, 5, 15),
				Phase:     r.Float64(),
				Low:       40,
				High:      80,
			}, v, r)
		},
	},
	{
		// A line pressure: a mean-reverting walk around 4.5 to 5.5 bar.
		Profile: Profile{Name: "pressure", Unit: "bar", Kind: drivers.KindFloat, Low: 3, High: 7},
		build: func(r *rand.Rand, v float64) Model {
			return NewWalk(WalkConfig{Mean: uniform(r, 4.5, 5.5), Low: 3, High: 7, Reversion: 0.05}, v, r)
		},
	},
	{
		// Parts produced: from somewhere below a million, 2 to 10 a tick.
		Profile: Profile{Name: "counter", Kind: drivers.KindUint},
		build: func(r *rand.Rand, v float64) Model {
			return NewCounter(CounterConfig{Start: r.Uint64N(1_000_000), Rate: uniform(r, 2, 10)}, v, r)
		},
	},
	{
		// A fault alarm: raised about every 200 ticks at variation 0.1,
		// for 3 to 10 ticks.
		Profile: Profile{Name: "alarm", Kind: drivers.KindBool},
		build: func(r *rand.Rand, v float64) Model {
			return NewAlarm(AlarmConfig{Onset: 0.05, MinTicks: 3, MaxTicks: 10}, v, r)
		},
	},
	{
		// A motor speed: a 50 Hz induction motor of 2, 4, 6 or 8 poles,
		// sometimes slowed to 60-100% of its rated speed.
		Profile: Profile{Name: "speed", Unit: "rpm", Kind: drivers.KindFloat, Low: 0, High: 3600},
		build: func(r *rand.Rand, v float64) Model {
			rated := [...]float64{2960, 1480, 980, 740}[r.IntN(4)]
			return NewSpeed(SpeedConfig{Setpoint: rated, Span: rated / 10, Lag: 0.2, Change: 0.02, MinFactor: 0.6}, v, r)
		},
	},
	{
		// A bearing's vibration velocity (RMS): 1.5 to 3 mm/s with a slow
		// ±0.3 mm/s swing of 2 to 6 minutes.
		Profile: Profile{Name: "vibration", Unit: "mm/s", Kind: drivers.KindFloat, Low: 0, High: 8},
		build: func(r *rand.Rand, v float64) Model {
			return NewWave(WaveConfig{
				Shape:     ShapeSine,
				Base:      uniform(r, 1.5, 3),
				Amplitude: 0.3,
				Period:    minutes(r, 2, 6),
				Phase:     r.Float64(),
				Low:       0,
				High:      8,
			}, v, r)
		},
	},
	{
		// A flow: a mean-reverting walk around 90 to 110 m³/h.
		Profile: Profile{Name: "flow", Unit: "m³/h", Kind: drivers.KindFloat, Low: 50, High: 150},
		build: func(r *rand.Rand, v float64) Model {
			return NewWalk(WalkConfig{Mean: uniform(r, 90, 110), Low: 50, High: 150, Reversion: 0.1}, v, r)
		},
	},
	{
		// A tank level: filled and drained linearly between about 20% and
		// 80% over 10 to 30 minutes.
		Profile: Profile{Name: "level", Unit: "%", Kind: drivers.KindFloat, Low: 0, High: 100},
		build: func(r *rand.Rand, v float64) Model {
			return NewWave(WaveConfig{
				Shape:     ShapeTriangle,
				Base:      uniform(r, 45, 55),
				Amplitude: 30,
				Period:    minutes(r, 10, 30),
				Phase:     r.Float64(),
				Low:       0,
				High:      100,
			}, v, r)
		},
	},
	{
		// A motor current: a mean-reverting walk around 25 to 35 A.
		Profile: Profile{Name: "current", Unit: "A", Kind: drivers.KindFloat, Low: 0, High: 60},
		build: func(r *rand.Rand, v float64) Model {
			return NewWalk(WalkConfig{Mean: uniform(r, 25, 35), Low: 0, High: 60, Reversion: 0.1}, v, r)
		},
	},
	{
		// A hall's relative humidity: a sine of 20 to 40 minutes, ±8%
		// around 40 to 50%.
		Profile: Profile{Name: "humidity", Unit: "%RH", Kind: drivers.KindFloat, Low: 20, High: 80},
		build: func(r *rand.Rand, v float64) Model {
			return NewWave(WaveConfig{
				Shape:     ShapeSine,
				Base:      uniform(r, 40, 50),
				Amplitude: 8,
				Period:    minutes(r, 20, 40),
				Phase:     r.Float64(),
				Low:       20,
				High:      80,
			}, v, r)
		},
	},
}

// Profiles returns the catalogue in the order a device's tags cycle through
// it: temperature, pressure, counter, alarm, speed, vibration, flow, level,
// current, humidity.
func Profiles() []Profile {
	out := make([]Profile, len(catalogue))
	for i, p := range catalogue {
		out[i] = p.Profile
	}
	return out
}

// TagProfile returns the profile of a device's tag by index: the catalogue
// in order, then again with the suffix _2, then _3, and so on (index 10 is
// "temperature_2"). A negative index counts as 0.
func TagProfile(tag int) Profile {
	tag = max(tag, 0)
	p := catalogue[tag%len(catalogue)].Profile
	if round := tag / len(catalogue); round > 0 {
		p.Name += "_" + strconv.Itoa(round+1)
	}
	return p
}

// NewSeries returns the model of tag index tag of device index device: the
// profile TagProfile(tag) with its own source NewRand(seed, device, tag).
// The same arguments always give the same sequence. Variation is clamped to
// [0, 1].
func NewSeries(seed int64, device, tag int, variation float64) Model {
	tag = max(tag, 0)
	return catalogue[tag%len(catalogue)].build(NewRand(seed, device, tag), variation)
}

// uniform draws from [lo, hi).
func uniform(r *rand.Rand, lo, hi float64) float64 {
	return lo + (hi-lo)*r.Float64()
}

// minutes draws a duration from [lo, hi) minutes, in whole seconds.
func minutes(r *rand.Rand, lo, hi int) time.Duration {
	return time.Duration(lo*60+r.IntN((hi-lo)*60)) * time.Second
}
