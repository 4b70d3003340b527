package telemetry

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestHealthReady(t *testing.T) {
	tests := []struct {
		name   string
		states map[string]State
		want   bool
	}{
		{"no components", nil, false},
		{"all ok", map[string]State{"buffer": StateOK, "sink/kafka": StateOK}, true},
		{"degraded is ready", map[string]State{"buffer": StateOK, "sink/kafka": StateDegraded}, true},
		{"starting", map[string]State{"buffer": StateOK, "sink/kafka": StateStarting}, false},
		{"down", map[string]State{"buffer": StateDown, "sink/kafka": StateOK}, false},
		{"stopped", map[string]State{"buffer": StateOK, "ingest": StateStopped}, false},
		{"unknown state", map[string]State{"buffer": State("bogus")}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Health // the zero value is usable
			for name, s := range tt.states {
				h.Set(name, s, "")
			}
			if got := h.Ready(); got != tt.want {
				t.Errorf("Ready() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestHealthSinceChangesOnlyWithState(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	now := t0
	h := &Health{now: func() time.Time { return now }}

	h.Set("sink/kafka", StateStarting, "connecting")
	now = t0.Add(time.Second)
	h.Set("sink/kafka", StateStarting, "still connecting")
	assertComponent(t, h, ComponentStatus{Name: "sink/kafka", State: StateStarting, Detail: "still connecting", Since: t0})

	now = t0.Add(2 * time.Second)
	h.Set("sink/kafka", StateDegraded, "backing off")
	assertComponent(t, h, ComponentStatus{Name: "sink/kafka", State: StateDegraded, Detail: "backing off", Since: t0.Add(2 * time.Second)})
}

// assertComponent fails unless h holds exactly one component, equal to want.
func assertComponent(t *testing.T, h *Health, want ComponentStatus) {
	t.Helper()
	got := h.Snapshot()
	if len(got) != 1 || got[0] != want {
		t.Errorf("Snapshot() = %+v, want [%+v]", got, want)
	}
}

func TestHealthSnapshotSortedAndRemove(t *testing.T) {
	h := NewHealth()
	if got := h.Snapshot(); got == nil || len(got) != 0 {
		t.Fatalf("empty Snapshot() = %#v, want an empty non-nil slice", got)
	}
	for _, name := range []string{"sink/mqtt", "buffer", "driver/plc1", "ingest"} {
		h.Set(name, StateOK, "")
	}
	h.Remove("ingest")
	h.Remove("never registered")
	var names []string
	for _, c := range h.Snapshot() {
		names = append(names, c.Name)
	}
	if want := "[buffer driver/plc1 sink/mqtt]"; fmt.Sprint(names) != want {
		t.Errorf("names = %v, want %s", names, want)
	}
}

func TestHealthConcurrentUse(t *testing.T) {
	h := NewHealth()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			name := fmt.Sprintf("c%d", i)
			for j := range 200 {
				h.Set(name, []State{StateStarting, StateOK, StateDegraded}[j%3], "")
				h.Ready()
				h.Snapshot()
			}
			h.Set(name, StateOK, "done")
		})
	}
	wg.Wait()
	if !h.Ready() || len(h.Snapshot()) != 8 {
		t.Errorf("after concurrent use: Ready() = %v, %d components; want true, 8", h.Ready(), len(h.Snapshot()))
	}
}

// TestExternalComponentsDoNotDecideReadiness: a PLC shown down keeps the
// gateway ready; the same component set with Set counts again.
func TestExternalComponentsDoNotDecideReadiness(t *testing.T) {
	h := NewHealth()
	h.Set("ingest", StateOK, "committing")
	tests := []struct {
		name  string
		set   func()
		ready bool
	}{
		{"PLC down, external", func() { h.SetExternal("source/modbus:press", StateDown, "every read failed") }, true},
		{"PLC degraded, external", func() { h.SetExternal("source/modbus:press", StateDegraded, "1 of 2 tags failing") }, true},
		{"driver stopped, not external", func() { h.Set("source/modbus:press", StateDown, "driver stopped") }, false},
		{"external again", func() { h.SetExternal("source/modbus:press", StateDown, "every read failed") }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.set()
			if got := h.Ready(); got != tt.ready {
				t.Fatalf("Ready() = %v, want %v: %+v", got, tt.ready, h.Snapshot())
			}
		})
	}
}
