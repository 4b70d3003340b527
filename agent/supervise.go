package agent

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iot-producer/iot-producer/agent/config"
	"github.com/iot-producer/iot-producer/agent/ingest"
	"github.com/iot-producer/iot-producer/drivers"
	"github.com/iot-producer/iot-producer/telemetry"
	"github.com/iot-producer/iot-producer/uplink"
)

// Restart backoff of a component that failed: from restartMin, doubling,
// capped at restartMax.
const (
	restartMin = time.Second
	restartMax = time.Minute
)

// Defaults of Options.StallTimeout and Options.StopWait.
const (
	defaultStallTimeout = 30 * time.Second
	defaultStopWait     = 10 * time.Second
)

// driverWindowPolls is the number of poll intervals a polling driver may go
// without a poll before it counts as stalled (when that is longer than the
// stall timeout).
const driverWindowPolls = 3

// errStalled is the cause with which the agent stops a component that made
// no progress while it had work. It is also ingest.ErrRestart, so that a
// stalled ingest stage keeps what is pending for its next run.
var errStalled error = stalledError{}

type stalledError struct{}

func (stalledError) Error() string { return "made no progress while it had work" }

// Is makes a stall an ingest.ErrRestart.
func (stalledError) Is(target error) bool { return target == ingest.ErrRestart }

// restartWait is the wait before restart number attempt+1.
func restartWait(attempt int) time.Duration {
	d := restartMin
	for i := 0; i < attempt && d < restartMax; i++ {
		d *= 2
	}
	return min(d, restartMax)
}

// phase is where a followed component stands.
type phase int

const (
	// phaseRunning: an attempt runs; it must make progress while it has
	// work.
	phaseRunning phase = iota
	// phaseRestarting: it made no progress and was told to stop; it has
	// Options.StopWait (twice when its connections can be closed) to end.
	phaseRestarting
	// phaseBackingOff: between two attempts.
	phaseBackingOff
	// phaseStuck: told to stop, it did not end: only a restart of the
	// process can help, so Stalled names it and the watchdog is no longer
	// pinged.
	phaseStuck
)

// progress follows whether the pipeline's components — each driver, ingest
// and each send loop — make progress. Each reports a beat when it gets
// something done or fails trying (a poll, a commit, an acknowledged or
// failed batch); each can also say it is legitimately waiting (nothing to
// do, backing off). Safe for concurrent use.
type progress struct {
	mu    sync.Mutex
	comps map[string]*tracked
}

// watchSpec says how to follow one component.
type watchSpec struct {
	// window is the least time without progress after which the component
	// counts as stalled (a polling driver: a few poll intervals); the
	// larger of it and the caller's window applies.
	window time.Duration
	// waiting reports whether the component has nothing to do or is
	// backing off, and what work it has otherwise (for the log).
	waiting func() (bool, string)
	// counter, when set, counts the component's progress (a driver's
	// polls): a change counts as a beat.
	counter func() uint64
}

// tracked is one component's last beat and how to tell it waits
// legitimately.
type tracked struct {
	owner *supervised
	spec  watchSpec
	start time.Time
	last  time.Time
	count uint64
	phase phase
	// stuckSince is when it was found stuck.
	stuckSince time.Time
	// stop tells the running attempt to stop for a stall; nil when it
	// cannot be restarted.
	stop func(why string)
}

// watch starts following component for owner's attempt: its clock starts
// now. stop, when set, ends the attempt for a stall.
func (p *progress) watch(component string, owner *supervised, spec watchSpec, stop func(why string)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.comps == nil {
		p.comps = map[string]*tracked{}
	}
	now := time.Now()
	t := &tracked{owner: owner, spec: spec, start: now, last: now, stop: stop}
	if spec.counter != nil {
		t.count = spec.counter()
	}
	p.comps[component] = t
}

// forget stops following component, if owner still owns it (a reload may
// already have started its successor).
func (p *progress) forget(component string, owner *supervised) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.comps[component]; ok && c.owner == owner {
		delete(p.comps, component)
	}
}

// setPhase moves component to ph.
func (p *progress) setPhase(component string, ph phase) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.comps[component]; ok {
		c.phase = ph
		if ph == phaseStuck {
			c.stuckSince = time.Now()
		}
	}
}

// beat records that component made progress.
func (p *progress) beat(component string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.comps[component]; ok {
		c.last = time.Now()
	}
}

