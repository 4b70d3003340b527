package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/fsnotify/fsnotify"

	"github.com/iot-producer/iot-producer/agent"
	"github.com/iot-producer/iot-producer/agent/config"
	"github.com/iot-producer/iot-producer/internal/gcpace"
	"github.com/iot-producer/iot-producer/telemetry"
)

const runUsage = `Usage: iot-producer run [-c FILE]

Runs the agent with the configuration file (default %s).
SIGTERM or SIGINT stop it in order; SIGHUP, or a change of the file (a
Kubernetes ConfigMap update included), reloads it: a file that cannot be
built is refused and the running configuration kept.

Exit status: 0 after a clean stop, 78 (EX_CONFIG) when the configuration
is refused at start, 1 for any other failure.
`

func cmdRun(args []string, _, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintf(fs.Output(), runUsage, config.DefaultPath()); fs.PrintDefaults() }
	path := fs.String("c", config.DefaultPath(), "configuration file")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintf(stderr, "%s: configuration refused:\n%v\n", *path, err)
		return exitConfig
	}
	log, err := telemetry.NewLogger(cfg.Log.Level, cfg.Log.Format, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "%s: log: %v\n", *path, err)
		return exitConfig
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if os.Getenv("GOGC") == "" {
		paced := make(chan struct{})
		pctx, stopPacing := context.WithCancel(ctx)
		go func() { defer close(paced); gcpace.Run(pctx, gcpace.Default, log) }()
		defer func() { stopPacing(); <-paced }()
	}

	sv := supervisor{path: *path, log: log}
	err = sv.run(ctx, cfg, hup)
	var verrs config.ValidationErrors
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &verrs):
		log.Error("configuration refused", "file", *path, "err", err)
		return exitConfig
	}
	log.Error("agent failed", "err", err)
	return exitFailure
}

// supervisor runs one agent at a time and reloads its configuration on
// SIGHUP or when the file changes: the new file is read and everything it
// describes built (agent.Check) while the running agent goes on; a file
// that cannot be built is refused and the agent keeps running. A change of
// PLCs, the simulator or a sink's settings is applied in place
// (agent.Reload restarts only what changed; the buffer stays open). Any
// other change stops the running agent and starts one with the new
// configuration; if that one cannot start (a port in use), the previous
// configuration is started again.
type supervisor struct {
	path string
	log  *slog.Logger
	// current is the running agent, for the watchdog; nil between two.
	current atomic.Pointer[agent.Agent]
}

// running is one started agent.
type running struct {
	cfg   *config.Config
	agent *agent.Agent
	stop  context.CancelFunc
	done  chan error
}

func (s *supervisor) run(ctx context.Context, cfg *config.Config, hup <-chan os.Signal) error {
	stopWatchdog := startWatchdog(ctx, s.log, func(window time.Duration) []string {
		if a := s.current.Load(); a != nil {
			return a.Stalled(window)
		}
		return nil
	})
	defer stopWatchdog()
	changes := s.watch(ctx)

	cur, err := s.start(ctx, cfg)
	if err != nil {
		return err
	}
	notify(s.log, daemon.SdNotifyReady)
	for {
		var why string
		select {
		case err := <-cur.done:
			cur.stop()
			notify(s.log, daemon.SdNotifyStopping)
			if ctx.Err() == nil && err == nil {
				err = errors.New("agent stopped unexpectedly")
			}
			return err
		case <-hup:
			why = "SIGHUP"
		case <-changes:
			why = "file changed"
		}
		next, err := s.reload(ctx, cur, why)
		if err != nil {
			return err
		}
		cur = next
	}
}

// reload loads and builds the file; when it is good and differs from the
// running configuration it replaces the running agent, or starts the
// previous configuration again if the new one does not start. It returns
// the agent now running; an error only when neither configuration runs.
func (s *supervisor) reload(ctx context.Context, cur *running, why string) (*running, error) {
	next, err := config.Load(s.path)
	if err == nil {
		err = agent.Check(next)
	}
	if err != nil {
		s.log.Error("config reload refused; the running configuration is kept", "file", s.path, "trigger", why, "err", err)
		return cur, nil
	}
	changed := agent.Changes(cur.cfg, next)
	if len(changed) == 0 {
		s.log.Info("config unchanged; nothing to reload", "file", s.path, "trigger", why)
		return cur, nil
	}
	notify(s.log, daemon.SdNotifyReloading)
	defer notify(s.log, daemon.SdNotifyReady)
	s.log.Info("reloading config", "file", s.path, "trigger", why, "changed", changed)
	_, err = cur.agent.Reload(next)
	switch {
	case err == nil:
		cur.cfg = next
		s.log.Info("config reloaded", "file", s.path, "changed", changed, "restarted", "only what changed")
		return cur, nil
	case !errors.Is(err, agent.ErrRestart):
		s.log.Error("config reload refused; the running configuration is kept", "file", s.path, "trigger", why, "err", err)
		return cur, nil
	}
	s.log.Info("restarting the pipeline for the reload", "reason", err)
	cur.stop()
	if err := <-cur.done; err != nil {
		s.log.Error("stopping the running configuration for the reload", "err", err)
	}
	started, err := s.start(ctx, next)
	if err == nil {
		s.log.Info("config reloaded", "file", s.path, "changed", changed)
		return started, nil
	}
	s.log.Error("config reload refused: the new configuration did not start; starting the previous one again", "file", s.path, "err", err)
	prev, perr := s.start(ctx, cur.cfg)
	if perr != nil {
		return nil, fmt.Errorf("the previous configuration did not start again either: %w", perr)
	}
	return prev, nil
}

