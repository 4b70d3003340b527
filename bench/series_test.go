package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/iot-producer/iot-producer/agent/ingest"
	"github.com/iot-producer/iot-producer/buffer"
	"github.com/iot-producer/iot-producer/drivers"
)

// seriesTags is the number of tags per device in the memory benchmark.
const seriesTags = 100

// BenchmarkSeriesMemory measures what the ingest stage keeps per series:
// it commits one sample of each of n distinct series (n/100 devices × 100
// tags) through the ingest stage into a durable buffer and reports the
// Go heap it holds per series (after a warm-up of 10,000 series that
// sizes its reused buffers; the device and tag names, which the drivers
// hold anyway, are made beforehand and not counted) and the bytes per
// series the sequence metadata takes in the buffer file (bbolt pages of
// the meta bucket, and key plus value bytes).
func BenchmarkSeriesMemory(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("series=%d", n), func(b *testing.B) {
			for range b.N {
				seriesMemory(b, n)
			}
		})
	}
}

func seriesMemory(b *testing.B, n int) {
	const warm = 10_000
	path := filepath.Join(b.TempDir(), "buffer.db")
	buf, err := buffer.Open(path, buffer.Options{Queues: []string{"kafka"}})
	if err != nil {
		b.Fatal(err)
	}
	in, err := ingest.New(buf, ingest.Options{GatewayID: "gw-bench", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	devices := make([]string, (n+seriesTags-1)/seriesTags)
	for d := range devices {
		devices[d] = fmt.Sprintf("device-%07d", d)
	}
	tags := make([]string, seriesTags)
	for t := range tags {
		tags[t] = fmt.Sprintf("tag-%03d", t)
	}
	now := time.Now()
	emit := func(lo, hi int) {
		for i := lo; i < hi; i += 1000 {
			batch := make([]drivers.Sample, 0, 1000)
			for j := i; j < min(hi, i+1000); j++ {
				batch = append(batch, drivers.Sample{Device: devices[j/seriesTags], Tag: tags[j%seriesTags], Value: drivers.Float(1), ReadTime: now})
			}
			in.Emit(batch)
			for in.Pending() > 100_000 {
				time.Sleep(time.Millisecond) // back-pressure for the benchmark only
			}
		}
		// Wait for the commit holding the last sample.
		for committed := buf.Queue("kafka").Stats().Records; committed < int64(hi); committed = buf.Queue("kafka").Stats().Records {
			time.Sleep(time.Millisecond)
		}
	}
	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	emit(0, warm)
	h0 := heap()
	start := time.Now()
	emit(warm, n)
	el := time.Since(start)
	h1 := heap()
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	runtime.KeepAlive(in)
	if err := buf.Close(); err != nil {
		b.Fatal(err)
	}
	db, err := bolt.Open(path, 0, &bolt.Options{ReadOnly: true})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	var st bolt.BucketStats
	var kv int
	if err := db.View(func(tx *bolt.Tx) error {
		mb := tx.Bucket([]byte("meta"))
		st = mb.Stats()
		return mb.ForEach(func(k, v []byte) error { kv += len(k) + len(v); return nil })
	}); err != nil {
		b.Fatal(err)
	}
	pages := st.LeafAlloc + st.BranchAlloc
	perHeap := float64(int64(h1)-int64(h0)) / float64(n-warm)
	b.ReportMetric(perHeap, "heap-B/series")
	b.ReportMetric(float64(pages)/float64(n), "disk-B/series")
	b.ReportMetric(float64(kv)/float64(n), "kv-B/series")
	fmt.Printf("series memory: %d series: %.0f B of heap per series, %.1f B per series in the buffer file's meta pages (%.1f MB), %.1f B of keys and values per series; %d new series committed in %s (%.0f/s)\n",
		n, perHeap, float64(pages)/float64(n), float64(pages)/1e6, float64(kv)/float64(n), n-warm, el.Round(time.Millisecond), float64(n-warm)/el.Seconds())
}
