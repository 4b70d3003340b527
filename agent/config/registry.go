package config

import (
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
)

// Settings is a plug-in's own part of the configuration: a pointer to the
// plug-in's struct, filled with its defaults by the plug-in's New and
// decoded from its keys of the file with the rules every section follows
// (strict keys, ${ENV}, *_file secrets for fields tagged secret:"true",
// problems with path and line). Fields carry yaml, json and doc tags like
// the common sections, and the rule tags that validation, the JSON Schema
// and the reference all read (see rules.go).
type Settings interface {
	// Check reports what the tags cannot say, through c, with keys
	// relative to the plug-in's part of the file ("tags[2].address").
	Check(c *Checker)
}

// Deriver is implemented by Settings whose defaults depend on the common
// sections (a client id made from gateway.id). Derive runs after decoding
// and before Check.
type Deriver interface {
	Derive(g Gateway)
}

// DerivedDocs is implemented by Settings with derived defaults: it returns,
// for the reference, what each derived default is, keyed by the key's path
// relative to the plug-in's part ("client_id", "tags[].byte_order").
type DerivedDocs interface {
	DerivedDefaults() map[string]string
}

// Defaulter is implemented by the pointer to an element type of a list in
// Settings (a tag) whose new elements start from defaults other than zero.
type Defaulter interface {
	SetDefaults()
}

// DriverPlugin describes a protocol driver: the plcs entries whose driver
// key names it are decoded into the Settings its New returns. Besides
// name, driver and enabled, every key of such an entry is the plug-in's.
type DriverPlugin struct {
	// Name is the value of plcs[].driver that selects this plug-in.
	Name string
	// Summary says in one line what the driver talks to, for the reference.
	Summary string
	// New returns fresh Settings with the plug-in's defaults.
	New func() Settings
}

// SinkPlugin describes a sink: the top-level section named Section is
// decoded into the Settings its New returns, except its enabled key,
// which agent/config owns.
type SinkPlugin struct {
	// Section is the top-level key of the sink's settings ("producer" for
	// Kafka, as the ops manual names it).
	Section string
	// Name names the sink in its buffer queue, metrics, logs and /ready.
	Name string
	// Summary says in one line where the sink sends, for the reference.
	Summary string
	// EnabledByDefault is enabled's value when the file does not set it.
	EnabledByDefault bool
	// New returns fresh Settings with the plug-in's defaults.
	New func() Settings
}

var registry struct {
	mu      sync.RWMutex
	drivers map[string]DriverPlugin
	sinks   map[string]SinkPlugin
}

// RegisterDriver makes a driver plug-in available to configuration files.
// Plug-ins call it from their package's init; a second registration of a
// name is a programming error and panics.
func RegisterDriver(p DriverPlugin) {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	if p.Name == "" || p.New == nil {
		panic("BUG: config.RegisterDriver: a plug-in needs a name and New")
	}
	if _, dup := registry.drivers[p.Name]; dup {
		panic("BUG: config.RegisterDriver: driver " + p.Name + " registered twice")
	}
	if registry.drivers == nil {
		registry.drivers = map[string]DriverPlugin{}
	}
	registry.drivers[p.Name] = p
}

// RegisterSink makes a sink plug-in available to configuration files.
// Plug-ins call it from their package's init; a second registration of a
// section or name is a programming error and panics.
func RegisterSink(p SinkPlugin) {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	if p.Section == "" || p.Name == "" || p.New == nil {
		panic("BUG: config.RegisterSink: a plug-in needs a section, a name and New")
	}
	for _, s := range registry.sinks {
		if s.Section == p.Section || s.Name == p.Name {
			panic("BUG: config.RegisterSink: sink " + p.Section + "/" + p.Name + " registered twice")
		}
	}
	if _, clash := reflect.TypeFor[Config]().FieldByNameFunc(func(n string) bool { return strings.EqualFold(n, p.Section) }); clash {
		panic("BUG: config.RegisterSink: section " + p.Section + " is a common section")
	}
	if registry.sinks == nil {
		registry.sinks = map[string]SinkPlugin{}
	}
	registry.sinks[p.Section] = p
}

