package config

import (
	"bytes"
	"encoding/json"
	"fmt"
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

// TestRulesNameRealFields keeps rules.go and derivedDefaults in step with
// the structs: a rule for a renamed field would otherwise silently stop
// applying.
func TestRulesNameRealFields(t *testing.T) {
	fields := map[string]reflect.Type{}
	paths := map[string]bool{}
	var walk func(typ reflect.Type, path string)
	walk = func(typ reflect.Type, path string) {
		for _, f := range fieldsOf(typ) {
			fields[typ.Name()+"."+f.field.Name] = f.field.Type
			fp := joinPath(path, f.name)
			paths[fp] = true
			ft := f.field.Type
			switch {
			case ft.Kind() == reflect.Struct:
				walk(ft, fp)
			case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
				walk(ft.Elem(), fp+"[]")
			}
		}
	}
	walk(reflect.TypeFor[Config](), "")
	check := func(what, key string, kind ...reflect.Kind) {
		ft, ok := fields[key]
		if !ok {
			t.Errorf("%s names %s, which is not a field", what, key)
			return
		}
		if !slices.Contains(kind, ft.Kind()) {
			t.Errorf("%s: %s is a %s, want %v", what, key, ft.Kind(), kind)
		}
	}
	for k := range enums {
		check("enums", k, reflect.String)
	}
	check("tagTypeField", tagTypeField, reflect.String)
	for k := range ranges {
		check("ranges", k, reflect.Int, reflect.Int64, reflect.Float64)
	}
	for k := range durationMins {
		check("durationMins", k, reflect.Int64)
		if fields[k] != durationType {
			t.Errorf("durationMins: %s is not a Duration", k)
		}
	}
	for k := range byteSizeMins {
		if fields[k] != byteSizeType {
			t.Errorf("byteSizeMins: %s is not a ByteSize", k)
		}
	}
	for k := range required {
		check("required", k, reflect.String)
	}
	for p := range derivedDefaults {
		if !paths[p] {
			t.Errorf("derivedDefaults names %s, which is not a key", p)
		}
	}
}

// TestEveryKeyDocumented makes the reference complete: every key has a doc
// tag.
func TestEveryKeyDocumented(t *testing.T) {
	seen := map[reflect.Type]bool{}
	var walk func(typ reflect.Type)
	walk = func(typ reflect.Type) {
		if seen[typ] {
			return
		}
		seen[typ] = true
		for _, f := range fieldsOf(typ) {
			if strings.TrimSpace(f.doc) == "" {
				t.Errorf("%s.%s (%s) has no doc tag", typ.Name(), f.field.Name, f.name)
			}
			ft := f.field.Type
			if ft.Kind() == reflect.Slice {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				walk(ft)
			}
		}
	}
	walk(reflect.TypeFor[Config]())
}

// TestSchemaPatternsMatchParsers checks that the schema's patterns accept
// exactly what ParseDuration and ParseByteSize accept, on typical input.
func TestSchemaPatternsMatchParsers(t *testing.T) {
	dur := regexp.MustCompile(durationPattern)
	for _, s := range []string{"500", "0", "500ms", "1.5s", "2m", "1h30m", "168h", ".5s", "10us", "1µs",
		"", "1.5", "-1", "-2s", "2 s", "soon", "1d", "ms", "5sec"} {
		_, err := ParseDuration(s)
		if ok := dur.MatchString(s); ok != (err == nil) {
			t.Errorf("duration %q: schema pattern matches %v, ParseDuration error %v", s, ok, err)
		}
	}
	size := regexp.MustCompile(byteSizePattern)
	for _, s := range []string{"0", "4096", "100B", "1KB", "1KiB", "512MiB", "1.5GiB", "512 MiB", "1gib", "2TB",
		"", "-1", "1.5", "1G", "MiB", "1Gb/s", "1 PB", "1e3"} {
		_, err := ParseByteSize(s)
		if ok := size.MatchString(s); ok != (err == nil) {
			t.Errorf("size %q: schema pattern matches %v, ParseByteSize error %v", s, ok, err)
		}
	}
	typ := regexp.MustCompile(tagTypePattern)
	for _, s := range []string{"string(1)", "string(16)", "string(99)", "string(100)", "string(199)", "string(249)", "string(250)",
		"string(251)", "string(300)", "string(0)", "string(016)", "string()", "string(16 )", "str(4)"} {
		_, err := parseTagType(s)
		if ok := typ.MatchString(s); ok != (err == nil) {
			t.Errorf("type %q: schema pattern matches %v, parseTagType error %v", s, ok, err)
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
		"both secrets":     "mqtt:\n  password: a\n  password_file: /x\n",
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
// enum, minimum, maximum, pattern, items, anyOf, allOf and not.
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
