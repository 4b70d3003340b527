package simulator

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/iot-producer/iot-producer/drivers"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// wait bounds every blocking receive in these tests.
const wait = 5 * time.Second

// runner runs a Source in a goroutine and hands its batches to the test.
type runner struct {
	batches  chan []drivers.Sample
	cancel   context.CancelFunc
	done     chan error
	stopOnce sync.Once
	err      error
}

// start runs s until the test ends or stop is called.
func start(t *testing.T, s *Source) *runner {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &runner{batches: make(chan []drivers.Sample, 16), cancel: cancel, done: make(chan error, 1)}
	go func() {
		r.done <- s.Run(ctx, func(b []drivers.Sample) {
			select {
			case r.batches <- b:
			case <-ctx.Done():
			}
		})
	}()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// next returns the next batch Run emitted.
func (r *runner) next(t *testing.T) []drivers.Sample {
	t.Helper()
	select {
	case b := <-r.batches:
		return b
	case err := <-r.done:
		t.Fatalf("Run returned early: %v", err)
	case <-time.After(wait):
		t.Fatalf("no batch within %v", wait)
	}
	return nil
}

// nextTick returns the samples of the next whole tick: consecutive batches
// with one ReadTime, n samples in all.
func (r *runner) nextTick(t *testing.T, n int) []drivers.Sample {
	t.Helper()
	var tick []drivers.Sample
	for len(tick) < n {
		b := r.next(t)
		if len(b) == 0 || len(b) > batchSize {
			t.Fatalf("batch of %d samples, want 1 to %d", len(b), batchSize)
		}
		if len(tick) > 0 && !b[0].ReadTime.Equal(tick[0].ReadTime) {
			t.Fatalf("tick of %v ended after %d samples, want %d", tick[0].ReadTime, len(tick), n)
		}
		tick = append(tick, b...)
	}
	if len(tick) != n {
		t.Fatalf("tick of %d samples, want %d", len(tick), n)
	}
	return tick
}

// stop cancels Run and returns what it returned.
func (r *runner) stop(t *testing.T) error {
	t.Helper()
	r.stopOnce.Do(func() {
		r.cancel()
		select {
		case r.err = <-r.done:
		case <-time.After(wait):
			r.err = fmt.Errorf("Run did not return within %v of cancel", wait)
		}
	})
	return r.err
}

// newSource builds a Source or fails the test.
func newSource(t *testing.T, opts SourceOptions) *Source {
	t.Helper()
	s, err := NewSource(opts)
	if err != nil {
		t.Fatalf("NewSource(%+v): %v", opts, err)
	}
	return s
}

// fakeClock returns a Now that advances by step on every call, starting at
// a fixed time.
func fakeClock(step time.Duration) func() time.Time {
	t := time.Date(2025, 3, 1, 6, 0, 0, 0, time.UTC)
	return func() time.Time {
		t = t.Add(step)
		return t
	}
}

func TestRunEmitsEverySeriesOncePerTick(t *testing.T) {
	tests := []struct {
		devices, tags int
		batches       int
	}{
		{devices: 3, tags: 4, batches: 1},
		{devices: 150, tags: 10, batches: 2},
		{devices: 1, tags: 1001, batches: 2},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d×%d", tt.devices, tt.tags), func(t *testing.T) {
			s := newSource(t, SourceOptions{Devices: tt.devices, TagsPerDevice: tt.tags, Interval: 5 * time.Millisecond, Variation: 0.1, Seed: 1})
			want := s.Series()
			r := start(t, s)
			var last time.Time
			for range 3 {
				tick := r.nextTick(t, len(want))
				if !tick[0].ReadTime.After(last) {
					t.Errorf("tick at %v does not follow %v", tick[0].ReadTime, last)
				}
				last = tick[0].ReadTime
				for i, smp := range tick {
					w := want[i]
					if smp.Device != w.Device || smp.Tag != w.Tag || smp.Value.Kind != w.Kind {
						t.Fatalf("sample %d is %s/%s (%v), want %s/%s (%v)", i, smp.Device, smp.Tag, smp.Value.Kind, w.Device, w.Tag, w.Kind)
					}
					if smp.Quality != drivers.QualityGood || !smp.SourceTime.Equal(smp.ReadTime) || !smp.ReadTime.Equal(last) {
						t.Fatalf("sample %d: quality %v, source time %v, read time %v; want good and %v", i, smp.Quality, smp.SourceTime, smp.ReadTime, last)
					}
				}
			}
			if err := r.stop(t); err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	defer goleak.VerifyNone(t)
	s := newSource(t, SourceOptions{Devices: 10, TagsPerDevice: 10, Interval: 5 * time.Millisecond})
	r := start(t, s)
	r.next(t)
	if err := r.stop(t); err != nil {
		t.Fatalf("Run after cancel: %v, want nil", err)
	}
}

func TestRunWithCancelledContextEmitsNothing(t *testing.T) {
	s := newSource(t, SourceOptions{Devices: 1, TagsPerDevice: 1, Interval: time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	emitted := 0
	if err := s.Run(ctx, func(b []drivers.Sample) { emitted += len(b) }); err != nil {
		t.Fatalf("Run: %v, want nil", err)
	}
	if emitted != 0 {
		t.Errorf("emitted %d samples after cancel, want 0", emitted)
	}
}

func TestRunRefusesSecondRunAndResumes(t *testing.T) {
	s := newSource(t, SourceOptions{Devices: 1, TagsPerDevice: 3, Interval: 5 * time.Millisecond, Variation: 0.1})
	counter := func(tick []drivers.Sample) uint64 { return tick[2].Value.U }

	r := start(t, s)
	first := counter(r.nextTick(t, 3))
	err := s.Run(context.Background(), func([]drivers.Sample) {})
	if !errors.Is(err, ErrRunning) {
		t.Fatalf("second Run: %v, want ErrRunning", err)
	}
	if err := r.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}

	// Run again: the counter carries on from where it stopped.
	r = start(t, s)
	if again := counter(r.nextTick(t, 3)); again <= first {
		t.Errorf("counter after restart %d, want more than %d", again, first)
	}
	if err := s.Run(context.Background(), nil); err == nil {
		t.Error("Run with nil emit: no error")
	}
}

// ticks returns the first n ticks of a Source built from opts with a fake
// clock.
func ticks(t *testing.T, opts SourceOptions, n int) [][]drivers.Sample {
	t.Helper()
	opts.Now = fakeClock(opts.Interval)
	s := newSource(t, opts)
	r := start(t, s)
	out := make([][]drivers.Sample, n)
	for i := range out {
		out[i] = r.nextTick(t, opts.Devices*opts.TagsPerDevice)
	}
	return out
}

func TestRunIsDeterministic(t *testing.T) {
	opts := SourceOptions{Devices: 4, TagsPerDevice: 12, Interval: 5 * time.Millisecond, Variation: 0.1, Seed: 42}
	const n = 5
	base := ticks(t, opts, n)

	// The same options give the same samples, timestamps included.
	same := ticks(t, opts, n)
	for k := range n {
		for i := range base[k] {
			a, b := base[k][i], same[k][i]
			if a.Device != b.Device || a.Tag != b.Tag || !a.Value.Equal(b.Value) || !a.ReadTime.Equal(b.ReadTime) {
				t.Fatalf("tick %d sample %d: %+v, then %+v", k, i, a, b)
			}
		}
	}

	// Another seed gives other values.
	other := opts
	other.Seed++
	diff := ticks(t, other, n)
	differs := 0
	for k := range n {
		for i := range base[k] {
			if !base[k][i].Value.Equal(diff[k][i].Value) {
				differs++
			}
		}
	}
	if differs == 0 {
		t.Error("seeds 42 and 43 gave the same samples")
	}

	// A series does not depend on how many others exist.
	fewer := opts
	fewer.Devices, fewer.TagsPerDevice = 2, 5
	small := ticks(t, fewer, n)
	for k := range n {
		for i, smp := range small[k] {
			d, tag := i/fewer.TagsPerDevice, i%fewer.TagsPerDevice
			want := base[k][d*opts.TagsPerDevice+tag]
			if smp.Device != want.Device || smp.Tag != want.Tag || !smp.Value.Equal(want.Value) {
				t.Fatalf("tick %d: %s/%s = %+v with fewer series, %s/%s = %+v with more",
					k, smp.Device, smp.Tag, smp.Value, want.Device, want.Tag, want.Value)
			}
		}
	}
}

func TestSeries(t *testing.T) {
	tests := []struct {
		name   string
		prefix string
		tags   int
		want   []Series // the first device's series
	}{
		{"default prefix", "", 4, []Series{
			{"sim-0001", "temperature", drivers.KindFloat, "°C"},
			{"sim-0001", "pressure", drivers.KindFloat, "bar"},
			{"sim-0001", "counter", drivers.KindUint, ""},
			{"sim-0001", "alarm", drivers.KindBool, ""},
		}},
		{"beyond the catalogue", "line", 13, []Series{
			{"line-0001", "temperature", drivers.KindFloat, "°C"},
			{"line-0001", "pressure", drivers.KindFloat, "bar"},
			{"line-0001", "counter", drivers.KindUint, ""},
			{"line-0001", "alarm", drivers.KindBool, ""},
			{"line-0001", "speed", drivers.KindFloat, "rpm"},
			{"line-0001", "vibration", drivers.KindFloat, "mm/s"},
			{"line-0001", "flow", drivers.KindFloat, "m³/h"},
			{"line-0001", "level", drivers.KindFloat, "%"},
			{"line-0001", "current", drivers.KindFloat, "A"},
			{"line-0001", "humidity", drivers.KindFloat, "%RH"},
			{"line-0001", "temperature_2", drivers.KindFloat, "°C"},
			{"line-0001", "pressure_2", drivers.KindFloat, "bar"},
			{"line-0001", "counter_2", drivers.KindUint, ""},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSource(t, SourceOptions{Devices: 12, TagsPerDevice: tt.tags, Interval: time.Second, NamePrefix: tt.prefix})
			got := s.Series()
			if len(got) != 12*tt.tags {
				t.Fatalf("%d series, want %d", len(got), 12*tt.tags)
			}
			for i, w := range tt.want {
				if got[i] != w {
					t.Errorf("series %d: %+v, want %+v", i, got[i], w)
				}
			}
			prefix := tt.prefix
			if prefix == "" {
				prefix = DefaultNamePrefix
			}
			if last := got[len(got)-1].Device; last != prefix+"-0012" {
				t.Errorf("last device %q, want %q", last, prefix+"-0012")
			}
			got[0].Device = "changed"
			if s.Series()[0].Device == "changed" {
				t.Error("Series returned the Source's own slice")
			}
		})
	}
}

func TestNewSourceRejectsBadOptions(t *testing.T) {
	good := SourceOptions{Devices: 1, TagsPerDevice: 1, Interval: time.Second, Variation: 0.1}
	tests := []struct {
		name   string
		change func(*SourceOptions)
	}{
		{"no devices", func(o *SourceOptions) { o.Devices = 0 }},
		{"negative tags", func(o *SourceOptions) { o.TagsPerDevice = -1 }},
		{"too many series", func(o *SourceOptions) { o.Devices, o.TagsPerDevice = 1_000_000, 11 }},
		{"zero interval", func(o *SourceOptions) { o.Interval = 0 }},
		{"negative variation", func(o *SourceOptions) { o.Variation = -0.1 }},
		{"variation above 1", func(o *SourceOptions) { o.Variation = 1.5 }},
		{"NaN variation", func(o *SourceOptions) { o.Variation = math.NaN() }},
	}
	if _, err := NewSource(good); err != nil {
		t.Fatalf("good options: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := good
			tt.change(&opts)
			if s, err := NewSource(opts); err == nil {
				t.Errorf("NewSource(%+v) = %v, want an error", opts, s.Name())
			}
		})
	}
}

// BenchmarkTick measures one interval of 1,000 devices × 10 tags (all its
// slots), batches included.
func BenchmarkTick(b *testing.B) {
	s, err := NewSource(SourceOptions{Devices: 1000, TagsPerDevice: 10, Interval: time.Second, Variation: 0.1, Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	t0 := time.Date(2025, 3, 1, 6, 0, 0, 0, time.UTC)
	samples := 0
	emit := func(batch []drivers.Sample) { samples += len(batch) }
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		for slot := range s.slots {
			s.tick(ctx, t0.Add(time.Duration(i)*time.Second), slot, emit)
		}
	}
	b.ReportMetric(float64(samples)/b.Elapsed().Seconds(), "samples/s")
}

// TestRunSpreadsDevicesOverTheInterval: with room for several 10ms slots
// in the interval, each device is read once per interval but not all at
// the same moment.
func TestRunSpreadsDevicesOverTheInterval(t *testing.T) {
	s := newSource(t, SourceOptions{Devices: 4, TagsPerDevice: 3, Interval: 80 * time.Millisecond})
	batches := make(chan []drivers.Sample, 64)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, func(b []drivers.Sample) { batches <- b }) }()
	seen := map[string]int{}
	var times []time.Time
	for len(times) < 8 {
		b := <-batches
		if len(b) != 3 {
			t.Fatalf("emit of %d samples, want one device's 3", len(b))
		}
		for _, smp := range b {
			if smp.Device != b[0].Device || !smp.ReadTime.Equal(b[0].ReadTime) {
				t.Fatalf("one emit mixes devices or times: %+v", b)
			}
		}
		seen[b[0].Device]++
		times = append(times, b[0].ReadTime)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(times); i++ {
		if !times[i].After(times[i-1]) {
			t.Fatalf("read times not spread: %v", times)
		}
	}
	for dev, n := range seen {
		if n != 2 {
			t.Errorf("%s read %d times in two intervals, want 2", dev, n)
		}
	}
}
