package uplink_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/iot-producer/iot-producer/internal/seqcheck"
	"github.com/iot-producer/iot-producer/record"
	"github.com/iot-producer/iot-producer/uplink"
	"github.com/iot-producer/iot-producer/uplink/kafka"
)

// syncBuffer is a log destination the test reads while the loop writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// poison marks the record a broker refuses in the tests with a Fault.
const poison = "refuse-this-record"

// TestOnlyTheRecordTooLargeIsDeadLettered: one bad record sits among
// thousands of good ones and the broker refuses every produce batch holding
// it: with MESSAGE_TOO_LARGE because the broker's message.max.bytes (64 KiB)
// is below what the client allows and the record has 100 KiB, or (a fault
// on the request holding it, all its partitions) with INVALID_RECORD or
// RECORD_LIST_TOO_LARGE. franz-go fails every record it held for a refused
// partition with that error; exactly the bad record must be dead-lettered,
// every other one must arrive, and each device's records in order.
func TestOnlyTheRecordTooLargeIsDeadLettered(t *testing.T) {
	cases := []struct {
		name   string
		hugeAt int         // seq of the bad record of device d3
		err    *kerr.Error // refused with a fault instead of by size
	}{
		{"too large near the start", 3, nil},
		{"too large in the middle", 150, nil},
		{"too large at the end", 300, nil},
		{"invalid record", 150, kerr.InvalidRecord},
		{"record list too large", 77, kerr.RecordListTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			reason := "MESSAGE_TOO_LARGE"
			opts := []kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(2, topic)}
			if tc.err == nil {
				opts = append(opts, kfake.BrokerConfigs(map[string]string{"message.max.bytes": "65536"}))
			} else {
				reason = tc.err.Message
			}
			c, err := kfake.NewCluster(opts...)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(c.Close)
			var faults atomic.Int64
			if tc.err != nil {
				c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: tc.err, Count: -1, When: func(req kmsg.Request) bool {
					for _, rt := range req.(*kmsg.ProduceRequest).Topics {
						for _, rp := range rt.Partitions {
							if bytes.Contains(rp.Records, []byte(poison)) {
								faults.Add(1)
								return true
							}
						}
					}
					return false
				}})
			}
			f.cluster, f.brokers = c, c.ListenAddrs()
			var logs syncBuffer
			logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
			sink, err := kafka.New(kafka.Options{Brokers: f.brokers, Topic: topic, GatewayID: "gw", Idempotent: true, Logger: logger})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(sink.Close)

			devices := []string{"d0", "d1", "d2", "d3", "d4", "d5"}
			const perDevice = 300
			var batch [][]byte
			for i := 1; i <= perDevice; i++ {
				for _, d := range devices {
					fl := record.Fields{Gateway: "gw", Epoch: testEpoch, Device: d, Tag: "t", Seq: uint64(i), Type: record.TypeInt, Int: int64(i), Quality: "good", ReadTime: time.Now()}
					if d == "d3" && i == tc.hugeAt {
						fl.Type, fl.String = record.TypeString, strings.Repeat("x", 100<<10)
						if tc.err != nil {
							fl.String = poison
						}
					}
					batch = append(batch, record.AppendEnvelope(nil, d, fl.ReadTime, testEpoch, record.AppendJSON(nil, &fl)))
					if len(batch) == 90 {
						if err := f.buf.Append(batch, nil); err != nil {
							t.Fatal(err)
						}
						batch = nil
					}
				}
			}
			if err := f.buf.Append(batch, nil); err != nil {
				t.Fatal(err)
			}

			var cnt counts
			dl := &deadLetters{}
			var dead int64
			var deadMu sync.Mutex
			m := cnt.metrics()
			m.DeadLettered = func(_ string, n int) { deadMu.Lock(); dead += int64(n); deadMu.Unlock() }
			l := uplink.New(f.buf.Queue("kafka"), sink, uplink.Options{
				BatchSize: 15, Workers: 4, FlushInterval: time.Millisecond, BackoffMin: time.Millisecond, BackoffMax: 5 * time.Millisecond,
				DeadLetters: dl, Logger: logger, Metrics: m,
			})
			total := int64(len(devices)*perDevice - 1)
			runLoop(t, l, &cnt, total)

			dl.mu.Lock()
			defer dl.mu.Unlock()
			if dl.reasons[reason] != 1 || len(dl.records) != 1 {
				t.Fatalf("dead letters %v, want only the bad record as %s", dl.reasons, reason)
			}
			deadMu.Lock()
			if dead != 1 {
				t.Errorf("dead-lettered metric counted %d records, want 1", dead)
			}
			deadMu.Unlock()
			env, err := record.DecodeEnvelope(dl.records[0])
			if err != nil {
				t.Fatal(err)
			}
			if env.Key != "d3" || (tc.err == nil) != (len(env.Value) > 100<<10) || (tc.err != nil) != bytes.Contains(env.Value, []byte(poison)) {
				t.Fatalf("dead-lettered %s's record of %d bytes, want d3's bad one", env.Key, len(env.Value))
			}
			out := logs.String()
			if n := strings.Count(out, "moved to the dead-letter queue"); n != 1 || !strings.Contains(out, "records=1 reason="+reason) {
				t.Errorf("log: %d dead-letter lines, want one for one record:\n%s", n, out)
			}
			if !strings.Contains(out, "sending their records again in smaller batches") {
				t.Errorf("the log does not say the refused batch was split:\n%s", out)
			}

			if err := f.buf.Flush(); err != nil {
				t.Fatal(err)
			}
			if left := f.buf.Queue("kafka").Stats().Records; left != 0 {
				t.Fatalf("%d records left in the queue", left)
			}
			chk, order := seqcheck.New(), seqcheck.NewOrder()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := chk.ReadTopicOrder(ctx, f.brokers, topic, order); err != nil {
				t.Fatal(err)
			}
			read := chk.Records()
			if err := chk.Add(env.Value); err != nil {
				t.Fatal(err)
			}
			last := map[string]uint64{}
			for _, d := range devices {
				last[d] = perDevice
			}
			r := chk.Verify(seqcheck.Expect(last, "t"))
			t.Logf("%d records read from the topic; %d requests faulted, %d failed attempts, %d batches retried; order: %s; topic plus dead letter: %s",
				read, faults.Load(), cnt.failed.Load(), cnt.retried.Load(), order, r)
			if read < int(total) {
				t.Errorf("read %d records from the topic, want at least %d", read, total)
			}
			if r.Missing != 0 || r.Unexpected != 0 {
				t.Errorf("topic plus dead letter: %s", r)
			}
			if order.Violations() != 0 {
				t.Errorf("order lost: %s", order)
			}
		})
	}
}
