package signal_test

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/iot-producer/iot-producer/drivers"
	"github.com/iot-producer/iot-producer/simulator/signal"
)

var epoch = time.Date(2025, 3, 1, 6, 0, 0, 0, time.UTC)

// tickAt returns the time of tick i, one second apart.
func tickAt(i int) time.Time { return epoch.Add(time.Duration(i) * time.Second) }

// run returns n readings of m, one per second from epoch.
func run(t *testing.T, m signal.Model, n int) []drivers.Value {
	t.Helper()
	out := make([]drivers.Value, n)
	for i := range out {
		out[i] = m.Next(tickAt(i))
		if out[i].Kind != m.Kind() {
			t.Fatalf("reading %d has kind %v, model says %v", i, out[i].Kind, m.Kind())
		}
	}
	return out
}

// firstDifference returns the index of the first differing reading, or -1.
func firstDifference(a, b []drivers.Value) int {
	for i := range a {
		if !a[i].Equal(b[i]) {
			return i
		}
	}
	return -1
}

func TestNewSeriesIsDeterministic(t *testing.T) {
	const n = 20000 // long enough for every alarm series to fire
	for tag := range len(signal.Profiles()) + 1 {
		t.Run(signal.TagProfile(tag).Name, func(t *testing.T) {
			base := run(t, signal.NewSeries(7, 3, tag, 0.1), n)
			if i := firstDifference(base, run(t, signal.NewSeries(7, 3, tag, 0.1), n)); i >= 0 {
				t.Fatalf("same seed, device and tag differ at reading %d", i)
			}
			others := []struct {
				name             string
				seed             int64
				device, tagIndex int
			}{
				{"other seed", 8, 3, tag},
				{"other device", 7, 4, tag},
				{"same profile, next round", 7, 3, tag + len(signal.Profiles())},
			}
			for _, o := range others {
				got := run(t, signal.NewSeries(o.seed, o.device, o.tagIndex, 0.1), n)
				if firstDifference(base, got) < 0 {
					t.Errorf("%s: sequence identical to the base series", o.name)
				}
			}
		})
	}
}

func TestCounterIsStrictlyMonotonic(t *testing.T) {
	for _, v := range []float64{0, 0.1, 1} {
		t.Run(fmt.Sprintf("variation %g", v), func(t *testing.T) {
			for device := range 10 {
				vals := run(t, signal.NewSeries(1, device, 2, v), 5000)
				steps := map[uint64]bool{}
				for i := 1; i < len(vals); i++ {
					if vals[i].U <= vals[i-1].U {
						t.Fatalf("device %d: reading %d is %d after %d", device, i, vals[i].U, vals[i-1].U)
					}
					steps[vals[i].U-vals[i-1].U] = true
				}
				if v == 0 && len(steps) != 1 {
					t.Errorf("device %d: variation 0 gave %d different increments, want 1", device, len(steps))
				}
				if v > 0 && len(steps) < 2 {
					t.Errorf("device %d: variation %g gave a constant increment", device, v)
				}
			}
		})
	}
}

func TestTemperatureStaysInBand(t *testing.T) {
	// Base 50-70 °C, sine ±5 °C, noise at most 10% of the 40 °C range.
	const lo, hi = 41, 79
	var sum, sumSq float64
	var count int
	for device := range 100 {
		vals := run(t, signal.NewSeries(1, device, 0, 0.1), 3600)
		for i, v := range vals {
			if v.F < lo || v.F > hi {
				t.Fatalf("device %d reading %d: %.2f °C outside [%d, %d]", device, i, v.F, lo, hi)
			}
			if i > 0 {
				d := v.F - vals[i-1].F
				sum += d
				sumSq += d * d
				count++
			}
		}
	}
	// Noise of σ = 40 × 0.1 / 3 °C gives tick-to-tick differences of
	// σ√2 ≈ 1.9 °C; the sine alone moves at most 0.1 °C a second.
	sd := math.Sqrt(sumSq/float64(count) - (sum/float64(count))*(sum/float64(count)))
	if sd < 1.5 || sd > 2.3 {
		t.Errorf("tick-to-tick standard deviation %.2f °C, want about 1.9", sd)
	}
}

