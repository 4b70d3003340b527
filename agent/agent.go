// Package agent wires the pipeline from a configuration and owns its
// lifecycle: it builds the drivers, the ingest stage, the buffer and the
// sinks, starts them, and stops them in order — drivers first, then the
// last samples are committed, then in-flight sends finish or stay in the
// buffer. It knows protocols and brokers only through the Driver and Sink
// interfaces.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iot-producer/iot-producer/agent/config"
	"github.com/iot-producer/iot-producer/agent/ingest"
	"github.com/iot-producer/iot-producer/buffer"
	"github.com/iot-producer/iot-producer/drivers"
	"github.com/iot-producer/iot-producer/telemetry"
	"github.com/iot-producer/iot-producer/uplink"
)

// Options are the agent's settings that do not come from the config file.
type Options struct {
	Logger *slog.Logger
	// Version is reported in iot_build_info.
	Version string
	// Tap, when set, sees every batch of samples a driver emits (the demo
	// shows the latest values with it). It must not keep the slice.
	Tap func([]drivers.Sample)
	// ShutdownTimeout bounds the whole ordered shutdown. Default 15s.
	ShutdownTimeout time.Duration
	// OnReady is called once everything has started.
	OnReady func()
	// ConfigFile names the configuration file in the startup log.
	ConfigFile string
	// BufferIsolate runs bbolt's checks of the buffer file in a child
	// process (buffer.Options.Isolate); nil runs them in this process.
	BufferIsolate buffer.IsolateFunc
	// StallTimeout is how long a component — a driver, ingest, a send
	// loop — may make no progress while it has work before the agent
	// restarts it (a polling driver gets at least three poll intervals).
	// Default 30s; run uses half of systemd's WatchdogSec when that is
	// set, the window of the watchdog's pings.
	StallTimeout time.Duration
	// StopWait bounds the wait for a stalled component to stop once told
	// to, and again after its connections are closed (a sink's client);
	// one still running then is reported stuck and left to the watchdog.
	// Default 10s.
	StopWait time.Duration
}

// Agent is one running pipeline.
type Agent struct {
	cfg     *config.Config
	opts    Options
	log     *slog.Logger
	metrics *telemetry.Metrics
	health  *telemetry.Health
	server  *telemetry.Server

	buf    *buffer.Buffer
	ingest *ingest.Ingest
	shared *drivers.Shared
	// plcs follows each PLC's reads for /ready.
	plcs *plcStates
	// progress follows whether ingest and the send loops make progress,
	// for the watchdog (Stalled).
	progress progress
	// ingestWaiting reports whether the ingest stage has nothing to
	// commit, and what it has otherwise.
	ingestWaiting func() (bool, string)

	// shown is the configuration /config serves; a reload swaps it.
	shown atomic.Pointer[config.Config]

	// mu guards what a reload replaces while the agent runs: the
	// configuration, the sources, the sinks and the telemetry server.
	mu      sync.Mutex
	sources []*source
	sinks   []*sinkRunner
	// driverCtx and uplinkCtx are the running stages' contexts, from
	// which a reload starts what it replaces; nil until Run.
	driverCtx, uplinkCtx context.Context
}

// source is one driver (or the simulator) and, while it runs, how to stop
// it.
type source struct {
	// key is "device" or "plcs/<name>" (sourceKeys).
	key    string
	d      drivers.Driver
	cancel context.CancelFunc
	done   chan struct{}
}

// sinkRunner is one sink with its send loop.
type sinkRunner struct {
	name, section string
	sink          uplink.Sink
	settings      uplink.LoopSettings
	queue         *buffer.Queue
	loop          *uplink.Loop
	cancel        context.CancelFunc
	done          chan struct{}
	states        *laneStates
	// mu guards sink, which a restart of a stalled loop replaces.
	mu sync.Mutex
}

// release closes the sink's connections, if it holds any.
func (s *sinkRunner) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.sink.(uplink.Closer); ok && s.sink != nil {
		c.Close()
	}
	s.sink = nil
}

