package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/iot-producer/iot-producer/agent/config"
	"github.com/iot-producer/iot-producer/agent/ingest"
	"github.com/iot-producer/iot-producer/buffer"
	"github.com/iot-producer/iot-producer/drivers"
	"github.com/iot-producer/iot-producer/record"
	"github.com/iot-producer/iot-producer/simulator"
	"github.com/iot-producer/iot-producer/telemetry"
	"github.com/iot-producer/iot-producer/uplink"
)

// buildSources returns the simulator source and one driver per enabled
// PLC, each built by its driver plug-in; drivers count their errors in m
// and share what they share through shared. Errors name the PLC's config
// path.
func buildSources(cfg *config.Config, shared *drivers.Shared, m *telemetry.Metrics, plcs *plcStates, log *slog.Logger) ([]*source, error) {
	var out []*source
	keys := sourceKeys(cfg)
	for _, k := range keys {
		d, err := buildSource(cfg, k, shared, m, plcs, log)
		if err != nil {
			return nil, err
		}
		out = append(out, &source{key: k, d: d})
	}
	if len(out) == 0 {
		return nil, cfg.Problem("device.enabled", errors.New("no source: enable device or configure plcs"))
	}
	return out, nil
}

// sourceKeys lists the sources cfg enables: "device" for the simulator,
// "plcs/<name>" for each enabled PLC.
func sourceKeys(cfg *config.Config) []string {
	var out []string
	if cfg.Device.Enabled != nil && *cfg.Device.Enabled && cfg.Device.Count > 0 {
		out = append(out, deviceKey)
	}
	for _, plc := range cfg.PLCs {
		if plc.Enabled == nil || *plc.Enabled {
			out = append(out, plcKey(plc.Name))
		}
	}
	return out
}

const deviceKey = "device"

func plcKey(name string) string { return "plcs/" + name }

// buildSource builds the source of key (see sourceKeys).
func buildSource(cfg *config.Config, key string, shared *drivers.Shared, m *telemetry.Metrics, plcs *plcStates, log *slog.Logger) (drivers.Driver, error) {
	if key == deviceKey {
		src, err := simulator.NewSource(simulator.SourceOptions{
			Devices:       cfg.Device.Count,
			TagsPerDevice: cfg.Device.TagsPerDevice,
			Interval:      cfg.Device.SampleInterval.Std(),
			Variation:     cfg.Device.DataVariation,
			Seed:          cfg.Device.Seed,
			NamePrefix:    cfg.Device.NamePrefix,
		})
		if err != nil {
			return nil, cfg.Problem("device", err)
		}
		return src, nil
	}
	for i, plc := range cfg.PLCs {
		if plcKey(plc.Name) == key {
			return buildDriver(cfg, i, shared, m, plcs, log)
		}
	}
	return nil, fmt.Errorf("BUG: no source %s in the configuration", key)
}

// buildDriver builds plcs[i] through its driver plug-in; its read errors go
// to plcs (may be nil) for /ready.
func buildDriver(cfg *config.Config, i int, shared *drivers.Shared, m *telemetry.Metrics, plcs *plcStates, log *slog.Logger) (drivers.Driver, error) {
	plc := cfg.PLCs[i]
	path := fmt.Sprintf("plcs[%d]", i)
	b, ok := plc.Settings.(drivers.Builder)
	if !ok {
		return nil, cfg.Problem(path+".driver", fmt.Errorf("driver %q cannot build drivers in this build", plc.Driver))
	}
	source := plc.Driver + ":" + plc.Name
	errs := m.DriverErrors
	d, err := b.Build(drivers.Env{
		Device:      plc.Name,
		Logger:      log.With("source", source),
		OnError:     func(kind string) { errs.WithLabelValues(source, kind).Inc() },
		OnReadError: func(err error) { plcs.readError(source, err) },
		Shared:      shared,
		StateDir:    cfg.Gateway.StateDir,
	})
	if err != nil {
		return nil, cfg.Problem(path, fmt.Errorf("(%s): %w", plc.Name, err))
	}
	return d, nil
}

