package ingest

import (
	"fmt"
	"testing"
)

// TestSeriesIndexClashes runs the index with a hash that puts series of one
// device on one value, so that every operation meets a clash, against a
// plain map of the same series.
func TestSeriesIndexClashes(t *testing.T) {
	cases := []struct {
		name string
		hash func(Series) uint64
	}{
		{"one hash for a device's series", func(k Series) uint64 { return uint64(len(k.Device)) }},
		{"one hash for every series", func(Series) uint64 { return 7 }},
		{"real hash", newSeriesIndex().hash},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			x := seriesIndex{hash: c.hash, byHash: map[uint64]uint32{}}
			var names []Series
			want := map[Series]uint32{}
			add := func(k Series) {
				h := uint32(len(names))
				names = append(names, k)
				x.put(k, h, names)
				want[k] = h
			}
			del := func(k Series) {
				x.del(k, names)
				names[want[k]] = Series{}
				delete(want, k)
			}
			check := func(step string) {
				t.Helper()
				if x.len() != len(want) {
					t.Fatalf("%s: len %d, want %d", step, x.len(), len(want))
				}
				for k, h := range want {
					if got, ok := x.get(k, names); !ok || got != h {
						t.Fatalf("%s: get(%v) = %d, %v; want %d", step, k, got, ok, h)
					}
				}
				if _, ok := x.get(Series{"absent", "tag"}, names); ok {
					t.Fatalf("%s: a series never added is found", step)
				}
			}
			for d := range 3 {
				for tag := range 4 {
					add(Series{fmt.Sprintf("dev%d%s", d, string(make([]byte, d))), fmt.Sprintf("t%d", tag)})
				}
			}
			check("added")
			// Delete the series that holds a hash's slot, then one in clash.
			del(names[0])
			check("first deleted")
			del(names[5])
			check("a later one deleted")
			// Its handle taken by a new series.
			k := Series{"dev9", "new"}
			names[5] = k
			x.put(k, 5, names)
			want[k] = 5
			check("handle reused")
			for k := range want {
				del(k)
			}
			check("all deleted")
		})
	}
}
