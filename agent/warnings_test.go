package agent_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/iot-producer/iot-producer/agent/config"
	"github.com/iot-producer/iot-producer/uplink/kafka"
)

// TestInsecureSettingsShownInReady starts an agent on a file without
// insecure settings, then reloads one that skips certificate checks: /ready's
// warnings follow the running configuration.
func TestInsecureSettingsShownInReady(t *testing.T) {
	checkLeaks(t)
	broker := newCluster(t).ListenAddrs()[0]
	dir := t.TempDir()
	parse := func(tls string) *config.Config {
		t.Helper()
		cfg, err := config.Parse([]byte(fmt.Sprintf(`
gateway: {id: gw-test, state_dir: %q}
device: {enabled: true, count: 1, tags_per_device: 1, sample_interval: 10ms}
producer: {brokers: [%q], topic: %s%s}
telemetry: {metrics_listen: "127.0.0.1:0", health_listen: "127.0.0.1:0", pprof_listen: "off"}
`, dir, broker, topic, tls)), "warnings test")
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	a, stop := startAgent(t, parse(""))
	defer func() {
		if err := stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	if w := a.Health().Warnings(); w != nil {
		t.Errorf("warnings %q without insecure settings", w)
	}
	next := parse(", tls: {enabled: true, insecure_skip_verify: true}")
	if !next.Sink("producer").Settings.(*kafka.Config).TLS.InsecureSkipVerify {
		t.Fatal("test file does not set insecure_skip_verify")
	}
	if _, err := a.Reload(next); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	want := []string{"producer.tls.insecure_skip_verify: server certificates are not verified"}
	if w := a.Health().Warnings(); !slices.Equal(w, want) {
		t.Errorf("warnings after the reload %q, want %q", w, want)
	}
}
