package buffer

import (
	"fmt"
	"testing"
)

// TestReadAppend reads a queue of several frames through ReadAppend with
// a recycled record slice and arena, as the send loop does, and checks
// that it returns what Read returns, also when the arena is too small for
// a read spanning frames (the records of the first frame stay where they
// were put), and that the records it was handed are kept.
func TestReadAppend(t *testing.T) {
	noCoalesce(t)
	cases := []struct {
		name  string
		batch int
		// arenaCap is the capacity of the first arena handed over.
		arenaCap int
	}{
		{"one record at a time", 1, 0},
		{"within a frame", 7, 16},
		{"across frames", 25, 1},
		{"whole queue", 1000, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := openT(t, testPath(t), testOptions("kafka"))
			for f := 0; f < 6; f++ {
				mustAppend(t, b, payloads(fmt.Sprintf("frame%d", f), 10), nil)
			}
			q := b.Queue("kafka")
			want := readAll(t, q, c.batch)
			var recs []Record
			arena := make([]byte, 0, c.arenaCap)
			var got []Record
			after := Start()
			for {
				var err error
				// Two records already in the slice stay as they are.
				recs, arena, err = q.ReadAppend(after, c.batch, append(recs[:0], Record{}, Record{}), arena[:0])
				if err != nil {
					t.Fatalf("ReadAppend(%v, %d): %v", after, c.batch, err)
				}
				if len(recs) == 2 {
					break
				}
				if len(recs)-2 > c.batch {
					t.Fatalf("ReadAppend returned %d records, asked for %d", len(recs)-2, c.batch)
				}
				for _, r := range recs[2:] {
					// A copy: the next read reuses the arena.
					got = append(got, Record{Pos: r.Pos, Data: append([]byte(nil), r.Data...), Appended: r.Appended})
				}
				if recs[0].Data != nil || recs[1].Data != nil {
					t.Fatal("ReadAppend changed the records it was handed")
				}
				after = recs[len(recs)-1].Pos
			}
			wantData(t, "ReadAppend", got, datas(want))
			for i := range got {
				if got[i].Pos != want[i].Pos || !got[i].Appended.Equal(want[i].Appended) {
					t.Fatalf("record %d: %v at %v, Read gave %v at %v", i, got[i].Pos, got[i].Appended, want[i].Pos, want[i].Appended)
				}
			}
		})
	}
}
