package kafka

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/iot-producer/iot-producer/agent/config"
	"github.com/iot-producer/iot-producer/uplink"
)

func init() {
	config.RegisterSink(config.SinkPlugin{
		Section:          "producer",
		Name:             "kafka",
		Summary:          "Apache Kafka (the section keeps the ops manual's name, producer)",
		EnabledByDefault: true,
		New:              func() config.Settings { return NewConfig() },
	})
}

// Config is the producer section: the Kafka sink's settings, less the
// enabled key agent/config keeps. batch_size, flush_interval and
// worker_count keep the meaning the ops manual gives them.
type Config struct {
	Brokers  []string `yaml:"brokers" json:"brokers" doc:"seed brokers host:port"`
	Topic    string   `yaml:"topic" json:"topic" doc:"topic, or a template such as iot.{device} ({device}, {gateway})"`
	ClientID string   `yaml:"client_id" json:"client_id" doc:"Kafka client id (each lane's client adds -live or -backlog)"`
	// BatchSize is the manual's producer.batch_size: records per batch.
	BatchSize int `yaml:"batch_size" json:"batch_size" range:"1,100000" doc:"records per batch"`
	// FlushInterval is the manual's producer.flush_interval: the longest a
	// partial batch waits before it is sent.
	FlushInterval config.Duration `yaml:"flush_interval" json:"flush_interval" min:"1ns" doc:"longest wait for a partial batch while others are in flight, counted from its oldest record's commit; with none in flight it goes at once (500ms or bare ms)"`
	// WorkerCount is the manual's producer.worker_count: batches in flight.
	WorkerCount     int             `yaml:"worker_count" json:"worker_count" range:"1,64" doc:"batches in flight at once, in each lane (live and backlog)"`
	DeliveryTimeout config.Duration `yaml:"delivery_timeout" json:"delivery_timeout" min:"1s" doc:"a send not acknowledged within this fails and is retried after a backoff (the records stay buffered)"`
	LiveWindow      config.Duration `yaml:"live_window" json:"live_window" min:"100ms" doc:"records committed longer ago than this are sent in the backlog lane, beside live data instead of ahead of it"`
	Compression     string          `yaml:"compression" json:"compression" enum:"none,gzip,snappy,lz4,zstd" doc:"batch compression"`
	Acks            string          `yaml:"acks" json:"acks" enum:"all,leader,none" doc:"acknowledgement the broker gives: all in-sync replicas, the leader, or none"`
	Idempotent      *bool           `yaml:"idempotent" json:"idempotent" doc:"idempotent producer (needs acks all)"`
	TLS             config.TLS      `yaml:"tls" json:"tls" doc:"TLS to the brokers"`
	SASL            config.SASL     `yaml:"sasl" json:"sasl" doc:"SASL authentication to the brokers"`
}

// NewConfig returns the producer section's defaults.
func NewConfig() *Config {
	return &Config{
		Brokers:         []string{"localhost:9092"},
		Topic:           "iot-samples",
		BatchSize:       1000,
		FlushInterval:   config.Duration(10 * time.Millisecond),
		WorkerCount:     4,
		DeliveryTimeout: config.Duration(10 * time.Second),
		LiveWindow:      config.Duration(5 * time.Second),
		Compression:     "snappy",
		Acks:            "all",
	}
}

// DerivedDefaults implements config.DerivedDocs.
func (c *Config) DerivedDefaults() map[string]string {
	return map[string]string{
		"client_id":  "iot-producer-<gateway.id>",
		"idempotent": "true when acks is all",
	}
}

// Derive implements config.Deriver.
func (c *Config) Derive(g config.Gateway) {
	if c.ClientID == "" {
		c.ClientID = "iot-producer-" + g.ID
	}
	if c.Idempotent == nil {
		v := c.Acks == "all"
		c.Idempotent = &v
	}
}

// maxClientID leaves room for the lane suffix within the 255 characters
// brokers log and quota by.
const maxClientID = 255 - len("-backlog")

var (
	topicRe        = regexp.MustCompile(`^[A-Za-z0-9._-]{1,249}$`)
	saslMechanisms = []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}
)

