package uplink_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iot-producer/iot-producer/buffer"
	"github.com/iot-producer/iot-producer/record"
	"github.com/iot-producer/iot-producer/uplink"
)

// flakyQueue fails the first fails reads of the queue it wraps.
type flakyQueue struct {
	*buffer.Queue
	fails atomic.Int32
}

func (q *flakyQueue) Read(after buffer.Pos, max int) ([]buffer.Record, error) {
	if q.fails.Add(-1) >= 0 {
		return nil, errors.New("injected read error")
	}
	return q.Queue.Read(after, max)
}

// ReadAppend is how the loop reads a buffer queue.
func (q *flakyQueue) ReadAppend(after buffer.Pos, max int, recs []buffer.Record, arena []byte) ([]buffer.Record, []byte, error) {
	if q.fails.Add(-1) >= 0 {
		return recs, arena, errors.New("injected read error")
	}
	return q.Queue.ReadAppend(after, max, recs, arena)
}

// keep appends copies of batch's messages to dst: once a sink called
// done(nil) the loop reuses the batch's memory.
func keep(dst, batch []uplink.Message) []uplink.Message {
	for _, m := range batch {
		m.Value = bytes.Clone(m.Value)
		dst = append(dst, m)
	}
	return dst
}

// TestReadErrorsDoNotEndTheLane: reads of the queue fail for a while. The
// lane must report it (backing off), read again after a backoff, and
// deliver everything.
func TestReadErrorsDoNotEndTheLane(t *testing.T) {
	f := newFixture(t)
	f.appendRecords(t, "a", 1, 300)
	q := &flakyQueue{Queue: f.buf.Queue("kafka")}
	q.fails.Store(5)
	var c counts
	var backingOff atomic.Bool
	l := uplink.New(q, f.sink, uplink.Options{
		BatchSize: 100, FlushInterval: time.Millisecond, BackoffMin: time.Millisecond, BackoffMax: 5 * time.Millisecond,
		Logger: quiet, Metrics: c.metrics(),
		OnState: func(_ uplink.Lane, s uplink.State, err error) {
			if s == uplink.StateBackingOff && err != nil {
				backingOff.Store(true)
			}
		},
	})
	runLoop(t, l, &c, 300)
	if !backingOff.Load() {
		t.Fatal("failed reads were not reported as backing off")
	}
	f.verifyTopic(t, map[string]uint64{"a": 300})
}

// probingSink fails every send until its link is up again; its probe says
// whether the link is up.
type probingSink struct {
	up     atomic.Bool
	probes atomic.Int32
	mu     sync.Mutex
	got    []uplink.Message
}

func (s *probingSink) Name() string         { return "probing" }
func (s *probingSink) Permanent(error) bool { return false }
func (s *probingSink) Probe(context.Context) error {
	if s.probes.Add(1) >= 3 {
		s.up.Store(true)
	}
	if !s.up.Load() {
		return errors.New("unreachable")
	}
	return nil
}

func (s *probingSink) Produce(_ context.Context, _ uplink.Lane, batch []uplink.Message, done func([]error)) {
	if !s.up.Load() {
		errs := make([]error, len(batch))
		for i := range errs {
			errs[i] = errors.New("link down")
		}
		go done(errs)
		return
	}
	s.mu.Lock()
	s.got = keep(s.got, batch)
	s.mu.Unlock()
	go done(nil)
}

// TestProbeEndsTheBackoff: a send fails and the backoff is an hour. The
// sink's probe finds the link down, then up: the lane must send again at
// once rather than after the hour.
func TestProbeEndsTheBackoff(t *testing.T) {
	f := newFixture(t)
	f.appendRecords(t, "a", 1, 100)
	s := &probingSink{}
	var c counts
	l := uplink.New(f.buf.Queue("kafka"), s, uplink.Options{
		BatchSize: 100, FlushInterval: time.Millisecond, BackoffMin: time.Hour, BackoffMax: time.Hour,
		ProbeInterval: time.Millisecond, Logger: quiet, Metrics: c.metrics(),
	})
	runLoop(t, l, &c, 100)
	if n := s.probes.Load(); n < 3 {
		t.Fatalf("%d probes; the backoff ended without one finding the link up", n)
	}
}

