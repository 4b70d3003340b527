package uplink_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/iot-producer/iot-producer/uplink"
)

// A partial live batch goes out at once when the lane has nothing in
// flight: with a flush interval of an hour, ten records still arrive, in
// one batch.
func TestPartialBatchSentWhenLaneIdle(t *testing.T) {
	f := newFixture(t)
	f.appendRecords(t, "a", 1, 10)
	var c counts
	l := uplink.New(f.buf.Queue("kafka"), f.sink, uplink.Options{BatchSize: 1000, Workers: 4, FlushInterval: time.Hour, Logger: quiet, Metrics: c.metrics()})
	runLoop(t, l, &c, 10)
	if got := c.batches.Load(); got != 1 {
		t.Fatalf("%d batches for 10 records committed together, want 1", got)
	}
	f.verifyTopic(t, map[string]uint64{"a": 10})
}

// While a batch is in flight, later commits gather into one batch, sent
// as soon as the one in flight completes (not after the flush interval).
func TestPartialBatchesGatherWhileOneIsInFlight(t *testing.T) {
	f := newFixture(t)
	held, release := make(chan struct{}), make(chan struct{})
	var produces atomic.Int64
	f.cluster.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		f.cluster.KeepControl()
		if produces.Add(1) == 1 {
			close(held)
			f.cluster.SleepControl(func() { <-release })
		}
		return nil, nil, false
	})
	var c counts
	l := uplink.New(f.buf.Queue("kafka"), f.sink, uplink.Options{BatchSize: 1000, Workers: 4, FlushInterval: time.Hour, Logger: quiet, Metrics: c.metrics()})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	f.appendRecords(t, "a", 1, 10)
	select {
	case <-held:
	case <-time.After(time.Minute):
		t.Fatal("the first batch was not sent within a minute")
	}
	f.appendRecords(t, "a", 11, 10)
	f.appendRecords(t, "a", 21, 10)
	close(release)
	deadline := time.Now().Add(2 * time.Minute) // a bound for a stuck loop
	for c.sent.Load() < 30 && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond) // polling the sent counter
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := c.sent.Load(); got != 30 {
		t.Fatalf("sent %d of 30 records", got)
	}
	if got := c.batches.Load(); got != 2 {
		t.Fatalf("%d batches, want 2: the first, then the two later commits together", got)
	}
	f.verifyTopic(t, map[string]uint64{"a": 30})
}

// The loop warms a Kafka sink when it starts: the producer id is loaded
// before any record is there to send.
func TestLoopWarmsTheSink(t *testing.T) {
	f := newFixture(t)
	initialized := make(chan struct{}, 1)
	var produced atomic.Bool
	f.cluster.ControlKey(int16(kmsg.InitProducerID), func(kmsg.Request) (kmsg.Response, error, bool) {
		f.cluster.KeepControl()
		select {
		case initialized <- struct{}{}:
		default:
		}
		return nil, nil, false
	})
	f.cluster.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		f.cluster.KeepControl()
		produced.Store(true)
		return nil, nil, false
	})
	l := uplink.New(f.buf.Queue("kafka"), f.sink, uplink.Options{Logger: quiet})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	select {
	case <-initialized:
	case <-time.After(time.Minute):
		t.Error("no InitProducerID request within a minute of the loop's start")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if produced.Load() {
		t.Fatal("a produce request with an empty queue")
	}
}
