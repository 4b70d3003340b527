package buffer

import (
	"fmt"
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

// reportRate reports records/s and MB/s over wall time d, and the CPU
// time per record since cpu0 (less sensitive to other load on the disk).
func reportRate(b *testing.B, records int, d, cpu0 time.Duration) {
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(records), "cpu-ns/record")
	b.ReportMetric(float64(records)/d.Seconds(), "records/s")
	b.ReportMetric(float64(records)*benchRecordSize/d.Seconds()/1e6, "MB/s")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkAppend measures group commits of 5,000 records of 200 bytes
// with fsync on: one op is one Append.
func BenchmarkAppend(b *testing.B) {
	for _, queues := range [][]string{{"kafka"}, {"kafka", "mqtt"}} {
		b.Run(fmt.Sprintf("queues=%d", len(queues)), func(b *testing.B) {
			o := testOptions(queues...)
			o.NoSync = false
			o.FlushInterval = 0
			buf, err := Open(b.TempDir()+"/bench.db", o)
			if err != nil {
				b.Fatal(err)
			}
			defer buf.Close()
			recs := benchRecords(benchBatch)
			b.SetBytes(benchBatch * benchRecordSize)
			b.ResetTimer()
			start, cpu0 := time.Now(), cpuTime()
			for i := 0; i < b.N; i++ {
				if err := buf.Append(recs, nil); err != nil {
					b.Fatal(err)
				}
			}
			reportRate(b, b.N*benchBatch, time.Since(start), cpu0)
		})
	}
}

// BenchmarkDrain measures reading, acknowledging and deleting (committed
// with fsync) records appended beforehand: one op is 5,000 records.
func BenchmarkDrain(b *testing.B) {
	for _, readBatch := range []int{1000, 5000} {
		b.Run(fmt.Sprintf("read=%d", readBatch), func(b *testing.B) {
			o := testOptions("kafka")
			o.NoSync = false
			o.FlushInterval = 0
			buf, err := Open(b.TempDir()+"/bench.db", o)
			if err != nil {
				b.Fatal(err)
			}
			defer buf.Close()
			recs := benchRecords(benchBatch)
			for i := 0; i < b.N; i++ {
				if err := buf.Append(recs, nil); err != nil {
					b.Fatal(err)
				}
			}
			q := buf.Queue("kafka")
			b.SetBytes(benchBatch * benchRecordSize)
			b.ResetTimer()
			start, cpu0 := time.Now(), cpuTime()
			after, n := Start(), 0
			pos := make([]Pos, 0, readBatch)
			for n < b.N*benchBatch {
				rs, err := q.Read(after, readBatch)
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
			reportRate(b, n, time.Since(start), cpu0)
			if s := q.Stats(); s.Records != 0 {
				b.Fatalf("%d records left", s.Records)
			}
		})
	}
}
