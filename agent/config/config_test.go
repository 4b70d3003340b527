package config_test

import (
	"encoding/json"
	"errors"
	"fmt"
	. "github.com/iot-producer/iot-producer/agent/config"
	"github.com/iot-producer/iot-producer/drivers/modbus"
	_ "github.com/iot-producer/iot-producer/plugins/all"
	"github.com/iot-producer/iot-producer/uplink/kafka"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// mustParse parses src and fails the test on any error.
func mustParse(t *testing.T, src string) *Config {
	t.Helper()
	c, err := Parse([]byte(src), "test.yaml")
	if err != nil {
		t.Fatalf("Parse: unexpected error:\n%v", err)
	}
	return c
}

// errLines parses src, requires ValidationErrors and returns them one
// formatted problem per element.
func errLines(t *testing.T, src string) []string {
	t.Helper()
	c, err := Parse([]byte(src), "test.yaml")
	if err == nil {
		t.Fatalf("Parse accepted an invalid file; config: %+v", c)
	}
	var ve ValidationErrors
	if !errors.As(err, &ve) {
		t.Fatalf("error is %T, want ValidationErrors: %v", err, err)
	}
	if c != nil {
		t.Errorf("Parse returned a config with an error")
	}
	return strings.Split(err.Error(), "\n")
}

func TestExampleConfigsLoad(t *testing.T) {
	t.Setenv("KAFKA_PASSWORD", "s3cret-from-env")
	t.Setenv("OPCUA_PASSWORD", "opcua-s3cret")
	files, err := filepath.Glob("../../configs/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 3 {
		t.Fatalf("found %d example configs, want at least demo, production and manual-tuning: %v", len(files), files)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			if _, err := Load(f); err != nil {
				t.Fatalf("Load(%s):\n%v", f, err)
			}
		})
	}
}

func TestExampleConfigValues(t *testing.T) {
	t.Setenv("KAFKA_PASSWORD", "s3cret-from-env")
	t.Setenv("OPCUA_PASSWORD", "opcua-s3cret")
	t.Setenv("KAFKA_BROKERS", "")
	t.Setenv("STATE_DIRECTORY", "")

	t.Run("manual-tuning", func(t *testing.T) {
		c, err := Load("../../configs/manual-tuning.yaml")
		if err != nil {
			t.Fatal(err)
		}
		if k := producer(c); k.BatchSize != 1000 || k.FlushInterval.Std() != 500*time.Millisecond || k.WorkerCount != 8 {
			t.Errorf("producer = batch %d, flush %v, workers %d; want 1000, 500ms, 8",
				k.BatchSize, k.FlushInterval, k.WorkerCount)
		}
		if c.Device.SampleInterval.Std() != time.Second || c.Device.DataVariation != 0.1 {
			t.Errorf("device = sample %v, variation %v; want 1s, 0.1", c.Device.SampleInterval, c.Device.DataVariation)
		}
	})
	t.Run("demo", func(t *testing.T) {
		c, err := Load("../../configs/demo.yaml")
		if err != nil {
			t.Fatal(err)
		}
		if !*c.Device.Enabled || len(c.PLCs) != 0 {
			t.Errorf("demo: device.enabled %v with %d plcs; want the simulator only", *c.Device.Enabled, len(c.PLCs))
		}
		if !reflect.DeepEqual(producer(c).Brokers, []string{"localhost:9092"}) || !c.Sink("producer").Enabled {
			t.Errorf("demo: producer enabled %v brokers %v; want localhost:9092", c.Sink("producer").Enabled, producer(c).Brokers)
		}
		if c.Buffer.Path != filepath.Join("iot-producer-state", "buffer.db") {
			t.Errorf("demo: buffer.path = %q", c.Buffer.Path)
		}
	})
	t.Run("production", func(t *testing.T) {
		c, err := Load("../../configs/production.yaml")
		if err != nil {
			t.Fatal(err)
		}
		var modbus, opcua int
		for _, p := range c.PLCs {
			switch p.Driver {
			case "modbus":
				modbus++
			case "opcua":
				opcua++
			}
		}
		if modbus != 2 || opcua != 1 {
			t.Errorf("production: %d modbus and %d opcua plcs; want 2 and 1", modbus, opcua)
		}
		s := producer(c).SASL
		if !producer(c).TLS.Enabled || !strings.HasPrefix(s.Mechanism, "SCRAM") || s.Password != "s3cret-from-env" {
			t.Errorf("production: tls %v, sasl %s, password from env %v", producer(c).TLS.Enabled, s.Mechanism, s.Password == "s3cret-from-env")
		}
		if *c.Device.Enabled {
			t.Error("production: the simulator is enabled")
		}
	})
}

