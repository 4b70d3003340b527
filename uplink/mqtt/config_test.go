package mqtt_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/iot-producer/iot-producer/agent/config"
	_ "github.com/iot-producer/iot-producer/plugins/all"
	"github.com/iot-producer/iot-producer/uplink"
	"github.com/iot-producer/iot-producer/uplink/mqtt"
)

func section(t *testing.T, c *config.Config) *mqtt.Config {
	t.Helper()
	for _, s := range c.Sinks {
		if s.Section == "mqtt" {
			return s.Settings.(*mqtt.Config)
		}
	}
	t.Fatal("no mqtt section")
	return nil
}

func TestConfig(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "mqtt.pw")
	if err := os.WriteFile(pw, []byte("from a file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("IOTP_TEST_MQTT_BROKER", "ssl://broker.example:8883")
	src := `gateway: {id: gw-9}
producer: {enabled: false}
mqtt:
  enabled: true
  broker: ${IOTP_TEST_MQTT_BROKER}
  topic: plant/{gateway}/{device}/{tag}
  username: gateway
  password_file: ` + pw + `
  batch_size: 50
  worker_count: 2
  payload: sparkplug
  sparkplug: {group_id: plant-1}
`
	c, err := config.Parse([]byte(src), filepath.Join(dir, "c.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	mc := section(t, c)
	o, err := mc.Options(c.Gateway.ID)
	if err != nil {
		t.Fatal(err)
	}
	if o.Password != "from a file" || o.ClientID != "iot-producer-gw-9" || o.TLS == nil || o.MaxInflight != 4000 ||
		o.Sparkplug == nil || o.Sparkplug.EdgeNodeID != "gw-9" || o.Sparkplug.GroupID != "plant-1" {
		t.Errorf("options %+v", o)
	}
	if l := mc.Loop(); l.BatchSize != 50 || l.Workers != 2 {
		t.Errorf("loop settings %+v", l)
	}
	s, err := mc.Build(uplink.SinkEnv{GatewayID: "gw-9"})
	if err != nil {
		t.Fatal(err)
	}
	s.(uplink.Closer).Close()
}

func TestConfigRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, src, want string
	}{
		{"qos 2", "mqtt:\n  qos: 2\n", "mqtt.qos: 2 is out of range: want 0 to 1 (line 2)"},
		{"no group", "mqtt:\n  payload: sparkplug\n", "mqtt.sparkplug.group_id: required with payload sparkplug"},
		{"sparkplug id", "mqtt:\n  payload: sparkplug\n  sparkplug: {group_id: a/b}\n", `mqtt.sparkplug.group_id: "a/b": a Sparkplug id cannot contain /, + or #`},
		{"placeholder", "mqtt:\n  topic: x/{site}\n", "unknown placeholder"},
		{"no host", "mqtt:\n  broker: tcp://\n", "no host"},
		{"inflight", "mqtt:\n  max_inflight: 10\n", "max_inflight: 10 is below batch_size × worker_count × 2 lanes (4000)"},
		{"password alone", "mqtt:\n  password: x\n", "mqtt.username: required with a password"},
		{"unknown key", "mqtt:\n  qos1: 1\n", `mqtt.qos1: unknown key "qos1"; did you mean "qos"?`},
		{"missing CA", "mqtt:\n  enabled: true\n  broker: ssl://h:8883\n  tls: {ca_file: /nonexistent/ca.pem}\n", "ca.pem"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := config.Parse([]byte(tc.src), "c.yaml")
			if err == nil {
				// What the file cannot say, Build finds (validate builds too).
				_, err = section(t, c).Build(uplink.SinkEnv{GatewayID: "gw"})
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want %q", err, tc.want)
			}
		})
	}
}
