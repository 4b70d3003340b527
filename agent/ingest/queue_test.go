package ingest

import (
	"testing"

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
		{"gathered across batches", []int{2, 2, 2}, 0, []int{5, 5}, [][]int64{{0, 1, 2, 3, 4}, {5}}},
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
					for _, n := range it.dropped {
						markers += int(n)
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
	if m := q.items[1].dropped; m[Series{"d", "b"}] != 3 || m[Series{"d", "a"}] != 1 {
		t.Fatalf("marker %v", m)
	}
	// The byte bound: 3 samples' worth keeps the last batch only.
	if got := q.dropOldest(100, sampleSize); got != 2 {
		t.Fatalf("dropped %d for the byte bound, want the 2 of the first batch", got)
	}
	items := q.popBatches(10)
	if len(items) != 2 || items[0].dropped[Series{"d", "a"}] != 3 || items[0].dropped[Series{"d", "b"}] != 3 || len(items[1].samples) != 1 {
		t.Fatalf("after the byte bound: %+v", items)
	}
}
