package config

import (
	"fmt"
	"net"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// checker collects validation problems with the lines positions recorded.
type checker struct {
	pos  *positions
	errs ValidationErrors
}

// add records a problem with the key at path, unless decoding already
// reported one there.
func (ck *checker) add(path, format string, args ...any) {
	if ck.pos.hasFailed(path) {
		return
	}
	ck.errs = append(ck.errs, &FieldError{Path: path, Line: ck.pos.lineOf(path), Msg: fmt.Sprintf(format, args...)})
}

// check validates c: the value sets and ranges of rules.go on every field,
// then the rules that relate fields to each other.
func (c *Config) check(pos *positions) ValidationErrors {
	ck := &checker{pos: pos}
	ck.walk(reflect.ValueOf(c).Elem(), "")
	ck.gateway(c)
	ck.plcs(c.PLCs)
	ck.device(&c.Device)
	ck.producer(&c.Producer)
	ck.mqtt(&c.MQTT)
	ck.telemetry(&c.Telemetry)
	ck.sources(c)
	return ck.errs
}

// walk applies the per-field rules of rules.go to every field of the struct
// v, and to every element of lists of structs.
func (ck *checker) walk(v reflect.Value, path string) {
	t := v.Type()
	for _, f := range fieldsOf(t) {
		fv := v.Field(f.index)
		fp := joinPath(path, f.name)
		switch {
		case fv.Kind() == reflect.Struct:
			ck.walk(fv, fp)
		case fv.Kind() == reflect.Slice && fv.Type().Elem().Kind() == reflect.Struct:
			for i := range fv.Len() {
				ck.walk(fv.Index(i), fmt.Sprintf("%s[%d]", fp, i))
			}
		default:
			ck.field(t.Name()+"."+f.field.Name, fp, f.name, fv)
		}
	}
}

// field applies the rule registered for key (Type.Field) to the value v.
func (ck *checker) field(key, path, name string, v reflect.Value) {
	if required[key] && v.IsZero() {
		switch e, ok := enums[key]; {
		case key == tagTypeField:
			_, err := parseTagType("")
			ck.add(path, "%v", err)
		case ok:
			ck.add(path, "required: %s", oneOf(e.values))
		default:
			ck.add(path, "required")
		}
		return
	}
	if key == tagTypeField {
		if _, err := parseTagType(v.String()); err != nil {
			ck.add(path, "%v", err)
		}
		return
	}
	if e, ok := enums[key]; ok {
		s := v.String()
		switch {
		case s == "" && e.emptyOK:
		case s == "":
			ck.add(path, "required: %s", oneOf(e.values))
		case !slices.Contains(e.values, s):
			ck.add(path, "%s", unknownValue(name, s, e.values))
		}
	}
	if r, ok := ranges[key]; ok {
		var x float64
		if v.CanInt() {
			x = float64(v.Int())
		} else {
			x = v.Float()
		}
		if x < r.min || (r.hasMax && x > r.max) {
			ck.add(path, "%v is out of range: %s", fmtNum(x), r)
		}
	}
	if m, ok := durationMins[key]; ok {
		if d := Duration(v.Int()); d < m {
			ck.add(path, "%s is too short: must be %s", d, durationMin(m))
		}
	}
	if m, ok := byteSizeMins[key]; ok {
		if b := ByteSize(v.Int()); b < m {
			ck.add(path, "%s is too small: must be at least %s", b, m)
		}
	}
}

// String describes the range for messages and the reference.
func (r numRange) String() string {
	if !r.hasMax {
		return "want at least " + fmtNum(r.min)
	}
	return fmt.Sprintf("want %s to %s", fmtNum(r.min), fmtNum(r.max))
}

// durationMin describes a duration lower bound.
func durationMin(m Duration) string {
	if m <= 1 {
		return "positive"
	}
	return "at least " + m.String()
}

func fmtNum(x float64) string { return strconv.FormatFloat(x, 'f', -1, 64) }

// unknownValue says that s is not one of values, suggesting the likely
// intended one.
func unknownValue(name, s string, values []string) string {
	if sug := suggest(s, values); sug != "" {
		return fmt.Sprintf("unknown %s %q; did you mean %q?", name, s, sug)
	}
	return fmt.Sprintf("unknown %s %q; want %s", name, s, oneOf(values))
}

// oneOf formats a value set as "a, b or c".
func oneOf(values []string) string {
	if len(values) == 1 {
		return values[0]
	}
	return strings.Join(values[:len(values)-1], ", ") + " or " + values[len(values)-1]
}

// TagType is a parsed tag type: a base type and, for string(n), a length.
type TagType struct {
	// Base is one of bool, int16, uint16, int32, uint32, int64, uint64,
	// float32, float64, string.
	Base string
	// Len is n in string(n), 0 when not given.
	Len int
}

var stringLenRe = regexp.MustCompile(`^string\((\d+)\)$`)

// ParseTagType parses a tag's type: a base type or string(n).
func ParseTagType(s string) (TagType, error) { return parseTagType(s) }

func parseTagType(s string) (TagType, error) {
	if s == "" {
		return TagType{}, fmt.Errorf("required: %s or string(n)", strings.Join(tagBaseTypes, ", "))
	}
	if slices.Contains(tagBaseTypes, s) {
		return TagType{Base: s}, nil
	}
	if m := stringLenRe.FindStringSubmatch(s); m != nil {
		n, err := strconv.Atoi(m[1])
		if err != nil || n < 1 || n > maxStringLen || m[1][0] == '0' {
			return TagType{}, fmt.Errorf("string length in %q out of range: want 1 to %d", s, maxStringLen)
		}
		return TagType{Base: "string", Len: n}, nil
	}
	if sug := suggest(s, tagBaseTypes); sug != "" {
		return TagType{}, fmt.Errorf("unknown type %q; did you mean %q?", s, sug)
	}
	return TagType{}, fmt.Errorf("unknown type %q; want %s or string(n)", s, strings.Join(tagBaseTypes, ", "))
}

// nameRe is what device names and prefixes may contain: they become record
// keys, topic parts and metric labels.
var nameRe = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

func (ck *checker) gateway(c *Config) {
	if c.Gateway.ID != "" && !nameRe.MatchString(c.Gateway.ID) {
		ck.add("gateway.id", "%q: use letters, digits, '.', '_' and '-' only", c.Gateway.ID)
	}
	if c.Buffer.Path == "" {
		ck.add("buffer.path", "required: set buffer.path or gateway.state_dir")
	}
}

var opcuaNodeRe = regexp.MustCompile(`^(ns=\d+;|nsu=[^;]+;)?(i=\d+|s=.+|g=[0-9A-Fa-f-]{36}|b=.+)$`)

func (ck *checker) plcs(plcs []PLC) {
	firstName := map[string]string{}
	for i := range plcs {
		p := &plcs[i]
		path := fmt.Sprintf("plcs[%d]", i)
		switch {
		case p.Name == "":
			// reported by walk
		case !nameRe.MatchString(p.Name):
			ck.add(path+".name", "%q: use letters, digits, '.', '_' and '-' only", p.Name)
		case firstName[p.Name] != "":
			first := firstName[p.Name]
			ck.add(path+".name", "duplicate name %q (also %s, line %d)", p.Name, first, ck.pos.lineOf(first+".name"))
		default:
			firstName[p.Name] = path
		}
		ck.endpoint(p, path+".endpoint")
		if len(p.Tags) == 0 {
			ck.add(path+".tags", "no tags: give at least one")
		}
		firstTag := map[string]int{}
		for j := range p.Tags {
			ck.tag(p, &p.Tags[j], fmt.Sprintf("%s.tags[%d]", path, j), firstTag, j)
		}
	}
}

func (ck *checker) endpoint(p *PLC, path string) {
	e := p.Endpoint
	if e == "" {
		return // reported by walk
	}
	switch p.Driver {
	case "opcua":
		u, err := url.Parse(e)
		if err != nil || u.Scheme != "opc.tcp" || u.Host == "" {
			ck.add(path, "%q: an opcua endpoint is a URL opc.tcp://host:port[/path]", e)
		}
	case "modbus":
		serial := strings.HasPrefix(e, "/") || strings.HasPrefix(strings.ToUpper(e), "COM")
		switch {
		case p.Transport == "rtu" && !serial:
			ck.add(path, "%q: transport rtu needs a serial device path such as /dev/ttyUSB0", e)
			return
		case serial && (p.Transport == "tcp" || p.Transport == "rtuovertcp"):
			ck.add(path, "%q: transport %s needs host:port, not a device path", e, p.Transport)
			return
		case serial:
			return // serial device for RTU
		}
		if err := checkHostPort(e); err != nil {
			ck.add(path, "%q: a modbus endpoint is host:port (TCP) or a serial device path (RTU): %v", e, err)
		}
	}
}

func (ck *checker) tag(p *PLC, t *Tag, path string, first map[string]int, j int) {
	switch prev, dup := first[t.Name]; {
	case t.Name == "":
		// reported by walk
	case dup:
		prevPath := fmt.Sprintf("%s[%d]", parentPath(path), prev)
		ck.add(path+".name", "duplicate tag name %q in this device (also %s, line %d)", t.Name, prevPath, ck.pos.lineOf(prevPath+".name"))
	default:
		first[t.Name] = j
	}
	if t.Scale == 0 {
		ck.add(path+".scale", "0 makes every value 0; leave it out for 1")
	}
	typ, typErr := parseTagType(t.Type)
	switch p.Driver {
	case "modbus":
		if n, err := strconv.ParseUint(t.Address, 10, 32); t.Address != "" && (err != nil || n > maxModbusAddress) {
			ck.add(path+".address", "%q: a modbus address is a number, 0-based (0-65535) or in 4xxxx/4xxxxx notation", t.Address)
		}
		if typErr != nil {
			return
		}
		if typ.Base == "string" && typ.Len == 0 {
			ck.add(path+".type", "modbus strings need a length in bytes, e.g. string(16)")
		}
		if (t.Register == "coil" || t.Register == "discrete") && typ.Base != "bool" {
			ck.add(path+".type", "%s registers hold bits: the type must be bool, not %s", t.Register, t.Type)
		}
		if t.Bit != nil && (*t.Bit < 0 || *t.Bit > 15) {
			ck.add(path+".bit", "%d is out of range: want 0 to 15", *t.Bit)
		} else if t.Bit != nil && typ.Base != "bool" {
			ck.add(path+".bit", "reads one bit as a bool: the type must be bool, not %s", t.Type)
		} else if t.Bit != nil && (t.Register == "coil" || t.Register == "discrete") {
			ck.add(path+".bit", "applies to holding and input registers, not %s", t.Register)
		}
	case "opcua":
		if t.Address != "" && !opcuaNodeRe.MatchString(t.Address) {
			ck.add(path+".address", "%q: an OPC UA node id looks like ns=2;s=Line1.Temp or i=2258", t.Address)
		}
		if t.Register != "" {
			ck.add(path+".register", "applies to modbus only")
		}
		if t.ByteOrder != "" {
			ck.add(path+".byte_order", "applies to modbus only")
		}
		if t.Bit != nil {
			ck.add(path+".bit", "applies to modbus only")
		}
	}
}

func (ck *checker) device(d *Device) {
	if !nameRe.MatchString(d.NamePrefix) {
		ck.add("device.name_prefix", "%q: use letters, digits, '.', '_' and '-' only", d.NamePrefix)
	}
}

func (ck *checker) producer(p *Producer) {
	if p.Enabled != nil && *p.Enabled {
		if len(p.Brokers) == 0 {
			ck.add("producer.brokers", "required when the producer is enabled: give at least one host:port")
		}
		if p.Topic == "" {
			ck.add("producer.topic", "required when the producer is enabled")
		}
	}
	for i, b := range p.Brokers {
		if strings.Contains(b, "://") {
			ck.add(fmt.Sprintf("producer.brokers[%d]", i), "%q: write host:port, not a URL", b)
		} else if err := checkHostPort(b); err != nil {
			ck.add(fmt.Sprintf("producer.brokers[%d]", i), "%q: want host:port: %v", b, err)
		}
	}
	if p.Topic != "" {
		if err := checkTopic(p.Topic, true); err != nil {
			ck.add("producer.topic", "%q: %v", p.Topic, err)
		}
	}
	if p.Idempotent != nil && *p.Idempotent && p.Acks != "all" && slices.Contains(acksValues, p.Acks) {
		ck.add("producer.idempotent", "an idempotent producer needs acks all, not %s: set acks: all or idempotent: false", p.Acks)
	}
	ck.tls("producer.tls", &p.TLS)
	s := &p.SASL
	switch {
	case s.Mechanism == "":
		if s.Username != "" {
			ck.add("producer.sasl.mechanism", "required when sasl.username is set: %s", oneOf(saslMechanisms))
		} else if s.Password != "" {
			ck.add("producer.sasl.mechanism", "required when sasl.password is set: %s", oneOf(saslMechanisms))
		}
	case slices.Contains(saslMechanisms, s.Mechanism):
		if s.Username == "" {
			ck.add("producer.sasl.username", "required with mechanism %s", s.Mechanism)
		}
		if s.Password == "" {
			ck.add("producer.sasl.password", "required with mechanism %s (or password_file)", s.Mechanism)
		}
		if s.Mechanism == "PLAIN" && !p.TLS.Enabled && !s.AllowPlainWithoutTLS {
			ck.add("producer.sasl.mechanism", "PLAIN sends the password in clear without TLS: set producer.tls.enabled, use SCRAM, or set allow_plain_without_tls")
		}
	}
}

func (ck *checker) tls(path string, t *TLS) {
	if (t.CertFile == "") != (t.KeyFile == "") {
		ck.add(path+".cert_file", "cert_file and key_file go together: give both or neither")
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
			ck.add(path+"."+f.key, "has no effect while %s.enabled is false", path)
		}
	}
}

