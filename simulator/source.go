package simulator

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/iot-producer/iot-producer/drivers"
	"github.com/iot-producer/iot-producer/simulator/signal"
)

// ErrRunning is returned, wrapped, by Run when the Source is already
// running.
var ErrRunning = errors.New("source is already running")

// batchSize is the largest number of samples in one emit call: large enough
// to amortise ingest, small enough to keep each batch's latency and memory
// modest.
const batchSize = 1000

// maxSeries bounds Devices × TagsPerDevice so that a typo in a config cannot
// exhaust memory: each series costs about 250 bytes.
const maxSeries = 1_000_000

// DefaultNamePrefix is the device name prefix used when
// SourceOptions.NamePrefix is empty.
const DefaultNamePrefix = "sim"

// SourceOptions configures a Source. Devices, TagsPerDevice and Interval
// have no defaults: the config package supplies them.
type SourceOptions struct {
	// Devices is the number of simulated devices, at least 1.
	Devices int
	// TagsPerDevice is the number of tags on each device, at least 1. Tags
	// cycle through signal.Profiles(): temperature, pressure, counter,
	// alarm, speed, vibration, flow, level, current, humidity, then
	// temperature_2 and so on.
	TagsPerDevice int
	// Interval is the time between two readings of every tag; more than 0.
	Interval time.Duration
	// Variation is the relative amplitude of noise and movement, in [0, 1]:
	// 0.1 is 10% of each signal's range, 0 leaves the smooth shapes only.
	Variation float64
	// Seed selects the signals: the same seed gives the same sequences.
	Seed int64
	// NamePrefix makes device names: "<prefix>-0001", "<prefix>-0002"...
	// Empty means DefaultNamePrefix.
	NamePrefix string
	// Now, when set, supplies each tick's timestamp instead of the
	// ticker's clock (for tests and replays). It is called once per tick,
	// from Run's goroutine.
	Now func() time.Time
}

// Series names one simulated tag.
type Series struct {
	// Device is the device name, "<prefix>-0001".
	Device string
	// Tag is the tag name, "temperature" or "temperature_2".
	Tag string
	// Kind is the kind of the tag's values.
	Kind drivers.Kind
	// Unit is the engineering unit, empty for counters and alarms.
	Unit string
}

// Source is a drivers.Driver that reads every tag of every simulated device
// once per Interval. Run may be called again after it returns; the signals
// continue where they stopped.
type Source struct {
	name     string
	interval time.Duration
	now      func() time.Time
	series   []Series
	models   []signal.Model
	running  atomic.Bool
	// slots spread the devices over the interval, as a gateway polling
	// many PLCs does: slot i reads its share of the devices at i/slots of
	// each interval, instead of every device at once.
	slots int
	tags  int
}

// minSlot is the shortest time between two slots.
const minSlot = 10 * time.Millisecond

var _ drivers.Driver = (*Source)(nil)

