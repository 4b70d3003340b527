package config

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestDurationForms(t *testing.T) {
	tests := []struct {
		in   string // YAML value
		want time.Duration
		err  string
	}{
		{in: "500", want: 500 * time.Millisecond},
		{in: `"500"`, want: 500 * time.Millisecond},
		{in: "1000", want: time.Second},
		{in: "0", want: 0},
		{in: "500ms", want: 500 * time.Millisecond},
		{in: `"500ms"`, want: 500 * time.Millisecond},
		{in: "2s", want: 2 * time.Second},
		{in: "1.5s", want: 1500 * time.Millisecond},
		{in: "2m", want: 2 * time.Minute},
		{in: "1h30m", want: 90 * time.Minute},
		{in: "168h", want: 168 * time.Hour},
		{in: "-1", err: "negative duration -1"},
		{in: "-2s", err: "negative duration -2s"},
		{in: "1.5", err: "a bare number is whole milliseconds"},
		{in: "2 s", err: `invalid duration "2 s"`},
		{in: "soon", err: `invalid duration "soon"`},
		{in: `""`, err: "empty duration"},
		{in: "[1]", err: "expected a duration"},
		{in: "99999999999999999", err: "too long"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var v struct {
				D Duration `yaml:"d"`
			}
			err := yaml.Unmarshal([]byte("d: "+tt.in), &v)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || v.D.Std() != tt.want {
				t.Fatalf("got %v, %v; want %v", v.D.Std(), err, tt.want)
			}
		})
	}
}

func TestDurationMarshal(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"},
		{500 * time.Millisecond, "500ms"},
		{1500 * time.Millisecond, "1.5s"},
		{2 * time.Minute, "2m"},
		{90 * time.Minute, "1h30m"},
		{168 * time.Hour, "168h"},
		{time.Hour + time.Second, "1h0m1s"},
	}
	for _, tt := range tests {
		d := Duration(tt.d)
		j, err := json.Marshal(d)
		if err != nil || string(j) != `"`+tt.want+`"` {
			t.Errorf("MarshalJSON(%v) = %s, %v; want %q", tt.d, j, err, tt.want)
		}
		y, err := yaml.Marshal(d)
		if err != nil || strings.TrimSpace(string(y)) != tt.want {
			t.Errorf("MarshalYAML(%v) = %s, %v; want %s", tt.d, y, err, tt.want)
		}
		var back Duration
		if err := json.Unmarshal(j, &back); err != nil || back != d {
			t.Errorf("round trip of %s = %v, %v", j, back, err)
		}
	}
	var ms Duration
	if err := json.Unmarshal([]byte("250"), &ms); err != nil || ms.Std() != 250*time.Millisecond {
		t.Errorf("UnmarshalJSON(250) = %v, %v; want 250ms", ms, err)
	}
}

func TestByteSizeForms(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  string
	}{
		{in: "0", want: 0},
		{in: "4096", want: 4096},
		{in: "100B", want: 100},
		{in: "1KB", want: 1000},
		{in: "1KiB", want: 1024},
		{in: "100MB", want: 100_000_000},
		{in: "512MiB", want: 512 << 20},
		{in: "1GB", want: 1_000_000_000},
		{in: "1GiB", want: 1 << 30},
		{in: "2TiB", want: 2 << 40},
		{in: "1.5GiB", want: 3 << 29},
		{in: "512 MiB", want: 512 << 20},
		{in: "1gib", want: 1 << 30},
		{in: "-1", err: "negative size"},
		{in: "1.5", err: "bytes are whole"},
		{in: "1G", err: `unknown unit "G"`},
		{in: "1Gb/s", err: "unknown unit"},
		{in: "MiB", err: "invalid size"},
		{in: "99999999TiB", err: "too large"},
		{in: "{a: 1}", err: "expected a size"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var v struct {
				B ByteSize `yaml:"b"`
			}
			err := yaml.Unmarshal([]byte("b: "+tt.in), &v)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || int64(v.B) != tt.want {
				t.Fatalf("got %d, %v; want %d", v.B, err, tt.want)
			}
		})
	}
}

func TestByteSizeMarshal(t *testing.T) {
	tests := []struct {
		b    ByteSize
		want string
	}{
		{0, "0B"},
		{1, "1B"},
		{1000, "1KB"},
		{1024, "1KiB"},
		{1 << 30, "1GiB"},
		{3 << 29, "1536MiB"},
		{2048000000, "2048MB"},
		{1_000_000_000_000, "1TB"},
		{12345, "12345B"},
	}
	for _, tt := range tests {
		j, err := json.Marshal(tt.b)
		if err != nil || string(j) != `"`+tt.want+`"` {
			t.Errorf("MarshalJSON(%d) = %s, %v; want %q", tt.b, j, err, tt.want)
		}
		y, err := yaml.Marshal(tt.b)
		if err != nil || strings.TrimSpace(string(y)) != tt.want {
			t.Errorf("MarshalYAML(%d) = %s, %v; want %s", tt.b, y, err, tt.want)
		}
		var back ByteSize
		if err := json.Unmarshal(j, &back); err != nil || back != tt.b {
			t.Errorf("round trip of %s = %d, %v", j, back, err)
		}
	}
}

func TestSuggest(t *testing.T) {
	cands := []string{"batch_size", "flush_interval", "worker_count"}
	tests := map[string]string{
		"batch_sise":    "batch_size",
		"BATCH_SIZE":    "batch_size",
		"flushinterval": "flush_interval",
		"workers":       "",
		"x":             "",
	}
	for in, want := range tests {
		if got := suggest(in, cands); got != want {
			t.Errorf("suggest(%q) = %q, want %q", in, got, want)
		}
	}
}
