//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iot-producer/iot-producer/internal/seqcheck"
)

// cluster is a Kafka cluster a test started for itself with
// scripts/kafka.sh, on its own ports. Tests pick ports below 32768, the
// start of Linux's ephemeral range, so that no client connection of
// anything else on the machine can hold them; kafka.sh also uses P+1000
// (controller) and P+2000 (internal listener).
type cluster struct {
	dir string
	env map[string]string // the KAFKA_* lines kafka.sh printed
}

// startCluster runs `scripts/kafka.sh start --dir DIR args...` and stops
// the cluster when the test ends.
func startCluster(t *testing.T, args ...string) *cluster {
	t.Helper()
	c := &cluster{dir: t.TempDir(), env: map[string]string{}}
	out := c.script(t, append([]string{"start", "--dir", c.dir}, args...)...)
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok && strings.HasPrefix(k, "KAFKA_") {
			c.env[k] = v
		}
	}
	if c.env["KAFKA_BROKERS"] == "" {
		t.Fatalf("kafka.sh start printed no KAFKA_BROKERS:\n%s", out)
	}
	t.Cleanup(func() {
		cmd := exec.Command(scriptPath(t), "stop", "--dir", c.dir, "--purge")
		_ = cmd.Run()
	})
	return c
}

func scriptPath(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs("../../scripts/kafka.sh")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// script runs kafka.sh with args and returns its standard output.
func (c *cluster) script(t *testing.T, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(scriptPath(t), args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kafka.sh %s: %v\n%s%s", strings.Join(args, " "), err, &stdout, &stderr)
	}
	return stdout.String()
}

func (c *cluster) brokers() []string { return strings.Split(c.env["KAFKA_BROKERS"], ",") }

// verifyDelivery reads the topic back and checks that every sequence
// number the gateway committed (the buffer's metadata in dir) arrived, and
// that nothing is left in the buffer (the run ended with stopDrained). It
// also counts the topic's records with kcat, a
// consumer this project did not write, and requires the two counts to
// agree. It returns the report.
func verifyDelivery(t *testing.T, brokers []string, topic, dir string) seqcheck.Report {
	t.Helper()
	requireDrained(t, filepath.Join(dir, "buffer.db"), "kafka")
	checker := seqcheck.New()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := checker.ReadTopic(ctx, brokers, topic); err != nil {
		t.Fatal(err)
	}
	report := checker.Verify(lastSeqs(t, filepath.Join(dir, "buffer.db")))
	t.Logf("delivery to %s: %s (buffer drained)", topic, report)
	if report.Missing != 0 || report.Unexpected != 0 {
		t.Fatalf("lost records: %s", report)
	}
	if kc := kcatCount(t, brokers, topic); kc != checker.Records() {
		t.Fatalf("kcat counts %d records in %s, the Go consumer %d", kc, topic, checker.Records())
	}
	return report
}

// kcatCount counts the records of topic with kcat.
func kcatCount(t *testing.T, brokers []string, topic string) int {
	t.Helper()
	cmd := exec.Command("kcat", "-C", "-b", strings.Join(brokers, ","), "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%o\n")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kcat (Debian package kcat, installed by scripts/ci-deps.sh): %v\n%s", err, &stderr)
	}
	return bytes.Count(out, []byte("\n"))
}

// rateConfig is an agent at 10,000 samples/s (100 devices × 10 tags every
// 100ms) with defaults otherwise.
func rateConfig(t *testing.T, dir string, brokers []string, topic, extra string) string {
	t.Helper()
	return writeConfig(t, dir, fmt.Sprintf(`
gateway: {id: gw-e2e, state_dir: %q}
device: {count: 100, tags_per_device: 10, sample_interval: 100ms, seed: 9}
producer:
  brokers: [%s]
  topic: %s
%s
telemetry: {metrics_listen: "127.0.0.1:0", health_listen: "127.0.0.1:0", pprof_listen: "off"}
`, dir, strings.Join(brokers, ", "), topic, extra))
}

// outage is how long the link or broker stays down (E2E_OUTAGE, default
// 60s as the issue asks).
func outage(t *testing.T) time.Duration {
	t.Helper()
	if v := os.Getenv("E2E_OUTAGE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("E2E_OUTAGE: %v", err)
		}
		return d
	}
	return 60 * time.Second
}

// gauge scrapes a gauge (summed over its series).
func (a *agentProc) gauge(t *testing.T, name string) float64 {
	t.Helper()
	v, err := a.counter(name)
	if err != nil {
		t.Fatalf("scrape %s: %v", name, err)
	}
	return v
}

// waitDrained waits until the agent's Kafka queue is (nearly) empty.
func (a *agentProc) waitDrained(t *testing.T, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for a.gauge(t, "kafka_producer_buffer_depth") > 2000 {
		if time.Since(start) > limit {
			t.Fatalf("backlog not drained after %s (depth %.0f):\n%s", limit, a.gauge(t, "kafka_producer_buffer_depth"), a.tail(40))
		}
		time.Sleep(200 * time.Millisecond) // scrape interval
	}
	return time.Since(start)
}

// tail returns the last n lines of the agent's log.
func (a *agentProc) tail(n int) string {
	lines := strings.Split(strings.TrimRight(a.log(), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