func TestEmptyFileRefusedSectionsDefault(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		t.Skipf("no host name: %v", err)
	}
	for name, src := range map[string]string{
		"empty":         "",
		"blank":         "  \n \n",
		"comments only": "# nothing here\n\n",
		"null document": "~\n",
	} {
		t.Run("refused: "+name, func(t *testing.T) {
			if got := errLines(t, src); len(got) != 1 || !strings.Contains(got[0], "holds no configuration") {
				t.Errorf("got %q", got)
			}
		})
	}
	empty, list := errLines(t, "producer:\n  brokers:\n"), errLines(t, "producer:\n  brokers: []\n")
	if len(empty) != 1 || !strings.Contains(empty[0], "producer.brokers: required") || empty[0] != list[0] {
		t.Errorf("brokers: with no value gives %q, brokers: [] gives %q; want the same", empty, list)
	}
	if got := errLines(t, "device:\n  count: 2\n\tseed: 3\n"); len(got) != 1 || got[0] != "test.yaml is not valid YAML: a tab indents line 3; YAML indents with spaces only (line 3)" {
		t.Errorf("a tab: got %q", got)
	}
	for name, src := range map[string]string{
		"empty section": "producer:\n",
	} {
		t.Run(name, func(t *testing.T) {
			c := mustParse(t, src)
			if c.Gateway.ID != host || c.Buffer.Path != filepath.Join(DefaultStateDir, "buffer.db") || !*c.Device.Enabled {
				t.Errorf("gateway %q, buffer %q, device %v", c.Gateway.ID, c.Buffer.Path, *c.Device.Enabled)
			}
			k := producer(c)
			want := kafka.NewConfig()
			want.ClientID = "iot-producer-" + host
			want.Idempotent = ptr(true)
			if !reflect.DeepEqual(k, want) || !c.Sink("producer").Enabled {
				t.Errorf("producer defaults differ:\n got %+v\nwant %+v", k, want)
			}
		})
	}
	d, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	if d.Gateway.ID != host || producer(d).BatchSize != 1000 || d.Telemetry.PprofListen != "127.0.0.1:6060" {
		t.Errorf("Default() = %+v", d)
	}
	if DefaultPath() != "/etc/iot-producer/config.yaml" {
		t.Errorf("DefaultPath() = %q", DefaultPath())
	}
}

func TestDerivedDefaults(t *testing.T) {
	tests := []struct {
		name  string
		src   string
		check func(*Config) string
	}{
		{"device off when plcs given", plcFile, func(c *Config) string {
			return want(*c.Device.Enabled == false, "device.enabled = %v", *c.Device.Enabled)
		}},
		{"device explicitly on with plcs", plcFile + "device:\n  enabled: true\n", func(c *Config) string {
			return want(*c.Device.Enabled, "device.enabled = %v", *c.Device.Enabled)
		}},
		{"plc enabled by default, byte order ABCD on modbus", plcFile, func(c *Config) string {
			p, m := c.PLCs[0], plc(c, 0)
			return want(*p.Enabled && m.Tags[0].ByteOrder == "" && m.Tags[0].Scale == 1 && m.UnitID == 1 &&
				m.PollInterval.Std() == time.Second && m.MaxGap == modbus.DefaultMaxGap, "plc = %+v", m)
		}},
		{"buffer path from state_dir", "gateway:\n  state_dir: /data/gw\n", func(c *Config) string {
			return want(c.Buffer.Path == "/data/gw/buffer.db", "buffer.path = %q", c.Buffer.Path)
		}},
		{"explicit buffer path kept", "gateway:\n  state_dir: /data/gw\nbuffer:\n  path: /fast/b.db\n", func(c *Config) string {
			return want(c.Buffer.Path == "/fast/b.db", "buffer.path = %q", c.Buffer.Path)
		}},
		{"client ids from gateway id", "gateway:\n  id: gw-7\n", func(c *Config) string {
			return want(producer(c).ClientID == "iot-producer-gw-7", "client id %q", producer(c).ClientID)
		}},
		{"idempotent off with acks leader", "producer:\n  acks: leader\n", func(c *Config) string {
			return want(!*producer(c).Idempotent, "idempotent = %v", *producer(c).Idempotent)
		}},
		{"pprof off", "telemetry:\n  pprof_listen: \"off\"\n", func(c *Config) string {
			return want(c.Telemetry.PprofListen == "", "pprof_listen = %q", c.Telemetry.PprofListen)
		}},
		{"pprof OFF unquoted", "telemetry:\n  pprof_listen: OFF\n", func(c *Config) string {
			return want(c.Telemetry.PprofListen == "", "pprof_listen = %q", c.Telemetry.PprofListen)
		}},

		{"brokers as comma string", "producer:\n  brokers: a:9092, b:9092 ,c:9092\n", func(c *Config) string {
			return want(reflect.DeepEqual(producer(c).Brokers, []string{"a:9092", "b:9092", "c:9092"}), "brokers = %q", producer(c).Brokers)
		}},
		{"merge keys share plc settings", mergeFile, func(c *Config) string {
			a, b := plc(c, 0), plc(c, 1)
			return want(c.PLCs[0].Name == "a" && c.PLCs[1].Name == "b" && a.PollInterval.Std() == 250*time.Millisecond &&
				b.PollInterval.Std() == 2*time.Second && b.Endpoint == "10.0.0.1:502" && len(b.Tags) == 1,
				"plcs = %+v", c.PLCs)
		}},
		{"quoted number for an integer", "producer:\n  batch_size: \"500\"\n", func(c *Config) string {
			return want(producer(c).BatchSize == 500, "batch_size = %d", producer(c).BatchSize)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if msg := tt.check(mustParse(t, tt.src)); msg != "" {
				t.Error(msg)
			}
		})
	}
}

