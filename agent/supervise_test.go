package agent_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/iot-producer/iot-producer/agent"
	"github.com/iot-producer/iot-producer/agent/config"
	"github.com/iot-producer/iot-producer/telemetry"
)

// TestStuckSinkIsSeen: the broker takes produce requests and never
// answers, so the send loop has work and makes no progress (nothing
// acknowledged, nothing failed yet). Stalled — which the watchdog pings
// only while it is empty — must name the sink; once the broker answers
// again it must be empty again.
func TestStuckSinkIsSeen(t *testing.T) {
	checkLeaks(t)
	cluster, swallow := swallowingCluster(t)
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
gateway: {id: gw-stuck, state_dir: %q}
device: {count: 2, tags_per_device: 2, sample_interval: 10ms}
producer: {brokers: [%q], topic: %s, delivery_timeout: 10m}
telemetry: {metrics_listen: "127.0.0.1:0", health_listen: "127.0.0.1:0", pprof_listen: "off"}
`, t.TempDir(), cluster.ListenAddrs()[0], topic)), "stuck test")
	if err != nil {
		t.Fatal(err)
	}
	a, stop := startAgent(t, cfg)
	const window = 300 * time.Millisecond
	waitFor(t, "records sent and nothing stalled", func() bool {
		return telemetry.Snapshot(a.Metrics()).Sum("kafka_messages_sent_total") > 0 && len(a.Stalled(window)) == 0
	})
	swallow.Store(true)
	waitFor(t, "the stuck send loop to be seen", func() bool {
		s := a.Stalled(window)
		return len(s) == 1 && strings.HasPrefix(s[0], "sink/kafka made no progress")
	})
	t.Logf("stalled: %v", a.Stalled(window))
	swallow.Store(false)
	if err := stop(); err != nil {
		t.Log(err) // the swallowed batches may outlive the shutdown grace
	}
}

// faultyNames numbers the faulty devices of the tests.
var faultyNames atomic.Int64

// swallowingCluster starts a one-broker kfake cluster that takes produce
// requests without ever answering them while the returned flag is set.
func swallowingCluster(t *testing.T) (*kfake.Cluster, *atomic.Bool) {
	t.Helper()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	swallow := new(atomic.Bool)
	cluster.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		if swallow.Load() {
			return nil, nil, true // taken, never answered
		}
		return nil, nil, false
	})
	return cluster, swallow
}

// TestStalledSinkIsRestarted: the broker stops answering produce requests,
// so the send loop has records and makes no progress. The agent must
// restart it by itself — closing the client that holds the unanswered
// batches and building a new one — and show it outside: counted in
// /metrics, in /ready with the reason, and in the log. Once the broker
// answers again the records flow and the buffer drains.
func TestStalledSinkIsRestarted(t *testing.T) {
	checkLeaks(t)
	cluster, swallow := swallowingCluster(t)
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
gateway: {id: gw-stall, state_dir: %q}
plcs: [{name: cnt, driver: faulty, fault: fail, poll_interval: 20ms}]
device: {enabled: false}
producer: {brokers: [%q], topic: %s, delivery_timeout: 10m}
telemetry: {metrics_listen: "127.0.0.1:0", health_listen: "127.0.0.1:0", pprof_listen: "off"}
`, t.TempDir(), cluster.ListenAddrs()[0], topic)), "stalled sink test")
	if err != nil {
		t.Fatal(err)
	}
	a, logs, stop := startAgentOpts(t, cfg, agent.Options{StallTimeout: 500 * time.Millisecond, StopWait: 500 * time.Millisecond})
	ext := outside{t: t, a: a}
	waitFor(t, "records sent", func() bool { return ext.metric("kafka_messages_sent_total", `sink="kafka"`) > 0 })
	swallow.Store(true)
	waitForOr(t, "the stalled send loop restarted, in /metrics", func() bool {
		return ext.metric("iot_component_restarts_total", `component="sink/kafka"`) >= 1
	}, func() { t.Logf("/ready: %+v", ext.ready("sink/kafka")) })
	c := ext.ready("sink/kafka")
	if c.Restarts < 1 || c.LastRestart == nil || !strings.Contains(c.LastRestart.Reason, "made no progress while it had work") {
		t.Fatalf("/ready does not show the restart: %+v", c)
	}
	t.Logf("/ready: %s %q restarts=%d last=%+v", c.State, c.Detail, c.Restarts, *c.LastRestart)
	for _, line := range []string{
		`msg="send loop made no progress while it had work; restarting it" component=sink/kafka`,
		`msg="send loop restarted" component=sink/kafka`,
	} {
		if !strings.Contains(logs.String(), line) {
			t.Errorf("the log lacks %s", line)
		}
	}
	swallow.Store(false)
	sent := ext.metric("kafka_messages_sent_total", `sink="kafka"`)
	waitFor(t, "records sent again and the sink ok", func() bool {
		return ext.metric("kafka_messages_sent_total", `sink="kafka"`) > sent && ext.ready("sink/kafka").State == telemetry.StateOK
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// TestSupervisedDrivers: a driver that fails, one that stops polling and
// one that stops polling and will not stop when told, each in its first
// run. The first two must be restarted by the agent (counted in /metrics,
// in /ready with the reason, in the log) and poll again; the third must
// be reported stuck — /ready down, the log, Stalled naming it so that the
// watchdog is no longer pinged — and restarted once it ends after all.
func TestSupervisedDrivers(t *testing.T) {
	cases := []struct {
		fault  string
		reason string // in /ready's last_restart
		stuck  bool
		// starter: the driver is a drivers.Starter (as Modbus drivers
		// are), started by the agent without a goroutine of its own.
		starter bool
	}{
		{fault: "fail", reason: "injected failure: the device's port vanished"},
		{fault: "stall", reason: "made no progress while it had work"},
		{fault: "stuck", reason: "made no progress while it had work", stuck: true},
		{fault: "fail", reason: "injected failure: the device's port vanished", starter: true},
		{fault: "stall", reason: "made no progress while it had work", starter: true},
		{fault: "stuck", reason: "made no progress while it had work", stuck: true, starter: true},
		{fault: "nostart", reason: "injected failure: the device's port cannot be opened", starter: true},
	}
	for _, tc := range cases {
		name := tc.fault
		if tc.starter {
			name += "/starter"
		}
		t.Run(name, func(t *testing.T) {
			checkLeaks(t)
			cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(cluster.Close)
			// A name of its own for each run: the faulty driver misbehaves in
			// the first run of a device name (go test -count).
			device := fmt.Sprintf("dev-%s-%d", tc.fault, faultyNames.Add(1))
			component := "source/faulty:" + device
			label := fmt.Sprintf("component=%q", component)
			cfg, err := config.Parse([]byte(fmt.Sprintf(`
gateway: {id: gw-sup, state_dir: %q}
plcs: [{name: %s, driver: faulty, fault: %s, starter: %t, poll_interval: 10ms}]
device: {enabled: false}
producer: {brokers: [%q], topic: %s}
telemetry: {metrics_listen: "127.0.0.1:0", health_listen: "127.0.0.1:0", pprof_listen: "off"}
`, t.TempDir(), device, tc.fault, tc.starter, cluster.ListenAddrs()[0], topic)), "supervised driver test")
			if err != nil {
				t.Fatal(err)
			}
			const stallTimeout = 300 * time.Millisecond
			a, logs, stop := startAgentOpts(t, cfg, agent.Options{StallTimeout: stallTimeout, StopWait: 300 * time.Millisecond})
			t.Cleanup(func() { releaseFaulty(device) })
			ext := outside{t: t, a: a}
			if tc.stuck {
				waitForOr(t, "the stuck driver in /ready", func() bool {
					c := ext.ready(component)
					return c.State == telemetry.StateDown && strings.Contains(c.Detail, "STUCK")
				}, func() { t.Logf("/ready: %+v", ext.ready(component)) })
				stalled := a.Stalled(stallTimeout)
				if len(stalled) != 1 || !strings.HasPrefix(stalled[0], component+" is stuck") {
					t.Fatalf("Stalled (what the watchdog reads) = %q, want the stuck driver", stalled)
				}
				if !strings.Contains(logs.String(), `msg="driver is stuck: told to stop after making no progress, it did not;`) {
					t.Error("the log does not say the driver is stuck")
				}
				if n := ext.metric("iot_component_restarts_total", label); n != 0 {
					t.Fatalf("%v restarts counted for a driver that never stopped", n)
				}
				releaseFaulty(device) // it ends after all: the agent restarts it
			}
			waitForOr(t, "the restart in /metrics", func() bool {
				return ext.metric("iot_component_restarts_total", label) >= 1
			}, func() { t.Logf("/ready: %+v", ext.ready(component)) })
			c := ext.ready(component)
			if c.Restarts < 1 || c.LastRestart == nil || !strings.Contains(c.LastRestart.Reason, tc.reason) {
				t.Fatalf("/ready does not show the restart: %+v", c)
			}
			if !strings.Contains(logs.String(), `msg="driver restarted" component=`+component) {
				t.Error("the log does not say the driver was restarted")
			}
			generated := ext.metric("device_data_generated_total", fmt.Sprintf("source=%q", "faulty:"+device))
			waitFor(t, "the driver polling again, nothing stalled", func() bool {
				return ext.metric("device_data_generated_total", fmt.Sprintf("source=%q", "faulty:"+device)) > generated+3 &&
					len(a.Stalled(stallTimeout)) == 0 && ext.ready(component).State == telemetry.StateOK
			})
			if err := stop(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// startAgentOpts is startAgent with opts (their Logger and OnReady are
// set here); the log goes to the test's log and to the returned buffer.
func startAgentOpts(t *testing.T, cfg *config.Config, opts agent.Options) (*agent.Agent, *logBuffer, func() error) {
	t.Helper()
	logs := &logBuffer{}
	ready := make(chan struct{})
	opts.Logger = slog.New(slog.NewTextHandler(io.MultiWriter(tlog{t}, logs), nil))
	opts.OnReady = func() { close(ready) }
	a, err := agent.New(cfg, opts)
	if err != nil {
		t.Fatalf("agent.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("agent stopped before it was ready: %v", err)
	}
	return a, logs, func() error { cancel(); return <-done }
}

// logBuffer keeps the agent's log, written from its goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// outside reads the agent as an operator does: /metrics and /ready over
// HTTP.
type outside struct {
	t *testing.T
	a *agent.Agent
}

// metric returns the value of the series name{labels} in /metrics, 0 when
// it is absent.
func (o outside) metric(name, labels string) float64 {
	o.t.Helper()
	resp, err := http.Get("http://" + o.a.Addrs().Metrics + "/metrics")
	if err != nil {
		o.t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	prefix := name + "{" + labels + "} "
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), prefix); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				o.t.Fatalf("/metrics: %s: %v", sc.Text(), err)
			}
			return f
		}
	}
	return 0
}

// ready returns component's entry of /ready; a zero one when absent.
func (o outside) ready(component string) telemetry.ComponentStatus {
	o.t.Helper()
	resp, err := http.Get("http://" + o.a.Addrs().Health + "/ready")
	if err != nil {
		o.t.Fatalf("GET /ready: %v", err)
	}
	defer resp.Body.Close()
	var body struct {
		Components []telemetry.ComponentStatus `json:"components"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		o.t.Fatalf("/ready: %v", err)
	}
	for _, c := range body.Components {
		if c.Name == component {
			return c
		}
	}
	return telemetry.ComponentStatus{}
}