// progressed reports whether component made progress since its attempt
// started.
func (p *progress) progressed(component string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	c, ok := p.comps[component]
	if !ok {
		return false
	}
	p.count(c)
	return c.last.After(c.start)
}

// count turns a move of c's counter into a beat. The caller holds p.mu.
func (p *progress) count(c *tracked) {
	if c.spec.counter == nil {
		return
	}
	if n := c.spec.counter(); n != c.count {
		c.count, c.last = n, time.Now()
	}
}

// late is a component late by its window, as found under the lock.
type late struct {
	name    string
	t       *tracked
	last    time.Time
	waiting func() (bool, string)
}

// lateOnes lists the running components late by window (or their own),
// with stuck ones when withStuck. The caller asks each whether it waits.
func (p *progress) lateOnes(window time.Duration, withStuck bool) (running []late, stuck []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	for name, c := range p.comps {
		p.count(c)
		switch c.phase {
		case phaseStuck:
			if withStuck {
				stuck = append(stuck, fmt.Sprintf("%s is stuck: told to stop at %s after making no progress, it did not", name, c.stuckSince.UTC().Format(time.RFC3339)))
			}
		case phaseRunning:
			if now.Sub(c.last) > max(window, c.spec.window) {
				running = append(running, late{name, c, c.last, c.spec.waiting})
			}
		}
	}
	return running, stuck
}

// stalled lists the components that made no progress within the last
// window although they have work and are not backing off, with what they
// have to do, and the components that are stuck.
func (p *progress) stalled(window time.Duration) []string {
	running, out := p.lateOnes(window, true)
	now := time.Now()
	for _, e := range running {
		if ok, work := e.waiting(); !ok {
			out = append(out, fmt.Sprintf("%s made no progress for %s (%s)", e.name, now.Sub(e.last).Round(time.Millisecond), work))
		}
	}
	sort.Strings(out)
	return out
}

// overdue returns, for each running component that made no progress
// within window while it had work, what to say and how to stop it, and
// moves it to phaseRestarting so that it is stopped once.
func (p *progress) overdue(window time.Duration) (whys []string, stops []func(string)) {
	running, _ := p.lateOnes(window, false)
	now := time.Now()
	for _, e := range running {
		ok, work := e.waiting()
		if ok || e.t.stop == nil {
			continue
		}
		p.mu.Lock()
		current := p.comps[e.name] == e.t && e.t.phase == phaseRunning && e.t.last.Equal(e.last)
		if current {
			e.t.phase = phaseRestarting
		}
		p.mu.Unlock()
		if current {
			whys = append(whys, fmt.Sprintf("made no progress for %s while it had work (%s)", now.Sub(e.last).Round(time.Millisecond), work))
			stops = append(stops, e.t.stop)
		}
	}
	return whys, stops
}

// Stalled lists the pipeline's components that made no progress within
// window while they had work and were not legitimately waiting (nothing to
// send or commit, backing off after a failure, being restarted), and those
// the agent could not restart (stuck: told to stop, they did not): empty
// while the pipeline is healthy. The service manager's watchdog is pinged
// only while it is empty, so a component the agent cannot heal gets the
// agent restarted.
func (a *Agent) Stalled(window time.Duration) []string {
	return a.progress.stalled(window)
}

// watchStalls restarts, until ctx ends, every component that made no
// progress within Options.StallTimeout while it had work: it checks four
// times per timeout.
func (a *Agent) watchStalls(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(max(a.opts.StallTimeout/4, 10*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			whys, stops := a.progress.overdue(a.opts.StallTimeout)
			for i, stop := range stops {
				stop(whys[i])
			}
		}
	}()
	return func() { cancel(); <-done }
}

// supervised is one component the agent runs, restarts and follows.
type supervised struct {
	// name is the component's name in /ready, the metrics and the log:
	// "source/modbus:press", "ingest", "sink/kafka".
	name string
	// what names it in the log: "driver", "ingest", "send loop".
	what string
	// spec says how to follow the current attempt.
	spec func() watchSpec
	// run runs one attempt until ctx ends.
	run func(ctx context.Context) error
	// unstick, when set, frees what keeps an attempt told to stop from
	// ending (a sink's connections); the attempt then gets StopWait more.
	unstick func()
	// prepare readies the next attempt after one ended (a driver built
	// again, a new send loop); stalled says the last one was stopped for
	// making no progress. An error makes the next attempt wait again.
	prepare func(stalled bool) error
	// running is the /ready detail of a running attempt.
	running string
}

