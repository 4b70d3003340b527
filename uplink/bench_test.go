package uplink_test

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/iot-producer/iot-producer/buffer"
	"github.com/iot-producer/iot-producer/record"
	"github.com/iot-producer/iot-producer/uplink"
	"github.com/iot-producer/iot-producer/uplink/kafka"
)

// BenchmarkLoop measures the send loop draining records committed
// beforehand (one op is one record; compare allocs/op and B/op, which do
// not depend on other load on the machine): to a sink that acknowledges
// at once (the loop and the buffer's reads and acknowledgements alone),
// and to the Kafka sink with an in-process kfake broker (the broker's
// allocations count too).
func BenchmarkLoop(b *testing.B) {
	for _, sinkName := range []string{"instant", "kafka"} {
		b.Run("sink="+sinkName, func(b *testing.B) {
			buf, err := buffer.Open(filepath.Join(b.TempDir(), "b.db"), buffer.Options{Queues: []string{"kafka"}, NoSync: true, Logger: quiet})
			if err != nil {
				b.Fatal(err)
			}
			defer buf.Close()
			var sink uplink.Sink = sinkFunc(func([]uplink.Message) error { return nil })
			if sinkName == "kafka" {
				cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, topic))
				if err != nil {
					b.Fatal(err)
				}
				defer cluster.Close()
				ks, err := kafka.New(kafka.Options{Brokers: cluster.ListenAddrs(), Topic: topic, GatewayID: "gw", Idempotent: true, Logger: quiet})
				if err != nil {
					b.Fatal(err)
				}
				defer ks.Close()
				sink = ks
			}
			var batch [][]byte
			now := time.Now()
			for i := 0; i < b.N; i++ {
				d := fmt.Sprintf("device-%03d", i%100)
				fl := record.Fields{Gateway: "gw", Epoch: testEpoch, Device: d, Tag: "t", Seq: uint64(i + 1), Type: record.TypeInt, Int: int64(i), Quality: "good", ReadTime: now}
				batch = append(batch, record.AppendEnvelope(nil, d, fl.ReadTime, testEpoch, record.AppendJSON(nil, &fl)))
				if len(batch) == 5000 || i == b.N-1 {
					if err := buf.Append(batch, nil); err != nil {
						b.Fatal(err)
					}
					batch = batch[:0]
				}
			}
			var c counts
			l := uplink.New(buf.Queue("kafka"), sink, uplink.Options{Logger: quiet, Metrics: c.metrics()})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			b.ReportAllocs()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			b.ResetTimer()
			go func() { done <- l.Run(ctx) }()
			for c.sent.Load() < int64(b.N) {
				time.Sleep(time.Millisecond) // polling the sent counter
			}
			b.StopTimer()
			runtime.ReadMemStats(&after)
			// allocs/op rounds down to whole allocations per record.
			b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(b.N), "allocs/record")
			cancel()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		})
	}
}