// buildSinks returns the enabled sinks, each built by its plug-in, without
// their queues.
func buildSinks(cfg *config.Config, log *slog.Logger) ([]*sinkRunner, error) {
	var out []*sinkRunner
	fail := func(err error) ([]*sinkRunner, error) {
		for _, s := range out {
			s.release()
		}
		return nil, err
	}
	for _, sc := range cfg.Sinks {
		if !sc.Enabled {
			continue
		}
		b, ok := sc.Settings.(uplink.Builder)
		if !ok {
			return fail(cfg.Problem(sc.Section, fmt.Errorf("the %s sink cannot be built in this build", sc.Name)))
		}
		slog := log.With("sink", sc.Name)
		sink, err := b.Build(uplink.SinkEnv{
			GatewayID: cfg.Gateway.ID,
			Logger:    slog,
			StateDir:  cfg.Gateway.StateDir,
			OnConnect: func(broker string) { slog.Debug("broker connected", "broker", broker) },
		})
		if err != nil {
			return fail(cfg.Problem(sc.Section, err))
		}
		out = append(out, &sinkRunner{name: sc.Name, section: sc.Section, sink: sink, settings: b.Loop()})
	}
	if len(out) == 0 {
		return fail(cfg.Problem("", errors.New("no sink is enabled")))
	}
	return out, nil
}

// checkBuffer checks what opening the buffer needs that the file cannot
// say: the bound fits the platform, and the state directory exists or can
// be made, and is writable by the user running the check.
func checkBuffer(cfg *config.Config, queues int) error {
	b := cfg.Buffer
	if err := buffer.CheckBounds(int64(b.MaxBytes), 2*queues); err != nil {
		return cfg.Problem("buffer.max_bytes", err)
	}
	if err := writableDir(filepath.Dir(b.Path)); err != nil {
		key := "buffer.path"
		if cfg.Buffer.Path == filepath.Join(cfg.Gateway.StateDir, "buffer.db") {
			key = "gateway.state_dir"
		}
		return cfg.Problem(key, err)
	}
	if fi, err := os.Stat(b.Path); err == nil && !fi.Mode().IsRegular() {
		return cfg.Problem("buffer.path", fmt.Errorf("%s is not a regular file", b.Path))
	}
	return nil
}

// writableDir checks that dir is a directory this process may create files
// in, or that its nearest existing parent is one (the agent creates the
// rest).
func writableDir(dir string) error {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		switch {
		case err == nil && !fi.IsDir():
			return fmt.Errorf("%s is not a directory", d)
		case err == nil:
			if err := unix.Access(d, unix.W_OK|unix.X_OK); err != nil {
				return fmt.Errorf("directory %s is not writable by this user (uid %d): %w", d, os.Getuid(), err)
			}
			return nil
		case !errors.Is(err, fs.ErrNotExist):
			return fmt.Errorf("state directory %s: %w", dir, err)
		}
		if p := filepath.Dir(d); p == d {
			return fmt.Errorf("state directory %s: no existing parent", dir)
		}
	}
}

func (a *Agent) openBuffer(queues []string) (*buffer.Buffer, error) {
	b := a.cfg.Buffer
	drop, err := buffer.ParseDropPolicy(b.DropPolicy)
	if err != nil {
		return nil, fmt.Errorf("buffer.drop_policy: %w", err)
	}
	onCorrupt, err := buffer.ParseCorruptPolicy(b.OnCorrupt)
	if err != nil {
		return nil, fmt.Errorf("buffer.on_corrupt: %w", err)
	}
	// The state directory may not exist yet on a hand-run gateway (the
	// package and the unit create it): make it, private to the agent.
	if err := os.MkdirAll(filepath.Dir(b.Path), 0o750); err != nil {
		return nil, fmt.Errorf("buffer: state directory: %w", err)
	}
	buf, err := buffer.Open(b.Path, buffer.Options{
		Queues:           queues,
		DeadLetterQueues: deadLetterQueues(queues),
		MaxBytes:         int64(b.MaxBytes),
		MaxAge:           b.MaxAge.Std(),
		DropPolicy:       drop,
		OnCorrupt:        onCorrupt,
		Logger:           a.log.With("component", "buffer"),
		Isolate:          a.opts.BufferIsolate,
		Series:           RecordSeries,
		LastSeqs:         LastSeqs,
		// Frames found corrupt, or a file recovered while running, show
		// in /ready.
		OnDamage: func(b *buffer.Buffer) {
			state, detail := bufferHealth(b)
			a.health.Set("buffer", state, detail)
		},
	})
	if err != nil {
		return nil, fmt.Errorf("buffer: %w", err)
	}
	return buf, nil
}

