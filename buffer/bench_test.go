package buffer

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	benchRecordSize = 200
	benchBatch      = 5000
)

func benchRecords(n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		r := make([]byte, benchRecordSize)
		for j := range r {
			r[j] = byte('a' + (i+j)%26)
		}
		out[i] = r
	}
	return out
}

// cpuTime is the process's user plus system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// diskWritten is the bytes this process has caused to be written to
// storage so far (Linux /proc/self/io), or -1.
func diskWritten() int64 {
	data, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "write_bytes: "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return -1
			}
			return n
		}
	}
	return -1
}

// meter measures one benchmark run.
type meter struct {
	start   time.Time
	cpu     time.Duration
	disk    int64
	buf     *Buffer
	commits uint64
	// copies is the number of queues each record is stored in (default 1).
	copies int
}

// startMeter starts measuring; buf, if not nil, is the buffer whose
// commits are counted.
func startMeter(buf *Buffer) meter {
	m := meter{start: time.Now(), cpu: cpuTime(), disk: diskWritten(), buf: buf}
	if buf != nil {
		m.commits = buf.Stats().Commits
	}
	return m
}

// report reports records/s, MB/s and commits/s over wall time, and per
// record the CPU time and bytes written to storage, which depend less on
// other load on the machine, and the write amplification: bytes written to
// storage per byte of record payload stored (payload times copies).
func (m meter) report(b *testing.B, records int) {
	d := time.Since(m.start)
	b.ReportMetric(float64(cpuTime()-m.cpu)/float64(records), "cpu-ns/record")
	if w := diskWritten(); w >= 0 && m.disk >= 0 {
		b.ReportMetric(float64(w-m.disk)/float64(records), "disk-B/record")
		b.ReportMetric(float64(w-m.disk)/float64(records*benchRecordSize*max(1, m.copies)), "write-amp")
	}
	if m.buf != nil {
		b.ReportMetric(float64(m.buf.Stats().Commits-m.commits)/d.Seconds(), "commits/s")
	}
	b.ReportMetric(float64(records)/d.Seconds(), "records/s")
	b.ReportMetric(float64(records)*benchRecordSize/d.Seconds()/1e6, "MB/s")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkAppend measures group commits of 200-byte records with fsync
// on: one op is one Append of batch records to every queue.
func BenchmarkAppend(b *testing.B) {
	cases := []struct {
		batch  int
		queues []string
	}{
		{benchBatch, []string{"kafka"}},
		{benchBatch, []string{"kafka", "mqtt"}},
		{1000, []string{"kafka"}},
		{100, []string{"kafka"}},
	}
	for _, c := range cases {
		b.Run(fmt.Sprintf("batch=%d/queues=%d", c.batch, len(c.queues)), func(b *testing.B) {
			o := testOptions(c.queues...)
			o.NoSync = false
			o.FlushInterval = 0
			buf, err := Open(b.TempDir()+"/bench.db", o)
			if err != nil {
				b.Fatal(err)
			}
			defer buf.Close()
			recs := benchRecords(c.batch)
			b.SetBytes(int64(c.batch * benchRecordSize))
			b.ResetTimer()
			m := startMeter(buf)
			m.copies = len(c.queues)
			for i := 0; i < b.N; i++ {
				if err := buf.Append(recs, nil); err != nil {
					b.Fatal(err)
				}
			}
			m.report(b, b.N*c.batch)
		})
	}
}

// BenchmarkDrain measures reading, acknowledging and deleting (committed
// with fsync) records appended beforehand and found by Open, so every
// frame's checksum is verified on its first read: one op is 5,000 records.
// With reuse, reads go through ReadAppend into one recycled record slice
// and arena, as the send loop reads.
func BenchmarkDrain(b *testing.B) {
	for _, c := range []struct {
		readBatch int
		reuse     bool
	}{{1000, false}, {5000, false}, {1000, true}} {
		readBatch := c.readBatch
		name := fmt.Sprintf("read=%d", readBatch)
		if c.reuse {
			name += "/reuse"
		}
		b.Run(name, func(b *testing.B) {
			path := b.TempDir() + "/bench.db"
			o := testOptions("kafka")
			o.FlushInterval = 0
			fill, err := Open(path, o) // NoSync: the fill is not measured
			if err != nil {
				b.Fatal(err)
			}
			recs := benchRecords(benchBatch)
			for i := 0; i < b.N; i++ {
				if err := fill.Append(recs, nil); err != nil {
					b.Fatal(err)
				}
			}
			if err := fill.Close(); err != nil {
				b.Fatal(err)
			}
			o.NoSync = false
			buf, err := Open(path, o)
			if err != nil {
				b.Fatal(err)
			}
			defer buf.Close()
			q := buf.Queue("kafka")
			b.SetBytes(benchBatch * benchRecordSize)
			b.ResetTimer()
			m := startMeter(buf)
			after, n := Start(), 0
			pos := make([]Pos, 0, readBatch)
			var rs []Record
			var arena []byte
			for n < b.N*benchBatch {
				if c.reuse {
					rs, arena, err = q.ReadAppend(after, readBatch, rs[:0], arena[:0])
				} else {
					rs, err = q.Read(after, readBatch)
				}
				if err != nil {
					b.Fatal(err)
				}
				if len(rs) == 0 {
					b.Fatalf("queue empty after %d of %d records", n, b.N*benchBatch)
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
			m.report(b, n)
			if s := q.Stats(); s.Records != 0 {
				b.Fatalf("%d records left", s.Records)
			}
		})
	}
}

// BenchmarkAppendDrain measures the steady state of a gateway whose sink
// keeps up: each op appends a group commit of 5,000 200-byte records (fsync
// on) and reads, acknowledges and deletes the 5,000 appended before it, so
// freed pages are reused. write-amp is every byte the process wrote to
// storage (records, bbolt pages, bitmaps, deletions) per payload byte.
func BenchmarkAppendDrain(b *testing.B) {
	o := testOptions("kafka")
	o.NoSync = false
	o.FlushInterval = 0
	buf, err := Open(b.TempDir()+"/bench.db", o)
	if err != nil {
		b.Fatal(err)
	}
	defer buf.Close()
	q := buf.Queue("kafka")
	recs := benchRecords(benchBatch)
	if err := buf.Append(recs, nil); err != nil { // one batch ahead
		b.Fatal(err)
	}
	pos := make([]Pos, 0, benchBatch)
	b.SetBytes(benchBatch * benchRecordSize)
	b.ResetTimer()
	m := startMeter(buf)
	for i := 0; i < b.N; i++ {
		if err := buf.Append(recs, nil); err != nil {
			b.Fatal(err)
		}
		rs, err := q.Read(Start(), benchBatch)
		if err != nil {
			b.Fatal(err)
		}
		pos = pos[:0]
		for _, r := range rs {
			pos = append(pos, r.Pos)
		}
		if err := q.Ack(pos...); err != nil {
			b.Fatal(err)
		}
	}
	if err := buf.Flush(); err != nil {
		b.Fatal(err)
	}
	m.report(b, b.N*benchBatch)
	if got := q.Stats().Records; got != benchBatch {
		b.Fatalf("%d records left, want %d", got, benchBatch)
	}
}