// supervise runs c until ctx ends and returns the last attempt's error. An
// attempt that stops while ctx lives — with an error, without one, or
// because it made no progress while it had work (watchStalls) — is
// reported (/ready down, the log), and after a capped backoff c is
// prepared and started again, counted in iot_component_restarts_total
// and in /ready. The backoff starts over once an attempt made progress.
// Each attempt runs c.run on a goroutine of its own; supervise waits.
func (a *Agent) supervise(ctx context.Context, c *supervised) error {
	finished := make(chan error, 1)
	a.superviseAsync(ctx, c, func(ctx context.Context, ended func(error)) error {
		go func() { ended(c.run(ctx)) }()
		return nil
	}, func(err error) { finished <- err })
	return <-finished
}

// startFunc begins one attempt of a component and returns; ended is called
// exactly once, from any goroutine, with the attempt's result when it has
// stopped (its ctx done, or a failure). An error means the attempt did
// not start: ended is not called.
type startFunc func(ctx context.Context, ended func(error)) error

// superviseAsync is supervise without a goroutine of its own: start
// begins each attempt, restarts wait on timers, and finish is called once
// with the last attempt's error when that attempt has ended after ctx. A
// driver that polls on its pool's workers (Modbus) so costs no goroutine
// while it runs.
func (a *Agent) superviseAsync(ctx context.Context, c *supervised, start startFunc, finish func(error)) {
	s := &supervision{a: a, ctx: ctx, c: c, start: start, finish: finish,
		restarts: a.metrics.ComponentRestarts.WithLabelValues(c.name)}
	s.begin()
}

// supervision is the state of one superviseAsync.
type supervision struct {
	a        *Agent
	ctx      context.Context
	c        *supervised
	start    startFunc
	finish   func(error)
	restarts interface{ Inc() }
	// mu guards attempt: an attempt ends on its driver's goroutine, the
	// next one starts on a timer's.
	mu sync.Mutex
	// attempt counts the restarts since the last attempt that made
	// progress; it sets the backoff.
	attempt int
}

// begin starts an attempt and follows it.
func (s *supervision) begin() {
	actx, cancel := context.WithCancelCause(s.ctx)
	ended := make(chan struct{})
	s.a.progress.watch(s.c.name, s.c, s.c.spec(), func(why string) { s.a.stopStalled(s.ctx, s.c, why, cancel, ended) })
	var once sync.Once
	end := func(err error) {
		once.Do(func() {
			close(ended)
			stalled := errors.Is(context.Cause(actx), errStalled)
			cancel(nil)
			s.ended(err, stalled)
		})
	}
	if err := s.start(actx, end); err != nil {
		end(err)
	}
}

// ended handles the end of an attempt: the end of the supervision once ctx
// is done, else a restart after the backoff.
func (s *supervision) ended(err error, stalled bool) {
	if s.ctx.Err() != nil {
		s.a.progress.forget(s.c.name, s.c)
		s.finish(err)
		return
	}
	if s.a.progress.progressed(s.c.name) {
		s.mu.Lock()
		s.attempt = 0
		s.mu.Unlock()
	}
	s.a.progress.setPhase(s.c.name, phaseBackingOff)
	var why string
	switch {
	case stalled:
		why = errStalled.Error()
	case err != nil:
		why = err.Error()
	default:
		why = "stopped without an error while it should run"
	}
	s.backOff(why, stalled)
}

