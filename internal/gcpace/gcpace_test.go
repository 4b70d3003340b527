package gcpace

import (
	"context"
	"io"
	"log/slog"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	o := Options{Min: 25, Max: 50, Cycle: time.Second}
	const mb = 1e6
	cases := []struct {
		name       string
		rate, live float64
		want       int
	}{
		{"nothing measured yet", 10 * mb, 0, 25},
		{"no allocation", 0, 20 * mb, 25},
		{"light load: a second's allocations are a tenth of the live heap", 2 * mb, 20 * mb, 25},
		{"just under the lower bound", 4.9 * mb, 20 * mb, 25},
		{"between the bounds, rounded down to a step", 7.9 * mb, 20 * mb, 35},
		{"on the upper bound", 10 * mb, 20 * mb, 50},
		{"heavy load", 36 * mb, 40 * mb, 50},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := o.Percent(c.rate, c.live); got != c.want {
				t.Errorf("Percent(%.0f B/s, %.0f B live) = %d, want %d", c.rate, c.live, got, c.want)
			}
		})
	}
}

func TestNextChangesWhenPercentDoes(t *testing.T) {
	o := Options{Min: 25, Max: 60, Cycle: time.Second}
	const live = 100e6
	cases := []struct {
		name    string
		cur     int
		rate    float64
		want    int
		changed bool
	}{
		{"same target", 40, 42e6, 40, false},
		{"one step up", 40, 45e6, 45, true},
		{"one step down", 40, 35e6, 35, true},
		{"down onto the lower bound", 30, 10e6, 25, true},
		{"up onto the upper bound", 55, 90e6, 60, true},
		{"stays on the upper bound", 60, 90e6, 60, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, changed := o.next(c.cur, c.rate, live)
			if got != c.want || changed != c.changed {
				t.Errorf("next(%d, %.0f B/s) = %d, %v; want %d, %v", c.cur, c.rate, got, changed, c.want, c.changed)
			}
		})
	}
}

// sink keeps the test's allocations from being optimised away.
var sink []byte

// TestRunFollowsTheAllocationRate runs the pacer on this test's own
// runtime: it starts at Max and falls to Min while the test allocates
// little; while the test allocates garbage fast, it must reach Max again,
// and once the test stops, fall back to Min. The runtime's own report of
// the target (/gc/gogc:percent, go_gc_gogc_percent in /metrics) must agree.
func TestRunFollowsTheAllocationRate(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	o := Options{Min: 25, Max: 50, Cycle: time.Second, Every: 50 * time.Millisecond}
	set := make(chan int, 64)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		run(ctx, o, slog.New(slog.NewTextHandler(io.Discard, nil)), func(p int) {
			debug.SetGCPercent(p)
			set <- p
		})
	}()
	defer func() { cancel(); <-done }()

	deadline := time.After(60 * time.Second)
	// await returns once the pacer sets want; with churn, it allocates
	// garbage meanwhile, 4 MiB at a time: far more a second than the
	// test's live heap.
	await := func(want int, churn bool) {
		t.Helper()
		for {
			var p int
			if churn {
				select {
				case p = <-set:
				case <-deadline:
					t.Fatalf("target never reached %d (runtime reports %d)", want, gogc())
				default:
					for range 64 {
						sink = make([]byte, 64<<10)
					}
					continue
				}
			} else {
				select {
				case p = <-set:
				case <-deadline:
					t.Fatalf("target never reached %d (runtime reports %d)", want, gogc())
				}
			}
			if p < o.Min || p > o.Max {
				t.Fatalf("target set to %d, outside %d-%d", p, o.Min, o.Max)
			}
			if p == want {
				if got := gogc(); got != want {
					t.Fatalf("pacer set %d but the runtime reports %d", want, got)
				}
				return
			}
		}
	}
	await(o.Max, false) // the start
	await(o.Min, false)
	await(o.Max, true)
	await(o.Min, false)
}

func gogc() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}