// Check implements config.Settings.
func (c *Config) Check(ck *config.Checker) {
	if len(c.Brokers) == 0 {
		ck.Add("brokers", "required: give at least one host:port")
	}
	for i, b := range c.Brokers {
		path := fmt.Sprintf("brokers[%d]", i)
		if strings.Contains(b, "://") {
			ck.Add(path, "%q: write host:port, not a URL", config.Cut(b))
		} else if err := config.CheckHostPort(b); err != nil {
			ck.Add(path, "%q: want host:port: %v", config.Cut(b), err)
		}
	}
	if c.Topic == "" {
		ck.Add("topic", "required")
	} else if plain, err := config.CheckTopicPlaceholders(c.Topic, config.TopicPlaceholders); err != nil {
		ck.Add("topic", "%q: %v", config.Cut(c.Topic), err)
	} else if !topicRe.MatchString(plain) || plain == "." || plain == ".." {
		ck.Add("topic", "%q: a Kafka topic holds only letters, digits, '.', '_' and '-' (at most 249)", config.Cut(c.Topic))
	}
	if len(c.ClientID) > maxClientID {
		ck.Add("client_id", "%q is too long: at most %d characters", config.Cut(c.ClientID), maxClientID)
	}
	if c.Idempotent != nil && *c.Idempotent && c.Acks != "all" && c.Acks != "" && slices.Contains([]string{"leader", "none"}, c.Acks) {
		ck.Add("idempotent", "an idempotent producer needs acks all, not %s: set acks: all or idempotent: false", c.Acks)
	}
	ck.TLS("tls", &c.TLS)
	s := &c.SASL
	switch {
	case s.Mechanism == "":
		if s.Username != "" {
			ck.Add("sasl.mechanism", "required when sasl.username is set: %s", config.OneOf(saslMechanisms))
		} else if s.Password != "" {
			ck.Add("sasl.mechanism", "required when sasl.password is set: %s", config.OneOf(saslMechanisms))
		}
	case slices.Contains(saslMechanisms, s.Mechanism):
		if s.Username == "" {
			ck.Add("sasl.username", "required with mechanism %s", s.Mechanism)
		}
		if s.Password == "" {
			ck.Add("sasl.password", "required with mechanism %s (or password_file)", s.Mechanism)
		}
		if s.Mechanism == "PLAIN" && !c.TLS.Enabled && !s.AllowPlainWithoutTLS {
			ck.Add("sasl.mechanism", "PLAIN sends the password in clear without TLS: set %s, use SCRAM, or set allow_plain_without_tls", ck.Path("tls.enabled"))
		}
	}
}

// Describe returns the brokers and topic, for the agent's startup log.
func (c *Config) Describe() []any {
	return []any{"brokers", strings.Join(c.Brokers, ","), "topic", c.Topic, "tls", c.TLS.Enabled, "sasl", c.SASL.Mechanism}
}

// Loop implements uplink.Builder.
func (c *Config) Loop() uplink.LoopSettings {
	return uplink.LoopSettings{
		BatchSize:     c.BatchSize,
		FlushInterval: c.FlushInterval.Std(),
		Workers:       c.WorkerCount,
		LiveWindow:    c.LiveWindow.Std(),
	}
}

// Build implements uplink.Builder: TLS files are read and parsed, the SASL
// mechanism made, and the clients configured; nothing is dialled until
// the first send.
func (c *Config) Build(env uplink.SinkEnv) (uplink.Sink, error) {
	opts, err := c.Options(env.GatewayID)
	if err != nil {
		return nil, err
	}
	opts.Logger = env.Logger
	opts.OnConnect, opts.OnDisconnect = env.OnConnect, env.OnDisconnect
	return New(opts)
}

// Options returns the sink options the section describes.
func (c *Config) Options(gatewayID string) (Options, error) {
	tlsCfg, err := uplink.TLSConfig(uplink.TLSFiles{
		Enabled: c.TLS.Enabled, CAFile: c.TLS.CAFile, CertFile: c.TLS.CertFile, KeyFile: c.TLS.KeyFile,
		ServerName: c.TLS.ServerName, InsecureSkipVerify: c.TLS.InsecureSkipVerify,
	})
	if err != nil {
		return Options{}, fmt.Errorf("tls: %w", err)
	}
	mech, err := SASLMechanism(c.SASL.Mechanism, c.SASL.Username, c.SASL.Password)
	if err != nil {
		return Options{}, fmt.Errorf("sasl: %w", err)
	}
	return Options{
		Brokers:            c.Brokers,
		Topic:              c.Topic,
		ClientID:           c.ClientID,
		GatewayID:          gatewayID,
		Compression:        c.Compression,
		Acks:               c.Acks,
		Idempotent:         c.Idempotent == nil || *c.Idempotent,
		TLS:                tlsCfg,
		SASL:               mech,
		MaxBufferedRecords: 2 * c.BatchSize * c.WorkerCount,
		DeliveryTimeout:    c.DeliveryTimeout.Std(),
	}, nil
}
