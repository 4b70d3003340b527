package kafka_test

import (
	"context"
	"io"
	"log/slog"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/iot-producer/iot-producer/record"
	"github.com/iot-producer/iot-producer/uplink"
	"github.com/iot-producer/iot-producer/uplink/kafka"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func cluster(t testing.TB, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.AllowAutoTopicCreation()}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func newSink(t *testing.T, opts kafka.Options) *kafka.Sink {
	t.Helper()
	opts.Logger = quiet
	s, err := kafka.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// consume reads n records from the topics.
func consume(t *testing.T, brokers []string, n int, topics ...string) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topics...), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records", len(out), n)
		}
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	return out
}

// send produces batch and waits for the outcome: the first error, if any.
func send(s *kafka.Sink, lane uplink.Lane, batch []uplink.Message) error {
	result := make(chan []error, 1)
	s.Produce(context.Background(), lane, batch, func(errs []error) { result <- errs })
	for _, err := range <-result {
		if err != nil {
			return err
		}
	}
	return nil
}

func headers(r *kgo.Record) map[string]string {
	h := map[string]string{}
	for _, kv := range r.Headers {
		h[kv.Key] = string(kv.Value)
	}
	return h
}

func TestRecordsCarryKeyTimestampAndHeaders(t *testing.T) {
	c := cluster(t)
	s := newSink(t, kafka.Options{Brokers: c.ListenAddrs(), Topic: "iot.{gateway}.{device}", GatewayID: "gw-7", Idempotent: true})
	at := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	const epoch = "0f1e2d3c4b5a6978"
	live := []uplink.Message{{Key: "press-01", Time: at, Schema: record.SchemaVersion, Epoch: epoch, Value: []byte(`{"a":1}`)}}
	// A record buffered by an earlier build, sent after the upgrade.
	backlog := []uplink.Message{{Key: "oven-02", Time: at.Add(time.Second), Schema: 1, Value: []byte(`{"b":2}`)}}
	if err := send(s, uplink.Live, live); err != nil {
		t.Fatal(err)
	}
	if err := send(s, uplink.Backlog, backlog); err != nil {
		t.Fatal(err)
	}
	batch := append(live, backlog...)
	got := consume(t, c.ListenAddrs(), 2, "iot.gw-7.press-01", "iot.gw-7.oven-02")
	byKey := map[string]*kgo.Record{}
	for _, r := range got {
		byKey[string(r.Key)] = r
	}
	for _, m := range batch {
		r := byKey[m.Key]
		if r == nil {
			t.Fatalf("no record with key %s", m.Key)
		}
		if want := "iot.gw-7." + m.Key; r.Topic != want {
			t.Errorf("topic %s, want %s", r.Topic, want)
		}
		if string(r.Value) != string(m.Value) || !r.Timestamp.Equal(m.Time) {
			t.Errorf("record %s: value %s at %s", m.Key, r.Value, r.Timestamp)
		}
		want := map[string]string{record.HeaderGateway: "gw-7", record.HeaderEpoch: epoch, record.HeaderSchema: "2", record.HeaderLane: "live"}
		if m.Key == "oven-02" {
			want = map[string]string{record.HeaderGateway: "gw-7", record.HeaderSchema: "1", record.HeaderLane: "backlog"}
		}
		if h := headers(r); !maps.Equal(h, want) {
			t.Errorf("record %s: headers %v, want %v", m.Key, h, want)
		}
	}
}

func TestEveryCompressionRoundTrips(t *testing.T) {
	for _, codec := range []string{"none", "gzip", "snappy", "lz4", "zstd"} {
		t.Run(codec, func(t *testing.T) {
			c := cluster(t)
			s := newSink(t, kafka.Options{Brokers: c.ListenAddrs(), Topic: "t", GatewayID: "gw", Compression: codec, Idempotent: true})
			value := []byte(strings.Repeat(`{"temperature":21.5}`, 50))
			batch := make([]uplink.Message, 100)
			for i := range batch {
				batch[i] = uplink.Message{Key: "d", Time: time.Now(), Value: value}
			}
			if err := send(s, uplink.Live, batch); err != nil {
				t.Fatal(err)
			}
			for _, r := range consume(t, c.ListenAddrs(), 100, "t") {
				if string(r.Value) != string(value) {
					t.Fatalf("value changed through %s", codec)
				}
			}
		})
	}
}

func TestOptionsAreChecked(t *testing.T) {
	cases := []struct {
		name string
		opts kafka.Options
		want string
	}{
		{"no brokers", kafka.Options{Topic: "t"}, "no brokers"},
		{"no topic", kafka.Options{Brokers: []string{"127.0.0.1:1"}}, "no topic"},
		{"bad compression", kafka.Options{Brokers: []string{"127.0.0.1:1"}, Topic: "t", Compression: "brotli"}, `compression "brotli"`},
		{"bad acks", kafka.Options{Brokers: []string{"127.0.0.1:1"}, Topic: "t", Acks: "some"}, `acks "some"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := kafka.New(tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestSCRAMAuthenticates(t *testing.T) {
	c := cluster(t, kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", "gateway", "right"))
	good, err := kafka.SASLMechanism("SCRAM-SHA-256", "gateway", "right")
	if err != nil {
		t.Fatal(err)
	}
	s := newSink(t, kafka.Options{Brokers: c.ListenAddrs(), Topic: "t", GatewayID: "gw", Idempotent: true, SASL: good})
	if err := send(s, uplink.Live, []uplink.Message{{Key: "d", Time: time.Now(), Value: []byte("{}")}}); err != nil {
		t.Fatalf("right password: %v", err)
	}

	bad, err := kafka.SASLMechanism("SCRAM-SHA-256", "gateway", "wrong")
	if err != nil {
		t.Fatal(err)
	}
	s2 := newSink(t, kafka.Options{Brokers: c.ListenAddrs(), Topic: "t", GatewayID: "gw", Idempotent: true, SASL: bad, DeliveryTimeout: time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// kfake drops the connection on a failed exchange (a real broker
	// answers SASL_AUTHENTICATION_FAILED; the e2e tests check that text).
	if err := s2.Ping(ctx); err == nil {
		t.Fatal("wrong password: ping succeeded")
	}
	// A send that times out names the connection failure behind it.
	err = send(s2, uplink.Live, []uplink.Message{{Key: "d", Time: time.Now(), Value: []byte("{}")}})
	if err == nil || !strings.Contains(err.Error(), "last connection error: broker ") {
		t.Fatalf("send with a wrong password: %v, want a timeout naming the connection error", err)
	}
}

func TestSASLMechanismNames(t *testing.T) {
	for _, name := range []string{"", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"} {
		if _, err := kafka.SASLMechanism(name, "u", "p"); err != nil {
			t.Errorf("%q: %v", name, err)
		}
	}
	if _, err := kafka.SASLMechanism("GSSAPI", "u", "p"); err == nil {
		t.Error("GSSAPI accepted")
	}
}
