package config

import (
	"fmt"
	"net"
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

// check validates c: the rule tags on every field, then the rules that
// relate fields to each other, then each plug-in's own Check.
func (c *Config) check(pos *positions) ValidationErrors {
	ck := &checker{pos: pos}
	ck.walk(reflect.ValueOf(c).Elem(), "")
	for i := range c.PLCs {
		if s := c.PLCs[i].Settings; s != nil {
			ck.walk(reflect.ValueOf(s).Elem(), fmt.Sprintf("plcs[%d]", i))
		}
	}
	for _, s := range c.Sinks {
		ck.walk(reflect.ValueOf(s.Settings).Elem(), s.Section)
	}
	ck.gateway(c)
	ck.plcs(c)
	ck.device(&c.Device)
	ck.telemetry(&c.Telemetry)
	ck.sources(c)
	ck.sinks(c)
	return ck.errs
}

// walk applies the rule tags (rules.go) to every field of the struct v,
// and to every element of lists of structs.
func (ck *checker) walk(v reflect.Value, path string) {
	t := v.Type()
	for _, f := range fieldsOf(t) {
		fv := v.Field(f.index)
		fp := joinPath(path, f.name)
		switch {
		case fv.Kind() == reflect.Struct && fv.Type() != durationType && fv.Type() != byteSizeType:
			ck.walk(fv, fp)
		case fv.Kind() == reflect.Slice && fv.Type().Elem().Kind() == reflect.Struct:
			for i := range fv.Len() {
				ck.walk(fv.Index(i), fmt.Sprintf("%s[%d]", fp, i))
			}
		default:
			ck.field(ruleOf(t, f.index), fp, f.name, fv)
		}
	}
}

// field applies rule r to the value v of the key name at path.
func (ck *checker) field(r rule, path, name string, v reflect.Value) {
	if r.required && v.IsZero() {
		if r.enum != nil {
			ck.add(path, "required: %s", oneOf(r.enum))
		} else {
			ck.add(path, "required")
		}
		return
	}
	if r.enum != nil {
		s := v.String()
		switch {
		case s == "" && r.emptyOK:
		case s == "":
			ck.add(path, "required: %s", oneOf(r.enum))
		case !slices.Contains(r.enum, s):
			ck.add(path, "%s", unknownValue(name, s, r.enum))
		}
	}
	if r.rng != nil {
		var x float64
		if v.CanInt() {
			x = float64(v.Int())
		} else {
			x = v.Float()
		}
		if x < r.rng.min || (r.rng.hasMax && x > r.rng.max) {
			ck.add(path, "%v is out of range: %s", fmtNum(x), *r.rng)
		}
	}
	if r.minDur > 0 {
		if d := Duration(v.Int()); d < r.minDur {
			ck.add(path, "%s is too short: must be %s", d, durationMin(r.minDur))
		}
	}
	if r.minBytes > 0 {
		if b := ByteSize(v.Int()); b < r.minBytes {
			ck.add(path, "%s is too small: must be at least %s", b, r.minBytes)
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

// nameRe is what device names and prefixes may contain: they become record
// keys, topic parts and metric labels.
var nameRe = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// maxGatewayID bounds gateway.id: it is carried in every record and makes
// client ids (a Kafka client id holds at most 255 characters).
const maxGatewayID = 128

func (ck *checker) gateway(c *Config) {
	switch id := c.Gateway.ID; {
	case id != "" && !nameRe.MatchString(id):
		ck.add("gateway.id", "%q: use letters, digits, '.', '_' and '-' only", cut(id))
	case len(id) > maxGatewayID:
		ck.add("gateway.id", "%q is too long: at most %d characters (it is carried in every record and in client ids)", cut(id), maxGatewayID)
	}
	if c.Buffer.Path == "" {
		ck.add("buffer.path", "required: set buffer.path or gateway.state_dir")
	}
}

// plcs checks what relates the entries to each other (unique names), then
// hands each entry to its driver plug-in.
func (ck *checker) plcs(c *Config) {
	firstName := map[string]string{}
	for i := range c.PLCs {
		p := &c.PLCs[i]
		path := fmt.Sprintf("plcs[%d]", i)
		switch {
		case p.Name == "":
			// reported by walk
		case !nameRe.MatchString(p.Name):
			ck.add(path+".name", "%q: use letters, digits, '.', '_' and '-' only", cut(p.Name))
		case firstName[p.Name] != "":
			first := firstName[p.Name]
			ck.add(path+".name", "duplicate name %q (also %s, line %d)", p.Name, first, ck.pos.lineOf(first+".name"))
		default:
			firstName[p.Name] = path
		}
		if p.Settings != nil {
			p.Settings.Check(&Checker{ck: ck, prefix: path, Gateway: c.Gateway})
		}
	}
}

// sinks hands each sink section to its plug-in. A sink that is not
// enabled is checked too: a file that is valid with it off must stay valid
// when it is turned on.
func (ck *checker) sinks(c *Config) {
	for _, s := range c.Sinks {
		s.Settings.Check(&Checker{ck: ck, prefix: s.Section, Gateway: c.Gateway})
	}
}

func (ck *checker) device(d *Device) {
	if !nameRe.MatchString(d.NamePrefix) {
		ck.add("device.name_prefix", "%q: use letters, digits, '.', '_' and '-' only", d.NamePrefix)
	}
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
	if host, _, err := net.SplitHostPort(t.PprofListen); err == nil && !t.PprofAllowRemote && !loopbackHost(host) {
		ck.add("telemetry.pprof_listen", "%q is not a loopback address: profiles show memory contents and the command line; use 127.0.0.1:6060, or set telemetry.pprof_allow_remote: true", t.PprofListen)
	}
}

// loopbackHost reports whether a listen host is only reachable from this
// machine: "localhost" or a loopback IP. An empty host is every interface.
func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// sources requires at least one source of samples and at least one sink:
// without a sink nothing would ever leave the buffer.
func (ck *checker) sources(c *Config) {
	hasSource := c.Device.Enabled != nil && *c.Device.Enabled && c.Device.Count > 0
	for _, p := range c.PLCs {
		if p.Enabled == nil || *p.Enabled {
			hasSource = true
		}
	}
	if !hasSource {
		path := "device.enabled"
		if len(c.PLCs) > 0 {
			path = "plcs"
		}
		ck.add(path, "no source of samples: enable device (with count > 0) or configure an enabled plc")
	}
	var sections []string
	for _, s := range c.Sinks {
		if s.Enabled {
			return
		}
		sections = append(sections, s.Section+".enabled")
	}
	if len(sections) == 0 {
		ck.add("", "no sink is compiled into this build")
		return
	}
	path := c.Sinks[0].Section + ".enabled"
	ck.add(path, "no sink is enabled: samples would stay in the buffer for ever; enable %s", oneOf(sections))
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

var placeholderRe = regexp.MustCompile(`\{([^{}]*)\}`)
