package mqtt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/iot-producer/iot-producer/internal/faultproxy"
	"github.com/iot-producer/iot-producer/record"
	"github.com/iot-producer/iot-producer/uplink"
)

// messages returns n records for the devices in turn, each device's
// sequence numbers counting from first.
func messages(devices []string, n int, first uint64) []uplink.Message {
	out := make([]uplink.Message, 0, n)
	for i := range n {
		dev := devices[i%len(devices)]
		f := record.Fields{
			Gateway: "gw", Device: dev, Tag: fmt.Sprintf("t%d", i%3), Seq: first + uint64(i/len(devices)),
			Type: record.TypeFloat, Float: float64(i) / 4, Quality: "good",
			ReadTime: time.Date(2026, 11, 26, 8, 0, 0, i, time.UTC),
		}
		out = append(out, uplink.Message{Key: dev, Time: f.ReadTime, Value: record.AppendJSON(nil, &f)})
	}
	return out
}

// produce hands batch to s and returns done's errors. Nothing of the lane
// is in flight when it is called, so it reopens the lane first, as the
// loop does before it sends again after a failure.
func produce(t *testing.T, s *Sink, lane uplink.Lane, batch []uplink.Message) []error {
	t.Helper()
	s.Reopen(lane)
	ch := make(chan []error, 1)
	s.Produce(context.Background(), lane, batch, func(errs []error) { ch <- errs })
	select {
	case errs := <-ch:
		return errs
	case <-time.After(2 * time.Minute):
		t.Fatal("done was not called")
		return nil
	}
}