// backOff reports the attempt's end and starts the next one after the
// backoff, unless ctx ends first.
func (s *supervision) backOff(why string, stalled bool) {
	s.mu.Lock()
	wait := restartWait(s.attempt)
	s.attempt++
	s.mu.Unlock()
	a, c := s.a, s.c
	a.log.Error(c.what+" stopped; restarting it", "component", c.name, "reason", why, "restart_in", wait)
	a.health.Set(c.name, telemetry.StateDown, fmt.Sprintf("%s stopped at %s: %s; restarting in %s", c.what, time.Now().UTC().Format(time.RFC3339), why, wait))
	// Whichever of the timer and ctx comes first wins.
	var (
		decided atomic.Bool
		mu      sync.Mutex // guards stopCtx, set after the timer starts
		stopCtx func() bool
	)
	mu.Lock()
	timer := time.AfterFunc(wait, func() {
		if !decided.CompareAndSwap(false, true) {
			return
		}
		mu.Lock()
		stop := stopCtx
		mu.Unlock()
		stop()
		if c.prepare != nil {
			if perr := c.prepare(stalled); perr != nil {
				s.backOff("could not be built again: "+perr.Error(), stalled)
				return
			}
		}
		s.restarts.Inc()
		a.health.Restarted(c.name, why)
		a.health.Set(c.name, telemetry.StateOK, c.running)
		a.log.Info(c.what+" restarted", "component", c.name, "after", why)
		s.begin()
	})
	stopCtx = context.AfterFunc(s.ctx, func() {
		if !decided.CompareAndSwap(false, true) {
			return
		}
		timer.Stop()
		a.progress.forget(c.name, c)
		s.finish(nil)
	})
	mu.Unlock()
}

