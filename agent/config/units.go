package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Duration is a time.Duration written as "500ms", "2s", "1h" or as a bare
// number of milliseconds (500), the way the ops manual writes them.
type Duration time.Duration

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// String returns the shortest form ParseDuration reads back: "500ms",
// "1.5s", "2m", "168h".
func (d Duration) String() string {
	s := time.Duration(d).String()
	// time.Duration writes 2m as "2m0s" and 168h as "168h0m0s".
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// ParseDuration reads "500ms", "1.5s", "2m" (time.ParseDuration's units) or a
// bare whole number of milliseconds. Negative durations are rejected.
func ParseDuration(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty duration: write 500ms, 2s, 1m or a bare number of milliseconds")
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 {
			return 0, fmt.Errorf("negative duration %s", s)
		}
		if n > math.MaxInt64/int64(time.Millisecond) {
			return 0, fmt.Errorf("duration %sms is too long", s)
		}
		return Duration(time.Duration(n) * time.Millisecond), nil
	}
	if _, err := strconv.ParseFloat(s, 64); err == nil {
		return 0, fmt.Errorf("invalid duration %q: a bare number is whole milliseconds; give a unit, e.g. %sms or %ss", s, s, s)
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: write 500ms, 1.5s, 2m or a bare number of milliseconds", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("negative duration %s", s)
	}
	return Duration(d), nil
}

// UnmarshalYAML reads a duration from a scalar: "500ms", "1.5s", "2m" or a
// bare number of milliseconds.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected a duration (500ms, 2s or bare milliseconds), got %s", kindName(n))
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// MarshalYAML writes the string form, e.g. "500ms".
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// MarshalJSON writes the string form, e.g. "500ms".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads the string form or a number of milliseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		s = string(b)
	}
	v, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// ByteSize is a size in bytes written as a bare number or with a unit:
// "512MiB", "1GiB", "100MB".
type ByteSize int64

// byteUnits lists the units ByteSize reads.
var byteUnits = []struct {
	name string
	mult int64
}{
	{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
	{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3},
	{"B", 1},
}

// ParseByteSize reads a bare number of bytes or a number with a unit: KB, MB,
// GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024), case
// insensitive, e.g. "512MiB", "1.5GB", "4096".
func ParseByteSize(s string) (ByteSize, error) {
	s = strings.TrimSpace(s)
	i := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := s, ""
	if i >= 0 {
		num, unit = s[:i], strings.TrimSpace(s[i:])
	}
	if strings.HasPrefix(s, "-") {
		return 0, fmt.Errorf("negative size %s", s)
	}
	if num == "" {
		return 0, fmt.Errorf("invalid size %q: write a number of bytes or e.g. 512MiB, 1GiB, 100MB", s)
	}
	mult := int64(-1)
	if unit == "" {
		mult = 1
	}
	for _, u := range byteUnits {
		if unit != "" && strings.EqualFold(unit, u.name) {
			mult = u.mult
		}
	}
	if mult < 0 {
		return 0, fmt.Errorf("invalid size %q: unknown unit %q; use B, KB, MB, GB, TB (1000s) or KiB, MiB, GiB, TiB (1024s)", s, unit)
	}
	if n, err := strconv.ParseInt(num, 10, 64); err == nil {
		if n > math.MaxInt64/mult {
			return 0, fmt.Errorf("size %s is too large", s)
		}
		return ByteSize(n * mult), nil
	}
	f, err := strconv.ParseFloat(num, 64)
	if err == nil && mult == 1 {
		return 0, fmt.Errorf("invalid size %q: bytes are whole; give a unit for a fraction, e.g. 1.5GiB", s)
	}
	if err != nil {
		return 0, fmt.Errorf("invalid size %q: write a number of bytes or e.g. 512MiB, 1GiB, 100MB", s)
	}
	v := f * float64(mult)
	if v >= math.MaxInt64 {
		return 0, fmt.Errorf("size %s is too large", s)
	}
	return ByteSize(v), nil
}

// String returns the size in the largest unit that divides it exactly:
// "1GiB", "100MB", "1234B".
func (b ByteSize) String() string {
	if b == 0 {
		return "0B"
	}
	best := byteUnits[len(byteUnits)-1]
	for _, u := range byteUnits {
		if int64(b)%u.mult == 0 && u.mult > best.mult {
			best = u
		}
	}
	return strconv.FormatInt(int64(b)/best.mult, 10) + best.name
}

// UnmarshalYAML reads a size from a scalar, see ParseByteSize.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected a size (e.g. 512MiB), got %s", kindName(n))
	}
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// MarshalYAML writes the string form, e.g. "1GiB".
func (b ByteSize) MarshalYAML() (any, error) { return b.String(), nil }

// MarshalJSON writes the string form, e.g. "1GiB".
func (b ByteSize) MarshalJSON() ([]byte, error) { return json.Marshal(b.String()) }

// UnmarshalJSON reads the string form or a number of bytes.
func (b *ByteSize) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		s = string(data)
	}
	v, err := ParseByteSize(s)
	if err != nil {
		return err
	}
	*b = v
	return nil
}
