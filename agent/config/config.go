// Package config owns the agent's YAML configuration: its schema, defaults,
// ${ENV} and *_file expansion for secrets, and validation that reports every
// problem with its path and line. It knows nothing of the packages that use
// the values.
package config

// Config is the whole configuration file. The top-level sections follow the
// architecture; the ops manual's keys (producer.batch_size,
// producer.flush_interval, producer.worker_count, device.sample_interval,
// device.data_variation) keep the meaning the manual gives them.
type Config struct {
	Gateway   Gateway   `yaml:"gateway" json:"gateway" doc:"identity of this gateway and where it keeps its state"`
	PLCs      []PLC     `yaml:"plcs" json:"plcs" doc:"the real devices polled by a protocol driver"`
	Device    Device    `yaml:"device" json:"device" doc:"the built-in simulated devices"`
	Buffer    Buffer    `yaml:"buffer" json:"buffer" doc:"the durable store-and-forward buffer"`
	Producer  Producer  `yaml:"producer" json:"producer" doc:"the Kafka sink"`
	MQTT      MQTT      `yaml:"mqtt" json:"mqtt" doc:"the MQTT sink"`
	Telemetry Telemetry `yaml:"telemetry" json:"telemetry" doc:"HTTP listeners for metrics, health and pprof"`
	Log       Log       `yaml:"log" json:"log" doc:"logging"`
}

// Gateway identifies this gateway and where it keeps its state.
type Gateway struct {
	// ID is carried in every record. Default: the host name.
	ID string `yaml:"id" json:"id" doc:"gateway id carried in every record; default: the host name"`
	// StateDir holds the buffer file unless buffer.path says otherwise.
	// Default: /var/lib/iot-producer.
	StateDir string `yaml:"state_dir" json:"state_dir" doc:"directory for the buffer and other state; default /var/lib/iot-producer"`
}

// PLC is one real device polled by a protocol driver.
type PLC struct {
	Name   string `yaml:"name" json:"name" doc:"device name, unique; the record key"`
	Driver string `yaml:"driver" json:"driver" doc:"modbus or opcua"`
	// Enabled defaults to true.
	Enabled *bool `yaml:"enabled" json:"enabled" doc:"poll this device; default true"`
	// Endpoint is host:port for Modbus TCP, a serial device path for RTU,
	// or an opc.tcp:// URL.
	Endpoint     string   `yaml:"endpoint" json:"endpoint" doc:"host:port (Modbus TCP), serial device (RTU) or opc.tcp:// URL"`
	UnitID       int      `yaml:"unit_id" json:"unit_id" doc:"Modbus unit id (0-255; 1-247 on serial lines); default 1"`
	PollInterval Duration `yaml:"poll_interval" json:"poll_interval" doc:"time between polls; default 1s"`
	Timeout      Duration `yaml:"timeout" json:"timeout" doc:"per-request timeout; default 1s"`
	// The keys below apply to modbus devices only.
	// Transport is empty to infer it from the endpoint: rtu for a device
	// path, tcp for host:port.
	Transport      string   `yaml:"transport" json:"transport" doc:"Modbus transport: tcp, rtu (serial) or rtuovertcp (serial gateway in transparent mode); default: rtu for a device path, tcp for host:port"`
	ConnectTimeout Duration `yaml:"connect_timeout" json:"connect_timeout" doc:"Modbus: bound on a TCP connect or a serial open; default 3s"`
	BaudRate       int      `yaml:"baud_rate" json:"baud_rate" doc:"Modbus RTU: serial speed in baud; default 19200"`
	Parity         string   `yaml:"parity" json:"parity" doc:"Modbus RTU: N, E or O; default E"`
	DataBits       int      `yaml:"data_bits" json:"data_bits" doc:"Modbus RTU: 7 or 8; default 8"`
	StopBits       int      `yaml:"stop_bits" json:"stop_bits" doc:"Modbus RTU: 1 or 2; default 1"`
	// MaxGap and MaxRegisters shape request coalescing.
	MaxGap       int    `yaml:"max_gap" json:"max_gap" doc:"Modbus: largest run of unused registers (or bits) one request reads to join two tags; default 8"`
	MaxRegisters int    `yaml:"max_registers" json:"max_registers" doc:"Modbus: registers per request at most, for devices that accept fewer than 125; default 125"`
	OnError      string `yaml:"on_error" json:"on_error" doc:"Modbus: on a failed read, bad_quality (default: a sample of bad quality per tag) or drop (no sample)"`
	Tags         []Tag  `yaml:"tags" json:"tags" doc:"values read from this device; at least one"`
}