func TestVariationZeroIsNoiseFree(t *testing.T) {
	// A noise-free model gives the same reading at a time whether or not
	// it was read in between; noise would shift its random stream.
	for tag, p := range signal.Profiles() {
		if p.Kind == drivers.KindUint {
			continue // a counter's reading depends on the ticks counted
		}
		t.Run(p.Name, func(t *testing.T) {
			const n, stride = 3600, 7
			for _, v := range []float64{0, 0.1} {
				every := run(t, signal.NewSeries(3, 1, tag, v), n)
				sparse := signal.NewSeries(3, 1, tag, v)
				same := true
				for i := 0; i < n; i += stride {
					same = same && sparse.Next(tickAt(i)).Equal(every[i])
				}
				if v == 0 && !same {
					t.Errorf("variation 0: readings depend on how often the model is read")
				}
				if v > 0 && same {
					t.Errorf("variation %g: readings show no noise", v)
				}
				if v > 0 || p.Kind != drivers.KindFloat {
					continue
				}
				maxStep := 0.01 * (p.High - p.Low)
				for i := 1; i < n; i++ {
					if d := math.Abs(every[i].F - every[i-1].F); d > maxStep {
						t.Fatalf("variation 0: step %d moves %.4g %s, more than %.4g", i, d, p.Unit, maxStep)
					}
				}
			}
		})
	}
}

func TestReadingsStayInNominalRange(t *testing.T) {
	for tag, p := range signal.Profiles() {
		if p.Kind != drivers.KindFloat {
			continue
		}
		t.Run(p.Name, func(t *testing.T) {
			for device := range 20 {
				for i, v := range run(t, signal.NewSeries(5, device, tag, 1), 5000) {
					if v.F < p.Low || v.F > p.High || math.IsNaN(v.F) {
						t.Fatalf("device %d reading %d: %g outside [%g, %g]", device, i, v.F, p.Low, p.High)
					}
				}
			}
		})
	}
}

func TestAlarmRaisesAndClears(t *testing.T) {
	const n = 20000
	raised, runs := 0, 0
	for device := range 10 {
		vals := run(t, signal.NewSeries(1, device, 3, 0.1), n)
		length := 0
		for i, v := range vals {
			if v.B {
				raised++
				length++
				continue
			}
			if length > 0 {
				runs++
				if length < 3 || length > 10 {
					t.Errorf("device %d: alarm ending at reading %d lasted %d ticks, want 3 to 10", device, i, length)
				}
			}
			length = 0
		}
	}
	total := 10 * n
	if raised == 0 || raised == total {
		t.Fatalf("alarm true on %d of %d readings, want both values", raised, total)
	}
	// About one onset per 200 ticks: 1,000 expected.
	if runs < 700 || runs > 1300 {
		t.Errorf("%d alarms in %d ticks, want about 1000", runs, total)
	}
	for i, v := range run(t, signal.NewSeries(1, 0, 3, 0), n) {
		if v.B {
			t.Fatalf("variation 0: alarm raised at reading %d", i)
		}
	}
}

func TestWalkRevertsToMean(t *testing.T) {
	const n = 50000
	w := signal.NewWalk(signal.WalkConfig{Mean: 5, Low: 3, High: 7, Reversion: 0.05}, 0.1, signal.NewRand(1, 0, 0))
	var sum, sumSq float64
	for i := range n {
		x := w.Next(tickAt(i)).F
		sum += x
		sumSq += x * x
	}
	mean := sum / n
	sd := math.Sqrt(sumSq/n - mean*mean)
	// Stationary standard deviation: 0.1 × 4 bar / 4.
	if math.Abs(mean-5) > 0.05 || sd < 0.08 || sd > 0.12 {
		t.Errorf("mean %.3f bar, sd %.3f bar; want about 5 and 0.1", mean, sd)
	}
}

