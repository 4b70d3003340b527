// Package lograte keeps a repeated log message from flooding the log: the
// first occurrence of a message is logged at once, later ones at most once
// per interval, each carrying how many were held back since the last one
// and the sum of a quantity they counted (samples, records). Metrics count
// every occurrence; the log says that it happens and how much.
//
// It knows nothing of what it logs.
package lograte

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// DefaultInterval is the interval of a Limiter whose Interval is zero.
const DefaultInterval = 10 * time.Second

// Limiter logs each message key at most once per Interval. The zero value
// is ready to use with DefaultInterval; it is safe for concurrent use and
// must not be copied after first use.
type Limiter struct {
	// Interval is the least time between two lines of one key.
	Interval time.Duration

	mu   sync.Mutex
	keys map[string]*held
	// now is the clock; nil means time.Now. Tests replace it.
	now func() time.Time
}

// held is what a key held back since its last line.
type held struct {
	last   time.Time
	count  int
	amount int64
}

// Log logs msg at level on log, unless a line of the same key was logged
// less than Interval ago: then it only counts it. amount is a quantity the
// occurrence is about (samples dropped, records retried); a line that
// follows held-back occurrences carries "suppressed" (how many were held
// back) and "suppressed_amount" (the sum of their amounts). key is usually
// msg plus whatever distinguishes cases worth their own line (a reason, a
// lane).
func (l *Limiter) Log(log *slog.Logger, level slog.Level, key string, amount int64, msg string, args ...any) {
	now := l.clock()
	l.mu.Lock()
	if l.keys == nil {
		l.keys = make(map[string]*held)
	}
	h, ok := l.keys[key]
	if !ok {
		h = &held{}
		l.keys[key] = h
	}
	every := l.Interval
	if every <= 0 {
		every = DefaultInterval
	}
	if ok && now.Sub(h.last) < every {
		h.count++
		h.amount += amount
		l.mu.Unlock()
		return
	}
	count, sum := h.count, h.amount
	h.last, h.count, h.amount = now, 0, 0
	l.mu.Unlock()
	if count > 0 {
		args = append(args, "suppressed", count, "suppressed_amount", sum, "suppressed_over", every.String())
	}
	log.Log(context.Background(), level, msg, args...)
}

func (l *Limiter) clock() time.Time {
	if l.now != nil {
		return l.now()
	}
	return time.Now()
}
