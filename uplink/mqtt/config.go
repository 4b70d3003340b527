package mqtt

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/iot-producer/iot-producer/agent/config"
	"github.com/iot-producer/iot-producer/uplink"
)

func init() {
	config.RegisterSink(config.SinkPlugin{
		Section: "mqtt",
		Name:    "mqtt",
		Summary: "an MQTT broker (MQTT 3.1.1, Eclipse Paho): the record's JSON per sample, or Sparkplug B",
		New:     func() config.Settings { return NewConfig() },
	})
}

// Config is the mqtt section: the MQTT sink's settings, less the enabled
// key agent/config keeps.
type Config struct {
	Broker   string `yaml:"broker" json:"broker" doc:"broker URL: tcp://host:1883, or ssl://host:8883 for TLS (schemes tcp, mqtt, ssl, tls, mqtts, ws, wss)"`
	ClientID string `yaml:"client_id" json:"client_id" doc:"MQTT client id; keep it stable: the broker keeps the session (messages in flight) under it"`
	Topic    string `yaml:"topic" json:"topic" doc:"topic template of JSON payloads, with {gateway}, {device} and {tag} (not used for Sparkplug)"`
	// QoS 2 is not offered: see the README.
	QoS    int  `yaml:"qos" json:"qos" range:"0,1" doc:"1: a sample leaves the buffer on the broker's PUBACK; 0: once written to the connection (lost if the connection drops)"`
	Retain bool `yaml:"retain" json:"retain" doc:"retain flag on data messages"`
	// Payload is json (the record's JSON value) or sparkplug.
	Payload string `yaml:"payload" json:"payload" enum:"json,sparkplug" doc:"json: the record's JSON value as it is; sparkplug: Sparkplug B (see sparkplug)"`
	// BatchSize, FlushInterval and WorkerCount mean what they mean for the
	// producer, for this sink's own send loop.
	BatchSize       int             `yaml:"batch_size" json:"batch_size" range:"1,10000" doc:"records per batch"`
	FlushInterval   config.Duration `yaml:"flush_interval" json:"flush_interval" min:"1ns" doc:"longest wait for a partial batch while others are in flight, counted from its oldest record's commit; with none in flight it goes at once"`
	WorkerCount     int             `yaml:"worker_count" json:"worker_count" range:"1,64" doc:"batches in flight at once, in each lane (live and backlog)"`
	LiveWindow      config.Duration `yaml:"live_window" json:"live_window" min:"100ms" doc:"records committed longer ago than this are sent in the backlog lane, beside live data"`
	DeliveryTimeout config.Duration `yaml:"delivery_timeout" json:"delivery_timeout" min:"1s" doc:"a batch not acknowledged within this fails and is sent again after a backoff (the records stay buffered)"`
	KeepAlive       config.Duration `yaml:"keep_alive" json:"keep_alive" min:"1s" doc:"MQTT keep-alive: a silent broker is detected within about 1.5 times this"`
	ReconnectMax    config.Duration `yaml:"reconnect_max" json:"reconnect_max" min:"100ms" doc:"longest wait between connection attempts (the wait doubles from 500ms up to this, with jitter)"`
	// MaxInflight bounds what the client holds unacknowledged.
	MaxInflight int        `yaml:"max_inflight" json:"max_inflight" range:"0,65000" doc:"most messages the client holds awaiting PUBACK (beyond it batches wait in the buffer); 0: 2 × batch_size × worker_count × 2 lanes, at least 4000"`
	Username    string     `yaml:"username" json:"username" doc:"user name; empty for none"`
	Password    string     `yaml:"password" json:"password" secret:"true" doc:"password; or password_file, or ${ENV}"`
	TLS         config.TLS `yaml:"tls" json:"tls" doc:"TLS to the broker; on by itself for ssl://, tls://, mqtts:// and wss:// brokers"`
	Sparkplug   Sparkplug  `yaml:"sparkplug" json:"sparkplug" doc:"Sparkplug B, when payload is sparkplug"`
}

// Sparkplug is the mqtt.sparkplug section.
type Sparkplug struct {
	GroupID    string `yaml:"group_id" json:"group_id" doc:"Sparkplug group id (required with payload sparkplug)"`
	EdgeNodeID string `yaml:"edge_node_id" json:"edge_node_id" doc:"edge node id of the gateway"`
	// StrictQoS0 follows the specification's QoS 0 for data and births.
	StrictQoS0 bool `yaml:"strict_qos0" json:"strict_qos0" doc:"publish DDATA and births at QoS 0 as the specification says (a sample then leaves the buffer once written, not on PUBACK); default false: at qos"`
}

// NewConfig returns the mqtt section's defaults.
func NewConfig() *Config {
	return &Config{
		Broker:          "tcp://localhost:1883",
		Topic:           DefaultTopic,
		QoS:             1,
		Payload:         "json",
		BatchSize:       500,
		FlushInterval:   config.Duration(5 * time.Millisecond),
		WorkerCount:     4,
		LiveWindow:      config.Duration(5 * time.Second),
		DeliveryTimeout: config.Duration(DefaultDeliveryTimeout),
		KeepAlive:       config.Duration(DefaultKeepAlive),
		ReconnectMax:    config.Duration(DefaultReconnectMax),
	}
}

