package buffer

import (
	"bytes"
	"fmt"
	"testing"
	"time"
)

func TestSmallAppendsCoalesce(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	o := testOptions("kafka", "mqtt")
	o.Now = clock.Now
	b := openT(t, testPath(t), o)
	k, m := b.Queue("kafka"), b.Queue("mqtt")
	for i := 0; i < 20; i++ {
		mustAppend(t, b, [][]byte{fmt.Appendf(nil, "r%d", i)}, nil)
		clock.Add(10 * time.Millisecond)
	}
	if f := k.Stats().Frames; f != 1 {
		t.Fatalf("%d frames for 20 one-record appends within 200ms, want 1", f)
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	checkTimes := func(got []Record) {
		t.Helper()
		for j, r := range got {
			i := j + int(got[0].Pos.Index)
			if r.Pos != (Pos{Frame: got[0].Pos.Frame, Index: uint32(i)}) || string(r.Data) != fmt.Sprintf("r%d", i) {
				t.Fatalf("record %d = %v %q", i, r.Pos, r.Data)
			}
			if want := start.Add(time.Duration(i) * 10 * time.Millisecond); !r.Appended.Equal(want) {
				t.Fatalf("record %d appended at %v, want its own Append's time %v", i, r.Appended, want)
			}
		}
	}
	got := readAll(t, k, 7)
	checkTimes(got)
	checkTimes(readAll(t, m, 3))

	// Reading and acknowledging the tail while it grows loses nothing.
	mustAck(t, k, positions(got)...)
	mustAppend(t, b, [][]byte{[]byte("after-ack")}, nil)
	wantData(t, "kafka after full ack", readAll(t, k, 10), []string{"after-ack"})
	mustAck(t, m, positions(readAll(t, m, 100))[:5]...) // partly acknowledged: no more growth
	mustAppend(t, b, [][]byte{[]byte("x")}, nil)
	if f := m.Stats().Frames; f != 2 {
		t.Fatalf("mqtt: %d frames, want a new frame after a partial ack", f)
	}

	// An old tail, a large append and a full tail start new frames.
	clock.Add(2 * coalesceMaxAge)
	mustAppend(t, b, [][]byte{[]byte("late")}, nil)
	big := bytes.Repeat([]byte("b"), coalesceMaxPayload)
	mustAppend(t, b, [][]byte{big}, nil)
	mustAppend(t, b, [][]byte{[]byte("small")}, nil)
	want := []string{"after-ack", "x", "late", string(big), "small"}
	got = readAll(t, k, 100)
	wantData(t, "kafka", got, want)
	frames := map[uint64]bool{}
	for _, r := range got {
		frames[r.Pos.Frame] = true
	}
	if len(frames) != 4 {
		t.Fatalf("%d frames for %v, want 4", len(frames), positions(got))
	}

	before := m.Stats()
	b = reopen(t, b, o)
	checkTimes(readAll(t, b.Queue("mqtt"), 100)[:15])
	if after := b.Queue("mqtt").Stats(); after.Bytes != before.Bytes || after.Records != before.Records {
		t.Fatalf("mqtt stats before reopen %+v, after %+v", before, after)
	}
	wantData(t, "kafka after reopen", readAll(t, b.Queue("kafka"), 100), want)
}
