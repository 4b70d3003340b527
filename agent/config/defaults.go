package config

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// DefaultPath is where the installed agent reads its configuration.
func DefaultPath() string { return "/etc/iot-producer/config.yaml" }

// DefaultStateDir is gateway.state_dir when the file does not set it.
const DefaultStateDir = "/var/lib/iot-producer"

// Default returns the configuration of an empty file: every default filled
// in, the simulator as the only source and Kafka on localhost:9092. It
// fails only when gateway.id cannot default to the host name.
func Default() (*Config, error) { return Parse(nil, "<defaults>") }

func ptr[T any](v T) *T { return &v }

// defaultMaxBytes bounds each queue: 1GiB, or 128MiB on 32-bit platforms
// (armhf), where bbolt's memory map of the whole file must fit the address
// space (see buffer.CheckBounds, which the agent applies at start).
const defaultMaxBytes = ByteSize(1 << 30 >> (bits32 * 3))

// bits32 is 1 on 32-bit platforms, else 0.
const bits32 = (^uint(0)>>32)&1 ^ 1

// staticDefaults is the configuration before the file is decoded over it: a
// key the file does not mention keeps the value set here. Defaults that
// depend on other keys are filled in by applyDerived afterwards.
func staticDefaults() Config {
	return Config{
		Gateway: Gateway{StateDir: DefaultStateDir},
		Device: Device{
			Count:          10,
			TagsPerDevice:  4,
			SampleInterval: Duration(time.Second),
			DataVariation:  0.1,
			Seed:           1,
			NamePrefix:     "sim",
		},
		Buffer: Buffer{
			CommitInterval: Duration(5 * time.Millisecond),
			CommitSize:     10000,
			MaxBytes:       defaultMaxBytes,
			MaxAge:         Duration(168 * time.Hour),
			DropPolicy:     "drop_oldest",
			OnCorrupt:      "quarantine",
		},
		Producer: Producer{
			Enabled:         ptr(true),
			Brokers:         []string{"localhost:9092"},
			Topic:           "iot-samples",
			BatchSize:       1000,
			FlushInterval:   Duration(10 * time.Millisecond),
			WorkerCount:     4,
			DeliveryTimeout: Duration(10 * time.Second),
			LiveWindow:      Duration(5 * time.Second),
			Compression:     "snappy",
			Acks:            "all",
		},
		MQTT: MQTT{
			Topic:         "iot/{gateway}/{device}",
			QoS:           1,
			BatchSize:     100,
			FlushInterval: Duration(5 * time.Millisecond),
		},
		Telemetry: Telemetry{
			MetricsListen: ":8080",
			HealthListen:  ":8081",
			PprofListen:   "127.0.0.1:6060",
		},
		Log: Log{Level: "info", Format: "text"},
	}
}

// itemDefaults returns the defaults of a new element of a list: a PLC or a
// Tag; nil for lists of plain values.
func itemDefaults(elem any) any {
	switch elem.(type) {
	case PLC:
		return PLC{
			Enabled:      ptr(true),
			UnitID:       1,
			PollInterval: Duration(time.Second),
			Timeout:      Duration(time.Second),

			ConnectTimeout: Duration(3 * time.Second),
			BaudRate:       19200,
			Parity:         "E",
			DataBits:       8,
			StopBits:       1,
			MaxGap:         8,
			MaxRegisters:   125,
			OnError:        "bad_quality",
		}
	case Tag:
		return Tag{Scale: 1}
	}
	return nil
}

// derivedDefaults describes, for the reference, the defaults applyDerived
// computes from other keys. Keys are yaml paths as the reference writes
// them.
var derivedDefaults = map[string]string{
	"gateway.id":               "the host name",
	"buffer.path":              "<gateway.state_dir>/buffer.db",
	"device.enabled":           "true when plcs is empty",
	"plcs[].tags[].byte_order": "ABCD on modbus devices",
	"plcs[].tags[].bit":        "none: a bool is the whole register, true when not 0",
	"producer.client_id":       "iot-producer-<gateway.id>",
	"producer.idempotent":      "true when acks is all",
	"mqtt.client_id":           "iot-producer-<gateway.id>",
	"mqtt.tls.enabled":         "true for ssl://, tls://, mqtts:// and wss:// brokers",
}

// applyDerived fills in the defaults that depend on other keys and
// normalises values with two spellings. It returns a problem only when
// gateway.id cannot default to the host name.
func (c *Config) applyDerived() *FieldError {
	var ferr *FieldError
	if c.Gateway.ID == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			ferr = &FieldError{Path: "gateway.id", Msg: fmt.Sprintf("not set, and the host name is unknown (%v): set gateway.id", err)}
		}
		c.Gateway.ID = h
	}
	if c.Buffer.Path == "" && c.Gateway.StateDir != "" {
		c.Buffer.Path = filepath.Join(c.Gateway.StateDir, "buffer.db")
	}
	if c.Device.Enabled == nil {
		c.Device.Enabled = ptr(len(c.PLCs) == 0)
	}
	for i := range c.PLCs {
		p := &c.PLCs[i]
		if p.Enabled == nil {
			p.Enabled = ptr(true)
		}
		if p.Driver != "modbus" {
			continue
		}
		for j := range p.Tags {
			if p.Tags[j].ByteOrder == "" {
				p.Tags[j].ByteOrder = "ABCD"
			}
		}
	}
	if c.Producer.Enabled == nil {
		c.Producer.Enabled = ptr(true)
	}
	if c.Producer.ClientID == "" {
		c.Producer.ClientID = "iot-producer-" + c.Gateway.ID
	}
	if c.Producer.Idempotent == nil {
		c.Producer.Idempotent = ptr(c.Producer.Acks == "all")
	}
	if c.MQTT.ClientID == "" {
		c.MQTT.ClientID = "iot-producer-" + c.Gateway.ID
	}
	if u, err := url.Parse(c.MQTT.Broker); err == nil && slices.Contains(tlsSchemes, strings.ToLower(u.Scheme)) {
		c.MQTT.TLS.Enabled = true
	}
	if strings.EqualFold(c.Telemetry.PprofListen, "off") {
		c.Telemetry.PprofListen = ""
	}
	return ferr
}