// want returns the formatted message when ok is false, "" otherwise.
func want(ok bool, format string, args ...any) string {
	if ok {
		return ""
	}
	return "unexpected: " + fmt.Sprintf(format, args...)
}

const plcFile = `plcs:
  - name: press-1
    driver: modbus
    endpoint: 127.0.0.1:502
    tags:
      - name: temp
        address: "0"
        type: float32
`

const mergeFile = `plcs:
  - &base
    name: a
    driver: modbus
    endpoint: 10.0.0.1:502
    poll_interval: 250ms
    tags:
      - {name: t, address: "1", type: int16}
  - <<: *base
    name: b
    poll_interval: 2s
`

func TestBadFiles(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string // every line of the error, in order
	}{
		{
			name: "unknown key with suggestion",
			src:  "producer:\n  batch_sise: 10\n",
			want: []string{`producer.batch_sise: unknown key "batch_sise"; did you mean "batch_size"? (line 2)`},
		},
		{
			name: "unknown top-level section",
			src:  "gateway:\n  id: g\nkafka:\n  brokers: [a:1]\n",
			want: []string{`kafka: unknown key "kafka" (line 3)`},
		},
		{
			name: "string where an integer is expected",
			src:  "producer:\n  batch_size: lots\n",
			want: []string{`producer.batch_size: expected an integer, got "lots" (line 2)`},
		},
		{
			name: "float where an integer is expected",
			src:  "device:\n  count: 2.5\n",
			want: []string{`device.count: expected an integer, got "2.5" (line 2)`},
		},
		{
			name: "list where a string is expected",
			src:  "gateway:\n  id: [a, b]\n",
			want: []string{`gateway.id: expected a string, got a list (line 2)`},
		},
		{
			name: "scalar where a section is expected",
			src:  "producer: kafka:9092\n",
			want: []string{`producer: expected a mapping of keys, got "kafka:9092" (line 1)`},
		},
		{
			name: "bad boolean",
			src:  "producer:\n  enabled: yes please\n",
			want: []string{`producer.enabled: expected true or false, got "yes please" (line 2)`},
		},
		{
			name: "tag type typo",
			src: plcFile + `  - name: press-2
    driver: modbus
    endpoint: 127.0.0.1:503
    tags:
      - {name: a, address: "0", type: int16}
      - {name: b, address: "1", type: int16}
      - {name: c, address: "2", type: int16}
      - {name: d, address: "3", type: flaot32}
`,
			want: []string{`plcs[1].tags[3].type: unknown type "flaot32"; did you mean "float32"? (line 16)`},
		},
		{
			name: "driver typo and unknown compression",
			src:  strings.Replace(plcFile, "driver: modbus", "driver: modbsu", 1) + "producer:\n  compression: brotli\n",
			want: []string{
				`plcs[0].driver: unknown driver "modbsu"; did you mean "modbus"? (line 3)`,
				`producer.compression: unknown compression "brotli"; want none, gzip, snappy, lz4 or zstd (line 10)`,
			},
		},
		{
			name: "bad enums everywhere",
			src: `buffer:
  drop_policy: drop_all
  on_corrupt: ignore
producer:
  acks: one
  sasl:
    mechanism: scram-sha-256
log:
  level: verbose
  format: xml
`,
			want: []string{
				`buffer.drop_policy: unknown drop_policy "drop_all"; want drop_oldest or drop_newest (line 2)`,
				`buffer.on_corrupt: unknown on_corrupt "ignore"; want quarantine or fail (line 3)`,
				`producer.acks: unknown acks "one"; did you mean "none"? (line 5)`,
				`producer.sasl.mechanism: unknown mechanism "scram-sha-256"; did you mean "SCRAM-SHA-256"? (line 7)`,
				`log.level: unknown level "verbose"; want debug, info, warn or error (line 9)`,
				`log.format: unknown format "xml"; want text or json (line 10)`,
			},
		},
		{
			name: "bad duration",
			src:  "producer:\n  flush_interval: 5 seconds\n",
			want: []string{`producer.flush_interval: invalid duration "5 seconds": write 500ms, 1.5s, 2m or a bare number of milliseconds (line 2)`},
		},
		{
			name: "negative duration",
			src:  "producer:\n  flush_interval: -500\nbuffer:\n  commit_interval: -1s\n",
			want: []string{
				`producer.flush_interval: negative duration -500 (line 2)`,
				`buffer.commit_interval: negative duration -1s (line 4)`,
			},
		},
		{
			name: "fractional bare duration",
			src:  "device:\n  sample_interval: 1.5\n",
			want: []string{`device.sample_interval: invalid duration "1.5": a bare number is whole milliseconds; give a unit, e.g. 1.5ms or 1.5s (line 2)`},
		},
		{
			name: "durations too short",
			src:  "device:\n  sample_interval: 0\nbuffer:\n  max_age: 0s\n",
			want: []string{
				`device.sample_interval: 0s is too short: must be at least 1ms (line 2)`,
				`buffer.max_age: 0s is too short: must be positive (line 4)`,
			},
		},
		{
			name: "bad sizes",
			src:  "buffer:\n  max_bytes: 10 gigs\n",
			want: []string{`buffer.max_bytes: invalid size "10 gigs": unknown unit "gigs"; use B, KB, MB, GB, TB (1000s) or KiB, MiB, GiB, TiB (1024s) (line 2)`},
		},
		{
			name: "size too small",
			src:  "buffer:\n  max_bytes: 512KiB\n",
			want: []string{`buffer.max_bytes: 512KiB is too small: must be at least 1MiB (line 2)`},
		},
		{
			name: "out of range",
			src: `device:
  count: 100001
  tags_per_device: 0
  data_variation: 1.5
producer:
  batch_size: 0
  worker_count: 65
mqtt:
  qos: 3
buffer:
  commit_size: 0
`,
			want: []string{
				`device.count: 100001 is out of range: want 0 to 100000 (line 2)`,
				`device.tags_per_device: 0 is out of range: want 1 to 1000 (line 3)`,
				`device.data_variation: 1.5 is out of range: want 0 to 1 (line 4)`,
				`producer.batch_size: 0 is out of range: want 1 to 100000 (line 6)`,
				`producer.worker_count: 65 is out of range: want 1 to 64 (line 7)`,
				`mqtt.qos: 3 is out of range: want 0 to 1 (line 9)`,
				`buffer.commit_size: 0 is out of range: want at least 1 (line 11)`,
			},
		},
		{
			name: "missing environment variable",
			src:  "producer:\n  sasl:\n    mechanism: SCRAM-SHA-256\n    username: u\n    password: ${IOTP_TEST_UNSET_VAR}\n",
			want: []string{`producer.sasl.password: environment variable IOTP_TEST_UNSET_VAR is not set (write ${IOTP_TEST_UNSET_VAR:-default} to give a default) (line 5)`},
		},
		{
			name: "bad environment reference",
			src:  "gateway:\n  id: ${1BAD}\n  state_dir: /x/${OPEN\n",
			want: []string{
				`gateway.id: invalid environment variable reference: write ${NAME} or ${NAME:-default} (the value is not shown: it may be a secret) (line 2)`,
				`gateway.state_dir: unterminated ${: an environment reference is ${NAME} or ${NAME:-default} (the value is not shown: it may be a secret) (line 3)`,
			},
		},
		{
			name: "missing secret file",
			src:  "producer:\n  sasl:\n    password_file: /nonexistent/iotp-secret\n",
			want: []string{`producer.sasl.password_file: cannot read secret file: open /nonexistent/iotp-secret: no such file or directory (line 3)`},
		},
		{
			name: "password and password_file",
			src:  "producer:\n  sasl:\n    mechanism: SCRAM-SHA-512\n    username: u\n    password: p\n    password_file: /etc/hostname\n",
			want: []string{`producer.sasl.password_file: password and password_file are both set; give one (line 6)`},
		},
		{
			name: "_file on a key that is not a secret",
			src:  "producer:\n  sasl:\n    username_file: /etc/hostname\n",
			want: []string{`producer.sasl.username_file: unknown key "username_file" (line 3)`},
		},
		{
			name: "duplicate plc and tag names",
			src: plcFile + `      - name: temp
        address: "2"
        type: int16
  - name: press-1
    driver: opcua
    endpoint: opc.tcp://h:4840
    tags:
      - {name: x, address: "ns=2;s=X", type: float64}
`,
			want: []string{
				`plcs[0].tags[1].name: duplicate tag name "temp" in this device (also plcs[0].tags[0], line 6) (line 9)`,
				`plcs[1].name: duplicate name "press-1" (also plcs[0], line 2) (line 12)`,
			},
		},
		{
			name: "required plc and tag fields",
			src:  "plcs:\n  - driver: modbus\n    tags:\n      - name: t\n  - name: b\n",
			want: []string{
				`plcs[0].name: required (line 2)`,
				`plcs[0].endpoint: required (line 2)`,
				`plcs[0].tags[0].address: required (line 4)`,
				`plcs[0].tags[0].type: required (line 4)`,
				`plcs[1].driver: required (line 5)`,
			},
		},
		{
			name: "driver specific checks",
			src: `plcs:
  - name: m
    driver: modbus
    endpoint: plc.local
    tags:
      - {name: s, address: "500000", type: string}
      - {name: c, address: "1", type: int16, register: coil}
      - {name: z, address: "2", type: int16, scale: 0}
  - name: o
    driver: opcua
    endpoint: tcp://h:4840
    tags:
      - {name: x, address: "Line1.Temp", type: float64, register: holding, byte_order: CDAB}
`,
			want: []string{
				`plcs[0].endpoint: "plc.local": want host:port (TCP) or a serial device path (RTU): address plc.local: missing port in address (line 4)`,
				`plcs[0].tags[0].type: a modbus string needs a length in bytes, e.g. string(16) (line 6)`,
				`plcs[0].tags[1].type: coil registers hold bits: the type must be bool, not int16 (line 7)`,
				`plcs[0].tags[2].scale: 0 makes every value 0; leave it out for 1 (line 8)`,
				`plcs[1].endpoint: "tcp://h:4840": an opcua endpoint is a URL opc.tcp://host:port[/path] (line 11)`,
				`plcs[1].tags[0].register: unknown key "register" (line 13)`,
				`plcs[1].tags[0].byte_order: unknown key "byte_order" (line 13)`,
				`plcs[1].tags[0].address: "Line1.Temp": a node id looks like ns=2;s=Line1.Temp, nsu=urn:plant:line1;i=1001, i=2258, g=<guid> or b=<base64> (line 13)`,
			},
		},
		{
			name: "no source",
			src:  "device:\n  enabled: false\n",
			want: []string{`device.enabled: no source of samples: enable device (with count > 0) or configure an enabled plc (line 2)`},
		},
		{
			name: "only disabled plcs",
			src:  strings.Replace(plcFile, "    driver: modbus\n", "    driver: modbus\n    enabled: false\n", 1),
			want: []string{`plcs: no source of samples: enable device (with count > 0) or configure an enabled plc (line 1)`},
		},
		{
			name: "brokers empty when producer enabled",
			src:  "producer:\n  brokers: []\n  topic: \"\"\n",
			want: []string{
				`producer.brokers: required: give at least one host:port (line 2)`,
				`producer.topic: required (line 3)`,
			},
		},
		{
			name: "bad brokers and topic",
			src:  "producer:\n  brokers: [\"kafka://k:9092\", \"k:port\"]\n  topic: iot/{device}/{tag}\n",
			want: []string{
				`producer.brokers[0]: "kafka://k:9092": write host:port, not a URL (line 2)`,
				`producer.brokers[1]: "k:port": want host:port: port "port" is not a number from 0 to 65535 (line 2)`,
				`producer.topic: "iot/{device}/{tag}": unknown placeholder {tag}; want {gateway} or {device} (line 3)`,
			},
		},
		{
			name: "mqtt enabled without broker",
			src:  "mqtt:\n  enabled: true\n  broker: \"\"\n",
			want: []string{`mqtt.broker: required, e.g. tcp://localhost:1883 (line 3)`},
		},
		{
			name: "mqtt checks",
			src:  "mqtt:\n  enabled: true\n  broker: http://b:1883\n  topic: iot/+/x\n  tls:\n    ca_file: ca.pem\n",
			want: []string{
				`mqtt.broker: "http://b:1883": unknown scheme "http"; want tcp, mqtt, ssl, tls, mqtts, ws or wss (line 3)`,
				`mqtt.topic: topic "iot/+/x": a topic to publish to cannot contain + or # wildcards (line 4)`,
				`mqtt.tls.ca_file: has no effect while mqtt.tls.enabled is false (line 6)`,
			},
		},
		{
			name: "mqtt tls on a plain broker",
			src:  "mqtt:\n  enabled: true\n  broker: tcp://b:1883\n  tls:\n    enabled: true\n",
			want: []string{`mqtt.tls.enabled: TLS needs a ssl, tls, mqtts or wss broker URL, not tcp:// (line 5)`},
		},
		{
			name: "idempotent needs acks all",
			src:  "producer:\n  acks: leader\n  idempotent: true\n",
			want: []string{`producer.idempotent: an idempotent producer needs acks all, not leader: set acks: all or idempotent: false (line 3)`},
		},
		{
			name: "PLAIN without TLS",
			src:  "producer:\n  sasl:\n    mechanism: PLAIN\n    username: u\n    password: p\n",
			want: []string{`producer.sasl.mechanism: PLAIN sends the password in clear without TLS: set producer.tls.enabled, use SCRAM, or set allow_plain_without_tls (line 3)`},
		},
		{
			name: "sasl incomplete",
			src:  "producer:\n  sasl:\n    username: u\n  tls:\n    enabled: true\n    cert_file: c.pem\n",
			want: []string{
				`producer.sasl.mechanism: required when sasl.username is set: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (line 2)`,
				`producer.tls.cert_file: cert_file and key_file go together: give both or neither (line 6)`,
			},
		},
		{
			name: "mechanism without credentials",
			src:  "producer:\n  tls:\n    enabled: true\n  sasl:\n    mechanism: PLAIN\n",
			want: []string{
				`producer.sasl.username: required with mechanism PLAIN (line 4)`,
				`producer.sasl.password: required with mechanism PLAIN (or password_file) (line 4)`,
			},
		},
		{
			name: "bad listen addresses and names",
			src:  "gateway:\n  id: gw 1\ndevice:\n  name_prefix: sim/\ntelemetry:\n  metrics_listen: \"8080\"\n  health_listen: \"\"\n",
			want: []string{
				`gateway.id: "gw 1": use letters, digits, '.', '_' and '-' only (line 2)`,
				`device.name_prefix: "sim/": use letters, digits, '.', '_' and '-' only (line 4)`,
				`telemetry.metrics_listen: "8080": want [host]:port: address 8080: missing port in address (line 6)`,
				`telemetry.health_listen: required: a listen address such as :8080 (line 7)`,
			},
		},
		{
			name: "repeated key",
			src:  "producer:\n  topic: a\n  topic: b\n",
			want: []string{`producer.topic: key repeated (first at line 2) (line 3)`},
		},
		{
			name: "yaml syntax error",
			src:  "producer:\n  topic: a\n bad: [\n",
			want: []string{`test.yaml is not valid YAML: did not find expected key (line 2)`},
		},
		{
			name: "two documents",
			src:  "producer:\n  topic: a\n---\nlog:\n  level: info\n",
			want: []string{`test.yaml holds more than one YAML document; give one (line 3)`},
		},
		{
			name: "mapping merged into itself",
			src:  "gateway: &g\n  id: a\n  <<: *g\n",
			want: []string{`gateway: a merge key merges the mapping on line 1 into itself (line 1)`},
		},
		{
			name: "merge of a scalar",
			src:  "gateway:\n  <<: 5\n",
			want: []string{`gateway: merge key on line 2 needs a mapping or a list of mappings (line 2)`},
		},
		{
			name: "merges of merges stay linear",
			src:  mergeBomb(30) + "gateway:\n  <<: *m30\n",
			want: []string{
				`x-anchors: unknown key "x-anchors" (line 1)`,
				`gateway.k: unknown key "k" (line 2)`,
			},
		},
		{
			name: "alias to a value that contains it",
			src:  "plcs: &p [*p]\n",
			want: []string{`plcs[0]: expected a mapping of keys, got a list (line 1)`},
		},
		{
			name: "top level is a list",
			src:  "- a\n- b\n",
			want: []string{`test.yaml: the top level must be a mapping of sections (gateway, plcs, device, ...), got a list (line 1)`},
		},
		{
			name: "several errors at once, in file order",
			src: `gateway:
  idd: x
plcs:
  - name: p
    driver: opcua
    endpoint: opc.tcp://h:4840
    poll_interval: fast
    tags:
      - {name: t, address: "i=85", type: flaot64}
producer:
  batch_size: "many"
  worker_count: 100
  sasl:
    password: ${IOTP_TEST_UNSET_VAR}
mqtt:
  qos: -1
`,
			want: []string{
				`gateway.idd: unknown key "idd"; did you mean "id"? (line 2)`,
				`plcs[0].poll_interval: invalid duration "fast": write 500ms, 1.5s, 2m or a bare number of milliseconds (line 7)`,
				`plcs[0].tags[0].type: unknown type "flaot64"; did you mean "float64"? (line 9)`,
				`producer.batch_size: expected an integer, got "many" (line 11)`,
				`producer.worker_count: 100 is out of range: want 1 to 64 (line 12)`,
				`producer.sasl.password: environment variable IOTP_TEST_UNSET_VAR is not set (write ${IOTP_TEST_UNSET_VAR:-default} to give a default) (line 14)`,
				`mqtt.qos: -1 is out of range: want 0 to 1 (line 16)`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := errLines(t, tt.src)
			if os.Getenv("IOTP_DUMP") != "" {
				fmt.Printf("DUMP\t%s\t%q\n", tt.name, got)
			}
			for i := range max(len(got), len(tt.want)) {
				var g, w string
				if i < len(got) {
					g = got[i]
				}
				if i < len(tt.want) {
					w = tt.want[i]
				}
				if g != w {
					t.Errorf("problem %d:\n got %s\nwant %s", i, g, w)
				}
			}
		})
	}
}