// start builds and starts an agent and waits until it runs; an agent that
// stops before it is ready (a port in use) is an error.
func (s *supervisor) start(ctx context.Context, cfg *config.Config) (*running, error) {
	ready := make(chan struct{})
	a, err := agent.New(cfg, agent.Options{
		Logger:     s.log,
		Version:    version,
		ConfigFile: s.path,
		OnReady:    func() { close(ready) },
		// bbolt checks the buffer file in a child process: a damaged
		// file cannot crash the agent.
		BufferIsolate: bufferIsolate(),
		StallTimeout:  stallTimeout(),
	})
	if err != nil {
		return nil, err
	}
	actx, stop := context.WithCancel(ctx)
	r := &running{cfg: cfg, agent: a, stop: stop, done: make(chan error, 1)}
	go func() { r.done <- a.Run(actx) }()
	select {
	case <-ready:
		s.current.Store(a)
		return r, nil
	case err := <-r.done:
		stop()
		if err == nil {
			err = errors.New("the agent stopped while starting")
		}
		return nil, err
	}
}

// watch reports changes of the configuration file: its directory is
// watched, so that an editor's rename and a Kubernetes ConfigMap update
// (which swaps the ..data symlink) are seen. Events within 250ms are
// reported once. Without a watch (no inotify), SIGHUP still works.
func (s *supervisor) watch(ctx context.Context) <-chan struct{} {
	out := make(chan struct{}, 1)
	w, err := fsnotify.NewWatcher()
	if err != nil {
		s.log.Warn("config file not watched; reload with SIGHUP", "err", err)
		return out
	}
	dir := filepath.Dir(s.path)
	if err := w.Add(dir); err != nil {
		s.log.Warn("config file not watched; reload with SIGHUP", "dir", dir, "err", err)
		w.Close()
		return out
	}
	name := filepath.Base(s.path)
	go func() {
		defer w.Close()
		var debounce <-chan time.Time
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if b := filepath.Base(ev.Name); b == name || b == "..data" {
					debounce = time.After(250 * time.Millisecond)
				}
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				s.log.Warn("watching the config file", "err", err)
			case <-debounce:
				debounce = nil
				select {
				case out <- struct{}{}:
				default:
				}
			}
		}
	}()
	return out
}

func notify(log *slog.Logger, state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		log.Warn("systemd notify failed", "state", state, "err", err)
	}
}

// stallTimeout is how long a component may make no progress while it has
// work before the agent restarts it: half of systemd's WatchdogSec when
// the watchdog is on — the window after which it is no longer pinged, so
// the agent's own restart comes first and systemd's only when that one
// cannot help — else the agent's default (0).
func stallTimeout() time.Duration {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil || interval == 0 {
		return 0
	}
	return interval / 2
}

// startWatchdog pings systemd's watchdog while ctx lives, when the unit
// has WatchdogSec set: every quarter of the interval, and only while
// stalled(half the interval) is empty — every component of the pipeline
// made progress within half the interval or is legitimately waiting. A
// stuck ingest stage or send loop therefore stops the pings, and systemd
// restarts the agent; the buffer carries everything over.
func startWatchdog(ctx context.Context, log *slog.Logger, stalled func(window time.Duration) []string) (stop func()) {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil || interval == 0 {
		return func() {}
	}
	return runWatchdog(ctx, interval, stalled, func() { notify(log, daemon.SdNotifyWatchdog) },
		func(stuck []string) {
			log.Error("watchdog not pinged: the pipeline is stuck; systemd restarts the agent if it stays so", "stalled", stuck, "watchdog", interval)
		})
}

// runWatchdog calls ping every interval/4 while stalled(interval/2) is
// empty, and withheld with what is stalled otherwise (once per stall),
// until ctx ends.
func runWatchdog(ctx context.Context, interval time.Duration, stalled func(time.Duration) []string, ping func(), withheld func([]string)) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(interval / 4)
		defer t.Stop()
		reported := false
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if stuck := stalled(interval / 2); len(stuck) > 0 {
				if !reported {
					withheld(stuck)
					reported = true
				}
				continue
			}
			reported = false
			ping()
		}
	}()
	return func() { cancel(); <-done }
}
