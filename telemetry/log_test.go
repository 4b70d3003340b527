package telemetry

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestNewLogger(t *testing.T) {
	tests := []struct {
		level, format string
		wantDebug     bool // debug messages are written
		wantInfo      bool
		wantJSON      bool
	}{
		{"", "", false, true, false},
		{"debug", "text", true, true, false},
		{"INFO", "JSON", false, true, true},
		{"warn", "json", false, false, true},
		{"warning", "text", false, false, false},
		{" error ", "text", false, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.level+"/"+tt.format, func(t *testing.T) {
			var buf bytes.Buffer
			log, err := NewLogger(tt.level, tt.format, &buf)
			if err != nil {
				t.Fatal(err)
			}
			log.Debug("dbg")
			log.Info("inf")
			log.Error("err", "device", "plc1")
			out := buf.String()
			if got := strings.Contains(out, "dbg"); got != tt.wantDebug {
				t.Errorf("debug written = %v, want %v:\n%s", got, tt.wantDebug, out)
			}
			if got := strings.Contains(out, "inf"); got != tt.wantInfo {
				t.Errorf("info written = %v, want %v:\n%s", got, tt.wantInfo, out)
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			last := lines[len(lines)-1]
			var rec map[string]any
			isJSON := json.Unmarshal([]byte(last), &rec) == nil
			if isJSON != tt.wantJSON {
				t.Errorf("JSON = %v, want %v: %s", isJSON, tt.wantJSON, last)
			}
			if !strings.Contains(last, "plc1") {
				t.Errorf("attribute missing: %s", last)
			}
		})
	}
}

func TestNewLoggerRejects(t *testing.T) {
	tests := []struct{ level, format, wantInErr string }{
		{"verbose", "text", `"verbose"`},
		{"info", "yaml", `"yaml"`},
	}
	for _, tt := range tests {
		t.Run(tt.wantInErr, func(t *testing.T) {
			log, err := NewLogger(tt.level, tt.format, &bytes.Buffer{})
			if err == nil || log != nil {
				t.Fatalf("NewLogger(%q, %q) = %v, %v; want an error", tt.level, tt.format, log, err)
			}
			if !strings.Contains(err.Error(), tt.wantInErr) {
				t.Errorf("error %q does not name %s", err, tt.wantInErr)
			}
		})
	}
}

func TestNewLoggerNilWriter(t *testing.T) {
	if log, err := NewLogger("error", "text", nil); err != nil || log == nil {
		t.Errorf("NewLogger with nil writer = %v, %v", log, err)
	}
}

func TestLoggerRedactsURLCredentials(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		var b strings.Builder
		log, err := NewLogger("info", format, &b)
		if err != nil {
			t.Fatal(err)
		}
		log.Info("connecting", "broker", "tcp://plant:CANARY@broker:1883",
			"error", errors.New(`dial "ssl://plant:CANARY@broker:8883": refused`))
		if strings.Contains(b.String(), "CANARY") || !strings.Contains(b.String(), "tcp://REDACTED@broker:1883") {
			t.Errorf("%s log: %s", format, b.String())
		}
	}
}