// deadLetterQueue names the queue holding what a sink's broker refused for
// good.
func deadLetterQueue(sink string) string { return sink + ".dead" }

func deadLetterQueues(sinks []string) []string {
	out := make([]string, len(sinks))
	for i, s := range sinks {
		out[i] = deadLetterQueue(s)
	}
	return out
}

// deadLetters keeps a sink's refused records in its dead-letter queue,
// with the reason and the time (`iot-producer buffer export --queue
// kafka.dead` shows them).
type deadLetters struct {
	buf   *buffer.Buffer
	queue string
}

// Put implements uplink.DeadLetters.
func (d deadLetters) Put(records [][]byte, reason string) error {
	now := time.Now()
	wrapped := make([][]byte, len(records))
	for i, r := range records {
		wrapped[i] = record.AppendDeadLetter(nil, reason, now, r)
	}
	return d.buf.AppendTo(d.queue, wrapped)
}

func (a *Agent) newIngest() (*ingest.Ingest, error) {
	m := a.metrics
	// failingSince is when commits began failing (Unix ns), 0 while they
	// succeed: the first commit that succeeds again clears degraded.
	var failingSince atomic.Int64
	// pending is the number of samples waiting for a commit: with none,
	// ingest is legitimately idle.
	var pending atomic.Int64
	a.ingestWaiting = func() (bool, string) {
		n := pending.Load()
		return n == 0, fmt.Sprintf("%d samples waiting for a commit", n)
	}
	in, err := ingest.New(a.buf, ingest.Options{
		GatewayID:       a.cfg.Gateway.ID,
		CommitInterval:  a.cfg.Buffer.CommitInterval.Std(),
		CommitSize:      a.cfg.Buffer.CommitSize,
		MaxPendingBytes: int64(a.cfg.Buffer.MaxPendingBytes),
		SeriesIdle:      a.cfg.Buffer.SeriesIdle.Std(),
		DropNewest:      a.cfg.Buffer.DropPolicy == buffer.DropNewest.String(),
		Logger:          a.log,
		Metrics: ingest.Metrics{
			Committed: func(n int) {
				a.progress.beat("ingest")
				m.IngestCommitted.Add(float64(n))
				m.BufferCommits.Inc()
				if failingSince.Swap(0) != 0 {
					a.health.Set("ingest", telemetry.StateOK, "committing")
				}
			},
			Dropped: func(reason string, n int) { m.IngestDropped.WithLabelValues(reason).Add(float64(n)) },
			Pending: func(n int) { pending.Store(int64(n)); m.IngestPending.Set(float64(n)) },
			CommitFailed: func() {
				a.progress.beat("ingest")
				m.BufferCommitErrors.Inc()
				now := time.Now()
				failingSince.CompareAndSwap(0, now.UnixNano())
				since := time.Unix(0, failingSince.Load()).UTC().Format(time.RFC3339)
				a.health.Set("ingest", telemetry.StateDegraded, "buffer commits failing since "+since+"; samples held in memory")
			},
			CommitTime: func(d time.Duration) { m.BufferCommitDuration.Observe(d.Seconds()) },
		},
	})
	if err != nil {
		return nil, err
	}
	// The drop counters are kept in the buffer file: the metric carries on
	// from where the previous run left it.
	for reason, n := range in.Dropped() {
		m.IngestDropped.WithLabelValues(reason).Add(float64(n))
	}
	return in, nil
}

func (a *Agent) newLoop(s *sinkRunner) *uplink.Loop {
	m := a.metrics
	name := s.name
	sent := m.MessagesSent.WithLabelValues(name)
	batches := m.BatchesSent.WithLabelValues(name)
	sendDur := m.SendDuration.WithLabelValues(name)
	delivery := m.SampleDelivery.WithLabelValues(name)
	errs := m.SendErrors.WithLabelValues(name)
	retries := m.UplinkRetries.WithLabelValues(name)
	component := "sink/" + name
	st := s.settings
	// A sink's states outlive a restart of its loop (the collector reads
	// them at any time); the new loop starts connected.
	if s.states == nil {
		s.states = newLaneStates(name, a.health)
	} else {
		s.states.reset()
	}
	return uplink.New(s.queue, s.sink, uplink.Options{
		BatchSize:     st.BatchSize,
		FlushInterval: st.FlushInterval,
		Workers:       st.Workers,
		LiveWindow:    st.LiveWindow,
		DeadLetters:   deadLetters{buf: a.buf, queue: deadLetterQueue(name)},
		Logger:        a.log,
		Metrics: uplink.Metrics{
			Sent: func(_ uplink.Lane, n int, d time.Duration, readTimes []time.Time) {
				a.progress.beat(component)
				sent.Add(float64(n))
				batches.Inc()
				sendDur.Observe(d.Seconds())
				now := time.Now()
				for _, t := range readTimes {
					delivery.Observe(now.Sub(t).Seconds())
				}
			},
			Failed:       func(n int) { a.progress.beat(component); errs.Add(float64(n)) },
			Retried:      retries.Inc,
			DeadLettered: func(reason string, n int) { m.DeadLetter.WithLabelValues(name, reason).Add(float64(n)) },
		},
		OnState: s.states.set,
	})
}