// stopStalled tells c's running attempt to stop because it made no
// progress while it had work, and gives it Options.StopWait to end; then,
// if c can free what holds it (a sink's connections), does so and waits as
// long again. An attempt that still runs is stuck: that is said loudly,
// /ready shows it down and Stalled names it, so the watchdog is no longer
// pinged and the service manager restarts the process.
func (a *Agent) stopStalled(ctx context.Context, c *supervised, why string, cancel context.CancelCauseFunc, ended <-chan struct{}) {
	a.log.Error(c.what+" made no progress while it had work; restarting it", "component", c.name, "reason", why)
	a.health.Set(c.name, telemetry.StateDegraded, fmt.Sprintf("%s %s; restarting it", c.what, why))
	cancel(errStalled)
	go func() {
		steps := []func(){nil}
		if c.unstick != nil {
			steps = append(steps, c.unstick)
		}
		for _, step := range steps {
			if step != nil {
				a.log.Warn(c.what+" did not stop in time; closing its connections", "component", c.name, "waited", a.opts.StopWait)
				step()
			}
			t := time.NewTimer(a.opts.StopWait)
			select {
			case <-ended:
				t.Stop()
				return
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		a.progress.setPhase(c.name, phaseStuck)
		a.log.Error(c.what+" is stuck: told to stop after making no progress, it did not; the watchdog (systemd WatchdogSec, a liveness probe) must restart the agent",
			"component", c.name, "waited", time.Duration(len(steps))*a.opts.StopWait)
		a.health.Set(c.name, telemetry.StateDown, fmt.Sprintf("STUCK since %s: %s, told to stop, it did not; only a restart of the agent can help", time.Now().UTC().Format(time.RFC3339), why))
	}()
}

// superviseSource runs a driver until ctx ends. It is restarted — built
// again from the running configuration — when it stops with an error or
// makes no progress: a polling driver must poll (or fail a read) within
// driverWindowPolls poll intervals or the stall timeout, whichever is
// longer. A driver that holds a session (OPC UA) is followed by its own
// session watchdog and counts as waiting here.
func (a *Agent) superviseSource(ctx context.Context, key string, d drivers.Driver, emit drivers.Emit, finish func()) {
	name := d.Name()
	c := &supervised{
		name:    "source/" + name,
		what:    "driver",
		running: "running",
		spec:    func() watchSpec { return sourceSpec(a.shown.Load(), key, d) },
		prepare: func(bool) error {
			nd, err := buildSource(a.shown.Load(), key, a.shared, a.metrics, a.plcs, a.log)
			if err != nil {
				a.log.Error("driver could not be built again; retrying with the one that stopped", "source", name, "err", err)
				return nil
			}
			d = nd
			return nil
		},
	}
	// A driver that can start without a goroutine of its own (Modbus)
	// gets none; the others run on one per attempt.
	start := func(ctx context.Context, ended func(error)) error {
		stopWatch := a.watchSession(name, d)
		end := func(err error) { stopWatch(); ended(err) }
		if s, ok := d.(drivers.Starter); ok {
			err := s.Start(ctx, emit, end)
			if err != nil {
				stopWatch()
			}
			return err
		}
		go func() { end(d.Run(ctx, emit)) }()
		return nil
	}
	a.superviseAsync(ctx, c, start, func(error) { finish() })
}

// poller is implemented by drivers that count their polls (Modbus).
type poller interface{ Polls() uint64 }

// sourceSpec says how to follow the driver d of source key.
func sourceSpec(cfg *config.Config, key string, d drivers.Driver) watchSpec {
	if _, ok := d.(drivers.SessionReporter); ok {
		return watchSpec{waiting: func() (bool, string) { return true, "" }}
	}
	spec := watchSpec{waiting: func() (bool, string) { return false, "it polls" }}
	if p, ok := d.(poller); ok {
		spec.counter = p.Polls
	}
	if iv := pollInterval(cfg, key); iv > 0 {
		spec.window = driverWindowPolls * iv
		spec.waiting = func() (bool, string) { return false, "it polls every " + iv.String() }
	}
	return spec
}

// pollInterval is the poll interval of source key: the simulator's sample
// interval, or a PLC's poll_interval when its driver's settings have one
// (a PollInterval field of type config.Duration); 0 when unknown.
func pollInterval(cfg *config.Config, key string) time.Duration {
	if cfg == nil {
		return 0
	}
	if key == deviceKey {
		return cfg.Device.SampleInterval.Std()
	}
	for _, plc := range cfg.PLCs {
		if plcKey(plc.Name) != key {
			continue
		}
		v := reflect.ValueOf(plc.Settings)
		for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
			if v.IsNil() {
				return 0
			}
			v = v.Elem()
		}
		if v.Kind() != reflect.Struct {
			return 0
		}
		f := v.FieldByName("PollInterval")
		if f.IsValid() && f.Type() == reflect.TypeFor[config.Duration]() {
			return f.Interface().(config.Duration).Std()
		}
	}
	return 0
}

// superviseIngest runs the ingest stage until ctx ends and returns its
// final error. A stage that makes no progress while samples wait (a
// commit that never returns) is told to stop and started again, keeping
// what is pending; one blocked in the disk cannot stop and is reported
// stuck, for the watchdog.
func (a *Agent) superviseIngest(ctx context.Context) error {
	return a.supervise(ctx, &supervised{
		name:    "ingest",
		what:    "ingest",
		running: "committing",
		spec:    func() watchSpec { return watchSpec{waiting: a.ingestWaiting} },
		run:     a.ingest.Run,
	})
}

// superviseSink runs s's send loop until ctx ends. A loop that stops with
// an error is started again on the same queue after a capped backoff; one
// that makes no progress while records wait and the sink is connected is
// stopped — its client closed if its in-flight batches hold it — and
// started again with a new client built from the running configuration.
func (a *Agent) superviseSink(ctx context.Context, s *sinkRunner) {
	_ = a.supervise(ctx, &supervised{
		name:    "sink/" + s.name,
		what:    "send loop",
		running: "sending",
		spec: func() watchSpec {
			return watchSpec{waiting: func() (bool, string) {
				n := s.queue.Stats().Records
				if n == 0 {
					return true, ""
				}
				if st := s.states.uplinkState(); st != telemetry.UplinkConnected {
					return true, ""
				}
				return false, fmt.Sprintf("%d records waiting, connected", n)
			}}
		},
		run:     func(ctx context.Context) error { return s.loop.Run(ctx) },
		unstick: s.closeSink,
		prepare: func(stalled bool) error {
			if stalled {
				if err := a.rebuildSink(s); err != nil {
					return err
				}
			}
			s.loop = a.newLoop(s)
			return nil
		},
	})
}

// closeSink closes s's client, failing what it has in flight.
func (s *sinkRunner) closeSink() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.sink.(uplink.Closer); ok && s.sink != nil {
		c.Close()
	}
}

// rebuildSink replaces s's client by a new one built from the running
// configuration.
func (a *Agent) rebuildSink(s *sinkRunner) error {
	cfg := a.shown.Load()
	sc := cfg.Sink(s.section)
	if sc == nil {
		return fmt.Errorf("no section %s in the running configuration", s.section)
	}
	b, ok := sc.Settings.(uplink.Builder)
	if !ok {
		return fmt.Errorf("the %s sink cannot be built in this build", sc.Name)
	}
	sink, err := b.Build(uplink.SinkEnv{GatewayID: cfg.Gateway.ID, Logger: a.log.With("sink", sc.Name), StateDir: cfg.Gateway.StateDir})
	if err != nil {
		return fmt.Errorf("build the %s sink: %w", sc.Name, err)
	}
	s.release()
	s.mu.Lock()
	s.sink = sink
	s.mu.Unlock()
	return nil
}