// orderSink behaves as Kafka's idempotent producer does for one partition:
// batches are taken in the order they were handed over, one at a time;
// when a batch fails (those whose first value is in failOnce, once each),
// it and every batch handed over behind it fail, the failure reported
// only once the next batch was taken. It is an uplink.Fencer:
// after a failure every batch fails with ErrFenced until Reopen. It keeps
// what it took in the order it took it.
type orderSink struct {
	queue    chan orderItem
	mu       sync.Mutex
	failOnce map[string]bool
	fenced   bool
	reopens  int
	got      []uplink.Message
}

type orderItem struct {
	batch []uplink.Message
	done  func([]error)
}

func newOrderSink(t *testing.T) *orderSink {
	s := &orderSink{queue: make(chan orderItem, 64), failOnce: map[string]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	t.Cleanup(func() { cancel(); <-stopped })
	go func() {
		defer close(stopped)
		for {
			select {
			case <-ctx.Done():
				return
			case it := <-s.queue:
				s.take(it)
			}
		}
	}()
	return s
}

func failAll(it orderItem, err error) {
	errs := make([]error, len(it.batch))
	for i := range errs {
		errs[i] = err
	}
	it.done(errs)
}

func (s *orderSink) take(it orderItem) {
	s.mu.Lock()
	if s.fenced {
		s.mu.Unlock()
		failAll(it, uplink.ErrFenced)
		return
	}
	key := string(it.batch[0].Value)
	fail := s.failOnce[key]
	delete(s.failOnce, key)
	if !fail {
		s.got = keep(s.got, it.batch)
	} else {
		s.fenced = true
	}
	s.mu.Unlock()
	if !fail {
		it.done(nil)
		return
	}
	err := fmt.Errorf("injected failure of the batch starting at %s", key)
	// The failure is reported late, as franz-go's callback comes a moment
	// after it failed the records: a batch handed over meanwhile reaches
	// the sink first (and is fenced).
	select {
	case next := <-s.queue:
		s.take(next)
	case <-time.After(20 * time.Millisecond): // nothing more was handed over
	}
	failAll(it, err)
	for {
		select {
		case behind := <-s.queue:
			failAll(behind, err)
		default:
			return
		}
	}
}

func (s *orderSink) Reopen(uplink.Lane) {
	s.mu.Lock()
	s.fenced = false
	s.reopens++
	s.mu.Unlock()
}

func (s *orderSink) Name() string         { return "order" }
func (s *orderSink) Permanent(error) bool { return false }

func (s *orderSink) Produce(_ context.Context, _ uplink.Lane, batch []uplink.Message, done func([]error)) {
	s.queue <- orderItem{batch, done}
}

// TestOrderKeptAfterAFailedBatch: batches fail now and then. What the sink
// takes must be in sequence order for the device: no batch read after a
// failed one may be taken before the failed one is sent again. With one
// batch in flight the loop alone keeps the order; with four, a batch
// handed over before the loop learns of a failure is fenced by the sink
// and the loop reopens it once nothing is in flight.
func TestOrderKeptAfterAFailedBatch(t *testing.T) {
	for _, workers := range []int{1, 4} {
		t.Run(fmt.Sprintf("%d in flight", workers), func(t *testing.T) {
			f := newFixture(t)
			const n = 2000
			f.appendRecords(t, "a", 1, n)
			s := newOrderSink(t)
			var c counts
			l := uplink.New(f.buf.Queue("kafka"), s, uplink.Options{
				BatchSize: 10, Workers: workers, FlushInterval: time.Millisecond, BackoffMin: time.Microsecond, BackoffMax: time.Microsecond,
				Logger: quiet, Metrics: c.metrics(),
			})
			// Learn the values the batches start with from the records: every 10th.
			recs, err := f.buf.Queue("kafka").Read(buffer.Start(), n)
			if err != nil {
				t.Fatal(err)
			}
			failures := 0
			for i := 0; i < len(recs); i += 70 {
				env, err := record.DecodeEnvelope(recs[i].Data)
				if err != nil {
					t.Fatal(err)
				}
				s.failOnce[string(env.Value)] = true
				failures++
			}
			runLoop(t, l, &c, n)
			s.mu.Lock()
			defer s.mu.Unlock()
			var last uint64
			for _, m := range s.got {
				r, err := record.Decode(m.Value)
				if err != nil {
					t.Fatal(err)
				}
				if r.Seq < last {
					t.Fatalf("seq %d taken after %d: order lost after a failed batch", r.Seq, last)
				}
				last = r.Seq
			}
			if last != n {
				t.Fatalf("last seq %d, want %d", last, n)
			}
			if s.reopens < failures {
				t.Fatalf("%d reopens for %d failures", s.reopens, failures)
			}
		})
	}
}
