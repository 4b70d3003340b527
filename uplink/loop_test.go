package uplink_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/goleak"

	"github.com/iot-producer/iot-producer/buffer"
	"github.com/iot-producer/iot-producer/internal/kfakefault"
	"github.com/iot-producer/iot-producer/internal/seqcheck"
	"github.com/iot-producer/iot-producer/record"
	"github.com/iot-producer/iot-producer/uplink"
	"github.com/iot-producer/iot-producer/uplink/kafka"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func checkLeaks(t *testing.T) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

// fixture is a buffer with one queue, a kfake cluster and a Kafka sink.
type fixture struct {
	buf     *buffer.Buffer
	cluster *kfake.Cluster
	sink    *kafka.Sink
	brokers []string
}

const topic = "loop-test"

func newFixture(t *testing.T) *fixture {
	t.Helper()
	checkLeaks(t)
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	buf, err := buffer.Open(filepath.Join(t.TempDir(), "b.db"), buffer.Options{Queues: []string{"kafka"}, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { buf.Close() })
	sink, err := kafka.New(kafka.Options{Brokers: cluster.ListenAddrs(), Topic: topic, GatewayID: "gw", Idempotent: true, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sink.Close)
	return &fixture{buf: buf, cluster: cluster, sink: sink, brokers: cluster.ListenAddrs()}
}

// testEpoch is the stream epoch of the records the tests append.
const testEpoch = "0123456789abcdef"

// appendRecords commits n records for one device with seq 1..n in groups.
func (f *fixture) appendRecords(t *testing.T, device string, from, n int) {
	t.Helper()
	var batch [][]byte
	for i := from; i < from+n; i++ {
		fl := record.Fields{Gateway: "gw", Epoch: testEpoch, Device: device, Tag: "t", Seq: uint64(i), Type: record.TypeInt, Int: int64(i), Quality: "good", ReadTime: time.Now()}
		batch = append(batch, record.AppendEnvelope(nil, device, fl.ReadTime, testEpoch, record.AppendJSON(nil, &fl)))
		if len(batch) == 100 {
			if err := f.buf.Append(batch, nil); err != nil {
				t.Fatal(err)
			}
			batch = nil
		}
	}
	if len(batch) > 0 {
		if err := f.buf.Append(batch, nil); err != nil {
			t.Fatal(err)
		}
	}
}

type counts struct {
	sent, batches, failed, retried atomic.Int64
}

func (c *counts) metrics() uplink.Metrics {
	return uplink.Metrics{
		Sent:    func(_ uplink.Lane, n int, _ time.Duration, _ []time.Time) { c.sent.Add(int64(n)); c.batches.Add(1) },
		Failed:  func(n int) { c.failed.Add(int64(n)) },
		Retried: func() { c.retried.Add(1) },
	}
}

// runLoop runs l until sent reaches want, then stops it.
func runLoop(t *testing.T, l *uplink.Loop, c *counts, want int64) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	// A bound for a stuck loop, not a speed requirement: generous enough
	// for a loaded machine running the race detector.
	deadline := time.Now().Add(2 * time.Minute)
	for c.sent.Load() < want && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond) // polling the sent counter
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := c.sent.Load(); got < want {
		t.Fatalf("sent %d of %d within 2 minutes", got, want)
	}
}

func (f *fixture) verifyTopic(t *testing.T, last map[string]uint64) seqcheck.Report {
	t.Helper()
	c := seqcheck.New()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.ReadTopic(ctx, f.brokers, topic); err != nil {
		t.Fatal(err)
	}
	want := seqcheck.Expect(last, "t")
	r := c.Verify(want)
	if r.Missing != 0 || r.Unexpected != 0 {
		t.Fatalf("delivery: %s", r)
	}
	return r
}

func TestLoopDeliversAndEmptiesTheQueue(t *testing.T) {
	cases := []struct {
		name    string
		workers int
		batch   int
	}{
		{"one worker, small batches", 1, 7},
		{"four workers", 4, 100},
		{"batch larger than the backlog", 2, 10000},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.appendRecords(t, "a", 1, 1000)
			f.appendRecords(t, "b", 1, 500)
			var c counts
			l := uplink.New(f.buf.Queue("kafka"), f.sink, uplink.Options{BatchSize: tc.batch, Workers: tc.workers, FlushInterval: time.Millisecond, Logger: quiet, Metrics: c.metrics()})
			runLoop(t, l, &c, 1500)
			if c.sent.Load() != 1500 {
				t.Fatalf("sent %d, want exactly 1500", c.sent.Load())
			}
			if want := int64((1000 + tc.batch - 1) / tc.batch); tc.batch < 1000 && c.batches.Load() < want {
				t.Fatalf("%d batches for 1500 records at batch size %d", c.batches.Load(), tc.batch)
			}
			if err := f.buf.Flush(); err != nil {
				t.Fatal(err)
			}
			if st := f.buf.Queue("kafka").Stats(); st.Records != 0 {
				t.Fatalf("%d records left in the queue after every ack", st.Records)
			}
			f.verifyTopic(t, map[string]uint64{"a": 1000, "b": 500})
		})
	}
}

