package config

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// MarshalJSON writes the configuration as the file has it: the common
// sections, each plcs entry with its driver's keys, and each sink section
// with its plug-in's keys (/config serves the redacted copy of it).
func (c *Config) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	field := func(name string, v any) error {
		if b.Len() > 1 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%q:", name)
		j, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("config: %s: %w", name, err)
		}
		b.Write(j)
		return nil
	}
	plcs := c.PLCs
	if plcs == nil {
		plcs = []PLC{}
	}
	for _, f := range []struct {
		name string
		v    any
	}{{"gateway", c.Gateway}, {"plcs", plcs}, {"device", c.Device}, {"buffer", c.Buffer}} {
		if err := field(f.name, f.v); err != nil {
			return nil, err
		}
	}
	for _, s := range c.Sinks {
		j, err := mergeObjects(sinkSection{Enabled: ptr(s.Enabled)}, s.Settings)
		if err != nil {
			return nil, fmt.Errorf("config: %s: %w", s.Section, err)
		}
		if err := field(s.Section, j); err != nil {
			return nil, err
		}
	}
	for _, f := range []struct {
		name string
		v    any
	}{{"telemetry", c.Telemetry}, {"log", c.Log}} {
		if err := field(f.name, f.v); err != nil {
			return nil, err
		}
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// MarshalJSON writes the entry as the file has it: name, driver and
// enabled, then the driver plug-in's keys.
func (p PLC) MarshalJSON() ([]byte, error) {
	type common PLC // without this method
	if p.Settings == nil {
		return json.Marshal(common(p))
	}
	return mergeObjects(common(p), p.Settings)
}

// mergeObjects marshals values that are JSON objects and joins their keys
// into one object.
func mergeObjects(vs ...any) (json.RawMessage, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for _, v := range vs {
		j, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		j = bytes.TrimSpace(j)
		if len(j) < 2 || j[0] != '{' {
			return nil, fmt.Errorf("BUG: %T does not marshal to a JSON object", v)
		}
		inner := bytes.TrimSpace(j[1 : len(j)-1])
		if len(inner) == 0 {
			continue
		}
		if b.Len() > 1 {
			b.WriteByte(',')
		}
		b.Write(inner)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}
