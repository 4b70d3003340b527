// Package uplink owns the send loop between the buffer and a sink: it reads
// batches from the head of the sink's queue, keeps several in flight,
// retries failures forever with capped exponential backoff and jitter, and
// acknowledges each batch to the buffer once the sink has confirmed it. It
// knows nothing of PLCs; the sinks in the sub-packages know nothing of the
// buffer.
package uplink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/iot-producer/iot-producer/buffer"
	"github.com/iot-producer/iot-producer/record"
)

// Message is one record handed to a sink.
type Message struct {
	// Key is the device name.
	Key string
	// Time is the sample's read time.
	Time time.Time
	// Value is the record's JSON value.
	Value []byte
	// Backlog is true when the record waited in the buffer longer than the
	// loop's live window: it is sent as replayed backlog, not live data.
	Backlog bool
}

// Sink sends batches of messages to a broker.
type Sink interface {
	// Name is the sink's label in metrics, logs and /ready.
	Name() string
	// Send returns nil once the broker has acknowledged every message, or
	// an error when any of them failed. It honours ctx: when ctx is done it
	// returns promptly, and unacknowledged messages stay in the buffer.
	Send(ctx context.Context, batch []Message) error
}

// Queue is the part of a buffer queue the loop reads and acknowledges.
type Queue interface {
	Read(after buffer.Pos, max int) ([]buffer.Record, error)
	Ack(positions ...buffer.Pos) error
	Notify() <-chan struct{}
}

// State is the loop's connection state.
type State string

// States of a loop, reported through Options.OnState.
const (
	StateConnected  State = "connected"   // the last send succeeded (or none failed yet)
	StateBackingOff State = "backing_off" // the last send failed; retrying
)

// Metrics receives the loop's counts. Any field may be nil.
type Metrics struct {
	// Sent is called after a batch of n records was acknowledged, with the
	// time from send to acknowledgement and each record's read time.
	Sent func(n int, sendDuration time.Duration, readTimes []time.Time)
	// Failed is called with the number of records in a failed attempt.
	Failed func(n int)
	// Retried counts retries.
	Retried func()
	// Malformed counts records that could not be decoded and were dropped.
	Malformed func(n int)
}

// Options configures a Loop.
type Options struct {
	// BatchSize is the most records per batch. Default 1000.
	BatchSize int
	// FlushInterval is the longest a partial batch waits, counted from the
	// commit of its oldest record. Default 10ms.
	FlushInterval time.Duration
	// Workers is the number of batches in flight. Default 4.
	Workers int
	// BackoffMin and BackoffMax bound the wait between retries. Defaults
	// 100ms and 30s.
	BackoffMin, BackoffMax time.Duration
	// LiveWindow: a record committed longer ago than this is sent as
	// backlog. Default 5s.
	LiveWindow time.Duration
	// ShutdownGrace is how long in-flight sends may finish after the loop's
	// context is cancelled; what is not acknowledged by then stays in the
	// buffer. Default 5s.
	ShutdownGrace time.Duration
	Logger        *slog.Logger
	Metrics       Metrics
	// OnState is called when the state changes, with the last error when
	// backing off.
	OnState func(state State, err error)
}

// Loop moves records from one queue to one sink.
type Loop struct {
	queue Queue
	sink  Sink
	opts  Options
	log   *slog.Logger

	stateMu sync.Mutex
	state   State
}

// New returns a loop from queue to sink.
func New(queue Queue, sink Sink, opts Options) *Loop {
	if opts.BatchSize <= 0 {
		opts.BatchSize = 1000
	}
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = 10 * time.Millisecond
	}
	if opts.Workers <= 0 {
		opts.Workers = 4
	}
	if opts.BackoffMin <= 0 {
		opts.BackoffMin = 100 * time.Millisecond
	}
	if opts.BackoffMax < opts.BackoffMin {
		opts.BackoffMax = max(30*time.Second, opts.BackoffMin)
	}
	if opts.LiveWindow <= 0 {
		opts.LiveWindow = 5 * time.Second
	}
	if opts.ShutdownGrace <= 0 {
		opts.ShutdownGrace = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Loop{queue: queue, sink: sink, opts: opts, log: opts.Logger.With("sink", sink.Name()), state: StateConnected}
}

// Run sends until ctx is cancelled, then gives in-flight batches
// ShutdownGrace to be acknowledged and returns. It returns an error only if
// the queue cannot be read.
func (l *Loop) Run(ctx context.Context) error {
	slots := make(chan struct{}, l.opts.Workers)
	var wg sync.WaitGroup
	sendCtx, cancelSends := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSends()

	var runErr error
	var cursor buffer.Pos
	for runErr == nil {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		recs, err := l.readBatch(ctx, cursor)
		if err != nil {
			<-slots
			if ctx.Err() == nil {
				runErr = err
			}
			break
		}
		cursor = recs[len(recs)-1].Pos
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			l.deliver(sendCtx, recs)
		}()
	}

	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	grace := time.NewTimer(l.opts.ShutdownGrace)
	defer grace.Stop()
	select {
	case <-done:
	case <-grace.C:
		l.log.Warn("shutdown grace over; unacknowledged batches stay in the buffer")
		cancelSends()
		<-done
	}
	return runErr
}

