// Package uplink owns the send loop between the buffer and a sink: it reads
// batches from the sink's queue, keeps several in flight, retries failures
// forever with capped exponential backoff and jitter, moves records the
// broker refuses for good to a dead-letter queue, and acknowledges each
// record to the buffer once the sink has confirmed it.
//
// Two lanes share one queue. The live lane follows the tail, so that fresh
// samples never wait behind a backlog; when the record at its cursor is
// older than LiveWindow it jumps to the tail and leaves the records it
// skipped to the backlog lane, which drains them oldest first, as fast as
// the broker takes them. Within a lane batches are handed to the sink in
// queue order; after a failure the lane stops, lets every batch in flight
// settle, and sends again from the first failed record in queue order. With
// a sink that is a Fencer (Kafka, MQTT), nothing handed over behind a
// failed record can reach the broker before it, so a device's records keep
// their order within each lane across failures; a record may arrive twice,
// never after a later one.
//
// It knows nothing of PLCs; the sinks in the sub-packages know nothing of
// the buffer.
package uplink

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/iot-producer/iot-producer/buffer"
	"github.com/iot-producer/iot-producer/internal/lograte"
)

// Lane is the lane a message travels in.
type Lane int

// Lanes.
const (
	// Live carries records committed within LiveWindow.
	Live Lane = iota
	// Backlog carries older records, replayed after an outage or restart.
	Backlog
)

// String returns "live" or "backlog".
func (l Lane) String() string {
	if l == Backlog {
		return "backlog"
	}
	return "live"
}

// Message is one record handed to a sink.
type Message struct {
	// Key is the device name.
	Key string
	// Time is the sample's read time.
	Time time.Time
	// Schema is the schema version of Value (record.SchemaVersion, or 1
	// for a record buffered by an earlier build).
	Schema int
	// Epoch is the stream epoch the record carries; empty for schema 1.
	Epoch string
	// Value is the record's JSON value.
	Value []byte
	// Alone is set when the loop hands the message over by itself, with
	// nothing else of its lane in flight, to find out whether a refusal
	// that hit the whole batch it was sent in (ErrRefusedWithBatch) was
	// its own: a sink reports such a refusal of an Alone message as the
	// broker's own error (Permanent when it is one).
	Alone bool
}

// Sink sends batches of messages to a broker.
type Sink interface {
	// Name is the sink's label in metrics, logs and /ready.
	Name() string
	// Produce hands batch to the broker client, in order, and returns
	// without waiting for acknowledgements. done is called exactly once,
	// from any goroutine, when every message has been acknowledged or has
	// failed: errs is nil when all succeeded, else errs[i] is message i's
	// error (nil for those that succeeded). done must not block. Calls for
	// one lane come from one goroutine; messages of one lane with the same
	// key must reach the broker in the order they were handed over.
	// Once done is called with nil errs the loop reuses batch and the
	// bytes of its messages' Values for later batches: the sink must not
	// keep any of them after that call.
	Produce(ctx context.Context, lane Lane, batch []Message, done func(errs []error))
	// Permanent reports whether err means the broker will never accept the
	// message (too large, invalid): such messages go to the dead-letter
	// queue instead of being retried.
	Permanent(err error) bool
}

// Refuser is implemented by a sink whose broker can refuse records for a
// reason an operator must fix on the broker's side (an ACL, a topic
// policy). Refused records are not dead-lettered: the loop keeps them,
// retries them with capped backoff and reports the lane as StateRefused,
// loudly, until the broker takes them.
type Refuser interface {
	Refused(err error) bool
}

// Fencer is implemented by a sink that keeps each lane's order across a
// failure, as Kafka's idempotent producer keeps a partition's: once a
// message of a lane fails for any reason but a Permanent one, the sink
// fails every message of that lane handed over afterwards at once, unsent,
// with ErrFenced, until Reopen is called for the lane. Without it, a batch
// handed over while an earlier one was failing (the lane keeps Workers
// batches in flight) could reach the broker before the failed one is sent
// again. The loop calls Reopen once every batch of the lane in flight has
// settled, just before it sends the failed ones again in queue order.
type Fencer interface {
	Reopen(lane Lane)
}

