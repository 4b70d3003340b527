package config_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	. "github.com/iot-producer/iot-producer/agent/config"
	_ "github.com/iot-producer/iot-producer/plugins/all"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestGeneratedFilesUpToDate(t *testing.T) {
	for _, g := range []struct {
		file string
		gen  func() ([]byte, error)
	}{
		{"config.schema.json", JSONSchema},
		{"README.md", ReferenceMarkdown},
	} {
		t.Run(g.file, func(t *testing.T) {
			want, err := g.gen()
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(g.file)
			if err != nil {
				t.Fatalf("%v: run `go generate ./agent/config`", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("agent/config/%s is stale: it differs from what the code generates; run `go generate ./agent/config` and commit the result", g.file)
			}
		})
	}
}

// settingsTypes returns the struct types of the file: the common
// sections and every registered plug-in's settings, with what they hold.
func settingsTypes() []reflect.Type {
	var out []reflect.Type
	seen := map[reflect.Type]bool{}
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		if seen[t] {
			return
		}
		seen[t] = true
		out = append(out, t)
		for i := range t.NumField() {
			ft := t.Field(i).Type
			for ft.Kind() == reflect.Slice || ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct && ft != reflect.TypeFor[Duration]() && t.Field(i).Tag.Get("yaml") != "-" {
				walk(ft)
			}
		}
	}
	walk(reflect.TypeFor[Config]())
	for _, d := range Drivers() {
		walk(reflect.TypeOf(d.New()).Elem())
	}
	for _, s := range Sinks() {
		walk(reflect.TypeOf(s.New()).Elem())
	}
	return out
}

// TestRuleTagsParse keeps the rule tags of every section and plug-in
// well-formed, and derivedDefaults naming real keys.
func TestRuleTagsParse(t *testing.T) {
	types := settingsTypes()
	if len(types) < 10 {
		t.Fatalf("found %d settings types; the plug-ins are not registered?", len(types))
	}
	for _, typ := range types {
		if err := ParseRules(typ); err != nil {
			t.Errorf("%s: %v", typ, err)
		}
	}
	keys := map[string]bool{}
	root := reflect.TypeFor[Config]()
	for i := range root.NumField() {
		sec := root.Field(i)
		name := strings.Split(sec.Tag.Get("yaml"), ",")[0]
		if sec.Type.Kind() != reflect.Struct {
			continue
		}
		for j := range sec.Type.NumField() {
			keys[name+"."+strings.Split(sec.Type.Field(j).Tag.Get("yaml"), ",")[0]] = true
		}
	}
	for p := range DerivedPaths {
		if !keys[p] {
			t.Errorf("derivedDefaults names %s, which is not a key", p)
		}
	}
}

// TestEveryKeyDocumented makes the reference complete: every key of every
// section and plug-in has a doc tag.
func TestEveryKeyDocumented(t *testing.T) {
	for _, typ := range settingsTypes() {
		for i := range typ.NumField() {
			f := typ.Field(i)
			name := strings.Split(f.Tag.Get("yaml"), ",")[0]
			if name == "" || name == "-" || !f.IsExported() {
				continue
			}
			if strings.TrimSpace(f.Tag.Get("doc")) == "" {
				t.Errorf("%s.%s (%s) has no doc tag", typ, f.Name, name)
			}
		}
	}
}

// TestSchemaPatternsMatchParsers checks that the schema's patterns accept
// exactly what ParseDuration and ParseByteSize accept, on typical input.
func TestSchemaPatternsMatchParsers(t *testing.T) {
	dur := regexp.MustCompile(DurationPattern)
	for _, s := range []string{"500", "0", "500ms", "1.5s", "2m", "1h30m", "168h", ".5s", "10us", "1µs",
		"", "1.5", "-1", "-2s", "2 s", "soon", "1d", "ms", "5sec"} {
		_, err := ParseDuration(s)
		if ok := dur.MatchString(s); ok != (err == nil) {
			t.Errorf("duration %q: schema pattern matches %v, ParseDuration error %v", s, ok, err)
		}
	}
	size := regexp.MustCompile(ByteSizePattern)
	for _, s := range []string{"0", "4096", "100B", "1KB", "1KiB", "512MiB", "1.5GiB", "512 MiB", "1gib", "2TB",
		"", "-1", "1.5", "1G", "MiB", "1Gb/s", "1 PB", "1e3"} {
		_, err := ParseByteSize(s)
		if ok := size.MatchString(s); ok != (err == nil) {
			t.Errorf("size %q: schema pattern matches %v, ParseByteSize error %v", s, ok, err)
		}
	}
}

