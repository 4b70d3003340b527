package uplink_test

import (
	"context"
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

// appendInterleaved commits n records for each device, seq 1..n, the
// devices taking turns in groups of 10, 100 records to a commit.
func (f *fixture) appendInterleaved(t *testing.T, devices []string, n int) map[string]uint64 {
	t.Helper()
	var batch [][]byte
	for from := 1; from <= n; from += 10 {
		for _, d := range devices {
			for i := from; i < from+10 && i <= n; i++ {
				fl := record.Fields{Gateway: "gw", Epoch: testEpoch, Device: d, Tag: "t", Seq: uint64(i), Type: record.TypeInt, Int: int64(i), Quality: "good", ReadTime: time.Now()}
				batch = append(batch, record.AppendEnvelope(nil, d, fl.ReadTime, testEpoch, record.AppendJSON(nil, &fl)))
				if len(batch) == 100 {
					if err := f.buf.Append(batch, nil); err != nil {
						t.Fatal(err)
					}
					batch = nil
				}
			}
		}
	}
	if len(batch) > 0 {
		if err := f.buf.Append(batch, nil); err != nil {
			t.Fatal(err)
		}
	}
	last := make(map[string]uint64, len(devices))
	for _, d := range devices {
		last[d] = uint64(n)
	}
	return last
}

// failEveryNth makes the cluster answer err to the produce requests for
// partitions (all when nil) whose number i among them has i%every == at,
// for the first 400, and returns the count of requests it failed.
func failEveryNth(c *kfake.Cluster, partitions []int32, err *kerr.Error, every, at int64) *atomic.Int64 {
	var n, hit atomic.Int64
	c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Partitions: partitions, Err: err, Count: -1,
		When: func(kmsg.Request) bool {
			if i := n.Add(1); i%every == at && i < 400 {
				hit.Add(1)
				return true
			}
			return false
		}})
	return &hit
}

// TestKafkaOrderAcrossFailures: four batches in flight per lane, and the
// broker fails some produce requests — refusing one partition while the
// other takes everything, answering with a server error, or answering
// after the delivery timeout. Read back partition by partition in offset
// order, no record of a device may arrive behind a later one of the same
// device (a re-send of records already delivered is allowed and counted),
// every record must be there, and the queue must end empty.
func TestKafkaOrderAcrossFailures(t *testing.T) {
	devices := []string{"d0", "d1", "d2", "d3", "d4", "d5", "d6", "d7"}
	const perDevice = 1000
	cases := []struct {
		name    string
		brokers int
		inject  func(c *kfake.Cluster) *atomic.Int64 // returns the count of faults injected
	}{
		{"one partition refused while the other is slow", 2, func(c *kfake.Cluster) *atomic.Int64 {
			// The partitions have leaders on different brokers. Partition
			// 0's answers come late, so a batch that failed on partition 1
			// is reported only once its partition 0 records are settled:
			// meanwhile the loop hands over more batches, whose partition
			// 1 records must not go ahead of the failed ones.
			var slow atomic.Int64
			c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
				c.KeepControl()
				for _, rt := range req.(*kmsg.ProduceRequest).Topics {
					for _, rp := range rt.Partitions {
						if rp.Partition == 0 && slow.Add(1)%3 == 0 {
							c.SleepControl(func() { <-time.After(100 * time.Millisecond) })
							return nil, nil, false
						}
					}
				}
				return nil, nil, false
			})
			return failEveryNth(c, []int32{1}, kerr.TopicAuthorizationFailed, 5, 2)
		}},
		{"one partition refused", 1, func(c *kfake.Cluster) *atomic.Int64 {
			return failEveryNth(c, []int32{1}, kerr.TopicAuthorizationFailed, 5, 2)
		}},
		{"server errors", 1, func(c *kfake.Cluster) *atomic.Int64 {
			return failEveryNth(c, nil, kerr.UnknownServerError, 7, 3)
		}},
		{"answers after the delivery timeout", 1, func(c *kfake.Cluster) *atomic.Int64 {
			var n, hit atomic.Int64
			c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
				c.KeepControl()
				if i := n.Add(1); i%9 == 4 && i < 200 {
					hit.Add(1)
					// A slow broker: this answer comes after the sink's
					// 300ms delivery timeout.
					c.SleepControl(func() { <-time.After(600 * time.Millisecond) })
				}
				return nil, nil, false
			})
			return &hit
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			if tc.brokers > 1 {
				c, err := kfake.NewCluster(kfake.NumBrokers(tc.brokers), kfake.SeedTopics(2, topic))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(c.Close)
				f.cluster, f.brokers = c, c.ListenAddrs()
			}
			sink, err := kafka.New(kafka.Options{Brokers: f.brokers, Topic: topic, GatewayID: "gw", Idempotent: true, DeliveryTimeout: 300 * time.Millisecond, Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(sink.Close)
			last := f.appendInterleaved(t, devices, perDevice)
			faults := tc.inject(f.cluster)
			var c counts
			l := uplink.New(f.buf.Queue("kafka"), sink, uplink.Options{
				BatchSize: 15, Workers: 4, FlushInterval: time.Millisecond, BackoffMin: time.Millisecond, BackoffMax: 5 * time.Millisecond,
				Logger: quiet, Metrics: c.metrics(),
			})
			runLoop(t, l, &c, int64(len(devices)*perDevice))
			if faults.Load() == 0 || c.retried.Load() == 0 {
				t.Fatalf("%d faults injected, %d batches retried: the test did not test failures", faults.Load(), c.retried.Load())
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
			r := chk.Verify(seqcheck.Expect(last, "t"))
			t.Logf("%d faults, %d retries; order: %s; delivery: %s", faults.Load(), c.retried.Load(), order, r)
			if order.Violations() != 0 {
				t.Errorf("order lost: %s", order)
			}
			if r.Missing != 0 || r.Unexpected != 0 {
				t.Errorf("delivery: %s", r)
			}
		})
	}
}
