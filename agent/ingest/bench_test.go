package ingest_test

import (
	"context"
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/iot-producer/iot-producer/agent/ingest"
	"github.com/iot-producer/iot-producer/buffer"
	"github.com/iot-producer/iot-producer/drivers"
)

// BenchmarkIngestCommit measures the sequencing and commit alone: batches
// of 100 samples (one device's tags, the same name strings every time, as
// a driver emits them) from the given number of series go through the
// ingest stage into a durable buffer (fsync on). It reports samples/s and
// the process's CPU time per sample (filling the batches included).
func BenchmarkIngestCommit(b *testing.B) {
	for _, series := range []int{20_000, 100_000} {
		b.Run(fmt.Sprintf("series=%d", series), func(b *testing.B) {
			const perDevice = 100
			devices := make([]string, series/perDevice)
			for d := range devices {
				devices[d] = fmt.Sprintf("device-%05d", d)
			}
			tags := make([]string, perDevice)
			for t := range tags {
				tags[t] = fmt.Sprintf("r%d", t)
			}
			buf, err := buffer.Open(filepath.Join(b.TempDir(), "b.db"), buffer.Options{Queues: []string{"kafka"}, FlushInterval: -1, Logger: quiet})
			if err != nil {
				b.Fatal(err)
			}
			defer buf.Close()
			// Back-pressure for the benchmark, so nothing is dropped: the
			// producer waits for a commit while 50,000 samples are pending.
			committed := make(chan struct{}, 1)
			in, err := ingest.New(buf, ingest.Options{GatewayID: "gw-bench", Logger: quiet, Metrics: ingest.Metrics{Committed: func(int) {
				select {
				case committed <- struct{}{}:
				default:
				}
			}}})
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- in.Run(ctx) }()
			total := max(b.N, 1) * 1_000_000
			var ru0, ru1 syscall.Rusage
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
			start := time.Now()
			b.ResetTimer()
			now := time.Now()
			for n, d := 0, 0; n < total; n, d = n+perDevice, (d+1)%len(devices) {
				batch := newBatch(perDevice)
				for t := range tags {
					batch = append(batch, drivers.Sample{Device: devices[d], Tag: tags[t], Value: drivers.Float(float64(n)), ReadTime: now})
				}
				in.Emit(batch)
				for in.Pending() > 50_000 {
					<-committed
				}
			}
			cancel()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
			el := time.Since(start)
			b.StopTimer()
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
			cpu := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
			if got := buf.Queue("kafka").Stats().Records; got != int64(total) {
				b.Fatalf("%d records committed, want %d", got, total)
			}
			b.ReportMetric(float64(total)/el.Seconds(), "samples/s")
			b.ReportMetric(cpu.Seconds()/float64(total)*1e6, "µs-cpu/sample")
		})
	}
}

// newBatch is where a driver gets its batch.
func newBatch(n int) []drivers.Sample { return drivers.NewBatch(n) }

// BenchmarkEmitDropped measures what a dropped sample costs: with pending
// full (nothing commits), every batch of 100 samples (one device's tags,
// the same name strings every time) is dropped with each policy. It
// reports the time per dropped sample; allocs/op is per batch.
func BenchmarkEmitDropped(b *testing.B) {
	for _, newest := range []bool{false, true} {
		b.Run(map[bool]string{false: "drop_oldest", true: "drop_newest"}[newest], func(b *testing.B) {
			const perDevice, devices = 100, 1000
			names := make([][]string, devices)
			for d := range names {
				for t := range perDevice {
					names[d] = append(names[d], fmt.Sprintf("device-%05d", d), fmt.Sprintf("r%d", t))
				}
			}
			buf, err := buffer.Open(filepath.Join(b.TempDir(), "b.db"), buffer.Options{Queues: []string{"kafka"}, Logger: quiet})
			if err != nil {
				b.Fatal(err)
			}
			defer buf.Close()
			in, err := ingest.New(buf, ingest.Options{GatewayID: "gw-bench", Logger: quiet, MaxPending: 10_000, DropNewest: newest})
			if err != nil {
				b.Fatal(err)
			}
			now := time.Now()
			emit := func(d int) {
				batch := newBatch(perDevice)
				for t := range perDevice {
					batch = append(batch, drivers.Sample{Device: names[d][2*t], Tag: names[d][2*t+1], Value: drivers.Float(1), ReadTime: now})
				}
				in.Emit(batch)
			}
			for d := range 200 { // fill pending
				emit(d % devices)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				emit(i % devices)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*perDevice), "ns/sample")
			if got := in.Dropped()["pending_full"]; got < uint64(b.N*perDevice) {
				b.Fatalf("dropped %d, want at least %d", got, b.N*perDevice)
			}
		})
	}
}