func (ck *checker) mqtt(m *MQTT) {
	if m.Enabled && m.Broker == "" {
		ck.add("mqtt.broker", "required when mqtt is enabled, e.g. tcp://localhost:1883")
	}
	if m.Broker != "" {
		u, err := url.Parse(m.Broker)
		switch {
		case err != nil || u.Host == "":
			ck.add("mqtt.broker", "%q: want a URL such as tcp://host:1883 or ssl://host:8883", m.Broker)
		case !slices.Contains(mqttSchemes, strings.ToLower(u.Scheme)):
			ck.add("mqtt.broker", "%q: unknown scheme %q; want %s", m.Broker, u.Scheme, oneOf(mqttSchemes))
		case m.TLS.Enabled && !slices.Contains(tlsSchemes, strings.ToLower(u.Scheme)):
			ck.add("mqtt.tls.enabled", "TLS needs a %s broker URL, not %s://", oneOf(tlsSchemes), u.Scheme)
		}
	}
	if m.Topic == "" {
		if m.Enabled {
			ck.add("mqtt.topic", "required when mqtt is enabled")
		}
	} else if err := checkTopic(m.Topic, false); err != nil {
		ck.add("mqtt.topic", "%q: %v", m.Topic, err)
	}
	ck.tls("mqtt.tls", &m.TLS)
}

