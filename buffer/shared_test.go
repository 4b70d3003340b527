package buffer

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// sampleRecords returns n records of about 200 bytes as a gateway commits
// them: runs of one device and read time, a tag, a sequence number and a
// value apart.
func sampleRecords(first, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		k := first + i
		out[i] = fmt.Appendf(nil, `{"schema":2,"gateway":"gw-01","epoch":"0f1e2d3c4b5a6978","device":"press-%03d","tag":"r%d","seq":%d,"type":"uint","value":%d,"quality":"good","read_time":"2026-11-26T08:00:%02d.123456789Z"}`,
			k/100, k%100, k/100+1, (k*7919)%65536, (k/100)%60)
	}
	return out
}

// frameVersions returns the version byte of every frame of queue q in the
// file, in id order.
func frameVersions(t *testing.T, b *Buffer, q string) []byte {
	t.Helper()
	var out []byte
	err := b.db.View(func(tx *bolt.Tx) error {
		bkt := tx.Bucket([]byte(queuePrefix + q))
		return bkt.ForEachBucket(func(k []byte) error {
			if v := bkt.Bucket(k).Get(dataKey); len(v) > 0 {
				out = append(out, v[0])
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSharedFrames appends commits of records that share most of their
// bytes with the record before (in shared frames, a third of the size or
// less) and of records that do not (raw frames), and reads them back every
// way a reader does: all at once, in small reads through a recycled
// arena, after acknowledging records here and there, and after reopening
// the file.
func TestSharedFrames(t *testing.T) {
	b := openT(t, testPath(t), testOptions("kafka"))
	q := b.Queue("kafka")
	var want [][]byte
	rng := rand.New(rand.NewPCG(3, 4))
	commits := [][][]byte{sampleRecords(0, 3000), payloads("raw", 50), sampleRecords(3000, 1500)}
	noise := make([][]byte, 400) // records that share nothing
	for i := range noise {
		noise[i] = make([]byte, 100+rng.IntN(100))
		for j := range noise[i] {
			noise[i][j] = byte(rng.Uint32())
		}
	}
	commits = append(commits, noise, sampleRecords(4500, 2000))
	for _, c := range commits {
		mustAppend(t, b, c, nil)
		want = append(want, c...)
	}
	vers := frameVersions(t, b, "kafka")
	if !bytes.Contains(vers, []byte{frameVersion5}) || !bytes.Contains(vers, []byte{frameVersion3}) {
		t.Fatalf("frame versions %v: want shared (5) and raw (3) frames", vers)
	}
	st := q.Stats()
	var raw int64
	for _, r := range want {
		raw += int64(recordLen(len(r)))
	}
	if st.Bytes*2 > raw {
		t.Errorf("%d bytes of frames for %d bytes of records: sharing saved less than half", st.Bytes, raw)
	}

	check := func(t *testing.T, got []Record, acked map[int]bool) {
		t.Helper()
		var exp [][]byte
		for i, r := range want {
			if !acked[i] {
				exp = append(exp, r)
			}
		}
		if len(got) != len(exp) {
			t.Fatalf("read %d records, want %d", len(got), len(exp))
		}
		for i := range got {
			if !bytes.Equal(got[i].Data, exp[i]) {
				t.Fatalf("record %d at %v = %q, want %q", i, got[i].Pos, got[i].Data, exp[i])
			}
			if i > 0 && !got[i-1].Pos.Less(got[i].Pos) {
				t.Fatalf("record %d at %v after %v", i, got[i].Pos, got[i-1].Pos)
			}
		}
	}
	// readSmall reads in reads of n through one recycled record slice
	// and arena, keeping copies.
	readSmall := func(q *Queue, n int) []Record {
		var out, rs []Record
		var arena []byte
		after := Start()
		for {
			var err error
			rs, arena, err = q.ReadAppend(after, n, rs[:0], arena[:0])
			if err != nil {
				t.Fatal(err)
			}
			if len(rs) == 0 {
				return out
			}
			for _, r := range rs {
				r.Data = bytes.Clone(r.Data)
				out = append(out, r)
			}
			after = rs[len(rs)-1].Pos
		}
	}
	all := readAll(t, q, len(want)+1)
	check(t, all, nil)
	for _, n := range []int{1, 7, 333, 1000} {
		check(t, readSmall(q, n), nil)
	}
	// Acknowledge every third record and a whole run.
	acked := map[int]bool{}
	var pos []Pos
	for i, r := range all {
		if i%3 == 0 || (i > 4000 && i < 4600) {
			acked[i] = true
			pos = append(pos, r.Pos)
		}
	}
	if err := q.Ack(pos...); err != nil {
		t.Fatal(err)
	}
	check(t, readAll(t, q, 50), acked)
	check(t, readSmall(q, 11), acked)
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	b = reopen(t, b, testOptions("kafka"))
	q = b.Queue("kafka")
	check(t, readSmall(q, 97), acked)
	check(t, readAll(t, q, 4096), acked)
}

// TestSharedFramesGrowAndMerge grows a shared tail frame by small commits
// and merges small shared frames: the records read back unchanged.
func TestSharedFramesGrowAndMerge(t *testing.T) {
	oldF, oldC := maxFrameBytes, coalesceMaxPayload
	maxFrameBytes, coalesceMaxPayload = 2048, 1024
	t.Cleanup(func() { maxFrameBytes, coalesceMaxPayload = oldF, oldC })
	o := testOptions("kafka")
	b := openT(t, testPath(t), o)
	q := b.Queue("kafka")
	var want [][]byte
	next := 0
	add := func(n int) {
		recs := sampleRecords(next, n)
		next += n
		mustAppend(t, b, recs, nil)
		want = append(want, recs...)
	}
	for range 5 {
		add(150) // shared frames, the last of each commit small
		add(1)   // grows the small tail frame
		add(2)
	}
	if vers := frameVersions(t, b, "kafka"); !bytes.Contains(vers, []byte{frameVersion5Segments}) {
		t.Fatalf("frame versions %v: want a grown shared frame (6)", vers)
	}
	// Frames of a few KiB are small next to full ones: merged.
	maxFrameBytes = oldF
	before := q.Stats().Frames
	b.wmu.Lock()
	err := b.mergeLocked()
	b.wmu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if after := q.Stats().Frames; after >= before {
		t.Fatalf("%d frames after the merge, %d before", after, before)
	}
	got := readAll(t, q, 64)
	sameData(t, "read", got, want)
}

// TestSharedFrameDamage checks that flipped bytes of a shared frame are
// caught, and that the raw scan finds shared frames in a file and a
// salvage brings their records back.
func TestSharedFrameDamage(t *testing.T) {
	recs := sampleRecords(0, 3000)
	e := encoder{records: recs, appended: 5}
	e.prepare(nil)
	if !e.shared {
		t.Fatal("the sample records are not shared")
	}
	frames := e.encode(0, len(recs), 7, 1, 1)
	v := frames[0].val
	if v[0] != frameVersion5 {
		t.Fatalf("frame version %d, want %d", v[0], frameVersion5)
	}
	h, err := parseHeader(v)
	if err != nil || verifyFrame(v, h) != nil {
		t.Fatalf("fresh shared frame rejected: %v", err)
	}
	for i := 0; i < len(v); i += 1 + i/frameHeaderLen*7 { // every header byte, then some
		bad := slices.Clone(v)
		bad[i] ^= 0x10
		if h, err := parseHeader(bad); err == nil && verifyFrame(bad, h) == nil {
			t.Fatalf("flipped byte %d of %d not detected", i, len(v))
		}
	}
	// A frame whose checksums match but whose records share more than the
	// record before holds is refused.
	forged := appendHeader(nil, frameVersion5, 2, 5, testLoc, frameOverhead+4+5)
	forged = appendShared(forged, []byte("ab"), 0, 0)
	forged = append(forged, 4, 9, 0, 'x', 'y') // shares 9 bytes of 2
	forged = appendTrailer(forged, 0)
	if h, err := parseHeader(forged); err != nil {
		t.Fatal(err)
	} else if err := verifyFrame(forged, h); err == nil {
		t.Fatal("a shared record sharing more than the record before was accepted")
	}

	// Salvage: a file whose bbolt pages are unreadable gives back the
	// records of its shared frames.
	path := testPath(t)
	b := openT(t, path, testOptions("kafka"))
	mustAppend(t, b, recs, nil)
	if vers := frameVersions(t, b, "kafka"); !bytes.Contains(vers, []byte{frameVersion5}) {
		t.Fatalf("frame versions %v: want shared frames", vers)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	copy(data, make([]byte, 8192)) // both meta pages
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	o := testOptions("kafka")
	o.Isolate = testIsolate
	b2 := openT(t, path, o)
	if r := b2.Recovery(); r.Quarantined == "" {
		t.Fatalf("damaged file not quarantined: %+v", r)
	}
	got := readAll(t, b2.Queue("kafka"), 1000)
	sameData(t, "salvaged", got, recs)
}

// sameData fails t unless got holds exactly the records want, in order;
// what says how they were got.
func sameData(t *testing.T, what string, got []Record, want [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s %d records, want %d", what, len(got), len(want))
	}
	for i := range got {
		if !bytes.Equal(got[i].Data, want[i]) {
			t.Fatalf("%s record %d = %q, want %q", what, i, got[i].Data, want[i])
		}
	}
}

// TestSharedLen compares sharedLen with a byte by byte count on pairs of
// records that differ anywhere.
func TestSharedLen(t *testing.T) {
	naive := func(prev, r []byte) (p, s int) {
		for p < len(prev) && p < len(r) && prev[p] == r[p] {
			p++
		}
		for s < len(prev)-p && s < len(r)-p && prev[len(prev)-1-s] == r[len(r)-1-s] {
			s++
		}
		return p, s
	}
	rng := rand.New(rand.NewPCG(5, 6))
	base := sampleRecords(0, 1)[0]
	for range 20000 {
		prev := slices.Clone(base[:rng.IntN(len(base)+1)])
		r := slices.Clone(base[:rng.IntN(len(base)+1)])
		for k := rng.IntN(4); k > 0 && len(r) > 0; k-- {
			r[rng.IntN(len(r))] ^= byte(1 + rng.IntN(255))
		}
		if rng.IntN(3) == 0 {
			r = append(r, base[:rng.IntN(len(base))]...)
		}
		wp, ws := naive(prev, r)
		if p, s := sharedLen(prev, r); p != wp || s != ws {
			t.Fatalf("sharedLen(%q, %q) = %d, %d, want %d, %d", prev, r, p, s, wp, ws)
		}
		hp, hs := rng.IntN(len(base)+1), rng.IntN(len(base)+1)
		if p, s := sharedLenFrom(prev, r, hp, hs); p != wp || s != ws {
			t.Fatalf("sharedLenFrom(%q, %q, %d, %d) = %d, %d, want %d, %d", prev, r, hp, hs, p, s, wp, ws)
		}
	}
}

// BenchmarkSharedLen times sharedLenFrom on consecutive records of a
// device's poll, as prepare calls it (ns/op per record).
func BenchmarkSharedLen(b *testing.B) {
	recs := sampleRecords(0, 1000)
	i, p, s := 1, 0, 0
	for b.Loop() {
		p, s = sharedLenFrom(recs[i-1], recs[i], p, s)
		if i++; i == len(recs) {
			i = 1
		}
	}
}
