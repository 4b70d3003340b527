// Package config owns the agent's YAML configuration: its schema, defaults,
// ${ENV} and *_file expansion for secrets, and validation that reports every
// problem with its path and line. It knows nothing of the packages that use
// the values.
package config

// Config is the whole configuration file. The top-level sections follow the
// architecture; the ops manual's keys (producer.batch_size,
// producer.flush_interval, producer.worker_count, device.sample_interval,
// device.data_variation) keep the meaning the manual gives them. The
// sections of sinks (producer, mqtt) and the protocol keys of plcs entries
// belong to the plug-ins registered for them (registry.go).
type Config struct {
	Gateway Gateway `yaml:"gateway" json:"gateway" doc:"identity of this gateway and where it keeps its state"`
	PLCs    []PLC   `yaml:"plcs" json:"plcs" doc:"the real devices polled by a protocol driver"`
	Device  Device  `yaml:"device" json:"device" doc:"the built-in simulated devices"`
	Buffer  Buffer  `yaml:"buffer" json:"buffer" doc:"the durable store-and-forward buffer"`
	// Sinks holds one entry per registered sink plug-in, in the order of
	// their sections, each decoded from its top-level section.
	Sinks     []Sink    `yaml:"-" json:"-"`
	Telemetry Telemetry `yaml:"telemetry" json:"telemetry" doc:"HTTP listeners for metrics, health and pprof"`
	Log       Log       `yaml:"log" json:"log" doc:"logging"`

	// pos is where each key was in the file, for Problem.
	pos *positions
}

// Gateway identifies this gateway and where it keeps its state.
type Gateway struct {
	// ID is carried in every record. Default: the host name.
	ID string `yaml:"id" json:"id" doc:"gateway id carried in every record; default: the host name"`
	// StateDir holds the buffer file unless buffer.path says otherwise.
	// Default: /var/lib/iot-producer.
	StateDir string `yaml:"state_dir" json:"state_dir" doc:"directory for the buffer and other state; default /var/lib/iot-producer"`
}

// PLC is one real device polled by a protocol driver. Its name, driver and
// enabled keys are agent/config's; every other key of the entry belongs to
// the driver plug-in its driver key names, decoded into Settings.
type PLC struct {
	Name   string `yaml:"name" json:"name" required:"true" doc:"device name, unique; the record key"`
	Driver string `yaml:"driver" json:"driver" required:"true" doc:"the protocol driver that polls it"`
	// Enabled defaults to true.
	Enabled *bool `yaml:"enabled" json:"enabled" doc:"poll this device; default true"`
	// Settings is the driver plug-in's part of the entry; nil when the
	// driver is not available in this build.
	Settings Settings `yaml:"-" json:"-"`
}

// Device configures the built-in simulated devices.
type Device struct {
	// Enabled turns the in-process simulator source on. Default: true when
	// no plcs are configured.
	Enabled *bool `yaml:"enabled" json:"enabled" doc:"run the built-in simulated devices; default true when plcs is empty"`
	Count   int   `yaml:"count" json:"count" range:"0,100000" doc:"number of simulated devices; default 10"`
	// TagsPerDevice cycles through temperature, pressure, counter and alarm
	// shapes.
	TagsPerDevice int `yaml:"tags_per_device" json:"tags_per_device" range:"1,1000" doc:"tags per simulated device (temperature, pressure, counter, alarm, ...); default 4"`
	// SampleInterval is the manual's device.sample_interval: time between
	// two readings of every tag.
	SampleInterval Duration `yaml:"sample_interval" json:"sample_interval" min:"1ms" doc:"time between readings of each tag (500ms or bare milliseconds); default 1000"`
	// DataVariation is the manual's device.data_variation: the relative
	// amplitude of noise and movement, 0.1 = 10% of each signal's range.
	DataVariation float64 `yaml:"data_variation" json:"data_variation" range:"0,1" doc:"relative amplitude of noise and movement (0-1); default 0.1"`
	Seed          int64   `yaml:"seed" json:"seed" doc:"random seed; the same seed gives the same signals; default 1"`
	NamePrefix    string  `yaml:"name_prefix" json:"name_prefix" doc:"device names are <prefix>-0001...; default sim"`
}

