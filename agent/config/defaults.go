package config

import (
	"fmt"
	"os"
	"path/filepath"
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
func Default() (*Config, error) { return parse(nil, "<defaults>", true) }

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
			// About 110,000 samples.
			MaxPendingBytes: 16 << 20,
			SeriesIdle:      Duration(time.Hour),
		},
		Sinks: newSinks(),
		Telemetry: Telemetry{
			MetricsListen: ":8080",
			HealthListen:  ":8081",
			PprofListen:   "127.0.0.1:6060",
		},
		Log: Log{Level: "info", Format: "text"},
	}
}

// newSinks returns a Sink for every registered sink plug-in, with its
// defaults.
func newSinks() []Sink {
	var out []Sink
	for _, p := range Sinks() {
		out = append(out, Sink{Section: p.Section, Name: p.Name, Enabled: p.EnabledByDefault, Settings: p.New()})
	}
	return out
}

// sink returns the sink of the top-level section, nil if none is
// registered for it.
func (c *Config) sink(section string) *Sink {
	for i := range c.Sinks {
		if c.Sinks[i].Section == section {
			return &c.Sinks[i]
		}
	}
	return nil
}

// Sink returns the sink configured by the top-level section (producer,
// mqtt), nil when no plug-in of this build owns that section.
func (c *Config) Sink(section string) *Sink { return c.sink(section) }

// derivedDefaults describes, for the reference, the defaults applyDerived
// computes from other keys. Keys are yaml paths as the reference writes
// them.
var derivedDefaults = map[string]string{
	"gateway.id":     "the host name",
	"buffer.path":    "<gateway.state_dir>/buffer.db",
	"device.enabled": "true when plcs is empty",
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
		if d, ok := p.Settings.(Deriver); ok {
			d.Derive(c.Gateway)
		}
	}
	for _, s := range c.Sinks {
		if d, ok := s.Settings.(Deriver); ok {
			d.Derive(c.Gateway)
		}
	}
	if strings.EqualFold(c.Telemetry.PprofListen, "off") {
		c.Telemetry.PprofListen = ""
	}
	return ferr
}