// Check builds everything cfg describes that can be built without taking
// effect — every driver (addresses, request plans), every sink (TLS and
// password files read, clients configured), the buffer's directory and
// bounds, the telemetry addresses — and releases it again. It is the
// check validate runs, and New and a reload run the same construction, so
// a file Check accepts is one the agent runs, but for what only the
// running process can find out: a port in use, the buffer's file lock.
// Problems are config.ValidationErrors naming the key.
func Check(cfg *config.Config) error {
	log := slog.New(slog.DiscardHandler)
	shared := &drivers.Shared{}
	defer shared.Close()
	if _, err := buildSources(cfg, shared, telemetry.NewMetrics(), nil, log); err != nil {
		return err
	}
	sinks, err := buildSinks(cfg, log)
	if err != nil {
		return err
	}
	for _, s := range sinks {
		s.release()
	}
	return checkBuffer(cfg, len(sinks))
}

// New builds every part of the pipeline from cfg. Nothing runs until Run.
// On error, what was already built is released.
func New(cfg *config.Config, opts Options) (_ *Agent, err error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = 15 * time.Second
	}
	if opts.StallTimeout <= 0 {
		opts.StallTimeout = defaultStallTimeout
	}
	if opts.StopWait <= 0 {
		opts.StopWait = defaultStopWait
	}
	a := &Agent{
		cfg:     cfg,
		opts:    opts,
		log:     opts.Logger,
		metrics: telemetry.NewMetrics(),
		health:  telemetry.NewHealth(),
		shared:  &drivers.Shared{},
		plcs:    &plcStates{},
	}
	a.shown.Store(cfg)
	if opts.Version != "" {
		a.metrics.SetBuildInfo(opts.Version)
	}
	defer func() {
		if err != nil {
			a.release()
		}
	}()

	if a.sources, err = buildSources(cfg, a.shared, a.metrics, a.plcs, a.log); err != nil {
		return nil, err
	}
	sinks, err := buildSinks(cfg, a.log)
	if err != nil {
		return nil, err
	}
	a.sinks = sinks
	for _, s := range sinks {
		a.metrics.InitSink(s.name)
		a.metrics.DeadLetter.WithLabelValues(s.name, uplink.ReasonMalformed)
	}
	for _, r := range ingest.DropReasons {
		a.metrics.IngestDropped.WithLabelValues(r)
	}
	if err := checkBuffer(cfg, len(sinks)); err != nil {
		return nil, err
	}
	queues := make([]string, len(sinks))
	for i, s := range sinks {
		queues[i] = s.name
	}
	if a.buf, err = a.openBuffer(queues); err != nil {
		return nil, err
	}
	buf := a.buf
	a.metrics.Registry().MustRegister(telemetry.NewBufferCollector(func() telemetry.BufferSnapshot { return bufferSnapshot(buf) }))
	for _, s := range sinks {
		s.queue = a.buf.Queue(s.name)
		s.loop = a.newLoop(s)
	}
	if a.ingest, err = a.newIngest(); err != nil {
		return nil, err
	}
	a.metrics.SetStatsSource(statsSource(a.buf, sinks))
	a.server = telemetry.NewServer(telemetry.ServerOptions{
		MetricsAddr:       cfg.Telemetry.MetricsListen,
		HealthAddr:        cfg.Telemetry.HealthListen,
		PprofAddr:         cfg.Telemetry.PprofListen,
		Metrics:           a.metrics,
		Health:            a.health,
		Config:            func() any { return a.shown.Load().Redacted() },
		Logger:            a.log,
		ConfigAllowRemote: cfg.Telemetry.ConfigAllowRemote,
		PprofAllowRemote:  cfg.Telemetry.PprofAllowRemote,
	})
	a.noteWarnings(cfg)
	cfg.ForgetLines()
	return a, nil
}

// noteWarnings logs the settings of cfg that weaken security and shows
// them in /ready.
func (a *Agent) noteWarnings(cfg *config.Config) {
	warnings := cfg.Warnings()
	for _, w := range warnings {
		a.log.Warn("insecure setting in the configuration", "setting", w)
	}
	a.health.SetWarnings(warnings)
}

// Metrics returns the agent's metrics.
func (a *Agent) Metrics() *telemetry.Metrics { return a.metrics }

// Health returns the agent's component states.
func (a *Agent) Health() *telemetry.Health { return a.health }

