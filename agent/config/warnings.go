package config

import (
	"fmt"
	"reflect"
	"strings"
)

// Warnings lists the settings of c that weaken its security, such as
// producer.tls.insecure_skip_verify: every field tagged warn:"why" whose
// value is set, as "path: why" in file order. The agent logs them at start
// and /ready shows them. Nil when there are none.
func (c *Config) Warnings() []string {
	var out []string
	collectWarnings(reflect.ValueOf(c).Elem(), "", &out)
	return out
}

// collectWarnings walks v, whose key path is path, appending a warning for
// each set field tagged warn.
func collectWarnings(v reflect.Value, path string, out *[]string) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			collectWarnings(v.Elem(), path, out)
		}
	case reflect.Slice:
		for i := range v.Len() {
			collectWarnings(v.Index(i), fmt.Sprintf("%s[%d]", path, i), out)
		}
	case reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "-" { // a plug-in's part: a sink's section, a PLC's protocol keys
				if sinks, ok := v.Field(i).Interface().([]Sink); ok {
					for _, s := range sinks {
						collectWarnings(reflect.ValueOf(s.Settings), s.Section, out)
					}
				} else {
					collectWarnings(v.Field(i), path, out)
				}
				continue
			}
			p := joinPath(path, name)
			if name == "" { // inlined
				p = path
			}
			if why := f.Tag.Get("warn"); why != "" && !v.Field(i).IsZero() {
				*out = append(*out, p+": "+why)
				continue
			}
			collectWarnings(v.Field(i), p, out)
		}
	}
}