// ErrFenced fails a message a Fencer did not send because an earlier
// message of its lane failed; the loop sends it again after the failed one.
var ErrFenced = errors.New("not sent: an earlier message of the lane failed and is sent again first")

// ErrRefusedWithBatch marks the error of a message the broker refused
// together with the other messages of its produce batch, for a reason that
// may belong to only one of them (Kafka's MESSAGE_TOO_LARGE fails every
// record the client held for the partition). Such a message is not
// dead-lettered: the loop sends the suspects again in halves, each with
// nothing else of the lane in flight, down to one message sent Alone,
// which finds the one the broker really refuses. It is not Permanent.
var ErrRefusedWithBatch = errors.New("refused with its batch")

// Prober is implemented by a sink that can check cheaply whether its broker
// answers (a metadata request, a connection already up). While a lane backs
// off after its broker was unreachable, the loop probes every
// ProbeInterval and retries as soon as a probe succeeds, so that a
// restored link is used within a second or two instead of after the whole
// backoff.
type Prober interface {
	Probe(ctx context.Context) error
}

// Warmer is a Sink that prepares what its first batch would otherwise wait
// for (a Kafka client's producer id and broker connection). The loop calls
// Warm once when it starts, beside the lanes; Warm returns when it is done
// or ctx ends, and leaves any error to the first batch to report.
type Warmer interface {
	Warm(ctx context.Context)
}

// Queue is the part of a buffer queue the loop reads and acknowledges.
type Queue interface {
	Read(after buffer.Pos, max int) ([]buffer.Record, error)
	Ack(positions ...buffer.Pos) error
	Notify() <-chan struct{}
	Last() (buffer.Pos, bool)
}

// ReasonMalformed is the dead-letter reason of a record the loop could not
// decode.
const ReasonMalformed = "malformed"

// DeadLetters keeps records the broker refused for good.
type DeadLetters interface {
	// Put stores the records (their buffer bytes as read) with the reason;
	// once it returns nil the loop acknowledges them in their queue.
	Put(records [][]byte, reason string) error
}

// State is a lane's connection state.
type State string

// States, reported through Options.OnState.
const (
	StateConnected  State = "connected"   // the last send succeeded (or none failed yet)
	StateBackingOff State = "backing_off" // the last send failed; retrying
	StateRefused    State = "refused"     // the broker refuses the records (Refuser); retrying
)

// Metrics receives the loop's counts. Any field may be nil. They are
// called from the sink's callbacks and must not block.
type Metrics struct {
	// Sent is called after a batch of n records was acknowledged, with the
	// time from send to acknowledgement and each record's read time
	// (readTimes is reused after the call returns).
	Sent func(lane Lane, n int, sendDuration time.Duration, readTimes []time.Time)
	// Failed is called with the number of records that failed in one
	// attempt.
	Failed func(n int)
	// Retried counts batches sent again after a failure.
	Retried func()
	// DeadLettered counts records moved to the dead-letter queue.
	DeadLettered func(reason string, n int)
	// Malformed counts records that could not be decoded (they are
	// dead-lettered with reason "malformed").
	Malformed func(n int)
}

// Options configures a Loop.
type Options struct {
	// BatchSize is the most records per batch. Default 1000.
	BatchSize int
	// FlushInterval is the longest a partial live batch waits while the
	// lane has other batches in flight, counted from the commit of its
	// oldest record; with nothing in flight it goes at once. Default 10ms.
	FlushInterval time.Duration
	// Workers is the number of batches in flight in each lane. Default 4.
	Workers int
	// BackoffMin and BackoffMax bound the wait between retries. Defaults
	// 100ms and 30s.
	BackoffMin, BackoffMax time.Duration
	// LiveWindow: when the record at the live lane's cursor was committed
	// longer ago than this, the live lane jumps to the tail and the
	// backlog lane takes what lies between. Default 5s.
	LiveWindow time.Duration
	// ShutdownGrace is how long in-flight batches may finish after the
	// loop's context is cancelled; what is not acknowledged by then stays
	// in the buffer. Default 5s.
	ShutdownGrace time.Duration
	// ProbeInterval is how often a lane backing off probes a sink that is
	// a Prober. Default 500ms.
	ProbeInterval time.Duration
	// LogInterval is the least time between two lines of one repeated
	// warning (a failed send, an undecodable record, a failed read); the
	// line says how many were held back. Default 10s.
	LogInterval time.Duration
	// DeadLetters receives records refused for good. Without it they are
	// retried like any failure (and logged as refused).
	DeadLetters DeadLetters
	Logger      *slog.Logger
	Metrics     Metrics
	// OnState is called when a lane's state changes, with the last error
	// when backing off.
	OnState func(lane Lane, state State, err error)
}