// Buffer configures the durable store-and-forward buffer.
type Buffer struct {
	Path string `yaml:"path" json:"path" doc:"bbolt file; default <gateway.state_dir>/buffer.db"`
	// CommitInterval bounds how long a sample waits before its group commit.
	CommitInterval Duration `yaml:"commit_interval" json:"commit_interval" doc:"longest wait before a group commit; default 5ms"`
	// CommitSize is the number of samples that triggers a commit at once.
	CommitSize int      `yaml:"commit_size" json:"commit_size" range:"1," doc:"samples per group commit at most; default 10000"`
	MaxBytes   ByteSize `yaml:"max_bytes" json:"max_bytes" min:"1MiB" doc:"bound per queue (e.g. 1GiB); default 1GiB (128MiB on 32-bit ARM, where the file must fit the address space)"`
	MaxAge     Duration `yaml:"max_age" json:"max_age" min:"1ns" doc:"records older than this are dropped (e.g. 168h); default 168h"`
	// DropPolicy is drop_oldest or drop_newest.
	DropPolicy string `yaml:"drop_policy" json:"drop_policy" enum:"drop_oldest,drop_newest" doc:"drop_oldest (default) or drop_newest when a bound is hit"`
	// OnCorrupt is quarantine (move aside and start fresh) or fail.
	OnCorrupt string `yaml:"on_corrupt" json:"on_corrupt" enum:"quarantine,fail" doc:"quarantine (default: move the file aside, start fresh) or fail"`
	// MaxPendingBytes bounds the samples held in memory while commits fail.
	MaxPendingBytes ByteSize `yaml:"max_pending_bytes" json:"max_pending_bytes" min:"64KiB" doc:"memory for samples waiting while the disk refuses commits (a full disk); beyond it samples are dropped per drop_policy, numbered and counted, so the gap shows downstream; default 16MiB"`
	// SeriesIdle is how long a series may go without a sample before the
	// ingest stage forgets it (its last sequence number stays in the file).
	SeriesIdle Duration `yaml:"series_idle" json:"series_idle" min:"1m" doc:"a series without a sample for this long leaves memory; its last sequence number stays in the buffer file and numbering resumes from it when the series comes back; default 1h"`
}

// Sink is one sink section of the file (producer, mqtt, ...): its enabled
// key is agent/config's, the rest belongs to the sink plug-in registered
// for the section.
type Sink struct {
	// Section is the top-level key, Name the sink's name in queues,
	// metrics and /ready.
	Section, Name string
	// Enabled says whether the agent sends to this sink.
	Enabled bool
	// Settings is the plug-in's part of the section.
	Settings Settings
}

// sinkSection is the part of a sink section agent/config owns.
type sinkSection struct {
	Enabled *bool `yaml:"enabled" json:"enabled" doc:"send to this sink"`
}

// TLS configures a client's TLS.
type TLS struct {
	Enabled    bool   `yaml:"enabled" json:"enabled" doc:"use TLS; default false"`
	CAFile     string `yaml:"ca_file" json:"ca_file" doc:"PEM CA bundle; default: the system roots"`
	CertFile   string `yaml:"cert_file" json:"cert_file" doc:"client certificate for mutual TLS"`
	KeyFile    string `yaml:"key_file" json:"key_file" doc:"client key for mutual TLS"`
	ServerName string `yaml:"server_name" json:"server_name" doc:"name to verify in the server certificate"`
	// InsecureSkipVerify disables certificate checks; for tests only.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify" json:"insecure_skip_verify" warn:"server certificates are not verified" doc:"skip certificate verification; for tests only (warned at start and shown in /ready)"`
}

// SASL configures Kafka authentication.
type SASL struct {
	// Mechanism is empty (none), PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
	Mechanism string `yaml:"mechanism" json:"mechanism" enum:",PLAIN,SCRAM-SHA-256,SCRAM-SHA-512" doc:"PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; empty for none"`
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
	PprofListen string `yaml:"pprof_listen" json:"pprof_listen" doc:"pprof; default 127.0.0.1:6060; \"off\" disables it; loopback only unless pprof_allow_remote"`
	// PprofAllowRemote lets pprof_listen be a non-loopback address.
	PprofAllowRemote bool `yaml:"pprof_allow_remote" json:"pprof_allow_remote" warn:"pprof is reachable from other hosts" doc:"allow a non-loopback pprof_listen (profiles show memory contents and the command line); default false"`
	// ConfigAllowRemote lets clients other than loopback read /config.
	ConfigAllowRemote bool `yaml:"config_allow_remote" json:"config_allow_remote" doc:"serve /config to clients other than loopback; default false (403)"`
}

// Log configures logging.
type Log struct {
	Level  string `yaml:"level" json:"level" enum:"debug,info,warn,error" doc:"debug, info (default), warn, error"`
	Format string `yaml:"format" json:"format" enum:"text,json" doc:"text (default) or json"`
}
