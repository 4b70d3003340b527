package kafka_test

import (
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/iot-producer/iot-producer/record"
	"github.com/iot-producer/iot-producer/uplink"
	"github.com/iot-producer/iot-producer/uplink/kafka"
)

// BenchmarkCompression sends 200,000 realistic records (the JSON of
// simulated readings of 100 devices × 10 tags) through each codec to kfake
// and reports the compression ratio, records/s and the CPU spent per
// record. kfake is not a throughput reference, but it decompresses
// nothing on the hot path, so the client's side of each codec is what
// differs. This chose the default: see the README.
func BenchmarkCompression(b *testing.B) {
	const n = 200_000
	msgs := make([]uplink.Message, n)
	rng := rand.New(rand.NewPCG(1, 2))
	tags := []string{"temperature", "pressure", "counter", "alarm", "speed", "vibration", "flow", "level", "current", "humidity"}
	t0 := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	for i := range msgs {
		f := record.Fields{Gateway: "gw-01", Device: fmt.Sprintf("press-%03d", i%100), Tag: tags[(i/100)%10], Seq: uint64(i/1000 + 1),
			Type: record.TypeFloat, Float: 20 + rng.Float64()*10, Quality: "good", ReadTime: t0.Add(time.Duration(i) * time.Millisecond)}
		msgs[i] = uplink.Message{Key: f.Device, Time: f.ReadTime, Value: record.AppendJSON(nil, &f)}
	}
	for _, codec := range []string{"none", "gzip", "snappy", "lz4", "zstd"} {
		b.Run(codec, func(b *testing.B) {
			c := cluster(b)
			var raw, packed atomic.Int64
			s, err := kafka.New(kafka.Options{Brokers: c.ListenAddrs(), Topic: "t", GatewayID: "gw", Compression: codec, Idempotent: true, Logger: quiet,
				OnBatchWritten: func(_, u, c int) { raw.Add(int64(u)); packed.Add(int64(c)) }})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			var ru0, ru1 syscall.Rusage
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
			start := time.Now()
			for range b.N {
				for i := 0; i < n; i += 1000 {
					if err := send(s, uplink.Live, msgs[i:i+1000]); err != nil {
						b.Fatal(err)
					}
				}
			}
			el := time.Since(start)
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
			cpu := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
			total := float64(n * b.N)
			b.ReportMetric(float64(raw.Load())/float64(max(1, packed.Load())), "ratio")
			b.ReportMetric(total/el.Seconds(), "records/s")
			b.ReportMetric(float64(cpu.Nanoseconds())/total, "cpu-ns/record")
		})
	}
}