// Addrs returns the telemetry listeners' bound addresses once Run has
// started them.
func (a *Agent) Addrs() telemetry.ListenAddrs { return a.server.Addrs() }

// Buffer returns the agent's buffer.
func (a *Agent) Buffer() *buffer.Buffer { return a.buf }

// Run starts the pipeline and blocks until ctx is cancelled, then shuts it
// down in order within Options.ShutdownTimeout. The agent cannot be run
// twice; its resources are released when Run returns.
func (a *Agent) Run(ctx context.Context) error {
	defer a.release()
	if err := a.server.Start(ctx); err != nil {
		return err
	}
	// Each stage gets its own context so that shutdown can stop them in
	// order, whatever happens to ctx.
	base := context.WithoutCancel(ctx)
	driverCtx, stopDrivers := context.WithCancel(base)
	ingestCtx, stopIngest := context.WithCancel(base)
	uplinkCtx, stopUplinks := context.WithCancel(base)
	defer stopDrivers()
	defer stopIngest()
	defer stopUplinks()

	var ingestDone sync.WaitGroup
	a.mu.Lock()
	a.driverCtx, a.uplinkCtx = driverCtx, uplinkCtx
	for _, s := range a.sinks {
		a.startSink(s)
	}
	state, detail := bufferHealth(a.buf)
	a.health.Set("buffer", state, detail)
	a.health.Set("ingest", telemetry.StateOK, "committing")
	var ingestErr error
	ingestDone.Go(func() { ingestErr = a.superviseIngest(ingestCtx) })
	for _, src := range a.sources {
		a.startSource(src)
	}
	a.logStart()
	a.mu.Unlock()
	stopStallWatch := a.watchStalls(base)
	defer stopStallWatch()
	if a.opts.OnReady != nil {
		a.opts.OnReady()
	}

	<-ctx.Done()
	stopStallWatch()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.log.Info("shutting down")
	deadline := time.Now().Add(a.opts.ShutdownTimeout)
	var errs []error
	for _, src := range a.sources {
		src.cancel()
	}
	for _, src := range a.sources {
		if !waitDone(src.done, deadline) {
			errs = append(errs, fmt.Errorf("shutdown: source %s did not stop before the deadline", src.d.Name()))
		}
		a.health.Set("source/"+src.d.Name(), telemetry.StateStopped, "")
	}
	stopIngest()
	if !waitUntil(&ingestDone, deadline) {
		errs = append(errs, errors.New("shutdown: ingest did not stop before the deadline"))
	}
	a.health.Set("ingest", telemetry.StateStopped, "")
	for _, s := range a.sinks {
		s.cancel()
	}
	for _, s := range a.sinks {
		if !waitDone(s.done, deadline) {
			errs = append(errs, fmt.Errorf("shutdown: the %s send loop did not stop before the deadline", s.name))
		}
		a.health.Set("sink/"+s.name, telemetry.StateStopped, "")
	}
	if ingestErr != nil {
		errs = append(errs, ingestErr)
	}
	shutdownCtx, cancel := context.WithDeadline(context.Background(), deadline.Add(time.Second))
	defer cancel()
	if err := a.server.Shutdown(shutdownCtx); err != nil {
		errs = append(errs, fmt.Errorf("shutdown telemetry: %w", err))
	}
	a.log.Info("agent stopped")
	return errors.Join(errs...)
}

// startSource runs src until its context, a child of the drivers' stage,
// is cancelled. The caller holds a.mu.
func (a *Agent) startSource(src *source) {
	ctx, cancel := context.WithCancel(a.driverCtx)
	src.cancel, src.done = cancel, make(chan struct{})
	name := src.d.Name()
	a.metrics.InitSource(name)
	a.health.Set("source/"+name, telemetry.StateOK, "running")
	var track *plcTracker
	if _, session := src.d.(drivers.SessionReporter); !session && src.key != deviceKey {
		track = &plcTracker{name: name, health: a.health, plcs: a.plcs, state: telemetry.StateOK}
	}
	emit := a.emitter(name, track)
	a.superviseSource(ctx, src.key, src.d, emit, func() { close(src.done) })
}

// sessionPoll is how often /ready follows a session-holding driver.
const sessionPoll = time.Second

