package ingest

import (
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/iot-producer/iot-producer/buffer"
	"github.com/iot-producer/iot-producer/drivers"
)

func TestSampleQueueKeepsOrderAcrossBatches(t *testing.T) {
	mk := func(from, n int) []drivers.Sample {
		out := make([]drivers.Sample, n)
		for i := range out {
			out[i].Value = drivers.Int(int64(from + i))
		}
		return out
	}
	cases := []struct {
		name    string
		batches []int // sizes pushed
		drop    int
		pops    []int // max per pop
		want    [][]int64
	}{
		{"one batch taken whole", []int{5}, 0, []int{10}, [][]int64{{0, 1, 2, 3, 4}}},
		{"split head batch", []int{5}, 0, []int{2, 2, 2}, [][]int64{{0, 1}, {2, 3}, {4}}},
		{"gathered across whole batches", []int{2, 2, 2}, 0, []int{5, 5}, [][]int64{{0, 1, 2, 3}, {4, 5}}},
		{"drop inside the head batch", []int{4, 4}, 3, []int{10}, [][]int64{{3, 4, 5, 6, 7}}},
		{"drop whole batches", []int{2, 2, 3}, 5, []int{10}, [][]int64{{5, 6}}},
		{"empty", nil, 0, []int{3}, [][]int64{nil}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var q sampleQueue
			next := 0
			for _, n := range tc.batches {
				b := mk(next, n)
				q.push(b, samplesBytes(b))
				next += n
			}
			if got := q.dropOldest(next-tc.drop, 1<<40); got != tc.drop {
				t.Fatalf("dropped %d, want %d", got, tc.drop)
			}
			if q.n != next-tc.drop || q.bytes != int64(q.n)*sampleSize {
				t.Fatalf("n = %d, bytes %d after drop, want %d samples", q.n, q.bytes, next-tc.drop)
			}
			markers := 0
			for i, max := range tc.pops {
				var vals []int64
				for _, it := range q.popBatches(max) {
					if it.dropped != nil {
						markers += int(it.dropped.total())
					}
					for _, s := range it.samples {
						vals = append(vals, s.Value.I)
					}
				}
				if len(vals) != len(tc.want[i]) {
					t.Fatalf("pop %d = %v, want %v", i, vals, tc.want[i])
				}
				for j := range vals {
					if vals[j] != tc.want[i][j] {
						t.Fatalf("pop %d = %v, want %v", i, vals, tc.want[i])
					}
				}
			}
			if markers != tc.drop {
				t.Fatalf("drop markers count %d samples, want %d", markers, tc.drop)
			}
		})
	}
}

// TestDropMarkersKeepTheirPlace checks that dropped samples keep their
// place among the others: dropNewest markers after what is queued,
// consecutive markers merged, a byte bound dropping whole batches.
func TestDropMarkersKeepTheirPlace(t *testing.T) {
	s := func(tag string, n int) []drivers.Sample {
		out := make([]drivers.Sample, n)
		for i := range out {
			out[i] = drivers.Sample{Device: "d", Tag: tag}
		}
		return out
	}
	var q sampleQueue
	q.push(s("a", 2), samplesBytes(s("a", 2)))
	q.pushDropped(s("b", 3))
	q.pushDropped(s("a", 1))
	q.push(s("c", 1), samplesBytes(s("c", 1)))
	if len(q.items) != 3 || q.n != 3 {
		t.Fatalf("items %d, n %d: want a batch, one merged marker, a batch", len(q.items), q.n)
	}
	if m := q.items[1].dropped.counts(); m[Series{"d", "b"}] != 3 || m[Series{"d", "a"}] != 1 {
		t.Fatalf("marker %v", m)
	}
	// The byte bound: 3 samples' worth keeps the last batch only.
	if got := q.dropOldest(100, sampleSize); got != 2 {
		t.Fatalf("dropped %d for the byte bound, want the 2 of the first batch", got)
	}
	items := q.popBatches(10)
	if len(items) != 2 || items[0].dropped.counts()[Series{"d", "a"}] != 3 || items[0].dropped.counts()[Series{"d", "b"}] != 3 || len(items[1].samples) != 1 {
		t.Fatalf("after the byte bound: %+v", items)
	}
}

// counts returns the dropped samples of the marker by series.
func (d *dropMarker) counts() map[Series]uint64 {
	out := map[Series]uint64{}
	d.each(func(k Series, n uint64) { out[k] += n })
	return out
}

