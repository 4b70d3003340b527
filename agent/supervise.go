package agent

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/iot-producer/iot-producer/drivers"
	"github.com/iot-producer/iot-producer/telemetry"
)

// Restart backoff of a component that failed: from restartMin, doubling,
// capped at restartMax.
const (
	restartMin = time.Second
	restartMax = time.Minute
)

// restartWait is the wait before restart number attempt+1.
func restartWait(attempt int) time.Duration {
	d := restartMin
	for i := 0; i < attempt && d < restartMax; i++ {
		d *= 2
	}
	return min(d, restartMax)
}

// progress follows whether the pipeline's own components — ingest and each
// send loop — make progress. Each reports a beat when it gets something
// done or fails trying (a commit, an acknowledged or failed batch, a state
// change); each can also say it is legitimately waiting (nothing to do,
// backing off). Safe for concurrent use.
type progress struct {
	mu    sync.Mutex
	comps map[string]*tracked
}

// tracked is one component's last beat and how to tell it waits
// legitimately.
type tracked struct {
	last    time.Time
	waiting func() (bool, string)
}

// watch starts following component; waiting reports whether it has nothing
// to do or is backing off (and why it has work, for the log).
func (p *progress) watch(component string, waiting func() (bool, string)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.comps == nil {
		p.comps = map[string]*tracked{}
	}
	p.comps[component] = &tracked{last: time.Now(), waiting: waiting}
}

// beat records that component made progress.
func (p *progress) beat(component string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.comps[component]; ok {
		c.last = time.Now()
	}
}

// stalled lists the components that made no progress within the last
// window although they have work and are not backing off, with what they
// have to do.
func (p *progress) stalled(window time.Duration) []string {
	p.mu.Lock()
	type entry struct {
		name    string
		last    time.Time
		waiting func() (bool, string)
	}
	var late []entry
	now := time.Now()
	for name, c := range p.comps {
		if now.Sub(c.last) > window {
			late = append(late, entry{name, c.last, c.waiting})
		}
	}
	p.mu.Unlock()
	var out []string
	for _, e := range late {
		ok, work := e.waiting()
		if ok {
			continue
		}
		out = append(out, fmt.Sprintf("%s made no progress for %s (%s)", e.name, now.Sub(e.last).Round(time.Millisecond), work))
	}
	sort.Strings(out)
	return out
}

// Stalled lists the pipeline's components that made no progress within
// window while they had work and were not legitimately waiting (nothing to
// send or commit, backing off after a failure): empty while the pipeline
// is healthy. The service manager's watchdog is pinged only while it is
// empty, so a stuck ingest stage or send loop gets the agent restarted.
func (a *Agent) Stalled(window time.Duration) []string {
	return a.progress.stalled(window)
}

// superviseSource runs a driver until ctx ends. When it stops with an
// error it is reported (/ready down, the log), counted in
// iot_component_restarts_total and, after a capped backoff, built again
// from the running configuration and restarted.
func (a *Agent) superviseSource(ctx context.Context, key string, d drivers.Driver, emit drivers.Emit) {
	name := d.Name()
	component := "source/" + name
	restarts := a.metrics.ComponentRestarts.WithLabelValues(component)
	for attempt := 0; ; attempt++ {
		stopWatch := a.watchSession(name, d)
		err := d.Run(ctx, emit)
		stopWatch()
		if err == nil || ctx.Err() != nil {
			return
		}
		wait := restartWait(attempt)
		a.log.Error("driver stopped; restarting it", "source", name, "err", err, "restart_in", wait)
		a.health.Set(component, telemetry.StateDown, fmt.Sprintf("driver stopped at %s: %v; restarting in %s", time.Now().UTC().Format(time.RFC3339), err, wait))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		nd, berr := buildSource(a.shown.Load(), key, a.shared, a.metrics, a.plcs, a.log)
		if berr != nil {
			a.log.Error("driver could not be built again; retrying with the one that stopped", "source", name, "err", berr)
		} else {
			d = nd
		}
		restarts.Inc()
		a.health.Set(component, telemetry.StateOK, "restarted")
	}
}

// superviseSink runs s's send loop until ctx ends; a loop that stops with
// an error is reported, counted and started again after a capped backoff,
// on the same queue.
func (a *Agent) superviseSink(ctx context.Context, s *sinkRunner) {
	component := "sink/" + s.name
	restarts := a.metrics.ComponentRestarts.WithLabelValues(component)
	loop := s.loop
	for attempt := 0; ; attempt++ {
		err := loop.Run(ctx)
		if err == nil || ctx.Err() != nil {
			return
		}
		wait := restartWait(attempt)
		a.log.Error("send loop stopped; restarting it", "sink", s.name, "err", err, "restart_in", wait)
		a.health.Set(component, telemetry.StateDown, fmt.Sprintf("send loop stopped at %s: %v; restarting in %s", time.Now().UTC().Format(time.RFC3339), err, wait))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		loop = a.newLoop(s)
		restarts.Inc()
		a.health.Set(component, telemetry.StateOK, "sending")
	}
}
