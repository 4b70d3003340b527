package config_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	. "github.com/iot-producer/iot-producer/agent/config"
)

func TestRedactURLs(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"tcp://user:pw@host:1883", "tcp://user:REDACTED@host:1883"},
		{"ssl://token@host:8883", "ssl://REDACTED@host:8883"},
		{"tcp://host:1883", "tcp://host:1883"},
		{"host:9092", "host:9092"},
		{"user@example.com", "user@example.com"},
		{`"mqtts://u:p@ss@h/x?y=1": bad`, `"mqtts://u:REDACTED@h/x?y=1": bad`},
		{"a tcp://a:1@h and ws://b:2@k", "a tcp://a:REDACTED@h and ws://b:REDACTED@k"},
		{"opc.tcp://op:secret@plc:4840/path", "opc.tcp://op:REDACTED@plc:4840/path"},
		{"", ""},
	} {
		if got := RedactURLs(tt.in); got != tt.want {
			t.Errorf("RedactURLs(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestURLCredentialsNeverShown puts a canary password inside URLs and
// requires that neither /config's copy nor validation errors show it.
func TestURLCredentialsNeverShown(t *testing.T) {
	const canary = "CANARY-9f3e"
	c := mustParse(t, "device: {count: 1}\n")
	url := "tcp://plant:" + canary + "@broker.local:1883"
	producer(c).Brokers = []string{url} // a plug-in's string, as an MQTT broker URL would be
	b, err := json.Marshal(c.Redacted())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), canary) {
		t.Errorf("/config shows the URL's password: %s", b)
	}
	if !strings.Contains(string(b), "tcp://plant:REDACTED@broker.local:1883") {
		t.Errorf("/config lost the rest of the URL: %s", b)
	}
	if producer(c).Brokers[0] != url {
		t.Errorf("Redacted changed the original: %q", producer(c).Brokers[0])
	}

	for _, src := range []string{
		"producer:\n  brokers: [\"tcp://plant:" + canary + "@broker.local:9092\"]\n",
		"producer:\n  brokers: \"kafka://plant:" + canary + "@\"\n",
		"producer:\n  brokers: [\"sasl://" + canary + "@b:9092\", \"b:x\"]\n",
	} {
		for _, line := range errLines(t, src) {
			if strings.Contains(line, canary) {
				t.Errorf("validation error shows the URL's password: %s", line)
			}
		}
	}
}

func TestWarnings(t *testing.T) {
	c := mustParse(t, "producer:\n  tls:\n    enabled: true\n    insecure_skip_verify: true\ntelemetry:\n  pprof_listen: 0.0.0.0:6060\n  pprof_allow_remote: true\n")
	want := []string{
		"producer.tls.insecure_skip_verify: server certificates are not verified",
		"telemetry.pprof_allow_remote: pprof is reachable from other hosts",
	}
	if got := c.Warnings(); !slices.Equal(got, want) {
		t.Errorf("Warnings() =\n%q\nwant\n%q", got, want)
	}
	if got := mustParse(t, "device: {count: 1}\n").Warnings(); got != nil {
		t.Errorf("defaults warn: %q", got)
	}
}

func TestPprofListenLoopbackOnly(t *testing.T) {
	for _, tt := range []struct {
		name, telemetry string
		wantErr         string
	}{
		{"default", "", ""},
		{"loopback v4", "pprof_listen: 127.0.0.2:6060", ""},
		{"loopback v6", "pprof_listen: \"[::1]:6060\"", ""},
		{"localhost", "pprof_listen: localhost:6060", ""},
		{"off", "pprof_listen: \"off\"", ""},
		{"every interface", "pprof_listen: \":6060\"",
			`telemetry.pprof_listen: ":6060" is not a loopback address: profiles show memory contents and the command line; use 127.0.0.1:6060, or set telemetry.pprof_allow_remote: true (line 2)`},
		{"lan address", "pprof_listen: 10.1.2.3:6060",
			`telemetry.pprof_listen: "10.1.2.3:6060" is not a loopback address: profiles show memory contents and the command line; use 127.0.0.1:6060, or set telemetry.pprof_allow_remote: true (line 2)`},
		{"allowed", "pprof_listen: 0.0.0.0:6060\n  pprof_allow_remote: true", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			src := "telemetry:\n  " + tt.telemetry + "\n"
			if tt.wantErr == "" {
				mustParse(t, src)
				return
			}
			if got := errLines(t, src); !slices.Equal(got, []string{tt.wantErr}) {
				t.Errorf("errors:\n%q\nwant\n%q", got, tt.wantErr)
			}
		})
	}
}