func firstErr(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func newSink(t *testing.T, o Options) *Sink {
	t.Helper()
	if o.GatewayID == "" {
		o.GatewayID = "gw"
	}
	if o.ClientID == "" {
		o.ClientID = "sink-" + strings.ReplaceAll(t.Name(), "/", "-")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	}
	if o.ReconnectMin == 0 {
		o.ReconnectMin = 20 * time.Millisecond
		o.ReconnectMax = 200 * time.Millisecond
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// waitConnected starts s and waits for its connection.
func waitConnected(t *testing.T, s *Sink) {
	t.Helper()
	s.Start()
	waitFor(t, "connection", s.Connected)
}

// waitFor polls cond until it holds, failing after a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkOrder fails unless every device's messages arrived in order, with
// sequence numbers increasing by one from first; a number already seen is
// a duplicate (at-least-once), counted and returned.
func checkOrder(t *testing.T, msgs []paho.Message, first uint64) (dups int) {
	t.Helper()
	next := map[string]uint64{}
	for _, m := range msgs {
		f, err := record.Decode(m.Payload())
		if err != nil {
			t.Fatalf("message on %s: %v", m.Topic(), err)
		}
		want, ok := next[f.Device]
		if !ok {
			want = first
		}
		switch {
		case f.Seq < want:
			dups++
			continue
		case f.Seq > want:
			t.Fatalf("device %s: seq %d after %d (out of order or lost)", f.Device, f.Seq, want-1)
		}
		next[f.Device] = f.Seq + 1
	}
	return dups
}

func TestPublishInOrderAcknowledged(t *testing.T) {
	for _, qos := range []byte{0, 1} {
		t.Run(fmt.Sprintf("qos%d", qos), func(t *testing.T) {
			b := startBroker(t, brokerConf{})
			sub := subscribe(t, b.addr(), "iot/#", nil)
			s := newSink(t, Options{Broker: b.addr(), QoS: qos})
			waitConnected(t, s)
			devices := []string{"press-01", "press-02", "oven-1"}
			all := messages(devices, 3000, 1)
			for i := 0; i < len(all); i += 500 {
				if err := firstErr(produce(t, s, uplink.Live, all[i:i+500])); err != nil {
					t.Fatalf("batch at %d: %v", i, err)
				}
			}
			got := sub.wait(t, len(all))
			if len(got) != len(all) {
				t.Fatalf("got %d messages, want %d", len(got), len(all))
			}
			if dups := checkOrder(t, got, 1); dups != 0 {
				t.Errorf("%d duplicates without any fault", dups)
			}
			if got[0].Topic() != "iot/gw/press-01" || got[0].Retained() {
				t.Errorf("first message: topic %q retained %v", got[0].Topic(), got[0].Retained())
			}
			if h := s.store.held(); h != 0 {
				t.Errorf("store holds %d publishes after every batch was acknowledged", h)
			}
		})
	}
}

func TestTopicTemplates(t *testing.T) {
	b := startBroker(t, brokerConf{})
	for _, tc := range []struct {
		tmpl, want string
	}{
		{"plant/{gateway}/{device}/{tag}", "plant/gw/press-01/t0"},
		{"iot/{device}", "iot/press-01"},
		{"fixed/topic", "fixed/topic"},
		{"{gateway}-{tag}", "gw-t0"},
	} {
		t.Run(tc.tmpl, func(t *testing.T) {
			sub := subscribe(t, b.addr(), "#", nil)
			s := newSink(t, Options{Broker: b.addr(), QoS: 1, Topic: tc.tmpl, Retain: true})
			waitConnected(t, s)
			if err := firstErr(produce(t, s, uplink.Live, messages([]string{"press-01"}, 1, 1))); err != nil {
				t.Fatal(err)
			}
			m := sub.wait(t, 1)[0]
			if m.Topic() != tc.want {
				t.Errorf("topic %q, want %q", m.Topic(), tc.want)
			}
			// Clear the retained message for the next case.
			if tok := sub.cl.Publish(m.Topic(), 1, true, []byte{}); !tok.WaitTimeout(10 * time.Second) {
				t.Fatal("clear retained")
			}
		})
	}
}

func TestNotConnectedFailsAtOnce(t *testing.T) {
	port := freePort(t)
	s := newSink(t, Options{Broker: fmt.Sprintf("tcp://127.0.0.1:%d", port), QoS: 1})
	errs := produce(t, s, uplink.Live, messages([]string{"d"}, 5, 1))
	for i, err := range errs {
		if !errors.Is(err, ErrNotConnected) {
			t.Fatalf("message %d: %v, want ErrNotConnected", i, err)
		}
	}
	if s.Permanent(errs[0]) {
		t.Error("not connected is permanent; want retried")
	}
	// Once a connection attempt has failed, the error names why.
	waitFor(t, "a failed connection attempt", func() bool { return s.lastErr.Load() != nil })
	err := firstErr(produce(t, s, uplink.Live, messages([]string{"d"}, 1, 1)))
	if !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("error %q does not say why the connection failed", err)
	}
	if h := s.store.held(); h != 0 {
		t.Errorf("client holds %d messages while disconnected; the buffer must hold them", h)
	}
}

// TestInflightSurvivesReconnect: publishes written but not acknowledged
// when the connection drops are sent again on the next connection, in
// order, and their batch completes on the PUBACKs of the resend.
func TestInflightSurvivesReconnect(t *testing.T) {
	b := startBroker(t, brokerConf{})
	sub := subscribe(t, b.addr(), "iot/#", nil)
	proxy, err := faultproxy.New(b.hostPort())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	s := newSink(t, Options{Broker: "tcp://" + proxy.Addr(), QoS: 1, DeliveryTimeout: 5 * time.Minute})
	waitConnected(t, s)

	proxy.Stall()
	batch := messages([]string{"a", "b"}, 400, 1)
	ch := make(chan []error, 1)
	s.Produce(context.Background(), uplink.Live, batch, func(errs []error) { ch <- errs })
	if h := s.store.held(); h != len(batch) {
		t.Fatalf("store holds %d, want the batch's %d", h, len(batch))
	}
	proxy.Cut()
	waitFor(t, "connection lost", func() bool { return !s.Connected() })
	proxy.Restore()
	if err := firstErr(<-ch); err != nil {
		t.Fatalf("batch failed: %v", err)
	}
	// The cut dropped the stalled bytes: what arrives is the resend, in
	// the order of the first sends.
	got := sub.waitDistinct(t, len(batch))
	checkOrder(t, got, 1)
	if h := s.store.held(); h != 0 {
		t.Errorf("store holds %d after the resend was acknowledged", h)
	}
}

// TestStoreBounded: with the broker not acknowledging, the client never
// holds more than MaxInflight messages; batches beyond fail at once.
func TestStoreBounded(t *testing.T) {
	b := startBroker(t, brokerConf{})
	proxy, err := faultproxy.New(b.hostPort())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	s := newSink(t, Options{Broker: "tcp://" + proxy.Addr(), QoS: 1, MaxInflight: 250, DeliveryTimeout: 200 * time.Millisecond})
	waitConnected(t, s)
	proxy.Stall()
	var timedOut, full int
	for i := range 10 {
		errs := produce(t, s, uplink.Live, messages([]string{"a"}, 100, uint64(1+100*i)))
		err := firstErr(errs)
		var na errNotAcked
		switch {
		case errors.As(err, &na):
			timedOut++
		case errors.Is(err, ErrInflightFull):
			full++
		default:
			t.Fatalf("batch %d: %v, want a timeout or ErrInflightFull", i, err)
		}
		if h := s.store.held(); h > 250 {
			t.Fatalf("store holds %d, above max_inflight 250", h)
		}
	}
	if timedOut != 2 || full != 8 {
		t.Errorf("%d timed out and %d refused; want 2 and 8", timedOut, full)
	}
}

func TestTLSClientCertificate(t *testing.T) {
	p := newPKI(t)
	b := startBroker(t, brokerConf{tls: p})
	tlsCfg, err := uplink.TLSConfig(uplink.TLSFiles{Enabled: true, CAFile: p.caFile, CertFile: p.clientCert, KeyFile: p.clientKey})
	if err != nil {
		t.Fatal(err)
	}
	subTLS := tlsCfg.Clone()
	sub := subscribe(t, b.addr(), "iot/#", func(o *paho.ClientOptions) { o.SetTLSConfig(subTLS) })
	t.Run("with certificate", func(t *testing.T) {
		s := newSink(t, Options{Broker: b.addr(), QoS: 1, TLS: tlsCfg})
		waitConnected(t, s)
		if err := firstErr(produce(t, s, uplink.Live, messages([]string{"d"}, 10, 1))); err != nil {
			t.Fatal(err)
		}
		checkOrder(t, sub.wait(t, 10), 1)
	})
	t.Run("without certificate", func(t *testing.T) {
		noCert, err := uplink.TLSConfig(uplink.TLSFiles{Enabled: true, CAFile: p.caFile})
		if err != nil {
			t.Fatal(err)
		}
		s := newSink(t, Options{Broker: b.addr(), QoS: 1, TLS: noCert})
		s.Start()
		waitFor(t, "a refused connection", func() bool { return s.lastErr.Load() != nil })
		if s.Connected() {
			t.Fatal("connected without a client certificate")
		}
	})
}

func TestPassword(t *testing.T) {
	b := startBroker(t, brokerConf{password: "gateway:s3cret pw"})
	sub := subscribe(t, b.addr(), "iot/#", func(o *paho.ClientOptions) { o.SetUsername("gateway").SetPassword("s3cret pw") })
	for _, tc := range []struct {
		name, password string
		ok             bool
	}{
		{"right", "s3cret pw", true},
		{"wrong", "guess", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSink(t, Options{Broker: b.addr(), QoS: 1, Username: "gateway", Password: tc.password})
			s.Start()
			if tc.ok {
				waitConnected(t, s)
				if err := firstErr(produce(t, s, uplink.Live, messages([]string{"d"}, 3, 1))); err != nil {
					t.Fatal(err)
				}
				sub.wait(t, 3)
				return
			}
			waitFor(t, "a refused connection", func() bool { return s.lastErr.Load() != nil })
			err := firstErr(produce(t, s, uplink.Live, messages([]string{"d"}, 1, 1)))
			if !strings.Contains(err.Error(), "not Authorized") && !strings.Contains(err.Error(), "bad user name or password") {
				t.Errorf("error %q does not name the refusal", err)
			}
		})
	}
}

// TestBrokerRestart: the broker stops with batches in flight and
// restarts; what was sent arrives, and the sink goes on.
func TestBrokerRestart(t *testing.T) {
	b := startBroker(t, brokerConf{persist: true})
	sub := subscribe(t, b.addr(), "iot/#", nil)
	s := newSink(t, Options{Broker: b.addr(), QoS: 1, DeliveryTimeout: 500 * time.Millisecond})
	waitConnected(t, s)
	if err := firstErr(produce(t, s, uplink.Live, messages([]string{"a"}, 100, 1))); err != nil {
		t.Fatal(err)
	}
	b.stop()
	waitFor(t, "connection lost", func() bool { return !s.Connected() })
	if err := firstErr(produce(t, s, uplink.Live, messages([]string{"a"}, 100, 101))); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("while the broker is down: %v, want ErrNotConnected", err)
	}
	b.start()
	waitConnected(t, s)
	if err := firstErr(produce(t, s, uplink.Live, messages([]string{"a"}, 100, 101))); err != nil {
		t.Fatal(err)
	}
	got := sub.waitDistinct(t, 200)
	dups := checkOrder(t, got, 1)
	if len(got)-dups != 200 {
		t.Errorf("%d distinct messages, want 200", len(got)-dups)
	}
}

