package agent_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/iot-producer/iot-producer/agent"
	"github.com/iot-producer/iot-producer/agent/config"
	"github.com/iot-producer/iot-producer/agent/ingest"
	"github.com/iot-producer/iot-producer/buffer"
	"github.com/iot-producer/iot-producer/internal/seqcheck"
	_ "github.com/iot-producer/iot-producer/plugins/all"
	"github.com/iot-producer/iot-producer/telemetry"
	"github.com/iot-producer/iot-producer/uplink/kafka"
)

const topic = "iot-test"

// testConfig is a small simulator sending to brokers, with its buffer in
// dir and its telemetry on free loopback ports.
func testConfig(t *testing.T, dir string, brokers []string) *config.Config {
	t.Helper()
	yaml := fmt.Sprintf(`
gateway: {id: gw-test, state_dir: %q}
device: {count: 5, tags_per_device: 4, sample_interval: 5ms, seed: 7}
buffer: {commit_interval: 5ms}
producer:
  brokers: [%q]
  topic: %s
  batch_size: 50
  flush_interval: 5ms
  worker_count: 2
telemetry: {metrics_listen: "127.0.0.1:0", health_listen: "127.0.0.1:0", pprof_listen: "off"}
`, dir, brokers[0], topic)
	cfg, err := config.Parse([]byte(yaml), "test config")
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

func newCluster(t *testing.T) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// runUntil runs an agent until at least n records have been acknowledged
// in this run, then stops it and returns Run's error.
func runUntil(t *testing.T, cfg *config.Config, n float64) {
	t.Helper()
	a, stop := startAgent(t, cfg)
	waitFor(t, fmt.Sprintf("%.0f records acknowledged", n), func() bool {
		return telemetry.Snapshot(a.Metrics()).Sum("kafka_messages_sent_total") >= n
	})
	if err := stop(); err != nil {
		t.Fatalf("agent.Run: %v", err)
	}
}

// addBuffered adds every record still queued for Kafka to c.
func addBuffered(t *testing.T, dir string, c *seqcheck.Checker) int {
	t.Helper()
	left, _, err := c.AddBuffer(filepath.Join(dir, "buffer.db"), "kafka")
	if err != nil {
		t.Fatal(err)
	}
	return left
}

func lastSeqs(t *testing.T, dir string) map[ingest.Series]uint64 {
	t.Helper()
	buf, err := buffer.Open(filepath.Join(dir, "buffer.db"), buffer.Options{Queues: []string{"kafka"}})
	if err != nil {
		t.Fatal(err)
	}
	defer buf.Close()
	last, err := ingest.LastSeqs(buf)
	if err != nil {
		t.Fatal(err)
	}
	return last
}

// TestThinPathKeepsEverySequenceAcrossRestarts runs the whole pipeline
// against kfake three times on one buffer and proves, by reading the topic
// back, that every committed sequence number of every series arrived.
func TestThinPathKeepsEverySequenceAcrossRestarts(t *testing.T) {
	checkLeaks(t)
	cluster := newCluster(t)
	dir := t.TempDir()
	cfg := testConfig(t, dir, cluster.ListenAddrs())

	var lastTotal uint64
	for run := 1; run <= 3; run++ {
		runUntil(t, cfg, 500)
		last := lastSeqs(t, dir)
		if len(last) != 20 {
			t.Fatalf("run %d: %d series in the buffer's metadata, want 20", run, len(last))
		}
		var total uint64
		for _, n := range last {
			total += n
		}
		if total <= lastTotal {
			t.Fatalf("run %d: sequence numbers did not advance (%d, before %d)", run, total, lastTotal)
		}
		lastTotal = total
	}

	checker := seqcheck.New()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := checker.ReadTopic(ctx, cluster.ListenAddrs(), topic); err != nil {
		t.Fatal(err)
	}
	// What the last run committed but had not sent when it stopped stays in
	// the buffer for the next run: it counts as kept, not lost.
	left := addBuffered(t, dir, checker)
	report := checker.Verify(lastSeqs(t, dir))
	t.Logf("%d records still in the buffer", left)
	t.Logf("delivery: %s", report)
	if report.Missing != 0 || report.Unexpected != 0 {
		t.Fatalf("delivery broken: %s", report)
	}
	if report.Expected < 1500 {
		t.Fatalf("only %d sequence numbers expected; the test did too little", report.Expected)
	}
}

// TestBrokerDownKeepsSamplesInTheBuffer runs the agent with no broker
// reachable: samples must be committed and wait in the buffer.
func TestBrokerDownKeepsSamplesInTheBuffer(t *testing.T) {
	checkLeaks(t)
	dir := t.TempDir()
	cfg := testConfig(t, dir, []string{"127.0.0.1:1"}) // nothing listens on port 1
	ready := make(chan struct{})
	var logs bytes.Buffer
	a, err := agent.New(cfg, agent.Options{
		Logger:          slog.New(slog.NewTextHandler(&safeWriter{w: &logs}, nil)),
		OnReady:         func() { close(ready) },
		ShutdownTimeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("agent stopped before it was ready: %v", err)
	}
	waitFor(t, "200 records in the queue", func() bool { return a.Buffer().Queue("kafka").Stats().Records >= 200 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	last := lastSeqs(t, dir)
	var committed uint64
	for _, n := range last {
		committed += n
	}
	buf, err := buffer.Open(filepath.Join(dir, "buffer.db"), buffer.Options{Queues: []string{"kafka"}})
	if err != nil {
		t.Fatal(err)
	}
	defer buf.Close()
	if got := buf.Queue("kafka").Stats().Records; uint64(got) != committed {
		t.Fatalf("buffer holds %d records, %d were committed: with no broker every one must still be there", got, committed)
	}
}

// TestConfigErrorsStopNew checks that New refuses what it cannot build.
func TestConfigErrorsStopNew(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir, []string{"127.0.0.1:1"})
	k := cfg.Sink("producer").Settings.(*kafka.Config)
	k.TLS = config.TLS{Enabled: true, CAFile: filepath.Join(dir, "no-such-ca.pem")}
	_, err := agent.New(cfg, agent.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err == nil || !strings.Contains(err.Error(), "producer") || !strings.Contains(err.Error(), "no-such-ca.pem") {
		t.Fatalf("New with a missing CA file: %v; want an error naming producer and the file", err)
	}
	if err := agent.Check(cfg); err == nil || err.Error() != func() string { _, e := agent.New(cfg, agent.Options{}); return e.Error() }() {
		t.Errorf("Check and New disagree: %v", err)
	}
	// The buffer must have been released: a second open succeeds at once.
	buf, err := buffer.Open(filepath.Join(dir, "buffer.db"), buffer.Options{Queues: []string{"kafka"}, LockTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatalf("buffer still locked after a failed New: %v", err)
	}
	buf.Close()
}
