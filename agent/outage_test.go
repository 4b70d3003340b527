package agent_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/iot-producer/iot-producer/agent/config"
	"github.com/iot-producer/iot-producer/internal/faultproxy/kfakeproxy"
	"github.com/iot-producer/iot-producer/internal/seqcheck"
	"github.com/iot-producer/iot-producer/telemetry"
)

// TestOutagesLoseNothing runs the agent against kfake behind a fault
// proxy, cuts (resets) or stalls (blackholes) the link for a while, then
// restores it: the agent must show the outage in /ready and the uplink
// state, and once the link is back every committed sequence number must be
// in the topic.
func TestOutagesLoseNothing(t *testing.T) {
	cases := []struct {
		name  string
		fault func(c *kfakeproxy.Cluster)
	}{
		{"cut", func(c *kfakeproxy.Cluster) { c.Cut() }},
		{"stall", func(c *kfakeproxy.Cluster) { c.Stall() }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			checkLeaks(t)
			cluster, err := kfakeproxy.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, topic))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(cluster.Close)
			dir := t.TempDir()
			cfg, err := config.Parse([]byte(fmt.Sprintf(`
gateway: {id: gw-outage, state_dir: %q}
device: {count: 10, tags_per_device: 4, sample_interval: 10ms, seed: 3}
buffer: {commit_interval: 5ms}
producer:
  brokers: [%q]
  topic: %s
  batch_size: 200
  flush_interval: 5ms
  delivery_timeout: 1s
  live_window: 500ms
telemetry: {metrics_listen: "127.0.0.1:0", health_listen: "127.0.0.1:0", pprof_listen: "off"}
`, dir, cluster.ListenAddrs()[0], topic)), "outage test")
			if err != nil {
				t.Fatal(err)
			}
			a, stop := startAgent(t, cfg)
			sent := func() float64 { return telemetry.Snapshot(a.Metrics()).Sum("kafka_messages_sent_total") }
			waitFor(t, "records acknowledged before the fault", func() bool { return sent() >= 1000 })

			tc.fault(cluster)
			waitFor(t, "the sink to report the outage in /ready", func() bool {
				for _, c := range a.Health().Snapshot() {
					if c.Name == "sink/kafka" && c.State == telemetry.StateDegraded && strings.Contains(c.Detail, "backing off") {
						return true
					}
				}
				return false
			})
			if !a.Health().Ready() {
				t.Fatal("an unreachable broker must leave the gateway ready (degraded): samples still go to the buffer")
			}
			depth := func() float64 {
				return float64(a.Buffer().Queue("kafka").Stats().Records)
			}
			waitFor(t, "a backlog to build up", func() bool { return depth() >= 2000 })

			cluster.Restore()
			before := sent()
			waitFor(t, "the backlog to drain", func() bool { return sent() > before+2000 && depth() < 500 })
			waitFor(t, "the sink to report it is sending again", func() bool {
				for _, c := range a.Health().Snapshot() {
					if c.Name == "sink/kafka" {
						return c.State == telemetry.StateOK
					}
				}
				return false
			})
			if err := stop(); err != nil {
				t.Fatal(err)
			}

			checker := seqcheck.New()
			left := addBuffered(t, dir, checker)
			rctx, rcancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer rcancel()
			if err := checker.ReadTopic(rctx, cluster.ListenAddrs(), topic); err != nil {
				t.Fatal(err)
			}
			report := checker.Verify(lastSeqs(t, dir))
			t.Logf("%s: %s (%d still buffered)", tc.name, report, left)
			if report.Missing != 0 || report.Unexpected != 0 {
				t.Fatalf("lost records: %s", report)
			}
		})
	}
}

// waitFor polls cond every 5ms for up to two minutes: a bound for a stuck
// agent, generous for a loaded machine, not a speed check.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitForOr(t, what, cond, nil)
}

// waitForOr is waitFor that calls show, when set, before failing, to say
// what it saw.
func waitForOr(t *testing.T, what string, cond func() bool, show func()) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			if show != nil {
				show()
			}
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling the condition
	}
}

// tlog writes the agent's log to the test's log, shown when it fails.
type tlog struct{ t *testing.T }

func (w tlog) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