func TestEncodeErrorIsPermanent(t *testing.T) {
	b := startBroker(t, brokerConf{})
	s := newSink(t, Options{Broker: b.addr(), QoS: 1, Topic: "x/{tag}"})
	waitConnected(t, s)
	batch := messages([]string{"d"}, 3, 1)
	batch[1].Value = []byte(`{"schema":1}`)
	errs := produce(t, s, uplink.Live, batch)
	if errs == nil || errs[0] != nil || errs[2] != nil || !s.Permanent(errs[1]) {
		t.Fatalf("errors %v: want only message 1 to fail, for good", errs)
	}
}

func TestClose(t *testing.T) {
	b := startBroker(t, brokerConf{})
	s := newSink(t, Options{Broker: b.addr(), QoS: 1})
	waitConnected(t, s)
	s.Close()
	if err := firstErr(produce(t, s, uplink.Live, messages([]string{"d"}, 1, 1))); !errors.Is(err, uplink.ErrClosed) {
		t.Errorf("after Close: %v, want ErrClosed", err)
	}
}

func TestNewRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"no broker", Options{}, "no broker"},
		{"scheme", Options{Broker: "http://h:1883"}, `unknown scheme "http"`},
		{"qos", Options{Broker: "tcp://h:1883", QoS: 3}, "qos 3"},
		{"wildcard", Options{Broker: "tcp://h:1883", Topic: "a/+/b"}, "wildcards"},
		{"placeholder", Options{Broker: "tcp://h:1883", Topic: "a/{site}"}, "unknown placeholder"},
		{"inflight", Options{Broker: "tcp://h:1883", MaxInflight: 70000}, "max_inflight"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: %v, want an error with %q", err, tc.want)
			}
		})
	}
	s, err := New(Options{Broker: "ssl://h:8883", GatewayID: "gw-1"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.opts.TLS == nil || s.opts.ClientID != "iot-producer-gw-1" {
		t.Errorf("ssl:// without TLS settings: tls %v, client id %q", s.opts.TLS, s.opts.ClientID)
	}
}

func TestTagOf(t *testing.T) {
	for _, tc := range []struct {
		value, want, err string
	}{
		{`{"schema":1,"device":"d","tag":"temp","seq":1}`, "temp", ""},
		{`{"tag":"a\"b"}`, `a"b`, ""},
		{`{"tag":"\u00e9t\u00e9"}`, "été", ""},
		{`{"device":"d"}`, "", "no tag"},
		{`{"tag":"x`, "", "not terminated"},
		{`{"tag":""}`, "", "empty"},
	} {
		got, err := tagOf([]byte(tc.value))
		if got != tc.want || (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("tagOf(%s) = %q, %v; want %q, %q", tc.value, got, err, tc.want, tc.err)
		}
	}
}

func TestBackoff(t *testing.T) {
	for _, tc := range []struct {
		n      int
		lo, hi time.Duration
	}{
		{0, 400 * time.Millisecond, 600 * time.Millisecond},
		{1, 800 * time.Millisecond, 1200 * time.Millisecond},
		{3, 3200 * time.Millisecond, 4800 * time.Millisecond},
		{10, 24 * time.Second, 36 * time.Second},
		{1000, 24 * time.Second, 36 * time.Second},
	} {
		for range 20 {
			if d := backoff(tc.n, 500*time.Millisecond, 30*time.Second); d < tc.lo || d > tc.hi {
				t.Errorf("backoff(%d) = %v, want %v to %v", tc.n, d, tc.lo, tc.hi)
			}
		}
	}
}