func TestWaveShape(t *testing.T) {
	const period = 4 * time.Minute
	at := func(frac float64) time.Time {
		return time.Unix(0, 0).Add(time.Duration(frac * float64(period)))
	}
	tests := []struct {
		name  string
		shape signal.WaveShape
		phase float64
		t     time.Time
		want  float64
	}{
		{"sine at 0", signal.ShapeSine, 0, at(0), 10},
		{"sine at a quarter", signal.ShapeSine, 0, at(0.25), 12},
		{"sine at three quarters", signal.ShapeSine, 0, at(0.75), 8},
		{"sine with phase", signal.ShapeSine, 0.25, at(0), 12},
		{"sine before the epoch", signal.ShapeSine, 0, at(-0.75), 12},
		{"sine far from the epoch", signal.ShapeSine, 0, at(0.25).Add(1e6 * period), 12},
		{"triangle at 0", signal.ShapeTriangle, 0, at(0), 8},
		{"triangle at a quarter", signal.ShapeTriangle, 0, at(0.25), 10},
		{"triangle at half", signal.ShapeTriangle, 0, at(0.5), 12},
		{"triangle with phase", signal.ShapeTriangle, 0.5, at(0), 12},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := signal.NewWave(signal.WaveConfig{
				Shape: tt.shape, Base: 10, Amplitude: 2, Period: period, Phase: tt.phase, Low: 0, High: 20,
			}, 0, nil)
			if got := w.Next(tt.t).F; math.Abs(got-tt.want) > 1e-9 {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestConstructorsTolerateBadInput(t *testing.T) {
	nan := math.NaN()
	tests := []struct {
		name string
		m    signal.Model
		want []drivers.Value
	}{
		{"zero wave", signal.NewWave(signal.WaveConfig{}, nan, nil),
			[]drivers.Value{drivers.Float(0), drivers.Float(0)}},
		{"wave with reversed range", signal.NewWave(signal.WaveConfig{Base: 5, Low: 10, High: 0}, 0, nil),
			[]drivers.Value{drivers.Float(5), drivers.Float(5)}},
		{"walk with reversed range and NaN reversion", signal.NewWalk(signal.WalkConfig{Mean: 5, Low: 7, High: 3, Reversion: nan}, -1, nil),
			[]drivers.Value{drivers.Float(5), drivers.Float(5)}},
		{"counter with NaN rate", signal.NewCounter(signal.CounterConfig{Start: 10, Rate: nan}, 0, nil),
			[]drivers.Value{drivers.Uint(11), drivers.Uint(12)}},
		{"counter with huge rate", signal.NewCounter(signal.CounterConfig{Rate: math.Inf(1)}, 0, nil),
			[]drivers.Value{drivers.Uint(1 << 40), drivers.Uint(2 << 40)}},
		{"alarm with reversed durations", signal.NewAlarm(signal.AlarmConfig{Onset: 5, MinTicks: 0, MaxTicks: -5}, 1, nil),
			[]drivers.Value{drivers.Bool(true), drivers.Bool(false), drivers.Bool(true), drivers.Bool(false)}},
		{"zero speed", signal.NewSpeed(signal.SpeedConfig{Lag: 7, MinFactor: -3}, 2, nil),
			[]drivers.Value{drivers.Float(0), drivers.Float(0)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i, want := range tt.want {
				if got := tt.m.Next(tickAt(i)); !got.Equal(want) {
					t.Fatalf("reading %d: got %+v, want %+v", i, got, want)
				}
			}
		})
	}
}

func TestTagProfile(t *testing.T) {
	tests := []struct {
		tag  int
		name string
		kind drivers.Kind
	}{
		{-1, "temperature", drivers.KindFloat},
		{0, "temperature", drivers.KindFloat},
		{1, "pressure", drivers.KindFloat},
		{2, "counter", drivers.KindUint},
		{3, "alarm", drivers.KindBool},
		{4, "speed", drivers.KindFloat},
		{5, "vibration", drivers.KindFloat},
		{9, "humidity", drivers.KindFloat},
		{10, "temperature_2", drivers.KindFloat},
		{12, "counter_2", drivers.KindUint},
		{23, "alarm_3", drivers.KindBool},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.tag), func(t *testing.T) {
			p := signal.TagProfile(tt.tag)
			if p.Name != tt.name || p.Kind != tt.kind {
				t.Errorf("got %s (%v), want %s (%v)", p.Name, p.Kind, tt.name, tt.kind)
			}
			if m := signal.NewSeries(1, 0, tt.tag, 0.1); m.Kind() != tt.kind {
				t.Errorf("model kind %v, want %v", m.Kind(), tt.kind)
			}
		})
	}
}
