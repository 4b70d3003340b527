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
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/iot-producer/iot-producer/agent"
	"github.com/iot-producer/iot-producer/agent/config"
	"github.com/iot-producer/iot-producer/telemetry"
)

func cmdRun(args []string, _, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", config.DefaultPath(), "configuration file")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", *path, err)
		return exitUsage
	}
	log, err := telemetry.NewLogger(cfg.Log.Level, cfg.Log.Format, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "%s: log: %v\n", *path, err)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	sv := supervisor{path: *path, log: log, stderr: stderr}
	if err := sv.run(ctx, cfg, hup); err != nil {
		log.Error("agent failed", "err", err)
		return exitFailure
	}
	return exitOK
}

// supervisor runs one agent at a time: on SIGHUP it validates the file
// again and, when it is good, stops the running agent in order and starts
// one with the new configuration. A bad file is logged and ignored.
type supervisor struct {
	path   string
	log    *slog.Logger
	stderr io.Writer
}

func (s *supervisor) run(ctx context.Context, cfg *config.Config, hup <-chan os.Signal) error {
	stopWatchdog := startWatchdog(ctx, s.log)
	defer stopWatchdog()
	first := true
	for {
		a, err := agent.New(cfg, agent.Options{
			Logger:  s.log,
			Version: version,
			OnReady: func() { notify(s.log, daemon.SdNotifyReady) },
		})
		if err != nil {
			return err
		}
		if !first {
			s.log.Info("config reloaded", "file", s.path)
		}
		first = false
		agentCtx, stopAgent := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- a.Run(agentCtx) }()

		var next *config.Config
	wait:
		for {
			select {
			case err := <-done:
				stopAgent()
				if ctx.Err() == nil && err == nil {
					err = errors.New("agent stopped unexpectedly")
				}
				notify(s.log, daemon.SdNotifyStopping)
				return err
			case <-hup:
				c, err := config.Load(s.path)
				if err != nil {
					s.log.Error("config reload refused; keeping the running configuration", "file", s.path, "err", err)
					continue
				}
				next = c
				break wait
			}
		}
		notify(s.log, daemon.SdNotifyReloading)
		stopAgent()
		if err := <-done; err != nil {
			s.log.Error("stopping for reload", "err", err)
		}
		cfg = next
	}
}

func notify(log *slog.Logger, state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		log.Warn("systemd notify failed", "state", state, "err", err)
	}
}

// startWatchdog pings systemd's watchdog at half its interval while ctx
// lives, when the unit has WatchdogSec set.
func startWatchdog(ctx context.Context, log *slog.Logger) (stop func()) {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil || interval == 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(interval / 2)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				notify(log, daemon.SdNotifyWatchdog)
			}
		}
	}()
	return func() { cancel(); <-done }
}