// Tag is one value read from a PLC.
type Tag struct {
	Name string `yaml:"name" json:"name" doc:"tag name, unique within its device"`
	// Address is a Modbus register address or an OPC UA node id.
	Address string `yaml:"address" json:"address" doc:"Modbus address (0-based or 4xxxx notation) or OPC UA node id"`
	// Type is the value type: bool, int16, uint16, int32, uint32, int64,
	// uint64, float32, float64, string.
	Type      string  `yaml:"type" json:"type" doc:"bool, int16, uint16, int32, uint32, int64, uint64, float32, float64, string or string(n) with n bytes (Modbus needs n)"`
	Register  string  `yaml:"register" json:"register" doc:"Modbus register type: coil, discrete, holding, input; empty: the driver infers it from the address (4xxxx notation) or uses holding"`
	ByteOrder string  `yaml:"byte_order" json:"byte_order" doc:"Modbus word and byte order of multi-register values: ABCD (default), CDAB, BADC, DCBA"`
	Bit       *int    `yaml:"bit" json:"bit" doc:"Modbus: read bit 0-15 (0 the least significant) of a holding or input register; the type must be bool"`
	Scale     float64 `yaml:"scale" json:"scale" doc:"multiplier applied to the raw value; default 1"`
	Offset    float64 `yaml:"offset" json:"offset" doc:"added after scaling; default 0"`
}

// Device configures the built-in simulated devices.
type Device struct {
	// Enabled turns the in-process simulator source on. Default: true when
	// no plcs are configured.
	Enabled *bool `yaml:"enabled" json:"enabled" doc:"run the built-in simulated devices; default true when plcs is empty"`
	Count   int   `yaml:"count" json:"count" doc:"number of simulated devices; default 10"`
	// TagsPerDevice cycles through temperature, pressure, counter and alarm
	// shapes.
	TagsPerDevice int `yaml:"tags_per_device" json:"tags_per_device" doc:"tags per simulated device (temperature, pressure, counter, alarm, ...); default 4"`
	// SampleInterval is the manual's device.sample_interval: time between
	// two readings of every tag.
	SampleInterval Duration `yaml:"sample_interval" json:"sample_interval" doc:"time between readings of each tag (500ms or bare milliseconds); default 1000"`
	// DataVariation is the manual's device.data_variation: the relative
	// amplitude of noise and movement, 0.1 = 10% of each signal's range.
	DataVariation float64 `yaml:"data_variation" json:"data_variation" doc:"relative amplitude of noise and movement (0-1); default 0.1"`
	Seed          int64   `yaml:"seed" json:"seed" doc:"random seed; the same seed gives the same signals; default 1"`
	NamePrefix    string  `yaml:"name_prefix" json:"name_prefix" doc:"device names are <prefix>-0001...; default sim"`
}

// Buffer configures the durable store-and-forward buffer.
type Buffer struct {
	Path string `yaml:"path" json:"path" doc:"bbolt file; default <gateway.state_dir>/buffer.db"`
	// CommitInterval bounds how long a sample waits before its group commit.
	CommitInterval Duration `yaml:"commit_interval" json:"commit_interval" doc:"longest wait before a group commit; default 5ms"`
	// CommitSize is the number of samples that triggers a commit at once.
	CommitSize int      `yaml:"commit_size" json:"commit_size" doc:"samples per group commit at most; default 10000"`
	MaxBytes   ByteSize `yaml:"max_bytes" json:"max_bytes" doc:"bound per queue (e.g. 1GiB); default 1GiB (128MiB on 32-bit ARM, where the file must fit the address space)"`
	MaxAge     Duration `yaml:"max_age" json:"max_age" doc:"records older than this are dropped (e.g. 168h); default 168h"`
	// DropPolicy is drop_oldest or drop_newest.
	DropPolicy string `yaml:"drop_policy" json:"drop_policy" doc:"drop_oldest (default) or drop_newest when a bound is hit"`
	// OnCorrupt is quarantine (move aside and start fresh) or fail.
	OnCorrupt string `yaml:"on_corrupt" json:"on_corrupt" doc:"quarantine (default: move the file aside, start fresh) or fail"`
}

