package config

import (
	"strings"
	"testing"
)

func TestExpandEnv(t *testing.T) {
	env := map[string]string{"A": "1", "E": ""}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	tests := []struct {
		in, want, err string
	}{
		{in: "plain", want: "plain"},
		{in: "${A}", want: "1"},
		{in: "x${A}y${A}z", want: "x1y1z"},
		{in: "${B:-dflt}", want: "dflt"},
		{in: "${E:-dflt}", want: "dflt"},
		{in: "${E}", want: ""},
		{in: "${B:-}", want: ""},
		{in: "${B:-a:-b}", want: "a:-b"},
		{in: "$${A}", want: "${A}"},
		{in: "$A ${A}", want: "$A 1"},
		{in: "${B}", err: "environment variable B is not set"},
		{in: "${A", err: "unterminated ${"},
		{in: "${}", err: "invalid environment variable reference: write"},
		{in: "${A B}", err: "invalid environment variable reference"},
	}
	for _, tt := range tests {
		got, err := expandEnv(tt.in, lookup)
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("expandEnv(%q) error = %v, want %q", tt.in, err, tt.err)
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("expandEnv(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}