// laneStates folds the two lanes' states of one sink into its /ready entry
// and iot_uplink_state: degraded (still ready) while either lane backs off.
type laneStates struct {
	name   string
	health *telemetry.Health

	mu    sync.Mutex
	state [2]uplink.State
	err   [2]error
	since [2]time.Time
}

func newLaneStates(name string, h *telemetry.Health) *laneStates {
	return &laneStates{name: name, health: h, state: [2]uplink.State{uplink.StateConnected, uplink.StateConnected}}
}

// reset puts both lanes back to connected, for a restarted loop.
func (ls *laneStates) reset() {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.state = [2]uplink.State{uplink.StateConnected, uplink.StateConnected}
	ls.err = [2]error{}
}

// uplinkState is the sink's value of the state label of iot_uplink_state:
// backing_off while either lane backs off, else connected.
func (ls *laneStates) uplinkState() string {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	out := telemetry.UplinkConnected
	for _, st := range ls.state {
		switch st {
		case uplink.StateRefused:
			return telemetry.UplinkRefused
		case uplink.StateBackingOff:
			out = telemetry.UplinkBackingOff
		}
	}
	return out
}

func (ls *laneStates) set(lane uplink.Lane, st uplink.State, err error) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.state[lane] != st {
		ls.since[lane] = time.Now()
	}
	ls.state[lane], ls.err[lane] = st, err
	var problems []string
	for _, l := range []uplink.Lane{uplink.Live, uplink.Backlog} {
		switch ls.state[l] {
		case uplink.StateBackingOff:
			problems = append(problems, fmt.Sprintf("%s lane backing off since %s: %v", l, ls.since[l].UTC().Format(time.RFC3339), ls.err[l]))
		case uplink.StateRefused:
			problems = append(problems, fmt.Sprintf("REFUSED by the broker since %s (%s lane): %v; fix the gateway's credentials or the broker's ACL or topic policy; records stay in the buffer and are retried",
				ls.since[l].UTC().Format(time.RFC3339), l, ls.err[l]))
		}
	}
	if len(problems) == 0 {
		ls.health.Set("sink/"+ls.name, telemetry.StateOK, "sending")
		return
	}
	ls.health.Set("sink/"+ls.name, telemetry.StateDegraded, strings.Join(problems, "; "))
}

// statsSource reads, at every scrape, what the buffer and the sinks hold:
// each queue's depth, size and age, the file's size, and each sink's
// connection state (the drops: bufferSnapshot).
func statsSource(buf *buffer.Buffer, sinks []*sinkRunner) func() telemetry.Stats {
	sinkOf := make(map[string]*sinkRunner, len(sinks))
	for _, s := range sinks {
		sinkOf[s.name] = s
	}
	return func() telemetry.Stats {
		bs := buf.Stats()
		st := telemetry.Stats{BufferFileBytes: bs.FileSize}
		for _, q := range buf.Queues() {
			name := q.Name()
			qs := bs.Queues[name]
			out := telemetry.QueueStats{Queue: name, Records: qs.Records, Bytes: qs.Bytes, Oldest: qs.Oldest}
			if _, ok := sinkOf[name]; ok {
				out.Sink = name
			}
			st.Queues = append(st.Queues, out)
		}
		for _, s := range sinks {
			state := telemetry.UplinkConnected
			if s.states != nil {
				state = s.states.uplinkState()
			}
			st.Sinks = append(st.Sinks, telemetry.SinkStats{Sink: s.name, State: state})
		}
		return st
	}
}
