package lograte

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestLimiterHoldsBackAndCounts(t *testing.T) {
	var out bytes.Buffer
	log := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}))
	now := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	l := &Limiter{Interval: 10 * time.Second, now: func() time.Time { return now }}
	tests := []struct {
		name    string
		advance time.Duration
		key     string
		want    string // the line logged, "" for none
	}{
		{"first is logged", 0, "drop", `level=WARN msg=dropped n=5`},
		{"repeat within the interval is held", time.Second, "drop", ""},
		{"another key has its own interval", 0, "other", `level=WARN msg=dropped n=5`},
		{"held again", 2 * time.Second, "drop", ""},
		{"after the interval, with the counts", 8 * time.Second, "drop", `level=WARN msg=dropped n=5 suppressed=2 suppressed_amount=10 suppressed_over=10s`},
		{"and the count starts again", 10 * time.Second, "drop", `level=WARN msg=dropped n=5`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now = now.Add(tt.advance)
			out.Reset()
			l.Log(log, slog.LevelWarn, tt.key, 5, "dropped", "n", 5)
			if got := strings.TrimSpace(out.String()); got != tt.want {
				t.Errorf("logged %q, want %q", got, tt.want)
			}
		})
	}
}

// TestLimiterFlood: a flood of thousands of occurrences gives one line per
// interval.
func TestLimiterFlood(t *testing.T) {
	var out bytes.Buffer
	log := slog.New(slog.NewTextHandler(&out, nil))
	now := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	l := &Limiter{now: func() time.Time { return now }}
	for range 7140 { // one every 2.8 ms for 20 s
		l.Log(log, slog.LevelWarn, "k", 1, "samples dropped before commit")
		now = now.Add(2800 * time.Microsecond)
	}
	if n := strings.Count(out.String(), "\n"); n != 2 {
		t.Fatalf("%d lines for 20 s of drops, want 2 (one per 10 s):\n%s", n, out.String())
	}
}
