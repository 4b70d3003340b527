package buffer

import (
	"bytes"
	"fmt"
	"testing"
	"time"
)

// TestMergeSmallFrames merges runs of small frames and checks that every
// record keeps its data, order and append time, that positions handed out
// before the merge still work, that acknowledgements are kept, and that a
// reopen finds the same state.
func TestMergeSmallFrames(t *testing.T) {
	cases := []struct {
		name       string
		appends    int
		recSize    int
		wantFrames int // after the merge
	}{
		// 50 frames: 1 acked away, 2 served, 46 merged into one, the tail.
		{"tiny records", 50, 10, 4},
		// 40 frames of ~10 KB: 1 acked away, 2 served, 36 merged into frames of at most
		// 64 KiB (6 frames each), the tail.
		{"frame limit", 40, 1000, 2 + 6 + 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			noCoalesce(t)
			o := testOptions("kafka")
			clock := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
			o.Now = func() time.Time { return clock }
			b := openT(t, testPath(t), o)
			type rec struct {
				data     string
				appended time.Time
			}
			var all []rec
			for i := range c.appends {
				var batch [][]byte
				for j := range 10 {
					d := fmt.Sprintf("r-%03d-%d-", i, j)
					d += string(bytes.Repeat([]byte("x"), max(0, c.recSize-len(d))))
					batch = append(batch, []byte(d))
					all = append(all, rec{d, clock})
				}
				mustAppend(t, b, batch, nil)
				clock = clock.Add(time.Second)
			}
			q := b.Queue("kafka")
			// Serve frames 1..3 (all of 1 and 2, half of 3), ack frame 1
			// and two records of frame 2.
			first, err := q.Read(Start(), 25)
			if err != nil {
				t.Fatal(err)
			}
			acked := append(positions(first[:10]), first[10].Pos, first[12].Pos)
			mustAck(t, q, acked...)
			held := first[len(first)-1].Pos
			before := q.Stats()

			b.wmu.Lock()
			err = b.mergeLocked()
			b.wmu.Unlock()
			if err != nil {
				t.Fatal(err)
			}
			after := q.Stats()
			if after.Frames != c.wantFrames {
				t.Fatalf("%d frames after the merge, want %d (before %d)", after.Frames, c.wantFrames, before.Frames)
			}
			if after.Records != before.Records || after.Bytes >= before.Bytes {
				t.Fatalf("stats before %+v, after %+v", before, after)
			}
			check := func(what string, got []Record, want []rec) {
				t.Helper()
				if len(got) != len(want) {
					t.Fatalf("%s: %d records, want %d", what, len(got), len(want))
				}
				for i := range got {
					if string(got[i].Data) != want[i].data || !got[i].Appended.Equal(want[i].appended) {
						t.Fatalf("%s: record %d is %.12q appended %s, want %.12q appended %s", what, i,
							got[i].Data, got[i].Appended, want[i].data, want[i].appended)
					}
					if i > 0 && !got[i-1].Pos.Less(got[i].Pos) {
						t.Fatalf("%s: positions out of order: %s then %s", what, got[i-1].Pos, got[i].Pos)
					}
				}
			}
			// A reader holding a position from before the merge goes on.
			rest, err := q.Read(held, len(all))
			if err != nil {
				t.Fatal(err)
			}
			check("after the held position", rest, all[25:])
			var unacked []rec
			for i, r := range all {
				if i < 10 || i == 10 || i == 12 {
					continue
				}
				unacked = append(unacked, r)
			}
			check("from the head", readAll(t, q, 7), unacked)

			b = reopen(t, b, o)
			q = b.Queue("kafka")
			if st := q.Stats(); st.Records != after.Records || st.Bytes != after.Bytes || st.Frames != after.Frames {
				t.Fatalf("after reopen %+v, before %+v", st, after)
			}
			check("after reopen", readAll(t, q, 1000), unacked)
		})
	}
}

// TestMergeSkipsCorruptFrame leaves a run with a damaged frame alone, so
// that Read finds the frame and counts it.
func TestMergeSkipsCorruptFrame(t *testing.T) {
	noCoalesce(t)
	o := testOptions("kafka")
	path := testPath(t)
	b, err := Open(path, o)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		mustAppend(t, b, payloads(fmt.Sprint("f", i), 3), nil)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	corruptFrame(t, path, "kafka", 2, func(v []byte) []byte { v[frameHeaderLen+1] ^= 0x40; return v })
	b = openT(t, path, o) // frames not verified since open

	b.wmu.Lock()
	err = b.mergeLocked()
	b.wmu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	q := b.Queue("kafka")
	if got := q.Stats().Frames; got != 5 {
		t.Fatalf("%d frames after merging a run with a corrupt frame, want 5 untouched", got)
	}
	got := readAll(t, q, 100)
	if len(got) != 12 || q.Stats().CorruptFrames != 1 {
		t.Fatalf("read %d records, %d corrupt frames; want 12 and 1", len(got), q.Stats().CorruptFrames)
	}
}

// TestMergeInBackground lets the background flush merge small frames while
// a writer appends one record per Append and a reader reads from the head
// and acknowledges: the reader gets every record once, in order, and the
// frames end up merged.
func TestMergeInBackground(t *testing.T) {
	noCoalesce(t)
	o := testOptions("kafka")
	o.FlushInterval = 5 * time.Millisecond
	b := openT(t, testPath(t), o)
	q := b.Queue("kafka")
	const n = 3000
	done := make(chan error, 1)
	go func() {
		for i := range n {
			if err := b.Append([][]byte{fmt.Appendf(nil, "%05d", i)}, nil); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	// Read a third while the writer runs, in small steps.
	next := 0
	after := Start()
	for next < n/3 {
		rs, err := q.Read(after, 7)
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) == 0 {
			<-q.Notify()
			continue
		}
		for _, r := range rs {
			if want := fmt.Sprintf("%05d", next); string(r.Data) != want {
				t.Fatalf("read %q, want %q", r.Data, want)
			}
			next++
		}
		mustAck(t, q, positions(rs)...)
		after = rs[len(rs)-1].Pos
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for q.Stats().Frames > 10 {
		if time.Now().After(deadline) {
			t.Fatalf("%d frames left unmerged", q.Stats().Frames)
		}
		time.Sleep(time.Millisecond)
	}
	for _, r := range readAll(t, q, 100) {
		if r.Pos.Less(after) || r.Pos == after {
			continue
		}
		if want := fmt.Sprintf("%05d", next); string(r.Data) != want {
			t.Fatalf("read %q, want %q", r.Data, want)
		}
		next++
	}
	if next != n {
		t.Fatalf("read %d records, want %d", next, n)
	}
}
