package agent

import "github.com/iot-producer/iot-producer/agent/config"

// Changes lists what differs between two configurations, by section and by
// PLC ("plcs[press-1]", "producer", "telemetry"), for the reload log; an
// empty list means the new file changes nothing.
func Changes(old, next *config.Config) []string {
	var out []string
	differ := func(a, b any) bool { return !sameJSON(a, b) }
	for _, s := range []struct {
		name string
		a, b any
	}{
		{"gateway", old.Gateway, next.Gateway},
		{"device", old.Device, next.Device},
		{"buffer", old.Buffer, next.Buffer},
		{"telemetry", old.Telemetry, next.Telemetry},
		{"log", old.Log, next.Log},
	} {
		if differ(s.a, s.b) {
			out = append(out, s.name)
		}
	}
	plcs := func(c *config.Config) map[string]config.PLC {
		m := map[string]config.PLC{}
		for _, p := range c.PLCs {
			m[p.Name] = p
		}
		return m
	}
	before, after := plcs(old), plcs(next)
	for _, p := range next.PLCs {
		if b, ok := before[p.Name]; !ok || differ(b, p) {
			out = append(out, "plcs["+p.Name+"]")
		}
	}
	for _, p := range old.PLCs {
		if _, ok := after[p.Name]; !ok {
			out = append(out, "plcs["+p.Name+"] removed")
		}
	}
	for _, s := range next.Sinks {
		o := old.Sink(s.Section)
		if o == nil || o.Enabled != s.Enabled || differ(o.Settings, s.Settings) {
			out = append(out, s.Section)
		}
	}
	return out
}
