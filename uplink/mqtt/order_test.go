package mqtt

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iot-producer/iot-producer/buffer"
	"github.com/iot-producer/iot-producer/internal/faultproxy"
	"github.com/iot-producer/iot-producer/internal/seqcheck"
	"github.com/iot-producer/iot-producer/record"
	"github.com/iot-producer/iot-producer/uplink"
)

// TestFenceHoldsTheLaneUntilReopened: once a message of a lane failed,
// the lane's later batches fail unsent with uplink.ErrFenced until Reopen,
// while the other lane goes on.
func TestFenceHoldsTheLaneUntilReopened(t *testing.T) {
	b := startBroker(t, brokerConf{})
	sub := subscribe(t, b.addr(), "iot/#", nil)
	proxy, err := faultproxy.New(b.hostPort())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	s := newSink(t, Options{Broker: "tcp://" + proxy.Addr(), QoS: 1})
	waitConnected(t, s)
	proxy.Cut()
	waitFor(t, "connection lost", func() bool { return !s.Connected() })
	if err := firstErr(produce(t, s, uplink.Live, messages([]string{"live"}, 5, 1))); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("while cut: %v, want ErrNotConnected", err)
	}
	proxy.Restore()
	waitConnected(t, s)

	send := func(lane uplink.Lane, batch []uplink.Message) []error {
		ch := make(chan []error, 1)
		s.Produce(context.Background(), lane, batch, func(errs []error) { ch <- errs })
		return <-ch
	}
	for i, err := range send(uplink.Live, messages([]string{"live"}, 5, 6)) {
		if !errors.Is(err, uplink.ErrFenced) {
			t.Fatalf("live message %d after the failure: %v, want ErrFenced", i, err)
		}
	}
	if err := firstErr(send(uplink.Backlog, messages([]string{"backlog"}, 5, 1))); err != nil {
		t.Fatalf("the backlog lane is held by the live lane's failure: %v", err)
	}
	s.Reopen(uplink.Live)
	if err := firstErr(send(uplink.Live, messages([]string{"live"}, 10, 1))); err != nil {
		t.Fatalf("after Reopen: %v", err)
	}
	got := sub.waitDistinct(t, 15)
	for _, m := range got {
		f, err := record.Decode(m.Payload())
		if err != nil {
			t.Fatal(err)
		}
		if f.Device == "live" && f.Seq > 10 {
			t.Fatalf("a fenced message was published: %s#%d", f.Device, f.Seq)
		}
	}
}