// mergeBomb returns n anchors, each merging the previous one twice: without
// memoisation, resolving the last one would take 2^n steps. They sit under
// an unknown top-level key, reported once.
func mergeBomb(n int) string {
	var b strings.Builder
	b.WriteString("x-anchors:\n  - &m0 {k: v}\n")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "  - &m%d {<<: [*m%d, *m%d]}\n", i, i-1, i-1)
	}
	return b.String()
}

func TestFieldErrorsCarryPathAndLine(t *testing.T) {
	_, err := Parse([]byte("producer:\n  batch_size: x\n"), "f.yaml")
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("errors.As(*FieldError) failed on %v", err)
	}
	if fe.Path != "producer.batch_size" || fe.Line != 2 || !strings.Contains(fe.Msg, `"x"`) {
		t.Errorf("FieldError = %+v", fe)
	}
}

func TestEnvExpansion(t *testing.T) {
	t.Setenv("IOTP_TOPIC", "plant.a")
	t.Setenv("IOTP_EMPTY", "")
	t.Setenv("IOTP_BATCH", "250")
	t.Setenv("IOTP_BROKERS", "k1:9092,k2:9092")
	t.Setenv("IOTP_FLUSH", "20ms")
	c := mustParse(t, `gateway:
  id: gw-${IOTP_TOPIC}
  state_dir: ${IOTP_UNSET_DIR:-/srv/gw}
producer:
  topic: ${IOTP_TOPIC}
  client_id: ${IOTP_EMPTY:-fallback}
  batch_size: ${IOTP_BATCH}
  brokers: ${IOTP_BROKERS}
  flush_interval: ${IOTP_FLUSH}
  sasl:
    mechanism: SCRAM-SHA-256
    username: "a$${b}"
    password: a$b
`)
	checks := []struct {
		name      string
		got, want any
	}{
		{"embedded reference", c.Gateway.ID, "gw-plant.a"},
		{"default for unset", c.Gateway.StateDir, "/srv/gw"},
		{"plain reference", producer(c).Topic, "plant.a"},
		{"default for empty", producer(c).ClientID, "fallback"},
		{"integer from env", producer(c).BatchSize, 250},
		{"list from env", producer(c).Brokers, []string{"k1:9092", "k2:9092"}},
		{"duration from env", producer(c).FlushInterval, Duration(20 * time.Millisecond)},
		{"escaped", producer(c).SASL.Username, "a${b}"},
		{"bare dollar kept", producer(c).SASL.Password, "a$b"},
	}
	for _, ck := range checks {
		if !reflect.DeepEqual(ck.got, ck.want) {
			t.Errorf("%s: got %v, want %v", ck.name, ck.got, ck.want)
		}
	}
}

func TestSecretFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("kafka.pw", "kafka-secret\n")
	write("mqtt.pw", "mqtt secret with spaces\r\n")
	write("empty.pw", "\n")
	t.Setenv("IOTP_SECRETS", dir)

	t.Run("absolute and relative paths", func(t *testing.T) {
		cfgPath := filepath.Join(dir, "config.yaml")
		src := `producer:
  tls:
    enabled: true
  sasl:
    mechanism: SCRAM-SHA-256
    username: u
    password_file: ${IOTP_SECRETS}/kafka.pw
`
		if err := os.WriteFile(cfgPath, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load(cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		if producer(c).SASL.Password != "kafka-secret" {
			t.Errorf("sasl password = %q, want kafka-secret (trailing newline trimmed)", producer(c).SASL.Password)
		}
		src = "producer:\n  sasl:\n    mechanism: SCRAM-SHA-256\n    username: u\n    password_file: mqtt.pw\n"
		if err := os.WriteFile(cfgPath, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		if c, err = Load(cfgPath); err != nil {
			t.Fatal(err)
		}
		if producer(c).SASL.Password != "mqtt secret with spaces" {
			t.Errorf("password = %q (relative to the config's directory, CRLF trimmed)", producer(c).SASL.Password)
		}
	})
	t.Run("empty file", func(t *testing.T) {
		got := errLines(t, "producer:\n  sasl:\n    mechanism: SCRAM-SHA-256\n    username: u\n    password_file: "+filepath.Join(dir, "empty.pw")+"\n")
		want := "producer.sasl.password_file: secret file " + filepath.Join(dir, "empty.pw") + " is empty (line 5)"
		if len(got) != 1 || got[0] != want {
			t.Errorf("got %q, want %q", got, want)
		}
	})
	t.Run("secret never in messages", func(t *testing.T) {
		_, err := Parse([]byte("producer:\n  sasl:\n    mechanism: PLAIN\n    username: u\n    password: hunter2\n"), "x.yaml")
		if err == nil || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error %v: want an error that does not show the password", err)
		}
	})
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if err == nil || !strings.Contains(err.Error(), "nope.yaml") {
		t.Fatalf("Load of a missing file: %v; want an error naming it", err)
	}
	var ve ValidationErrors
	if errors.As(err, &ve) {
		t.Errorf("a missing file is not a validation error: %v", err)
	}
}

func TestValidate(t *testing.T) {
	c, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
	producer(c).BatchSize = 0
	c.PLCs = append(c.PLCs, PLC{Name: "x", Driver: "modbus", Settings: &modbus.Config{Endpoint: "h:502", Timeout: Duration(time.Second), PollInterval: Duration(time.Second), ConnectTimeout: Duration(time.Second), BaudRate: 9600, Parity: "N", DataBits: 8, StopBits: 1, MaxRegisters: 125, OnError: "drop", UnitID: 1}})
	err = c.Validate()
	want := "producer.batch_size: 0 is out of range: want 1 to 100000"
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "plcs[0].tags: no tags") {
		t.Errorf("Validate() = %v; want %q and the missing tags, without line numbers", err, want)
	}
	if strings.Contains(err.Error(), "(line") {
		t.Errorf("Validate() of a Config built in code reports lines: %v", err)
	}
}