// readBatch returns a non-empty batch after cursor: full, or partial once
// its oldest record is FlushInterval old. It returns ctx's error when ctx
// is cancelled first.
func (l *Loop) readBatch(ctx context.Context, after buffer.Pos) ([]buffer.Record, error) {
	var recs []buffer.Record
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		more, err := l.queue.Read(after, l.opts.BatchSize-len(recs))
		if err != nil {
			return nil, fmt.Errorf("read queue of sink %s: %w", l.sink.Name(), err)
		}
		recs = append(recs, more...)
		if len(more) > 0 {
			after = more[len(more)-1].Pos
		}
		if len(recs) >= l.opts.BatchSize {
			return recs, nil
		}
		var wait <-chan time.Time
		if len(recs) > 0 {
			left := time.Until(recs[0].Appended.Add(l.opts.FlushInterval))
			if left <= 0 {
				return recs, nil
			}
			if timer == nil {
				timer = time.NewTimer(left)
			} else {
				timer.Reset(left)
			}
			wait = timer.C
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-l.queue.Notify():
		case <-wait:
			return recs, nil
		}
	}
}

// deliver sends one batch until it is acknowledged or ctx is done.
func (l *Loop) deliver(ctx context.Context, recs []buffer.Record) {
	msgs := make([]Message, 0, len(recs))
	positions := make([]buffer.Pos, 0, len(recs))
	var malformed []buffer.Pos
	now := time.Now()
	for _, r := range recs {
		env, err := record.DecodeEnvelope(r.Data)
		if err != nil {
			l.log.Error("dropping undecodable record", "frame", r.Pos.Frame, "index", r.Pos.Index, "err", err)
			malformed = append(malformed, r.Pos)
			continue
		}
		msgs = append(msgs, Message{Key: env.Key, Time: env.Time, Value: env.Value, Backlog: now.Sub(r.Appended) > l.opts.LiveWindow})
		positions = append(positions, r.Pos)
	}
	if len(malformed) > 0 {
		if m := l.opts.Metrics.Malformed; m != nil {
			m(len(malformed))
		}
		l.ack(malformed)
	}
	if len(msgs) == 0 {
		return
	}
	for attempt := 0; ; attempt++ {
		start := time.Now()
		err := l.sink.Send(ctx, msgs)
		if err == nil {
			took := time.Since(start)
			l.ack(positions)
			l.setState(StateConnected, nil)
			if m := l.opts.Metrics.Sent; m != nil {
				times := make([]time.Time, len(msgs))
				for i := range msgs {
					times[i] = msgs[i].Time
				}
				m(len(msgs), took, times)
			}
			return
		}
		if m := l.opts.Metrics.Failed; m != nil {
			m(len(msgs))
		}
		if ctx.Err() != nil {
			return
		}
		l.setState(StateBackingOff, err)
		wait := l.backoff(attempt)
		l.log.Warn("send failed; retrying", "records", len(msgs), "attempt", attempt+1, "retry_in", wait.Round(time.Millisecond), "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if m := l.opts.Metrics.Retried; m != nil {
			m()
		}
	}
}

func (l *Loop) ack(positions []buffer.Pos) {
	if err := l.queue.Ack(positions...); err != nil {
		// The records were delivered; if the buffer cannot forget them they
		// are delivered again after a restart (at-least-once).
		l.log.Error("acknowledge to buffer failed; records may be sent again", "records", len(positions), "err", err)
	}
}

// backoff returns the wait before retry number attempt+1: exponential from
// BackoffMin, capped at BackoffMax, with full jitter over its upper half.
func (l *Loop) backoff(attempt int) time.Duration {
	d := l.opts.BackoffMin
	for i := 0; i < attempt && d < l.opts.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, l.opts.BackoffMax)
	half := d / 2
	return half + rand.N(half+1)
}

func (l *Loop) setState(s State, err error) {
	l.stateMu.Lock()
	changed := l.state != s
	l.state = s
	l.stateMu.Unlock()
	if changed && s == StateConnected {
		l.log.Info("sink connected")
	}
	if cb := l.opts.OnState; cb != nil && (changed || err != nil) {
		cb(s, err)
	}
}

// ErrClosed is returned by sinks used after Close.
var ErrClosed = errors.New("sink closed")