// TestOrderAcrossFailuresWithTheLoop runs the send loop (four batches in
// flight) from a buffer to Mosquitto through a fault proxy, and cuts and
// stalls the link again and again as the records go out. Read in the order
// a subscriber gets them, no record of a device may arrive behind a later
// one (a re-send of what already arrived is allowed and counted), every
// record must arrive, and the queue must end empty.
func TestOrderAcrossFailuresWithTheLoop(t *testing.T) {
	b := startBroker(t, brokerConf{})
	sub := subscribe(t, b.addr(), "iot/#", nil)
	proxy, err := faultproxy.New(b.hostPort())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	buf, err := buffer.Open(filepath.Join(t.TempDir(), "b.db"), buffer.Options{Queues: []string{"mqtt"}, NoSync: true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { buf.Close() })
	devices := []string{"d0", "d1", "d2", "d3", "d4", "d5"}
	const perDevice = 1500
	var batch [][]byte
	for from := 1; from <= perDevice; from += 10 {
		for _, d := range devices {
			for i := from; i < from+10; i++ {
				f := record.Fields{Gateway: "gw", Epoch: "0123456789abcdef", Device: d, Tag: "t", Seq: uint64(i), Type: record.TypeInt, Int: int64(i), Quality: "good", ReadTime: time.Now()}
				batch = append(batch, record.AppendEnvelope(nil, d, f.ReadTime, "0123456789abcdef", record.AppendJSON(nil, &f)))
			}
			if len(batch) >= 100 {
				if err := buf.Append(batch, nil); err != nil {
					t.Fatal(err)
				}
				batch = nil
			}
		}
	}
	if err := buf.Append(batch, nil); err != nil {
		t.Fatal(err)
	}
	total := int64(len(devices) * perDevice)

	s := newSink(t, Options{Broker: "tcp://" + proxy.Addr(), QoS: 1, DeliveryTimeout: 300 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	var sent, retried atomic.Int64
	progress := make(chan struct{}, 1)
	l := uplink.New(buf.Queue("mqtt"), s, uplink.Options{
		BatchSize: 20, Workers: 4, FlushInterval: time.Millisecond, BackoffMin: time.Millisecond, BackoffMax: 20 * time.Millisecond,
		LiveWindow: time.Hour, // one lane: a subscriber cannot tell lanes apart
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		Metrics: uplink.Metrics{
			Sent: func(_ uplink.Lane, n int, _ time.Duration, _ []time.Time) {
				sent.Add(int64(n))
				select {
				case progress <- struct{}{}:
				default:
				}
			},
			Retried: func() { retried.Add(1) },
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()

	// Faults, each once another tenth of the records was acknowledged:
	// the link cut (connections reset, the session's messages resent on
	// the next one) or stalled past the delivery timeout (batches fail
	// while their messages are still in the client).
	deadline := time.After(3 * time.Minute)
	faults := 0
	for step := int64(1); sent.Load() < total; {
		select {
		case <-progress:
		case <-deadline:
			t.Fatalf("%d of %d records acknowledged after 3 minutes", sent.Load(), total)
		}
		if step < 10 && sent.Load() >= step*total/10 {
			step++
			faults++
			if faults%2 == 1 {
				proxy.Cut()
				waitFor(t, "connection lost", func() bool { return !s.Connected() })
			} else {
				proxy.Stall()
				r := retried.Load()
				waitFor(t, "a batch failed and retried", func() bool { return retried.Load() > r })
			}
			proxy.Restore()
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := buf.Flush(); err != nil {
		t.Fatal(err)
	}
	if left := buf.Queue("mqtt").Stats().Records; left != 0 {
		t.Fatalf("%d records left in the queue", left)
	}
	got := sub.waitDistinct(t, int(total))
	order, chk := seqcheck.NewOrder(), seqcheck.New()
	for _, m := range got {
		if err := order.Add("", m.Payload()); err != nil {
			t.Fatal(err)
		}
		if err := chk.Add(m.Payload()); err != nil {
			t.Fatal(err)
		}
	}
	last := map[string]uint64{}
	for _, d := range devices {
		last[d] = perDevice
	}
	r := chk.Verify(seqcheck.Expect(last, "t"))
	t.Logf("%d faults, %d batches retried; order: %s; delivery: %s", faults, retried.Load(), order, r)
	if faults < 9 || retried.Load() == 0 {
		t.Fatalf("%d faults, %d retries: the test did not test failures", faults, retried.Load())
	}
	if order.Violations() != 0 {
		t.Errorf("order lost: %s", order)
	}
	if r.Missing != 0 || r.Unexpected != 0 {
		t.Errorf("delivery: %s", r)
	}
}

// TestProbeReconnectsAtOnce: the broker stopped and the sink waits an
// hour before its next connection attempt. Once the broker is back, a
// probe must find its address answering, end that wait, and return nil
// when the connection is up.
func TestProbeReconnectsAtOnce(t *testing.T) {
	b := startBroker(t, brokerConf{})
	var logs syncBuffer
	s := newSink(t, Options{Broker: b.addr(), QoS: 1, ReconnectMin: time.Hour, ReconnectMax: time.Hour,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	waitConnected(t, s)
	b.stop()
	waitFor(t, "a failed reconnection attempt", func() bool { return bytes.Contains(logs.Bytes(), []byte("mqtt connection failed; retrying")) })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	err := s.Probe(ctx)
	cancel()
	if err == nil {
		t.Fatal("probe succeeded while the broker is stopped")
	}
	b.start()
	// The bound is for a stuck probe, not a speed requirement.
	ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Probe(ctx); err != nil {
		t.Fatalf("probe after the broker came back: %v", err)
	}
	if !s.Connected() {
		t.Fatal("the probe succeeded but the sink is not connected")
	}
}

// TestProbeKeepsTheBackoffWhileTheBrokerSaysNo: the broker answers and
// refuses the gateway's password. A probe must fail at once and leave the
// reconnect wait alone: reconnecting on every probe would only hammer a
// broker that answers but will not take the gateway.
func TestProbeKeepsTheBackoffWhileTheBrokerSaysNo(t *testing.T) {
	b := startBroker(t, brokerConf{password: "gateway:right"})
	var logs syncBuffer
	s := newSink(t, Options{Broker: b.addr(), QoS: 1, Username: "gateway", Password: "wrong", ReconnectMin: time.Hour, ReconnectMax: time.Hour,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	s.Start()
	const failed = "the MQTT broker refuses the gateway"
	waitFor(t, "a refused connection", func() bool { return bytes.Contains(logs.Bytes(), []byte(failed)) })
	attempts := bytes.Count(logs.Bytes(), []byte(failed))
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err := s.Probe(ctx)
		cancel()
		if err == nil || !strings.Contains(err.Error(), "the address answers") {
			t.Fatalf("probe: %v; want the address answering and no connection", err)
		}
	}
	if n := bytes.Count(logs.Bytes(), []byte(failed)); n != attempts {
		t.Fatalf("%d connection attempts after three probes, %d before: a probe ended the reconnect wait", n, attempts)
	}
}

// TestRefusedCredentialsShowAsRefused: a wrong password is a refusal an
// operator must fix: the send loop shows the lane refused (never a dead
// letter), the sink logs it as an error, and once the broker accepts the
// gateway again the records go out.
func TestRefusedCredentialsShowAsRefused(t *testing.T) {
	b := startBroker(t, brokerConf{password: "gateway:right"})
	var logs syncBuffer
	s := newSink(t, Options{Broker: b.addr(), QoS: 1, Username: "gateway", Password: "wrong",
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	s.Start()
	waitFor(t, "a refused connection", func() bool { return s.lastErr.Load() != nil })
	err := firstErr(produce(t, s, uplink.Live, messages([]string{"d"}, 1, 1)))
	if !s.Refused(err) {
		t.Fatalf("%v: not a refusal", err)
	}
	if s.Permanent(err) {
		t.Fatalf("%v: permanent; a refusal must be retried", err)
	}
	if !bytes.Contains(logs.Bytes(), []byte("level=ERROR msg=\"the MQTT broker refuses the gateway")) {
		t.Fatalf("the refusal was not logged as an error:\n%s", logs.Bytes())
	}
	for _, e := range []error{ErrNotConnected, errNotAcked{time.Second}, ErrInflightFull} {
		if s.Refused(e) {
			t.Errorf("%v counts as a refusal", e)
		}
	}
}

// syncBuffer is a bytes.Buffer a logger and a test can share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.b.Bytes()...)
}
