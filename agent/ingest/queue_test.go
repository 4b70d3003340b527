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
				q.push(mk(next, n))
				next += n
			}
			q.dropOldest(tc.drop)
			if q.n != next-tc.drop {
				t.Fatalf("n = %d after drop, want %d", q.n, next-tc.drop)
			}
			for i, max := range tc.pops {
				var vals []int64
				for _, b := range q.popBatches(max) {
					for _, s := range b {
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
		})
	}
}