// TestExampleConfigsMatchSchema validates configs/*.yaml against
// config.schema.json with the small validator below, and checks that the
// schema rejects what Parse rejects for the usual mistakes.
func TestExampleConfigsMatchSchema(t *testing.T) {
	raw, err := JSONSchema()
	if err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	if err := json.Unmarshal(raw, &schema); err != nil {
		t.Fatal(err)
	}
	if schema["$schema"] != "https://json-schema.org/draft/2020-12/schema" {
		t.Errorf("$schema = %v", schema["$schema"])
	}
	files, err := filepath.Glob("../../configs/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example configs: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			doc := yamlDoc(t, mustRead(t, f))
			if errs := schemaCheck(schema, schema, doc, ""); len(errs) > 0 {
				t.Errorf("%s does not match the schema:\n%s", f, strings.Join(errs, "\n"))
			}
		})
	}
	bad := map[string]string{
		"unknown key":      "producer:\n  batch_sise: 1\n",
		"bad enum":         "producer:\n  compression: brotli\n",
		"bad tag type":     "plcs:\n  - {name: a, driver: modbus, endpoint: 'h:1', tags: [{name: t, address: '1', type: flaot32}]}\n",
		"missing required": "plcs:\n  - {name: a, driver: modbus, tags: []}\n",
		"out of range":     "producer:\n  worker_count: 65\n",
		"bad duration":     "producer:\n  flush_interval: 5 seconds\n",
		"bad size":         "buffer:\n  max_bytes: 10 gigs\n",
		"both secrets":     "producer:\n  sasl:\n    password: a\n    password_file: /x\n",
		"wrong type":       "device:\n  count: many\n",
	}
	for name, src := range bad {
		t.Run("rejects "+name, func(t *testing.T) {
			if errs := schemaCheck(schema, schema, yamlDoc(t, []byte(src)), ""); len(errs) == 0 {
				t.Errorf("schema accepts %q", src)
			}
			if _, err := Parse([]byte(src), "x.yaml"); err == nil {
				t.Errorf("Parse accepts %q", src)
			}
		})
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// yamlDoc decodes YAML into plain maps, lists and scalars.
func yamlDoc(t *testing.T, b []byte) any {
	t.Helper()
	var v any
	if err := yaml.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// schemaCheck validates v against the subset of JSON Schema that
// JSONSchema emits: $ref, type, properties, additionalProperties, required,
// enum, const, minimum, maximum, pattern, items, anyOf, allOf, if/then and
// not.
func schemaCheck(root, s map[string]any, v any, path string) []string {
	var errs []string
	fail := func(format string, args ...any) { errs = append(errs, path+": "+fmt.Sprintf(format, args...)) }
	if ref, ok := s["$ref"].(string); ok {
		name := strings.TrimPrefix(ref, "#/$defs/")
		def, ok := root["$defs"].(map[string]any)[name].(map[string]any)
		if !ok {
			fail("unresolved $ref %s", ref)
			return errs
		}
		errs = append(errs, schemaCheck(root, def, v, path)...)
	}
	if typ, ok := s["type"].(string); ok && !schemaTypeOK(typ, v) {
		fail("want %s, got %T %v", typ, v, v)
		return errs
	}
	if enum, ok := s["enum"].([]any); ok && !slices.Contains(enum, v) {
		fail("%v not in %v", v, enum)
	}
	if n, ok := toFloat(v); ok {
		if m, ok := s["minimum"].(float64); ok && n < m {
			fail("%v < minimum %v", n, m)
		}
		if m, ok := s["maximum"].(float64); ok && n > m {
			fail("%v > maximum %v", n, m)
		}
	}
	if p, ok := s["pattern"].(string); ok {
		if str, isStr := v.(string); isStr && !regexp.MustCompile(p).MatchString(str) {
			fail("%q does not match %s", str, p)
		}
	}
	if obj, ok := v.(map[string]any); ok {
		props, _ := s["properties"].(map[string]any)
		for k, pv := range obj {
			ps, known := props[k].(map[string]any)
			switch {
			case known:
				errs = append(errs, schemaCheck(root, ps, pv, path+"."+k)...)
			case s["additionalProperties"] == false:
				fail("unknown key %q", k)
			}
		}
		if req, ok := s["required"].([]any); ok {
			for _, r := range req {
				if _, ok := obj[r.(string)]; !ok {
					fail("missing required %v", r)
				}
			}
		}
	}
	if list, ok := v.([]any); ok {
		if items, ok := s["items"].(map[string]any); ok {
			for i, item := range list {
				errs = append(errs, schemaCheck(root, items, item, fmt.Sprintf("%s[%d]", path, i))...)
			}
		}
	}
	if alts, ok := s["anyOf"].([]any); ok {
		matched := false
		for _, sub := range alts {
			if len(schemaCheck(root, sub.(map[string]any), v, path)) == 0 {
				matched = true
			}
		}
		if !matched {
			fail("%v matches none of anyOf", v)
		}
	}
	if all, ok := s["allOf"].([]any); ok {
		for _, sub := range all {
			errs = append(errs, schemaCheck(root, sub.(map[string]any), v, path)...)
		}
	}
	if c, ok := s["const"]; ok && c != v {
		fail("%v is not %v", v, c)
	}
	if cond, ok := s["if"].(map[string]any); ok && len(schemaCheck(root, cond, v, path)) == 0 {
		if then, ok := s["then"].(map[string]any); ok {
			errs = append(errs, schemaCheck(root, then, v, path)...)
		}
	}
	if not, ok := s["not"].(map[string]any); ok && len(schemaCheck(root, not, v, path)) == 0 {
		fail("matches a schema it must not: %v", not)
	}
	return errs
}

func schemaTypeOK(typ string, v any) bool {
	switch typ {
	case "object":
		_, ok := v.(map[string]any)
		return ok
	case "array":
		_, ok := v.([]any)
		return ok
	case "string":
		_, ok := v.(string)
		return ok
	case "boolean":
		_, ok := v.(bool)
		return ok
	case "number":
		_, ok := toFloat(v)
		return ok
	case "integer":
		f, ok := toFloat(v)
		return ok && f == math.Trunc(f)
	}
	return false
}

func toFloat(v any) (float64, bool) {
	switch n := v.(type) {
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case uint64:
		return float64(n), true
	case float64:
		return n, true
	}
	return 0, false
}