// TestRefusalsAreRetriedNotDeadLettered: the broker refuses the first
// produce requests for reasons an operator fixes on the broker (an ACL, a
// topic policy). The records must stay, the lane must show refused, and
// once the broker takes them every record is in the topic and nothing in
// the dead-letter queue.
func TestRefusalsAreRetriedNotDeadLettered(t *testing.T) {
	for _, refusal := range []*kerr.Error{kerr.TopicAuthorizationFailed, kerr.PolicyViolation} {
		t.Run(refusal.Message, func(t *testing.T) {
			f := newFixture(t)
			kfakefault.RefuseProduce(f.cluster, refusal, 3)
			f.appendRecords(t, "a", 1, 300)
			var c counts
			var mu sync.Mutex
			var states []uplink.State
			dl := &deadLetters{}
			l := uplink.New(f.buf.Queue("kafka"), f.sink, uplink.Options{
				BatchSize: 100, Workers: 1, FlushInterval: time.Millisecond, BackoffMin: time.Millisecond, BackoffMax: 5 * time.Millisecond,
				Logger: quiet, Metrics: c.metrics(), DeadLetters: dl,
				OnState: func(l uplink.Lane, s uplink.State, err error) {
					mu.Lock()
					t.Logf("%s %s %v", l, s, err)
					states = append(states, s)
					mu.Unlock()
				},
			})
			runLoop(t, l, &c, 300)
			if c.failed.Load() == 0 || c.retried.Load() == 0 {
				t.Fatalf("failed=%d retried=%d: the refusals were not seen", c.failed.Load(), c.retried.Load())
			}
			mu.Lock()
			defer mu.Unlock()
			if len(states) < 2 || states[0] != uplink.StateRefused || states[len(states)-1] != uplink.StateConnected {
				t.Fatalf("states %v: want refused first and connected last", states)
			}
			dl.mu.Lock()
			defer dl.mu.Unlock()
			if len(dl.records) != 0 {
				t.Fatalf("%d records dead-lettered (%v): a refusal an operator can fix must be retried", len(dl.records), dl.reasons)
			}
			f.verifyTopic(t, map[string]uint64{"a": 300})
		})
	}
}

func TestUnackedRecordsStayForTheNextRun(t *testing.T) {
	f := newFixture(t)
	f.appendRecords(t, "a", 1, 200)
	// The broker swallows every produce request: nothing is acknowledged.
	f.cluster.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		f.cluster.KeepControl()
		return nil, nil, true
	})
	var c counts
	l := uplink.New(f.buf.Queue("kafka"), f.sink, uplink.Options{BatchSize: 50, Workers: 2, ShutdownGrace: 50 * time.Millisecond, Logger: quiet, Metrics: c.metrics()})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := l.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if c.sent.Load() != 0 {
		t.Fatalf("sent %d with a broker that acknowledges nothing", c.sent.Load())
	}
	if err := f.buf.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := f.buf.Queue("kafka").Stats().Records; got != 200 {
		t.Fatalf("%d records in the queue, want all 200 kept", got)
	}
}