// Loop moves records from one queue to one sink.
type Loop struct {
	queue Queue
	sink  Sink
	opts  Options
	log   *slog.Logger
	// quiet holds back repeats of the loop's warnings.
	quiet *lograte.Limiter

	mu      sync.Mutex
	ranges  []span        // backlog still to send, oldest first
	rangeCh chan struct{} // signalled when ranges grows
}

// span is a stretch of the queue left to the backlog lane: the records
// after from, up to and including to.
type span struct{ from, to buffer.Pos }

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
	if opts.ProbeInterval <= 0 {
		opts.ProbeInterval = 500 * time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Loop{
		queue:   queue,
		sink:    sink,
		opts:    opts,
		log:     opts.Logger.With("sink", sink.Name()),
		quiet:   &lograte.Limiter{Interval: opts.LogInterval},
		rangeCh: make(chan struct{}, 1),
	}
}

// Run sends until ctx is cancelled, then gives in-flight batches
// ShutdownGrace to be acknowledged and returns. It returns an error only if
// the queue cannot be read.
func (l *Loop) Run(ctx context.Context) error {
	// Sends outlive ctx by the grace period: cancelling ctx stops reading,
	// cancelling sendCtx abandons what is in flight (it stays buffered).
	sendCtx, cancelSends := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSends()
	lanes := []*lane{newLane(l, Live, sendCtx), newLane(l, Backlog, sendCtx)}
	warmed := make(chan struct{})
	if w, ok := l.sink.(Warmer); ok {
		go func() { defer close(warmed); w.Warm(ctx) }()
	} else {
		close(warmed)
	}
	defer func() { <-warmed }()
	errs := make(chan error, len(lanes))
	for _, ln := range lanes {
		go func() { errs <- ln.run(ctx) }()
	}
	var runErr error
	for range lanes {
		if err := <-errs; err != nil && runErr == nil {
			runErr = err
		}
	}

	deadline := time.NewTimer(l.opts.ShutdownGrace)
	defer deadline.Stop()
	drained := make(chan struct{})
	go func() {
		for _, ln := range lanes {
			ln.inflight.Wait()
		}
		close(drained)
	}()
	select {
	case <-drained:
	case <-deadline.C:
		l.log.Warn("shutdown grace over; unacknowledged batches stay in the buffer")
		cancelSends()
		<-drained
	}
	return runErr
}

// pushBacklog hands a stretch of the queue to the backlog lane.
func (l *Loop) pushBacklog(s span) {
	l.mu.Lock()
	l.ranges = append(l.ranges, s)
	l.mu.Unlock()
	select {
	case l.rangeCh <- struct{}{}:
	default:
	}
}

// backlog returns the oldest span left to send, if any.
func (l *Loop) backlog() (span, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.ranges) == 0 {
		return span{}, false
	}
	return l.ranges[0], true
}

// advanceBacklog records that the backlog lane has read up to pos.
func (l *Loop) advanceBacklog(pos buffer.Pos) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.ranges) == 0 {
		return
	}
	if !pos.Less(l.ranges[0].to) {
		l.ranges = l.ranges[1:]
		return
	}
	l.ranges[0].from = pos
}

func (l *Loop) ack(positions []buffer.Pos) {
	if len(positions) == 0 {
		return
	}
	if err := l.queue.Ack(positions...); err != nil {
		// The records were delivered; if the buffer cannot forget them they
		// are delivered again after a restart (at-least-once).
		l.quiet.Log(l.log, slog.LevelError, "ack", int64(len(positions)), "acknowledge to buffer failed; records may be sent again", "records", len(positions), "err", err)
	}
}

// ErrClosed is returned by sinks used after Close.
var ErrClosed = errors.New("sink closed")