func TestRedacted(t *testing.T) {
	c := mustParse(t, `producer:
  tls:
    enabled: true
  sasl:
    mechanism: SCRAM-SHA-512
    username: kafka-user
    password: kafka-secret
`+plcFile)
	r := c.Redacted()
	if producer(r).SASL.Password != "REDACTED" {
		t.Errorf("sasl password = %q, want REDACTED", producer(r).SASL.Password)
	}
	if producer(r).SASL.Username != "kafka-user" {
		t.Error("user names are not secrets but were changed")
	}
	if producer(c).SASL.Password != "kafka-secret" {
		t.Error("Redacted changed the original")
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "kafka-secret") {
		t.Errorf("redacted JSON shows the secret: %s", b)
	}
	// A deep copy: changing the copy leaves the original alone.
	plc(r, 0).Tags[0].Name = "changed"
	*r.PLCs[0].Enabled = false
	producer(r).Brokers[0] = "changed:1"
	if plc(c, 0).Tags[0].Name != "temp" || !*c.PLCs[0].Enabled || producer(c).Brokers[0] != "localhost:9092" {
		t.Error("Redacted shares memory with the original")
	}
	// Everything but the secrets is equal.
	r2 := c.Redacted()
	producer(r2).SASL.Password = producer(c).SASL.Password
	if !reflect.DeepEqual(r2.PLCs, c.PLCs) || !reflect.DeepEqual(r2.Sinks, c.Sinks) || r2.Buffer != c.Buffer {
		t.Errorf("Redacted copy differs beyond secrets:\n got %+v\nwant %+v", r2, c)
	}
}

func TestJSONOfConfig(t *testing.T) {
	c := mustParse(t, "producer:\n  flush_interval: 500\nbuffer:\n  max_bytes: 512MiB\n")
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"flush_interval":"500ms"`, `"max_bytes":"512MiB"`, `"max_age":"168h"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("JSON lacks %s: %s", want, b)
		}
	}
}

// producer returns the Kafka sink's settings of c.
func producer(c *Config) *kafka.Config { return c.Sink("producer").Settings.(*kafka.Config) }

// plc returns the Modbus settings of c.PLCs[i].
func plc(c *Config, i int) *modbus.Config { return c.PLCs[i].Settings.(*modbus.Config) }

func ptr[T any](v T) *T { return &v }