// Drivers returns the registered driver plug-ins, by name.
func Drivers() []DriverPlugin {
	registry.mu.RLock()
	defer registry.mu.RUnlock()
	out := make([]DriverPlugin, 0, len(registry.drivers))
	for _, p := range registry.drivers {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Sinks returns the registered sink plug-ins, by section.
func Sinks() []SinkPlugin {
	registry.mu.RLock()
	defer registry.mu.RUnlock()
	out := make([]SinkPlugin, 0, len(registry.sinks))
	for _, p := range registry.sinks {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Section < out[j].Section })
	return out
}

func lookupDriver(name string) (DriverPlugin, bool) {
	registry.mu.RLock()
	defer registry.mu.RUnlock()
	p, ok := registry.drivers[name]
	return p, ok
}

func lookupSink(section string) (SinkPlugin, bool) {
	registry.mu.RLock()
	defer registry.mu.RUnlock()
	p, ok := registry.sinks[section]
	return p, ok
}

func driverNames() []string {
	var out []string
	for _, p := range Drivers() {
		out = append(out, p.Name)
	}
	return out
}

// unknownDriver says that a driver is not compiled into this build.
func unknownDriver(name string) string {
	names := driverNames()
	msg := fmt.Sprintf("driver %q is not available in this build", name)
	if s := suggest(name, names); s != "" && s != name {
		return fmt.Sprintf("unknown driver %q; did you mean %q?", name, s)
	}
	if len(names) == 0 {
		return msg + " (no driver is compiled in)"
	}
	return msg + "; this build has " + oneOf(names)
}

// Checker collects a plug-in's problems with the path and line of the key
// they concern. Plug-ins receive one in Settings.Check.
type Checker struct {
	ck     *checker
	prefix string
	// Gateway is the file's gateway section, defaults derived.
	Gateway Gateway
}

// Add records a problem with the key at path, relative to the plug-in's
// part of the file ("tags[2].address"; "" for the part as a whole).
func (c *Checker) Add(path, format string, args ...any) {
	c.ck.add(c.full(path), format, args...)
}

// Line returns the line of the key at path, relative like Add's, or of its
// nearest enclosing key in the file; 0 if unknown.
func (c *Checker) Line(path string) int { return c.ck.pos.lineOf(c.full(path)) }

// Path returns the key's full path in the file, for messages that refer to
// another key.
func (c *Checker) Path(path string) string { return c.full(path) }

func (c *Checker) full(path string) string {
	switch {
	case path == "":
		return c.prefix
	case c.prefix == "":
		return path
	case strings.HasPrefix(path, "["):
		return c.prefix + path
	}
	return c.prefix + "." + path
}

// TLS checks a TLS section at path: certificate and key together, and no
// setting given while TLS is off.
func (c *Checker) TLS(path string, t *TLS) {
	if (t.CertFile == "") != (t.KeyFile == "") {
		c.Add(joinPath(path, "cert_file"), "cert_file and key_file go together: give both or neither")
	}
	if t.Enabled {
		return
	}
	for _, f := range []struct {
		key string
		set bool
	}{
		{"ca_file", t.CAFile != ""}, {"cert_file", t.CertFile != ""}, {"key_file", t.KeyFile != ""},
		{"server_name", t.ServerName != ""}, {"insecure_skip_verify", t.InsecureSkipVerify},
	} {
		if f.set {
			c.Add(joinPath(path, f.key), "has no effect while %s.enabled is false", c.full(path))
		}
	}
}

// OneOf formats a value set as "a, b or c", for messages.
func OneOf(values []string) string { return oneOf(values) }

// Suggest returns the candidate closest to s when it is close enough to be
// a likely typo, or "".
func Suggest(s string, candidates []string) string { return suggest(s, candidates) }

// UnknownValue says that s, the value of the key name, is not one of
// values, suggesting the likely intended one.
func UnknownValue(name, s string, values []string) string { return unknownValue(name, s, values) }

// CheckHostPort checks a host:port address; the host may be empty.
func CheckHostPort(addr string) error { return checkHostPort(addr) }

// NameOK reports whether s is a valid device, tag or gateway name: letters,
// digits, '.', '_' and '-'. Names become record keys, topic parts and
// metric labels.
func NameOK(s string) bool { return nameRe.MatchString(s) }

// TopicPlaceholders are the names a topic template may use in braces.
var TopicPlaceholders = []string{"gateway", "device"}

// CheckTopicPlaceholders checks that a topic template uses only the given
// {placeholders} and returns the topic with each replaced by "x".
func CheckTopicPlaceholders(topic string, allowed []string) (string, error) {
	for _, m := range placeholderRe.FindAllStringSubmatch(topic, -1) {
		if !slices.Contains(allowed, m[1]) {
			return "", fmt.Errorf("unknown placeholder {%s}; want {%s}", m[1], strings.Join(allowed, "} or {"))
		}
	}
	return placeholderRe.ReplaceAllString(topic, "x"), nil
}
