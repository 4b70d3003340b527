package agent_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iot-producer/iot-producer/agent"
	"github.com/iot-producer/iot-producer/agent/config"
	"github.com/iot-producer/iot-producer/internal/seqcheck"
	"github.com/iot-producer/iot-producer/telemetry"
	"github.com/iot-producer/iot-producer/uplink/kafka"
)

// reloadConfig is two Modbus PLCs behind one endpoint and the simulator;
// pollA is PLC a's poll interval, extra is appended to the file.
func reloadConfig(t *testing.T, dir, endpoint, broker, pollA, extra string) *config.Config {
	t.Helper()
	src := fmt.Sprintf(`
gateway: {id: gw-test, state_dir: %q}
device: {count: 2, tags_per_device: 2, sample_interval: 10ms}
producer: {brokers: [%q], topic: %s, flush_interval: 5ms}
telemetry: {metrics_listen: "127.0.0.1:0", health_listen: "127.0.0.1:0", pprof_listen: "off"}
plcs:
  - {name: a, driver: modbus, endpoint: %q, poll_interval: %s, tags: [{name: speed, address: "40001", type: float32, byte_order: CDAB}]}
  - {name: b, driver: modbus, endpoint: %q, poll_interval: 20ms, tags: [{name: speed, address: "40001", type: float32, byte_order: CDAB}]}
%s`, dir, broker, topic, endpoint, pollA, endpoint, extra)
	cfg, err := config.Parse([]byte(src), "reload test")
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	device := true
	cfg.Device.Enabled = &device
	return cfg
}

// TestReloadRestartsOnlyWhatChanged reloads a running agent: a change of
// one PLC restarts that driver alone while the other PLC and the
// simulator keep sending; a file that cannot be built and a change that
// needs a restart leave everything running; and no series loses a
// sequence number through all of it.
func TestReloadRestartsOnlyWhatChanged(t *testing.T) {
	checkLeaks(t)
	endpoint, _ := serveModbus(t)
	cluster := newCluster(t)
	broker := cluster.ListenAddrs()[0]
	dir := t.TempDir()
	log := &safeWriter{w: &strings.Builder{}}
	logText := func() string { log.mu.Lock(); defer log.mu.Unlock(); return log.w.(*strings.Builder).String() }

	cfg := reloadConfig(t, dir, endpoint, broker, "20ms", "")
	ready := make(chan struct{})
	a, err := agent.New(cfg, agent.Options{Logger: slog.New(slog.NewTextHandler(log, nil)), OnReady: func() { close(ready) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	<-ready
	generated := func(source string) float64 {
		return telemetry.Snapshot(a.Metrics()).Get("device_data_generated_total", "source", source)
	}
	waitGrow := func(source string) {
		t.Helper()
		from := generated(source)
		waitFor(t, source+" samples flowing", func() bool { return generated(source) > from+5 })
	}
	waitGrow("modbus:b")

	// One PLC changes: it alone restarts.
	changed, err := a.Reload(reloadConfig(t, dir, endpoint, broker, "30ms", ""))
	if err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if len(changed) != 1 || changed[0] != "plcs[a]" {
		t.Errorf("changed = %q, want [plcs[a]]", changed)
	}
	if l := logText(); !strings.Contains(l, `source stopped for the reload" source=modbus:a`) ||
		strings.Contains(l, "source=modbus:b") || strings.Contains(l, "source=simulator") {
		t.Errorf("the reload restarted more than PLC a:\n%s", l)
	}
	for _, s := range []string{"modbus:a", "modbus:b", "simulator:sim"} {
		waitGrow(s)
	}

	// A sink section that cannot be built: refused, nothing stops.
	bad := reloadConfig(t, dir, endpoint, broker, "30ms", "")
	k := bad.Sink("producer").Settings
	if err := setCAFile(k, filepath.Join(dir, "missing-ca.pem")); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Reload(bad); err == nil || !strings.Contains(err.Error(), "missing-ca.pem") {
		t.Errorf("Reload with a missing CA file: %v", err)
	}
	waitGrow("modbus:b")

	// A change the running pipeline cannot take: ErrRestart, nothing stops.
	moved := reloadConfig(t, dir, endpoint, broker, "30ms", "")
	moved.Telemetry.MetricsListen = "127.0.0.1:1"
	if _, err := a.Reload(moved); !errors.Is(err, agent.ErrRestart) {
		t.Errorf("Reload of telemetry: %v, want ErrRestart", err)
	}
	waitGrow("modbus:a")

	// A sink change restarts its send loop on the same queue.
	faster := reloadConfig(t, dir, endpoint, broker, "30ms", "")
	if err := setBatchSize(faster.Sink("producer").Settings, 20); err != nil {
		t.Fatal(err)
	}
	if changed, err := a.Reload(faster); err != nil || len(changed) != 1 || changed[0] != "producer" {
		t.Fatalf("Reload of producer: %q, %v", changed, err)
	}
	sent := telemetry.Snapshot(a.Metrics()).Sum("kafka_messages_sent_total")
	waitFor(t, "records sent after the sink restarted", func() bool {
		return telemetry.Snapshot(a.Metrics()).Sum("kafka_messages_sent_total") > sent+50
	})

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	checker := seqcheck.New()
	rctx, rcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer rcancel()
	if err := checker.ReadTopic(rctx, cluster.ListenAddrs(), topic); err != nil {
		t.Fatal(err)
	}
	addBuffered(t, dir, checker)
	report := checker.Verify(lastSeqs(t, dir))
	t.Logf("delivery: %s", report)
	if report.Missing != 0 || report.Unexpected != 0 || report.Expected < 100 {
		t.Fatalf("delivery across reloads: %s", report)
	}
}

func setCAFile(s config.Settings, file string) error {
	k, ok := s.(*kafka.Config)
	if !ok {
		return fmt.Errorf("producer settings are %T", s)
	}
	k.TLS = config.TLS{Enabled: true, CAFile: file}
	return nil
}

func setBatchSize(s config.Settings, n int) error {
	k, ok := s.(*kafka.Config)
	if !ok {
		return fmt.Errorf("producer settings are %T", s)
	}
	k.BatchSize = n
	return nil
}
