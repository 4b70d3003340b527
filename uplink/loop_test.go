package uplink_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/goleak"

	"github.com/iot-producer/iot-producer/buffer"
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

// appendRecords commits n records for one device with seq 1..n in groups.
func (f *fixture) appendRecords(t *testing.T, device string, from, n int) {
	t.Helper()
	var batch [][]byte
	for i := from; i < from+n; i++ {
		fl := record.Fields{Gateway: "gw", Device: device, Tag: "t", Seq: uint64(i), Type: record.TypeInt, Int: int64(i), Quality: "good", ReadTime: time.Now()}
		batch = append(batch, record.AppendEnvelope(nil, device, fl.ReadTime, record.AppendJSON(nil, &fl)))
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
		Sent:    func(n int, _ time.Duration, _ []time.Time) { c.sent.Add(int64(n)); c.batches.Add(1) },
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
	deadline := time.Now().Add(20 * time.Second)
	for c.sent.Load() < want && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond) // polling the sent counter
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := c.sent.Load(); got < want {
		t.Fatalf("sent %d of %d within 20s", got, want)
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

func TestLoopRetriesRejectedBatches(t *testing.T) {
	f := newFixture(t)
	// The broker refuses the first three produce requests outright.
	var refused atomic.Int32
	f.cluster.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		n := refused.Add(1)
		if n > 3 {
			return nil, nil, false
		}
		f.cluster.KeepControl()
		pr := req.(*kmsg.ProduceRequest)
		resp := pr.ResponseKind().(*kmsg.ProduceResponse)
		resp.Version = pr.Version
		for _, rt := range pr.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic = rt.Topic
			st.TopicID = rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	f.appendRecords(t, "a", 1, 300)
	var c counts
	var mu sync.Mutex
	var states []uplink.State
	l := uplink.New(f.buf.Queue("kafka"), f.sink, uplink.Options{
		BatchSize: 100, Workers: 1, FlushInterval: time.Millisecond, BackoffMin: time.Millisecond, BackoffMax: 5 * time.Millisecond,
		Logger: quiet, Metrics: c.metrics(),
		OnState: func(s uplink.State, _ error) { mu.Lock(); states = append(states, s); mu.Unlock() },
	})
	runLoop(t, l, &c, 300)
	if c.failed.Load() == 0 || c.retried.Load() == 0 {
		t.Fatalf("failed=%d retried=%d: the refusals were not seen", c.failed.Load(), c.retried.Load())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(states) < 2 || states[0] != uplink.StateBackingOff || states[len(states)-1] != uplink.StateConnected {
		t.Fatalf("states %v: want backing_off first and connected last", states)
	}
	f.verifyTopic(t, map[string]uint64{"a": 300})
}

func TestUnackedRecordsStayForTheNextRun(t *testing.T) {
	f := newFixture(t)
	f.appendRecords(t, "a", 1, 200)
	// The broker swallows every produce request: nothing is acknowledged.
	f.cluster.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		f.cluster.KeepControl()
		f.cluster.DropControl()
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
	failing := sinkFunc(func(ctx context.Context, batch []uplink.Message) error {
		calls.Add(1)
		return fmt.Errorf("refused")
	})
	var c counts
	l := uplink.New(f.buf.Queue("kafka"), failing, uplink.Options{BatchSize: 10, Workers: 1, BackoffMin: time.Millisecond, BackoffMax: 4 * time.Millisecond, ShutdownGrace: time.Second, Logger: quiet, Metrics: c.metrics()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	for c.retried.Load() < 10 {
		time.Sleep(time.Millisecond) // polling the retry counter
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if c.failed.Load() < 10*10 {
		t.Fatalf("failed=%d: every attempt must count its records", c.failed.Load())
	}
}

type sinkFunc func(ctx context.Context, batch []uplink.Message) error

func (f sinkFunc) Name() string { return "func" }
func (f sinkFunc) Send(ctx context.Context, batch []uplink.Message) error {
	return f(ctx, batch)
}
