// Package gcpace sets the garbage collector's target (GOGC) from how fast
// the program allocates.
//
// A fixed GOGC trades memory against CPU once for every load. On a gateway
// the light loads are the common ones, and there memory is what is scarce:
// a low target keeps the heap within a quarter of what is live, and the
// collector still runs only every few seconds. At hundreds of thousands of
// samples a second the same target makes the collector run several times a
// second. The pacer raises the target while the program allocates fast
// enough to collect more than about once a Cycle, up to Max, and lowers it
// again, down to Min, when the allocation rate falls. It starts at Max,
// while the program starts.
package gcpace

import (
	"context"
	"log/slog"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Options are the pacer's bounds and timing.
type Options struct {
	// Min and Max bound the target, in percent of the live heap (GOGC).
	Min, Max int
	// Cycle is the time between two collections that the pacer aims at
	// when the target is between Min and Max.
	Cycle time.Duration
	// Every is how often the allocation rate is measured and the target
	// set.
	Every time.Duration
}

// Default are the agent's bounds: a quarter of the live heap at light
// loads, half of it when the agent allocates fast enough to collect more
// than once a second. Measured with make bench at 500,000 samples/s, 25
// costs about 6% more CPU per sample than 50, and 100 saves only 1% more.
var Default = Options{Min: 25, Max: 50, Cycle: time.Second, Every: 5 * time.Second}

// step is the granularity of the target, in percentage points, so that a
// rate that wavers a little does not change it at every look.
const step = 5

// Percent returns the target for a program that allocates rate bytes a
// second and had live bytes of heap after its last collection: enough
// room for one Cycle's allocations, within Min and Max, rounded down to a
// multiple of step. A live heap not measured yet (0) gives Min.
func (o Options) Percent(rate, live float64) int {
	if live <= 0 || rate <= 0 {
		return o.Min
	}
	p := int(100*rate*o.Cycle.Seconds()/live) / step * step
	return max(o.Min, min(o.Max, p))
}

// next returns the target to set after one look, given the current one,
// and whether it changes.
func (o Options) next(cur int, rate, live float64) (int, bool) {
	p := o.Percent(rate, live)
	return p, p != cur
}

// heapSamples are the runtime metrics the pacer reads: the bytes allocated
// so far and the live heap after the last collection.
func heapSamples() []metrics.Sample {
	return []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}, {Name: "/gc/heap/live:bytes"}}
}

// readHeap reads s, made by heapSamples; a runtime without them gives
// zeros, which keep the target at Min.
func readHeap(s []metrics.Sample) (allocs, live float64) {
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 || s[1].Value.Kind() != metrics.KindUint64 {
		return 0, 0
	}
	return float64(s[0].Value.Uint64()), float64(s[1].Value.Uint64())
}

// Run sets the target to o.Max, then every o.Every to what Percent gives
// for the allocation rate since the look before, until ctx is done. It
// starts at Max because a program starting allocates fast while its heap
// is small, and at 25 the collector would run more often beside the
// agent's first polls, commits and produce requests. It logs each change
// at debug level; the runtime reports the target as go_gc_gogc_percent in
// /metrics.
func Run(ctx context.Context, o Options, log *slog.Logger) {
	run(ctx, o, log, func(p int) { debug.SetGCPercent(p) })
}

// run is Run with the function that sets the target.
func run(ctx context.Context, o Options, log *slog.Logger, set func(int)) {
	cur := o.Max
	set(cur)
	hs := heapSamples()
	allocs, _ := readHeap(hs)
	last := time.Now()
	t := time.NewTicker(o.Every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			a, live := readHeap(hs)
			rate := (a - allocs) / now.Sub(last).Seconds()
			allocs, last = a, now
			if p, ok := o.next(cur, rate, live); ok {
				set(p)
				log.Debug("garbage collector target set", "gogc", p, "was", cur,
					"alloc_mb_per_s", int(rate/1e6), "live_mb", int(live/1e6))
				cur = p
			}
		}
	}
}
