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
		{time.Second, 4},
		{time.Hour, 4},
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
