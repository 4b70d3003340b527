package agent

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/iot-producer/iot-producer/drivers"
	"github.com/iot-producer/iot-producer/telemetry"
)

// downAfter is the number of polls in a row whose every read failed after
// which /ready shows a PLC down rather than degraded.
const downAfter = 3

// plcStates keeps the last read error of each PLC source, reported by its
// driver (drivers.Env.OnReadError), for /ready. A nil *plcStates ignores
// them (validation builds drivers without one). Safe for concurrent use.
type plcStates struct {
	mu   sync.Mutex
	last map[string]readError
}

// readError is one failed read and when it happened.
type readError struct {
	err error
	at  time.Time
}

func (p *plcStates) readError(source string, err error) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.last == nil {
		p.last = map[string]readError{}
	}
	p.last[source] = readError{err: err, at: time.Now()}
}

func (p *plcStates) lastError(source string) (readError, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.last[source]
	return e, ok
}

// plcTracker turns the polls of one PLC source into its /ready entry: ok
// while every read of a poll succeeds, degraded while some fail (naming
// how many tags and the last error), down once every read failed for
// downAfter polls in a row, each with since when. A PLC's state does not
// decide the gateway's readiness (telemetry.Health.SetExternal).
type plcTracker struct {
	name   string
	health *telemetry.Health
	plcs   *plcStates

	mu           sync.Mutex
	allBad       int       // polls in a row whose every read failed
	failingSince time.Time // first poll with a failed read, zero while all succeed
	state        telemetry.State
	detail       string
}

// polled updates the entry from one poll's samples (a driver emits one
// batch per poll).
func (t *plcTracker) polled(samples []drivers.Sample) {
	if len(samples) == 0 {
		return
	}
	bad := 0
	var names []string // the first few failing tags
	for i := range samples {
		if samples[i].Quality == drivers.QualityBad {
			bad++
			if len(names) < 5 {
				names = append(names, samples[i].Tag)
			}
		}
	}
	if bad > len(names) {
		names = append(names, "…")
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	state, detail := telemetry.StateOK, "running"
	if bad == 0 {
		t.allBad, t.failingSince = 0, time.Time{}
	} else {
		if t.failingSince.IsZero() {
			t.failingSince = now
		}
		since := t.failingSince.UTC().Format(time.RFC3339)
		if bad == len(samples) {
			t.allBad++
		} else {
			t.allBad = 0
		}
		state = telemetry.StateDegraded
		detail = fmt.Sprintf("%d of %d tags failing (%s) since %s", bad, len(samples), strings.Join(names, ", "), since)
		if t.allBad >= downAfter {
			state = telemetry.StateDown
			detail = fmt.Sprintf("every read failed for %d polls in a row since %s", t.allBad, since)
		}
		if e, ok := t.plcs.lastError(t.name); ok {
			detail += fmt.Sprintf("; last error at %s: %v", e.at.UTC().Format(time.RFC3339), e.err)
		}
	}
	if state == t.state && (state == telemetry.StateOK || detail == t.detail) {
		return
	}
	t.state, t.detail = state, detail
	t.health.SetExternal("source/"+t.name, state, detail)
}