// Producer configures the Kafka sink (named producer as in the manual).
type Producer struct {
	// Enabled defaults to true.
	Enabled  *bool    `yaml:"enabled" json:"enabled" doc:"send to Kafka; default true"`
	Brokers  []string `yaml:"brokers" json:"brokers" doc:"seed brokers host:port; default [localhost:9092]"`
	Topic    string   `yaml:"topic" json:"topic" doc:"topic, or a template such as iot.{device}; default iot-samples"`
	ClientID string   `yaml:"client_id" json:"client_id" doc:"Kafka client id; default iot-producer-<gateway id>"`
	// BatchSize is the manual's producer.batch_size: records per batch.
	BatchSize int `yaml:"batch_size" json:"batch_size" doc:"records per batch; default 1000"`
	// FlushInterval is the manual's producer.flush_interval: the longest a
	// partial batch waits before it is sent.
	FlushInterval Duration `yaml:"flush_interval" json:"flush_interval" doc:"longest wait for a partial batch (500ms or bare ms); default 5ms"`
	// WorkerCount is the manual's producer.worker_count: batches in flight.
	WorkerCount int `yaml:"worker_count" json:"worker_count" doc:"batches in flight at once, in each lane (live and backlog); default 4"`
	// DeliveryTimeout fails a send the broker has not acknowledged in
	// time; the batch stays in the buffer and is retried after a backoff.
	DeliveryTimeout Duration `yaml:"delivery_timeout" json:"delivery_timeout" doc:"a send not acknowledged within this fails and is retried after a backoff (the records stay buffered); default 10s"`
	// LiveWindow: records committed longer ago than this are sent as
	// backlog, beside the live data rather than ahead of it.
	LiveWindow  Duration `yaml:"live_window" json:"live_window" doc:"records committed longer ago than this are sent in the backlog lane, beside live data instead of ahead of it; default 5s"`
	Compression string   `yaml:"compression" json:"compression" doc:"none, gzip, snappy, lz4 or zstd; default snappy"`
	// Acks is all (default), leader or none.
	Acks       string `yaml:"acks" json:"acks" doc:"all (default), leader or none"`
	Idempotent *bool  `yaml:"idempotent" json:"idempotent" doc:"idempotent producer; default true (needs acks all)"`
	TLS        TLS    `yaml:"tls" json:"tls" doc:"TLS to the brokers"`
	SASL       SASL   `yaml:"sasl" json:"sasl" doc:"SASL authentication to the brokers"`
}

// MQTT configures the MQTT sink.
type MQTT struct {
	Enabled  bool   `yaml:"enabled" json:"enabled" doc:"send to MQTT; default false"`
	Broker   string `yaml:"broker" json:"broker" doc:"broker URL, tcp://host:1883 or ssl://host:8883"`
	ClientID string `yaml:"client_id" json:"client_id" doc:"MQTT client id; default iot-producer-<gateway id>"`
	Topic    string `yaml:"topic" json:"topic" doc:"topic template; default iot/{gateway}/{device}"`
	QoS      int    `yaml:"qos" json:"qos" doc:"0, 1 (default) or 2"`
	// BatchSize and FlushInterval mean what they mean for the producer.
	BatchSize     int      `yaml:"batch_size" json:"batch_size" doc:"records per batch; default 100"`
	FlushInterval Duration `yaml:"flush_interval" json:"flush_interval" doc:"longest wait for a partial batch; default 10ms"`
	Username      string   `yaml:"username" json:"username" doc:"user name; empty for none"`
	Password      string   `yaml:"password" json:"password" secret:"true" doc:"password; or password_file, or ${ENV}"`
	TLS           TLS      `yaml:"tls" json:"tls" doc:"TLS to the broker; enabled by itself for ssl://, tls://, mqtts:// and wss:// brokers"`
}

// TLS configures a client's TLS.
type TLS struct {
	Enabled    bool   `yaml:"enabled" json:"enabled" doc:"use TLS; default false"`
	CAFile     string `yaml:"ca_file" json:"ca_file" doc:"PEM CA bundle; default: the system roots"`
	CertFile   string `yaml:"cert_file" json:"cert_file" doc:"client certificate for mutual TLS"`
	KeyFile    string `yaml:"key_file" json:"key_file" doc:"client key for mutual TLS"`
	ServerName string `yaml:"server_name" json:"server_name" doc:"name to verify in the server certificate"`
	// InsecureSkipVerify disables certificate checks; for tests only.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify" json:"insecure_skip_verify" doc:"skip certificate verification; for tests only"`
}

// SASL configures Kafka authentication.
type SASL struct {
	// Mechanism is empty (none), PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
	Mechanism string `yaml:"mechanism" json:"mechanism" doc:"PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; empty for none"`
	Username  string `yaml:"username" json:"username" doc:"SASL user name; required with a mechanism"`
	Password  string `yaml:"password" json:"password" secret:"true" doc:"password; or password_file, or ${ENV}"`
	// AllowPlainWithoutTLS must be set to send a PLAIN password in clear.
	AllowPlainWithoutTLS bool `yaml:"allow_plain_without_tls" json:"allow_plain_without_tls" doc:"allow PLAIN without TLS (the password crosses the network in clear); default false"`
}

// Telemetry configures the HTTP listeners.
type Telemetry struct {
	MetricsListen string `yaml:"metrics_listen" json:"metrics_listen" doc:"/metrics and /config; default :8080"`
	HealthListen  string `yaml:"health_listen" json:"health_listen" doc:"/health and /ready; default :8081"`
	// PprofListen is empty to disable pprof.
	PprofListen string `yaml:"pprof_listen" json:"pprof_listen" doc:"pprof; default 127.0.0.1:6060; \"off\" disables it"`
}

// Log configures logging.
type Log struct {
	Level  string `yaml:"level" json:"level" doc:"debug, info (default), warn, error"`
	Format string `yaml:"format" json:"format" doc:"text (default) or json"`
}
