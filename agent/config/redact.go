package config

import "reflect"

// RedactedValue replaces a secret in the copy Redacted returns.
const RedactedValue = "REDACTED"

// Redacted returns a deep copy of c with every secret field (tagged
// secret:"true") that is set replaced by "REDACTED". The /config endpoint
// serves it; c itself is not changed.
func (c *Config) Redacted() *Config {
	out := new(Config)
	copyRedacted(reflect.ValueOf(out).Elem(), reflect.ValueOf(c).Elem())
	return out
}

// copyRedacted deep-copies src into dst, redacting secrets on the way.
func copyRedacted(dst, src reflect.Value) {
	switch src.Kind() {
	case reflect.Struct:
		t := src.Type()
		for i := range t.NumField() {
			if !t.Field(i).IsExported() {
				continue
			}
			copyRedacted(dst.Field(i), src.Field(i))
			if t.Field(i).Tag.Get("secret") == "true" && src.Field(i).String() != "" {
				dst.Field(i).SetString(RedactedValue)
			}
		}
	case reflect.Slice:
		if src.IsNil() {
			return
		}
		s := reflect.MakeSlice(src.Type(), src.Len(), src.Len())
		for i := range src.Len() {
			copyRedacted(s.Index(i), src.Index(i))
		}
		dst.Set(s)
	case reflect.Pointer:
		if src.IsNil() {
			return
		}
		p := reflect.New(src.Type().Elem())
		copyRedacted(p.Elem(), src.Elem())
		dst.Set(p)
	case reflect.Interface:
		// A plug-in's Settings: a pointer to its struct.
		if src.IsNil() {
			return
		}
		e := src.Elem()
		if e.Kind() != reflect.Pointer || e.IsNil() {
			dst.Set(src)
			return
		}
		p := reflect.New(e.Type().Elem())
		copyRedacted(p.Elem(), e.Elem())
		dst.Set(p)
	case reflect.Map:
		if src.IsNil() {
			return
		}
		m := reflect.MakeMapWithSize(src.Type(), src.Len())
		for it := src.MapRange(); it.Next(); {
			v := reflect.New(src.Type().Elem()).Elem()
			copyRedacted(v, it.Value())
			m.SetMapIndex(it.Key(), v)
		}
		dst.Set(m)
	default:
		dst.Set(src)
	}
}
