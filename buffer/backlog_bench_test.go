package buffer

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// procStatus returns the fields of /proc/self/status in bytes (those
// given in kB), or nil off Linux.
func procStatus() map[string]int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil
	}
	out := map[string]int64{}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			continue
		}
		if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
			out[k] = n << 10
		}
	}
	return out
}

// memory is a snapshot of the process's memory after a GC.
type memory struct {
	rssAnon, rssFile, rss int64
	heap                  uint64
}

func measureMemory() memory {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	st := procStatus()
	return memory{rssAnon: st["RssAnon"], rssFile: st["RssFile"], rss: st["VmRSS"], heap: ms.HeapInuse}
}

// backlogRecords is the backlog of BenchmarkBacklog10M: 10 million records
// of 200 bytes, 2 GB of disk.
const backlogRecords = 10_000_000

// BenchmarkBacklog10M builds a backlog of 10 million 200-byte records (2 GB
// on disk; group commits of 5,000, fsync on), then reopens the file as an
// agent does after a restart and reads and acknowledges the first million.
// It reports the process's memory after each phase: anonymous RSS (the
// memory the buffer really costs; the target is 64 MB whatever the
// backlog), Go heap in use, and total RSS, which also counts pages of the
// memory-mapped file that reading touched (file-backed, reclaimable). It
// runs once whatever -benchtime says.
//
// load: group commits of 5,000 records (fsync on) make full 64 KiB frames.
// trickle: Appends of 15 records each make a frame of 3 KiB each (the most
// coalescing packs into a frame at low rates), 20 times as many frames,
// which the background flush merges into full frames meanwhile (fsync off
// for this fill: 670,000 fsyncs would take too long; memory is the point).
func BenchmarkBacklog10M(b *testing.B) {
	b.Run("load", func(b *testing.B) { benchBacklog(b, benchBatch) })
	b.Run("trickle", func(b *testing.B) {
		old := coalesceMaxPayload
		coalesceMaxPayload = 0 // every Append its own frame, as Appends a second apart get
		defer func() { coalesceMaxPayload = old }()
		benchBacklog(b, 15)
	})
}

func benchBacklog(b *testing.B, batch int) {
	// One op is the whole run, whatever b.N: it takes far longer than
	// the default -benchtime, so the framework stops at b.N = 1.
	path := b.TempDir() + "/backlog.db"
	o := testOptions("kafka")
	o.NoSync = batch < benchBatch
	o.FlushInterval = 0 // the default background flush, which also merges small frames
	buf, err := Open(path, o)
	if err != nil {
		b.Fatal(err)
	}
	recs := benchRecords(batch)
	m := startMeter(buf)
	for n := 0; n < backlogRecords; n += batch {
		if err := buf.Append(recs, nil); err != nil {
			b.Fatal(err)
		}
	}
	fillTime := time.Since(m.start)
	b.ReportMetric(backlogRecords/fillTime.Seconds(), "fill-records/s")
	if w := diskWritten(); w >= 0 && m.disk >= 0 {
		b.ReportMetric(float64(w-m.disk)/float64(backlogRecords*benchRecordSize), "fill-write-amp")
	}
	filled := measureMemory()
	st := buf.Stats()
	frames := st.Queues["kafka"].Frames
	if err := buf.Close(); err != nil {
		b.Fatal(err)
	}

	stop := make(chan struct{})
	peak := make(chan int64)
	go func() { // sample anonymous RSS while Open walks the file
		var p int64
		for {
			p = max(p, procStatus()["RssAnon"])
			select {
			case <-stop:
				peak <- p
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	start := time.Now()
	buf, err = Open(path, o)
	close(stop)
	openPeak := <-peak
	if err != nil {
		b.Fatal(err)
	}
	defer buf.Close()
	b.ReportMetric(time.Since(start).Seconds(), "reopen-s")
	reopened := measureMemory()

	q := buf.Queue("kafka")
	after := Start()
	pos := make([]Pos, 0, benchBatch)
	for n := 0; n < backlogRecords/10; {
		rs, err := q.Read(after, benchBatch)
		if err != nil || len(rs) == 0 {
			b.Fatalf("read after %d records: %d records, %v", n, len(rs), err)
		}
		pos = pos[:0]
		for _, r := range rs {
			pos = append(pos, r.Pos)
		}
		if err := q.Ack(pos...); err != nil {
			b.Fatal(err)
		}
		after = rs[len(rs)-1].Pos
		n += len(rs)
	}
	if err := buf.Flush(); err != nil {
		b.Fatal(err)
	}
	drained := measureMemory()
	if got, want := q.Stats().Records, int64(backlogRecords/batch*batch-backlogRecords/10); got > want+int64(batch) || got < want-int64(batch) {
		b.Fatalf("%d records left, want %d", got, want)
	}

	const mb = 1 << 20
	peakAnon := max(filled.rssAnon, reopened.rssAnon, drained.rssAnon)
	b.ReportMetric(float64(peakAnon)/mb, "rss-anon-MB")
	b.ReportMetric(float64(openPeak)/mb, "open-peak-anon-MB")
	b.ReportMetric(float64(max(filled.heap, reopened.heap, drained.heap))/mb, "heap-MB")
	b.ReportMetric(float64(max(filled.rss, reopened.rss, drained.rss))/mb, "rss-MB")
	b.ReportMetric(float64(st.FileSize)/mb, "file-MB")
	b.ReportMetric(float64(frames), "frames")
	b.ReportMetric(0, "ns/op")
	for _, p := range []struct {
		name string
		m    memory
	}{{"filled", filled}, {"reopened", reopened}, {"1M drained", drained}} {
		b.Logf("%-10s RssAnon %6.1f MB  Go heap %6.1f MB  RssFile %7.1f MB  VmRSS %7.1f MB",
			p.name, float64(p.m.rssAnon)/mb, float64(p.m.heap)/mb, float64(p.m.rssFile)/mb, float64(p.m.rss)/mb)
	}
	if peakAnon > 64*mb {
		b.Errorf("anonymous RSS %.1f MB with a backlog of %d records, target 64 MB", float64(peakAnon)/mb, backlogRecords)
	}
}
