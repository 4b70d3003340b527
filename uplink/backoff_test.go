package uplink

import (
	"context"
	"testing"
	"time"
)

func TestBackoffGrowsIsCappedAndJittered(t *testing.T) {
	l := New(nil, nilSink{}, Options{BackoffMin: 100 * time.Millisecond, BackoffMax: 30 * time.Second})
	cases := []struct {
		attempt int
		ceiling time.Duration
	}{
		{0, 100 * time.Millisecond},
		{1, 200 * time.Millisecond},
		{5, 3200 * time.Millisecond},
		{8, 25600 * time.Millisecond},
		{9, 30 * time.Second},
		{60, 30 * time.Second},
	}
	for _, tc := range cases {
		seen := map[time.Duration]bool{}
		for range 200 {
			d := l.backoff(tc.attempt)
			if d < tc.ceiling/2 || d > tc.ceiling {
				t.Fatalf("attempt %d: wait %s outside [%s, %s]", tc.attempt, d, tc.ceiling/2, tc.ceiling)
			}
			seen[d] = true
		}
		if len(seen) < 10 {
			t.Errorf("attempt %d: only %d distinct waits in 200: no jitter", tc.attempt, len(seen))
		}
	}
}

type nilSink struct{}

func (nilSink) Name() string { return "nil" }

func (nilSink) Produce(_ context.Context, _ Lane, _ []Message, done func([]error)) { done(nil) }

func (nilSink) Permanent(error) bool { return false }