// NewSource validates opts and builds every series' model up front, so that
// Run allocates nothing but the batches it hands to emit.
func NewSource(opts SourceOptions) (*Source, error) {
	switch {
	case opts.Devices < 1:
		return nil, fmt.Errorf("simulator: devices is %d, want at least 1", opts.Devices)
	case opts.TagsPerDevice < 1:
		return nil, fmt.Errorf("simulator: tags per device is %d, want at least 1", opts.TagsPerDevice)
	case opts.Devices > maxSeries/opts.TagsPerDevice:
		return nil, fmt.Errorf("simulator: %d devices × %d tags is more than %d series",
			opts.Devices, opts.TagsPerDevice, maxSeries)
	case opts.Interval <= 0:
		return nil, fmt.Errorf("simulator: interval is %v, want more than 0", opts.Interval)
	case math.IsNaN(opts.Variation) || opts.Variation < 0 || opts.Variation > 1:
		return nil, fmt.Errorf("simulator: data variation is %v, want 0 to 1", opts.Variation)
	}
	prefix := opts.NamePrefix
	if prefix == "" {
		prefix = DefaultNamePrefix
	}
	profiles := make([]signal.Profile, opts.TagsPerDevice)
	for j := range profiles {
		profiles[j] = signal.TagProfile(j)
	}
	n := opts.Devices * opts.TagsPerDevice
	s := &Source{
		name:     "simulator:" + prefix,
		interval: opts.Interval,
		now:      opts.Now,
		series:   make([]Series, 0, n),
		models:   make([]signal.Model, 0, n),
		slots:    max(1, min(opts.Devices, int(opts.Interval/minSlot))),
		tags:     opts.TagsPerDevice,
	}
	for i := range opts.Devices {
		device := fmt.Sprintf("%s-%04d", prefix, i+1)
		for j, p := range profiles {
			s.series = append(s.series, Series{Device: device, Tag: p.Name, Kind: p.Kind, Unit: p.Unit})
			s.models = append(s.models, signal.NewSeries(opts.Seed, i, j, opts.Variation))
		}
	}
	return s, nil
}

// Name returns "simulator:<prefix>".
func (s *Source) Name() string { return s.name }

// Series returns every simulated tag, device by device, in the order Run
// emits them. The slice is the caller's.
func (s *Source) Series() []Series {
	return append([]Series(nil), s.series...)
}

// Run reads every series once per Interval, passing the samples to emit in
// batches of at most 1,000, each a fresh slice. The devices are spread over
// the interval in slots at least 10ms apart (one device per slot at most),
// the way polls of many PLCs are spread, so a large simulation offers a
// steady load rather than one burst per interval; the first slot is read
// at once. Samples have good quality and the tick's time as both ReadTime and
// SourceTime. When emit is slow, missed ticks are dropped, not caught up.
// Run returns nil when ctx is cancelled (checked before every batch, so a
// tick may end part-way), and an error only when emit is nil or the Source
// is already running.
func (s *Source) Run(ctx context.Context, emit drivers.Emit) error {
	if emit == nil {
		return fmt.Errorf("simulator: %s: emit is nil", s.name)
	}
	if !s.running.CompareAndSwap(false, true) {
		return fmt.Errorf("simulator: %s: %w", s.name, ErrRunning)
	}
	defer s.running.Store(false)

	ticker := time.NewTicker(s.interval / time.Duration(s.slots))
	defer ticker.Stop()
	slot := 0
	if !s.tick(ctx, s.stamp(time.Now()), slot, emit) {
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case t := <-ticker.C:
			slot = (slot + 1) % s.slots
			if !s.tick(ctx, s.stamp(t), slot, emit) {
				return nil
			}
		}
	}
}

// stamp returns the timestamp of a tick the ticker fired at t: Now's
// reading when set, else t without its monotonic clock reading.
func (s *Source) stamp(t time.Time) time.Time {
	if s.now != nil {
		return s.now()
	}
	return t.Round(0)
}

// tick reads the series of one slot's devices at t and emits the samples in
// batches. It reports false when ctx was cancelled before the tick was
// complete.
func (s *Source) tick(ctx context.Context, t time.Time, slot int, emit drivers.Emit) bool {
	devices := len(s.series) / s.tags
	lo := devices * slot / s.slots * s.tags
	hi := devices * (slot + 1) / s.slots * s.tags
	for start := lo; start < hi; start += batchSize {
		if ctx.Err() != nil {
			return false
		}
		end := min(start+batchSize, hi)
		batch := drivers.NewBatch(end - start)[:end-start]
		for i := range batch {
			sr := &s.series[start+i]
			batch[i] = drivers.Sample{
				Device:     sr.Device,
				Tag:        sr.Tag,
				Value:      s.models[start+i].Next(t),
				Quality:    drivers.QualityGood,
				SourceTime: t,
				ReadTime:   t,
			}
		}
		emit(batch)
	}
	return true
}
