package main

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestWatchdogPingsOnlyWhileNothingIsStalled: the pings go on while the
// pipeline makes progress, stop (once said why) while a component is
// stalled, and resume when it moves again.
func TestWatchdogPingsOnlyWhileNothingIsStalled(t *testing.T) {
	var stuck atomic.Bool
	var checks, pings atomic.Int64
	var mu sync.Mutex
	var said [][]string
	withheldCh := make(chan struct{}, 1)
	pinged := make(chan struct{}, 1)
	stalled := func(window time.Duration) []string {
		checks.Add(1)
		if window != 20*time.Millisecond {
			t.Errorf("window %s, want half the interval", window)
		}
		if stuck.Load() {
			return []string{"sink/kafka made no progress"}
		}
		return nil
	}
	stop := runWatchdog(context.Background(), 40*time.Millisecond, stalled,
		func() {
			pings.Add(1)
			select {
			case pinged <- struct{}{}:
			default:
			}
		},
		func(s []string) {
			mu.Lock()
			said = append(said, s)
			mu.Unlock()
			withheldCh <- struct{}{}
		})
	defer stop()

	for range 3 {
		<-pinged
	}
	stuck.Store(true)
	before := pings.Load()
	<-withheldCh
	seen := checks.Load()
	for checks.Load() < seen+5 { // five more ticks, all stalled
		time.Sleep(time.Millisecond) // polling the check counter
	}
	if got := pings.Load(); got > before+1 {
		// At most the one ping of a tick that checked before the switch.
		t.Fatalf("%d pings while stalled", got-before)
	}
	mu.Lock()
	if len(said) != 1 {
		t.Fatalf("the stall was reported %d times, want once: %v", len(said), said)
	}
	mu.Unlock()
	stuck.Store(false)
	<-pinged
	<-pinged
}

// TestStallTimeoutIsHalfTheWatchdog: under systemd's watchdog the agent
// restarts a stalled component after half of WatchdogSec — when it would
// stop pinging — and otherwise keeps its own default (0 here).
func TestStallTimeoutIsHalfTheWatchdog(t *testing.T) {
	t.Setenv("WATCHDOG_PID", "")
	t.Setenv("WATCHDOG_USEC", "")
	if got := stallTimeout(); got != 0 {
		t.Errorf("without a watchdog: %s, want 0 (the agent's default)", got)
	}
	t.Setenv("WATCHDOG_USEC", "30000000")
	if got := stallTimeout(); got != 15*time.Second {
		t.Errorf("WatchdogSec=30s: %s, want 15s", got)
	}
}
