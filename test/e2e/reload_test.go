//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"
)

// TestReloadOnSIGHUP follows the ops manual: change the file, send SIGHUP,
// see "config reloaded" in the log; a broken file is refused and the agent
// keeps running on the old configuration. The reloads lose nothing: every
// sequence number of every series, the new device's included, arrives and
// the buffer ends drained.
func TestReloadOnSIGHUP(t *testing.T) {
	brokers := kafkaBrokers(t)
	dir := t.TempDir()
	topic := fmt.Sprintf("e2e-reload-%d", time.Now().UnixNano())
	conf := func(devices int) string {
		return fmt.Sprintf(`
gateway: {id: gw-reload, state_dir: %q}
device: {count: %d, tags_per_device: 2, sample_interval: 20ms}
producer: {brokers: [%s], topic: %s}
telemetry: {metrics_listen: "127.0.0.1:0", health_listen: "127.0.0.1:0", pprof_listen: "off"}
`, dir, devices, brokers[0], topic)
	}
	path := writeConfig(t, dir, conf(2))
	a := startAgent(t, path)
	a.waitAcked(t, 100, 30*time.Second)

	if err := os.WriteFile(path, []byte("producer: {batch_size: lots}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := a.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	a.waitLog(t, "config reload refused", 10*time.Second)
	a.waitLog(t, "producer.batch_size", time.Second)

	if err := os.WriteFile(path, []byte(conf(3)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := a.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	a.waitLog(t, "config reloaded", 30*time.Second)
	a.refreshAddrs(t)
	a.waitAcked(t, a.gauge(t, "kafka_messages_sent_total")+100, 30*time.Second)
	a.stopDrained(t, 2*time.Minute)
	r := verifyDelivery(t, brokers, topic, dir)
	if r.Series != 6 {
		t.Fatalf("%d series committed, want 6 (3 devices × 2 tags)", r.Series)
	}
}