// watchSession shows the session of a driver that holds one (OPC UA) in
// /ready — ok while connected, degraded while it reconnects, with the
// reason — and in the iot_driver_* metrics, until the returned stop is
// called. For other drivers it does nothing.
func (a *Agent) watchSession(name string, d drivers.Driver) (stop func()) {
	r, ok := d.(drivers.SessionReporter)
	if !ok {
		return func() {}
	}
	a.metrics.AddSessionSource(name, func() telemetry.SessionSnapshot {
		s := r.SessionStatus()
		return telemetry.SessionSnapshot{Connected: s.Connected, Subscriptions: s.Subscriptions, ItemsGood: s.ItemsGood, ItemsBad: s.ItemsBad, Recoveries: s.Recoveries}
	})
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(sessionPoll)
		defer t.Stop()
		for {
			s := r.SessionStatus()
			detail := fmt.Sprintf("%s; %d subscriptions, %d items good, %d bad, %d recoveries", s.State, s.Subscriptions, s.ItemsGood, s.ItemsBad, s.Recoveries)
			if s.ItemsBad > 0 && s.LastStatus != "" {
				detail += "; last bad status " + s.LastStatus
			}
			state := telemetry.StateOK
			if !s.Connected {
				state = telemetry.StateDegraded
				if s.LastError != "" {
					detail += "; last error at " + s.LastErrorTime.UTC().Format(time.RFC3339) + ": " + s.LastError
				}
			}
			a.health.Set("source/"+name, state, detail)
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() {
		close(done)
		<-finished
		a.metrics.RemoveSessionSource(name)
	}
}

// startSink runs s's send loop until its context, a child of the send
// loops' stage, is cancelled. The caller holds a.mu.
func (a *Agent) startSink(s *sinkRunner) {
	ctx, cancel := context.WithCancel(a.uplinkCtx)
	s.cancel, s.done = cancel, make(chan struct{})
	a.health.Set("sink/"+s.name, telemetry.StateOK, "sending")
	go func() {
		defer close(s.done)
		a.superviseSink(ctx, s)
	}()
}

// waitDone waits for done until deadline and reports whether it closed.
func waitDone(done <-chan struct{}, deadline time.Time) bool {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// logStart says what runs: version and file, each source, each sink with
// where it sends, and the telemetry addresses.
func (a *Agent) logStart() {
	for _, src := range a.sources {
		a.log.Info("source", "name", src.d.Name())
	}
	for _, s := range a.sinks {
		args := []any{"name", s.name, "section", s.section}
		if sc := a.cfg.Sink(s.section); sc != nil {
			if d, ok := sc.Settings.(interface{ Describe() []any }); ok {
				args = append(args, d.Describe()...)
			}
		}
		a.log.Info("sink", args...)
	}
	a.log.Info("agent started", "version", a.opts.Version, "config", a.opts.ConfigFile, "gateway", a.cfg.Gateway.ID,
		"buffer", a.buf.Path(), "sources", len(a.sources), "sinks", len(a.sinks),
		"metrics", a.server.Addrs().Metrics, "health", a.server.Addrs().Health, "pprof", a.server.Addrs().Pprof)
}

// emitter counts a source's samples and passes them to the ingest stage;
// a PLC's polls also go to its tracker (nil for the others).
func (a *Agent) emitter(source string, track *plcTracker) drivers.Emit {
	generated := a.metrics.DataGenerated.WithLabelValues(source)
	component := "source/" + source
	return func(samples []drivers.Sample) {
		a.progress.beat(component)
		generated.Add(float64(len(samples)))
		if track != nil {
			track.polled(samples)
		}
		if a.opts.Tap != nil {
			a.opts.Tap(samples)
		}
		a.ingest.Emit(samples)
	}
}

// release closes the sinks and the buffer. It is safe to call twice.
func (a *Agent) release() {
	for _, s := range a.sinks {
		s.release()
	}
	if a.shared != nil {
		a.shared.Close()
	}
	if a.buf != nil {
		if err := a.buf.Close(); err != nil {
			a.log.Error("close buffer", "err", err)
		}
		a.buf = nil
	}
}

// waitUntil waits for wg until deadline and reports whether it finished.
func waitUntil(wg *sync.WaitGroup, deadline time.Time) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}
