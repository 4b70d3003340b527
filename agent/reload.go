package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/iot-producer/iot-producer/agent/config"
	"github.com/iot-producer/iot-producer/uplink"
)

// ErrRestart is returned by Reload for a change the running agent cannot
// take in place — gateway, buffer, telemetry or log settings, or which
// sinks are enabled: the caller stops the agent and starts one with the
// new configuration.
var ErrRestart = errors.New("this change needs the pipeline restarted")

// reloadStopTimeout bounds the wait for a replaced driver or send loop to
// stop (a send loop gives its in-flight batches a few seconds).
const reloadStopTimeout = 15 * time.Second

// Reload applies next to the running agent, restarting only what changed:
// a changed, added or removed PLC (or the simulator) restarts that source
// alone, while the others' samples keep flowing; a changed sink section
// restarts that sink's send loop on the same queue; the buffer stays open.
// Everything new is built before anything is stopped: when building fails
// the agent keeps running as it was and Reload returns the problem. It
// returns what changed; ErrRestart for a change it cannot apply in place.
func (a *Agent) Reload(next *config.Config) ([]string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.driverCtx == nil || a.driverCtx.Err() != nil {
		return nil, errors.New("the agent is not running")
	}
	old := a.cfg
	changed := Changes(old, next)
	if len(changed) == 0 {
		return nil, nil
	}
	for _, s := range []struct {
		name string
		a, b any
	}{
		{"gateway", old.Gateway, next.Gateway},
		{"buffer", old.Buffer, next.Buffer},
		{"telemetry", old.Telemetry, next.Telemetry},
		{"log", old.Log, next.Log},
	} {
		if !reflect.DeepEqual(s.a, s.b) {
			return changed, fmt.Errorf("%s changed: %w", s.name, ErrRestart)
		}
	}
	for _, sc := range next.Sinks {
		if o := old.Sink(sc.Section); o == nil || o.Enabled != sc.Enabled {
			return changed, fmt.Errorf("%s.enabled changed: %w", sc.Section, ErrRestart)
		}
	}

	// Build: new sources for what changed, new sinks for changed
	// sections. Nothing runs yet, so a failure leaves everything as it is.
	current := map[string]*source{}
	for _, src := range a.sources {
		current[src.key] = src
	}
	var sources, started []*source
	for _, key := range sourceKeys(next) {
		if src, ok := current[key]; ok && !sourceChanged(old, next, key) {
			sources = append(sources, src)
			continue
		}
		d, err := buildSource(next, key, a.shared, a.metrics, a.plcs, a.log)
		if err != nil {
			return changed, err
		}
		src := &source{key: key, d: d}
		sources = append(sources, src)
		started = append(started, src)
	}
	if len(sources) == 0 {
		return changed, next.Problem("device.enabled", errors.New("no source: enable device or configure plcs"))
	}
	type swap struct {
		runner   *sinkRunner
		sink     uplink.Sink
		settings uplink.LoopSettings
	}
	var swaps []swap
	release := func() {
		for _, sw := range swaps {
			if c, ok := sw.sink.(uplink.Closer); ok {
				c.Close()
			}
		}
	}
	for _, r := range a.sinks {
		sc, o := next.Sink(r.section), old.Sink(r.section)
		if sameJSON(o.Settings, sc.Settings) {
			continue
		}
		b, ok := sc.Settings.(uplink.Builder)
		if !ok {
			release()
			return changed, next.Problem(sc.Section, fmt.Errorf("the %s sink cannot be built in this build", sc.Name))
		}
		sink, err := b.Build(uplink.SinkEnv{GatewayID: next.Gateway.ID, Logger: a.log.With("sink", sc.Name), StateDir: next.Gateway.StateDir})
		if err != nil {
			release()
			return changed, next.Problem(sc.Section, err)
		}
		swaps = append(swaps, swap{r, sink, b.Loop()})
	}

	// Apply: stop what is replaced or removed, start what is new.
	deadline := time.Now().Add(reloadStopTimeout)
	kept := map[*source]bool{}
	for _, src := range sources {
		kept[src] = true
	}
	for _, src := range a.sources {
		if kept[src] {
			continue
		}
		src.cancel()
		if !waitDone(src.done, deadline) {
			a.log.Warn("a replaced source did not stop in time; it stops in the background", "source", src.d.Name())
		}
		a.health.Remove("source/" + src.d.Name())
		a.log.Info("source stopped for the reload", "source", src.d.Name())
	}
	for _, src := range started {
		a.startSource(src)
		a.log.Info("source started for the reload", "source", src.d.Name())
	}
	a.sources = sources
	for _, sw := range swaps {
		r := sw.runner
		r.cancel()
		if !waitDone(r.done, deadline) {
			a.log.Warn("a replaced send loop did not stop in time", "sink", r.name)
		}
		r.release()
		r.mu.Lock()
		r.sink, r.settings = sw.sink, sw.settings
		r.mu.Unlock()
		r.loop = a.newLoop(r)
		a.startSink(r)
		a.log.Info("sink restarted for the reload", "sink", r.name)
	}
	a.cfg = next
	a.shown.Store(next)
	a.noteWarnings(next)
	next.ForgetLines()
	return changed, nil
}

// sourceChanged reports whether the source of key is configured
// differently in next than in old.
func sourceChanged(old, next *config.Config, key string) bool {
	if key == deviceKey {
		return !reflect.DeepEqual(old.Device, next.Device)
	}
	find := func(c *config.Config) *config.PLC {
		for i := range c.PLCs {
			if plcKey(c.PLCs[i].Name) == key {
				return &c.PLCs[i]
			}
		}
		return nil
	}
	o, n := find(old), find(next)
	return o == nil || n == nil || !sameJSON(o, n)
}

// sameJSON reports whether a and b marshal to the same JSON: settings
// structs compared by what the file says.
func sameJSON(a, b any) bool {
	ja, erra := json.Marshal(a)
	jb, errb := json.Marshal(b)
	return erra == nil && errb == nil && string(ja) == string(jb)
}
