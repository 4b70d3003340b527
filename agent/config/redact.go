package config

import (
	"reflect"
	"regexp"
)

// RedactedValue replaces a secret in the copy Redacted returns.
const RedactedValue = "REDACTED"

// Redacted returns a deep copy of c with every secret field (tagged
// secret:"true") that is set replaced by "REDACTED", and the credentials
// inside URLs of every other string replaced too (see RedactURLs). The
// /config endpoint serves it; c itself is not changed.
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
	case reflect.String:
		dst.SetString(RedactURLs(src.String()))
	default:
		dst.Set(src)
	}
}

// urlUserinfo matches the user information of a URL inside any text:
// scheme "://" then user[:password] "@".
var urlUserinfo = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://)([^/?#\s"'\x60]*)@`)

// RedactURLs returns s with the credentials of every URL in it replaced:
// "tcp://user:pw@host" becomes "tcp://user:REDACTED@host", and a user part
// without a password (often a token, "https://TOKEN@host") becomes
// "REDACTED@host". Text without such a URL is returned unchanged. Use it on
// anything that echoes a configured address: /config, errors, logs.
func RedactURLs(s string) string {
	if !urlUserinfo.MatchString(s) {
		return s
	}
	return urlUserinfo.ReplaceAllStringFunc(s, func(m string) string {
		sub := urlUserinfo.FindStringSubmatch(m)
		scheme, info := sub[1], sub[2]
		for i := range len(info) {
			if info[i] == ':' {
				return scheme + info[:i] + ":" + RedactedValue + "@"
			}
		}
		return scheme + RedactedValue + "@"
	})
}
