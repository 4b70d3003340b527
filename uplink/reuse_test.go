package uplink_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iot-producer/iot-producer/internal/kfakefault"
	"github.com/iot-producer/iot-producer/record"
	"github.com/iot-producer/iot-producer/uplink"
)

// TestReusedBatchesDeliverTheCommittedBytes: the loop recycles a batch's
// records, arena and messages once the sink settled every message, and
// the Kafka sink recycles its records once their promises ran. Records of
// many sizes are committed while the loop runs (so reads at the tail grow
// arenas across frames), with batches in flight together and some produce
// requests refused (so failed batches, which are sent again from their own
// memory, mix with recycled ones). Every record the broker holds must be
// byte for byte what was committed, under its own key: a buffer reused
// before its records were acknowledged would show as another record's
// bytes (and, under -race, as a data race).
func TestReusedBatchesDeliverTheCommittedBytes(t *testing.T) {
	f := newFixture(t)
	kfakefault.RefuseProduce(f.cluster, kerr.PolicyViolation, 4)
	devices := []string{"a", "bb", "ccc", "dddd", "eeeee"}
	want := map[string][]byte{} // device/seq → value
	var c counts
	l := uplink.New(f.buf.Queue("kafka"), f.sink, uplink.Options{
		BatchSize: 37, Workers: 4, FlushInterval: time.Millisecond, BackoffMin: time.Millisecond, BackoffMax: 5 * time.Millisecond,
		Logger: quiet, Metrics: c.metrics(),
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	const groups, perGroup = 60, 50
	seq := map[string]uint64{}
	for g := 0; g < groups; g++ {
		var batch [][]byte
		for i := 0; i < perGroup; i++ {
			d := devices[(g*7+i)%len(devices)]
			seq[d]++
			fl := record.Fields{Gateway: "gw", Epoch: testEpoch, Device: d, Tag: "t", Seq: seq[d],
				Type: record.TypeString, String: strings.Repeat(string(rune('a'+i%26)), (g*31+i*17)%300), Quality: "good", ReadTime: time.Now()}
			v := record.AppendJSON(nil, &fl)
			want[fmt.Sprintf("%s/%d", d, seq[d])] = v
			batch = append(batch, record.AppendEnvelope(nil, d, fl.ReadTime, testEpoch, v))
		}
		if err := f.buf.Append(batch, nil); err != nil {
			t.Fatal(err)
		}
	}
	// A bound for a stuck loop, not a speed requirement.
	deadline := time.Now().Add(2 * time.Minute)
	for c.sent.Load() < groups*perGroup && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond) // polling the sent counter
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := c.sent.Load(); got != groups*perGroup {
		t.Fatalf("sent %d of %d", got, groups*perGroup)
	}
	if c.failed.Load() == 0 {
		t.Fatal("no send failed: the refusals were not seen")
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(f.brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	rctx, rcancel := context.WithTimeout(context.Background(), time.Minute)
	defer rcancel()
	seen := map[string]bool{}
	for len(seen) < len(want) {
		fetches := cl.PollFetches(rctx)
		if rctx.Err() != nil {
			t.Fatalf("read %d of %d records from the topic", len(seen), len(want))
		}
		var bad error
		fetches.EachRecord(func(r *kgo.Record) {
			got, err := record.Decode(r.Value)
			if err != nil {
				bad = fmt.Errorf("record at offset %d: %w (%q)", r.Offset, err, r.Value)
				return
			}
			id := fmt.Sprintf("%s/%d", got.Device, got.Seq)
			if w, ok := want[id]; !ok || !bytes.Equal(r.Value, w) || string(r.Key) != got.Device {
				bad = fmt.Errorf("record at offset %d, key %q: %q, committed %q", r.Offset, r.Key, r.Value, w)
				return
			}
			seen[id] = true
		})
		if bad != nil {
			t.Fatal(bad)
		}
	}
}