// DerivedDefaults implements config.DerivedDocs.
func (c *Config) DerivedDefaults() map[string]string {
	return map[string]string{
		"client_id":              "iot-producer-<gateway.id>",
		"tls.enabled":            "true for ssl, tls, mqtts and wss brokers",
		"sparkplug.edge_node_id": "<gateway.id>",
	}
}

// tlsSchemes are the broker URL schemes that mean TLS.
var tlsSchemes = map[string]bool{"ssl": true, "tls": true, "mqtts": true, "wss": true}

// Derive implements config.Deriver.
func (c *Config) Derive(g config.Gateway) {
	if c.ClientID == "" {
		c.ClientID = "iot-producer-" + g.ID
	}
	if c.Sparkplug.EdgeNodeID == "" {
		c.Sparkplug.EdgeNodeID = g.ID
	}
	if u, err := url.Parse(c.Broker); err == nil && tlsSchemes[u.Scheme] {
		c.TLS.Enabled = true
	}
}

// Check implements config.Settings.
func (c *Config) Check(ck *config.Checker) {
	u, err := url.Parse(c.Broker)
	switch {
	case c.Broker == "":
		ck.Add("broker", "required, e.g. tcp://localhost:1883")
	case err != nil:
		ck.Add("broker", "%q: %v", config.Cut(c.Broker), err)
	case !map[string]bool{"tcp": true, "mqtt": true, "ws": true}[u.Scheme] && !tlsSchemes[u.Scheme]:
		ck.Add("broker", "%q: unknown scheme %q; want tcp, mqtt, ssl, tls, mqtts, ws or wss", config.Cut(c.Broker), u.Scheme)
	case u.Host == "":
		ck.Add("broker", "%q: no host; write tcp://host:1883", config.Cut(c.Broker))
	case c.TLS.Enabled && !tlsSchemes[u.Scheme]:
		ck.Add("tls.enabled", "TLS needs a ssl, tls, mqtts or wss broker URL, not %s://", u.Scheme)
	}
	if c.Payload != "sparkplug" {
		if err := checkTopic(c.Topic); err != nil {
			ck.Add("topic", "%v", err)
		}
	} else {
		if c.Sparkplug.GroupID == "" {
			ck.Add("sparkplug.group_id", "required with payload sparkplug")
		}
		for key, id := range map[string]string{"sparkplug.group_id": c.Sparkplug.GroupID, "sparkplug.edge_node_id": c.Sparkplug.EdgeNodeID} {
			if strings.ContainsAny(id, "/+#") {
				ck.Add(key, "%q: a Sparkplug id cannot contain /, + or #", config.Cut(id))
			}
		}
	}
	if c.MaxInflight > 0 && c.MaxInflight < 2*c.BatchSize*c.WorkerCount {
		ck.Add("max_inflight", "%d is below batch_size × worker_count × 2 lanes (%d): batches would be refused while others are in flight", c.MaxInflight, 2*c.BatchSize*c.WorkerCount)
	}
	if c.Password != "" && c.Username == "" {
		ck.Add("username", "required with a password")
	}
	ck.TLS("tls", &c.TLS)
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

// Build implements uplink.Builder: TLS files are read and parsed and the
// sink configured; nothing is dialled until the first send.
func (c *Config) Build(env uplink.SinkEnv) (uplink.Sink, error) {
	opts, err := c.Options(env.GatewayID)
	if err != nil {
		return nil, err
	}
	opts.Logger = env.Logger
	opts.OnConnect = env.OnConnect
	if f := env.OnDisconnect; f != nil {
		opts.OnDisconnect = func(broker string, _ error) { f(broker) }
	}
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
	inflight := c.MaxInflight
	if inflight == 0 {
		inflight = max(DefaultMaxInflight, 2*c.BatchSize*c.WorkerCount*2)
	}
	o := Options{
		Broker:          c.Broker,
		ClientID:        c.ClientID,
		GatewayID:       gatewayID,
		Topic:           c.Topic,
		QoS:             byte(c.QoS),
		Retain:          c.Retain,
		Username:        c.Username,
		Password:        c.Password,
		TLS:             tlsCfg,
		KeepAlive:       c.KeepAlive.Std(),
		DeliveryTimeout: c.DeliveryTimeout.Std(),
		ReconnectMax:    c.ReconnectMax.Std(),
		MaxInflight:     min(inflight, maxMessageIDs-100),
	}
	if c.Payload == "sparkplug" {
		o.Sparkplug = &SparkplugOptions{GroupID: c.Sparkplug.GroupID, EdgeNodeID: c.Sparkplug.EdgeNodeID, StrictQoS0: c.Sparkplug.StrictQoS0}
	}
	return o, nil
}