// TestDroppedBatchesCountByShape drops the same driver's batch (the same
// name strings) over and over, with each policy: the marker keeps one
// shape and a count, not an entry per sample, and a batch of other names
// between them is counted by series, in its place.
func TestDroppedBatchesCountByShape(t *testing.T) {
	names := []string{"t0", "t1", "t2"}
	batch := func() []drivers.Sample {
		out := drivers.NewBatch(len(names))
		for _, n := range names {
			out = append(out, drivers.Sample{Device: "dev", Tag: n})
		}
		return out
	}
	for _, newest := range []bool{false, true} {
		var q sampleQueue
		for range 1000 {
			if newest {
				q.pushDropped(batch())
			} else {
				b := batch()
				q.push(b, samplesBytes(b))
				q.dropOldest(0, 1<<40)
			}
		}
		if len(q.items) != 1 || q.items[0].dropped == nil {
			t.Fatalf("newest=%v: %d items, want one marker", newest, len(q.items))
		}
		m := q.items[0].dropped
		if len(m.shapes) != 1 || len(m.series) != 0 {
			t.Fatalf("newest=%v: marker has %d shapes and %d series, want one shape", newest, len(m.shapes), len(m.series))
		}
		got := m.counts()
		for _, n := range names {
			if got[Series{"dev", n}] != 1000 {
				t.Fatalf("newest=%v: %s dropped %d times, want 1000", newest, n, got[Series{"dev", n}])
			}
		}
		// Another batch of the same names but other strings: counted by
		// series or as a shape of its own, either way in full.
		other := []drivers.Sample{{Device: string([]byte("dev")), Tag: string([]byte("t0"))}}
		q.pushDropped(other)
		if got := q.items[len(q.items)-1].dropped.counts()[Series{"dev", "t0"}]; got != 1001 {
			t.Fatalf("newest=%v: t0 dropped %d times, want 1001", newest, got)
		}
		if items := q.popBatches(10); len(items) != 1 || q.markers != 0 {
			t.Fatalf("newest=%v: popped %d items, %d markers left", newest, len(items), q.markers)
		}
	}
}

// TestDroppedShapeAcrossPruning numbers the drops of a shape, lets its
// series be pruned (their handles freed) and drops the same shape again:
// the handles the shape kept are looked up again, and numbering resumes
// from the pruned series' last numbers.
func TestDroppedShapeAcrossPruning(t *testing.T) {
	buf, err := buffer.Open(filepath.Join(t.TempDir(), "b.db"), buffer.Options{Queues: []string{"q"}, NoSync: true, FlushInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer buf.Close()
	now := time.Now()
	in, err := New(buf, Options{GatewayID: "gw", CommitSize: 2, MaxPending: 2, DropNewest: true, SeriesIdle: time.Second,
		Logger: slog.New(slog.DiscardHandler), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	dev, tags := "d", []string{"a", "b"}
	batch := func() []drivers.Sample {
		return []drivers.Sample{{Device: dev, Tag: tags[0], ReadTime: now}, {Device: dev, Tag: tags[1], ReadTime: now}}
	}
	commit := func() {
		t.Helper()
		if err := in.commitPending(); err != nil {
			t.Fatal(err)
		}
	}
	in.Emit(batch())
	in.Emit(batch()) // dropped: pending is full
	commit()
	if got := in.LastSeq(dev, "a"); got != 2 {
		t.Fatalf("after one sample and one drop: last seq %d, want 2", got)
	}
	// Another series, committed after the idle time, prunes d/a and d/b.
	now = now.Add(10 * time.Second)
	in.Emit([]drivers.Sample{{Device: "other", Tag: "x", ReadTime: now}})
	commit()
	if in.SeriesInMemory() != 1 {
		t.Fatalf("%d series in memory, want 1 after pruning", in.SeriesInMemory())
	}
	// The other series takes a freed handle; the shape must not number it.
	in.Emit([]drivers.Sample{{Device: "other", Tag: "y", ReadTime: now}})
	commit()
	in.Emit(batch())
	in.Emit(batch()) // dropped again, the same shape
	commit()
	for _, tag := range tags {
		if got := in.LastSeq(dev, tag); got != 4 {
			t.Fatalf("d/%s: last seq %d, want 4", tag, got)
		}
	}
	for _, tag := range []string{"x", "y"} {
		if got := in.LastSeq("other", tag); got != 1 {
			t.Fatalf("other/%s: last seq %d, want 1", tag, got)
		}
	}
}