func (ck *checker) telemetry(t *Telemetry) {
	for _, l := range []struct {
		key, addr string
		required  bool
	}{
		{"metrics_listen", t.MetricsListen, true},
		{"health_listen", t.HealthListen, true},
		{"pprof_listen", t.PprofListen, false},
	} {
		if l.addr == "" {
			if l.required {
				ck.add("telemetry."+l.key, "required: a listen address such as :8080")
			}
			continue
		}
		if err := checkHostPort(l.addr); err != nil {
			ck.add("telemetry."+l.key, "%q: want [host]:port: %v", l.addr, err)
		}
	}
}

// sources requires at least one source of samples; sinks are optional (the
// buffer alone is a valid destination).
func (ck *checker) sources(c *Config) {
	if c.Device.Enabled != nil && *c.Device.Enabled && c.Device.Count > 0 {
		return
	}
	for _, p := range c.PLCs {
		if p.Enabled == nil || *p.Enabled {
			return
		}
	}
	path := "device.enabled"
	if len(c.PLCs) > 0 {
		path = "plcs"
	}
	ck.add(path, "no source of samples: enable device (with count > 0) or configure an enabled plc")
}

// checkHostPort checks a host:port address; the host may be empty.
func checkHostPort(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	return nil
}

var (
	placeholderRe = regexp.MustCompile(`\{([^{}]*)\}`)
	kafkaTopicRe  = regexp.MustCompile(`^[A-Za-z0-9._-]{1,249}$`)
)

// checkTopic checks a topic template: only known {placeholders}, and for
// Kafka only characters a topic name may hold; for MQTT no wildcards.
func checkTopic(topic string, kafka bool) error {
	for _, m := range placeholderRe.FindAllStringSubmatch(topic, -1) {
		if !slices.Contains(topicPlaceholders, m[1]) {
			return fmt.Errorf("unknown placeholder {%s}; want {%s}", m[1], strings.Join(topicPlaceholders, "} or {"))
		}
	}
	plain := placeholderRe.ReplaceAllString(topic, "x")
	if kafka {
		if !kafkaTopicRe.MatchString(plain) || plain == "." || plain == ".." {
			return fmt.Errorf("a Kafka topic holds only letters, digits, '.', '_' and '-' (at most 249)")
		}
		return nil
	}
	if strings.ContainsAny(plain, "+#{}\x00") {
		return fmt.Errorf("an MQTT topic to publish to cannot contain + or # wildcards or stray braces")
	}
	return nil
}
