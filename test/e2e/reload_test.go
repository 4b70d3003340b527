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
// keeps running on the old configuration.
func TestReloadOnSIGHUP(t *testing.T) {
	brokers := kafkaBrokers(t)
	dir := t.TempDir()
	conf := func(devices int) string {
		return fmt.Sprintf(`
gateway: {id: gw-reload, state_dir: %q}
device: {count: %d, tags_per_device: 2, sample_interval: 20ms}
producer: {brokers: [%s], topic: e2e-reload-%d}
telemetry: {metrics_listen: "127.0.0.1:0", health_listen: "127.0.0.1:0", pprof_listen: "off"}
`, dir, devices, brokers[0], time.Now().UnixNano())
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
	// The new pipeline has new telemetry listeners: find them, then see it
	// send.
	a.refreshAddrs(t)
	a.waitAcked(t, 100, 30*time.Second)
	if code := a.stop(t, syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Fatalf("exit %d after SIGTERM:\n%s", code, a.log())
	}
}