// TestEveryFailedAttemptCounts uses a sink that refuses everything: each
// attempt must count its records as failed and each retry as a retry.
func TestEveryFailedAttemptCounts(t *testing.T) {
	f := newFixture(t)
	f.appendRecords(t, "a", 1, 10)
	var calls atomic.Int32
	failing := sinkFunc(func(batch []uplink.Message) error {
		calls.Add(1)
		return fmt.Errorf("refused")
	})
	var c counts
	l := uplink.New(f.buf.Queue("kafka"), failing, uplink.Options{BatchSize: 10, Workers: 1, BackoffMin: time.Millisecond, BackoffMax: 4 * time.Millisecond, ShutdownGrace: time.Second, Logger: quiet, Metrics: c.metrics()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	eventually(t, "10 retries", func() bool { return c.retried.Load() >= 10 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if c.failed.Load() < 10*10 {
		t.Fatalf("failed=%d: every attempt must count its records", c.failed.Load())
	}
}

// sinkFunc is a sink whose every message gets the error fn returns.
type sinkFunc func(batch []uplink.Message) error

func (f sinkFunc) Name() string { return "func" }

func (f sinkFunc) Produce(_ context.Context, _ uplink.Lane, batch []uplink.Message, done func([]error)) {
	err := f(batch)
	if err == nil {
		done(nil)
		return
	}
	errs := make([]error, len(batch))
	for i := range errs {
		errs[i] = err
	}
	go done(errs)
}

func (f sinkFunc) Permanent(error) bool { return false }

// deadLetters records what the loop dead-letters.
type deadLetters struct {
	mu      sync.Mutex
	reasons map[string]int
	records [][]byte
}

func (d *deadLetters) Put(records [][]byte, reason string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.reasons == nil {
		d.reasons = map[string]int{}
	}
	d.reasons[reason] += len(records)
	d.records = append(d.records, records...)
	return nil
}

func TestRefusedRecordsGoToTheDeadLetterQueue(t *testing.T) {
	f := newFixture(t)
	f.appendRecords(t, "a", 1, 50)
	// One record far larger than a produce request may be: Kafka refuses it
	// for good (MESSAGE_TOO_LARGE), it must not block the queue.
	huge := record.Fields{Gateway: "gw", Epoch: testEpoch, Device: "a", Tag: "t", Seq: 51, Type: record.TypeString, String: strings.Repeat("x", 2<<20), Quality: "good", ReadTime: time.Now()}
	if err := f.buf.Append([][]byte{record.AppendEnvelope(nil, "a", huge.ReadTime, testEpoch, record.AppendJSON(nil, &huge))}, nil); err != nil {
		t.Fatal(err)
	}
	f.appendRecords(t, "a", 52, 49)
	var c counts
	dl := &deadLetters{}
	l := uplink.New(f.buf.Queue("kafka"), f.sink, uplink.Options{BatchSize: 20, Workers: 2, FlushInterval: time.Millisecond, BackoffMin: time.Millisecond, DeadLetters: dl, Logger: quiet, Metrics: c.metrics()})
	runLoop(t, l, &c, 99)
	dl.mu.Lock()
	defer dl.mu.Unlock()
	if dl.reasons["MESSAGE_TOO_LARGE"] != 1 || len(dl.records) != 1 {
		t.Fatalf("dead letters %v, want the one huge record as MESSAGE_TOO_LARGE", dl.reasons)
	}
	if err := f.buf.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := f.buf.Queue("kafka").Stats().Records; n != 0 {
		t.Fatalf("%d records left in the queue", n)
	}
	c2 := seqcheck.New()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c2.ReadTopic(ctx, f.brokers, topic); err != nil {
		t.Fatal(err)
	}
	env, err := record.DecodeEnvelope(dl.records[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := c2.Add(env.Value); err != nil {
		t.Fatal(err)
	}
	if r := c2.Verify(seqcheck.Expect(map[string]uint64{"a": 100}, "t")); r.Missing != 0 || r.Duplicates != 0 {
		t.Fatalf("topic plus dead letters: %s", r)
	}
}

// TestLiveDataDoesNotWaitBehindTheBacklog fills the queue with an hour-old
// backlog, starts the loop, then commits fresh records: they must be sent
// in the live lane while the backlog is still being sent in its own.
func TestLiveDataDoesNotWaitBehindTheBacklog(t *testing.T) {
	checkLeaks(t)
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	var offset atomic.Int64
	offset.Store(int64(-time.Hour))
	buf, err := buffer.Open(filepath.Join(t.TempDir(), "b.db"), buffer.Options{
		Queues: []string{"kafka"}, NoSync: true,
		Now: func() time.Time { return time.Now().Add(time.Duration(offset.Load())) },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { buf.Close() })
	sink, err := kafka.New(kafka.Options{Brokers: cluster.ListenAddrs(), Topic: topic, GatewayID: "gw", Idempotent: true, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sink.Close)
	f := &fixture{buf: buf, cluster: cluster, sink: sink, brokers: cluster.ListenAddrs()}
	const backlog = 60000
	for d := range 10 {
		f.appendRecords(t, fmt.Sprintf("old-%d", d), 1, backlog/10)
	}
	offset.Store(0)

	var mu sync.Mutex
	var order []uplink.Lane // lane of each acknowledged batch, in order
	var sentBacklog, sentLive atomic.Int64
	l := uplink.New(buf.Queue("kafka"), sink, uplink.Options{
		BatchSize: 500, Workers: 2, FlushInterval: time.Millisecond, Logger: quiet,
		Metrics: uplink.Metrics{Sent: func(lane uplink.Lane, n int, _ time.Duration, _ []time.Time) {
			mu.Lock()
			order = append(order, lane)
			mu.Unlock()
			if lane == uplink.Live {
				sentLive.Add(int64(n))
			} else {
				sentBacklog.Add(int64(n))
			}
		}},
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	eventually(t, "the backlog lane sending", func() bool { return sentBacklog.Load() > 0 })
	f.appendRecords(t, "fresh", 1, 100)
	eventually(t, "live and backlog sent", func() bool { return sentLive.Load() >= 100 && sentBacklog.Load() >= backlog })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	lastBacklog, firstLive := -1, -1
	for i, lane := range order {
		if lane == uplink.Backlog {
			lastBacklog = i
		} else if firstLive < 0 {
			firstLive = i
		}
	}
	mu.Unlock()
	if firstLive < 0 || firstLive > lastBacklog {
		t.Fatalf("fresh records went out after the whole backlog (first live batch #%d, last backlog batch #%d of %d)", firstLive, lastBacklog, len(order))
	}
	want := map[string]uint64{"fresh": 100}
	for d := range 10 {
		want[fmt.Sprintf("old-%d", d)] = backlog / 10
	}
	r := f.verifyTopic(t, want)
	t.Logf("first live batch acknowledged as #%d of %d batches; %s", firstLive, len(order), r)
}

// eventually polls cond until it holds, failing t after two minutes: a
// bound for a stuck loop, generous for a loaded machine, not a speed check.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond) // polling the condition
	}
}
