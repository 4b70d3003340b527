package modbus

import (
	"fmt"
	"testing"
	"time"
)

// TestPhaseSpreadsDevices: a device's phase is a whole slot within its
// interval (within the first second of a longer one), the same for its
// name at every call, and 1,000 devices fill every slot about evenly.
func TestPhaseSpreadsDevices(t *testing.T) {
	tests := []struct {
		interval time.Duration
		slots    int
	}{
		{10 * time.Millisecond, 1},
		{2*slotWidth - time.Millisecond, 1},
		{2 * slotWidth, 2},
		{time.Second, int(time.Second / slotWidth)},
		{time.Hour, int(spreadMax / slotWidth)},
	}
	for _, tt := range tests {
		t.Run(tt.interval.String(), func(t *testing.T) {
			count := map[time.Duration]int{}
			const devices = 1000
			for i := range devices {
				name := fmt.Sprintf("dev-%04d", i)
				p := phase(name, tt.interval)
				if p != phase(name, tt.interval) {
					t.Fatalf("%s: phase changes from one call to the next", name)
				}
				if p%slotWidth != 0 || p < 0 || p >= min(tt.interval, spreadMax) && p != 0 {
					t.Fatalf("%s: phase %s is not a slot within %s", name, p, min(tt.interval, spreadMax))
				}
				count[p]++
			}
			if len(count) != tt.slots {
				t.Fatalf("%d devices fill %d slots, want %d: %v", devices, len(count), tt.slots, count)
			}
			for p, n := range count {
				if share := devices / tt.slots; n < share*3/4 || n > share*5/4 {
					t.Errorf("slot %s holds %d devices, want about %d: %v", p, n, share, count)
				}
			}
		})
	}
}

// TestFirstPollAlignsSlots: whenever a device is added, its first poll
// comes within one period (its interval, at most spreadMax) and falls on
// its phase past a whole period of the clock, so that devices of one slot
// started apart poll at the same instants; the result keeps the monotonic
// reading of the time it was given.
func TestFirstPollAlignsSlots(t *testing.T) {
	base := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		interval time.Duration
		into     time.Duration // how far into its period the device is added
	}{
		{time.Second, 0},
		{time.Second, 1},
		{time.Second, 137 * time.Millisecond},
		{time.Second, 999 * time.Millisecond},
		{100 * time.Millisecond, 40 * time.Millisecond},
		{750 * time.Millisecond, 500 * time.Millisecond},
		{time.Minute, 600 * time.Millisecond},
	}
	for _, tt := range tests {
		period := min(tt.interval, spreadMax)
		for i := range 20 {
			name := fmt.Sprintf("dev-%04d", i)
			now := base.Add(tt.into)
			first := firstPoll(name, tt.interval, now)
			wait := first.Sub(now)
			if wait < 0 || wait >= period {
				t.Fatalf("interval %s, added %s into the period: %s waits %s, want within [0, %s)", tt.interval, tt.into, name, wait, period)
			}
			if off := first.Sub(first.Truncate(period)); off != phase(name, tt.interval) {
				t.Fatalf("interval %s, added %s into the period: %s polls %s into its period, want its phase %s", tt.interval, tt.into, name, off, phase(name, tt.interval))
			}
		}
	}
	// Two devices of one slot added 300ms apart poll at the same instant.
	a, b := "dev-0000", ""
	for i := 1; b == ""; i++ {
		if n := fmt.Sprintf("dev-%04d", i); phase(n, time.Second) == phase(a, time.Second) {
			b = n
		}
	}
	now := time.Now()
	fa, fb := firstPoll(a, time.Second, now), firstPoll(b, time.Second, now.Add(300*time.Millisecond))
	if d := fb.Sub(fa); d != 0 && d != time.Second {
		t.Errorf("%s and %s share a slot but poll %s apart", a, b, d)
	}
	if fa.String() == fa.Round(0).String() {
		t.Errorf("the first poll %s has lost the monotonic reading", fa)
	}
}
