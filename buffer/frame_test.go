package buffer

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"testing"
)

// FuzzFrameDecode feeds arbitrary bytes to the frame checks: they must
// never panic, and a frame they accept must decode to exactly its count of
// records within its bounds.
func FuzzFrameDecode(f *testing.F) {
	f.Add(appendFrame(nil, [][]byte{[]byte("a"), {}, []byte("ccc")}, 42, testLoc))
	f.Add(appendFrame(nil, nil, 0, testLoc))
	grown, _ := growFrame(appendFrame(nil, [][]byte{[]byte("a")}, 1, testLoc), [][]byte{[]byte("bb"), {}}, 2)
	f.Add(grown)
	f.Add([]byte{frameVersion, 0, 0, 0, 9})
	f.Add(legacyFrame([][]byte{[]byte("a"), {}, []byte("ccc")}, 42))
	f.Add(bytes.Repeat([]byte{0xff}, 64))
	f.Fuzz(func(t *testing.T, v []byte) {
		h, err := parseHeader(v)
		if err != nil {
			return
		}
		if verifyFrame(v, h) != nil {
			return
		}
		recEnd, _, err := splitFrame(v)
		if err != nil {
			t.Fatalf("verified frame does not split: %v", err)
		}
		off := h.hdrLen
		for i := uint32(0); i < h.count; i++ {
			s, e := nextRecord(v, off)
			if s < off || e > recEnd || s > e {
				t.Fatalf("record %d at [%d:%d] outside the frame of %d bytes", i, s, e, len(v))
			}
			off = e
		}
	})
}

// FuzzFrameRoundTrip encodes records split from arbitrary bytes and checks
// that they decode unchanged, and that any single flipped byte is caught.
func FuzzFrameRoundTrip(f *testing.F) {
	f.Add([]byte("one,two,,three"), 3)
	f.Add([]byte(""), 0)
	f.Fuzz(func(t *testing.T, data []byte, flip int) {
		recs := bytes.Split(data, []byte(","))
		v := appendFrame(nil, recs, 7, testLoc)
		h, err := parseHeader(v)
		if err != nil || verifyFrame(v, h) != nil || h.count != uint32(len(recs)) || h.appended != 7 {
			t.Fatalf("fresh frame rejected: %v", err)
		}
		off := h.hdrLen
		for i, r := range recs {
			s, e := nextRecord(v, off)
			if !bytes.Equal(v[s:e], r) {
				t.Fatalf("record %d = %q, want %q", i, v[s:e], r)
			}
			off = e
		}
		// Grow the frame by a second and a third batch, one of them at
		// the time of the batch before: each record keeps its time.
		more := bytes.Split(append([]byte("x,"), data...), []byte(","))
		if g, err := growFrame(v, more, 9); err != nil {
			t.Fatal(err)
		} else if v, err = growFrame(g, recs, 9); err != nil {
			t.Fatal(err)
		}
		all := append(append(append([][]byte{}, recs...), more...), recs...)
		h, err = parseHeader(v)
		if err != nil || verifyFrame(v, h) != nil || h.count != uint32(len(all)) || h.appended != 7 {
			t.Fatalf("grown frame rejected: %v", err)
		}
		_, table, _ := splitFrame(v)
		segs := segments{table: table, cur: h.appended}
		off = h.hdrLen
		for i, r := range all {
			s, e := nextRecord(v, off)
			if !bytes.Equal(v[s:e], r) {
				t.Fatalf("grown record %d = %q, want %q", i, v[s:e], r)
			}
			want := int64(7)
			if i >= len(recs) {
				want = 9
			}
			if got := segs.at(uint32(i)); got != want {
				t.Fatalf("grown record %d appended at %d, want %d", i, got, want)
			}
			off = e
		}
		if len(v) > 0 {
			i := (flip%len(v) + len(v)) % len(v)
			bad := bytes.Clone(v)
			bad[i] ^= 0x01
			h, err := parseHeader(bad)
			if err == nil && verifyFrame(bad, h) == nil {
				t.Fatalf("flipped byte %d of %d not detected", i, len(v))
			}
		}
	})
}

func TestRangeSizeMatchesEncoding(t *testing.T) {
	old := maxFrameBytes
	maxFrameBytes = 100
	t.Cleanup(func() { maxFrameBytes = old })
	recs := [][]byte{make([]byte, 10), make([]byte, 90), {}, make([]byte, 300), make([]byte, 40), make([]byte, 50)}
	for lo := 0; lo <= len(recs); lo++ {
		for hi := lo; hi <= len(recs); hi++ {
			enc := encoder{records: recs}
			var got int64
			for _, c := range enc.encode(lo, hi, 0, 1, 1) {
				got += int64(len(c.val) + keyLen)
			}
			if want := rangeSize(recs, lo, hi); got != want {
				t.Fatalf("[%d:%d]: encoded %d bytes, rangeSize %d", lo, hi, got, want)
			}
			for avail := int64(0); avail < got+10; avail += 7 {
				n := prefixFit(recs, lo, hi, avail)
				if rangeSize(recs, lo, n) > avail || (n < hi && rangeSize(recs, lo, n+1) <= avail) {
					t.Fatalf("prefixFit([%d:%d], %d) = %d", lo, hi, avail, n)
				}
				s := suffixStart(recs, lo, hi, avail)
				if rangeSize(recs, s, hi) > avail || (s > lo && rangeSize(recs, s-1, hi) <= avail) {
					t.Fatalf("suffixStart([%d:%d], %d) = %d", lo, hi, avail, s)
				}
			}
		}
	}
}

// testLoc is the location of frames made by tests.
var testLoc = frameLoc{id: 1, queue: 7, head: 1}

// legacyFrame encodes records as a version 1 frame, as earlier builds did.
func legacyFrame(records [][]byte, appended int64) []byte {
	var hdr [legacyHeaderLen]byte
	hdr[0] = frameVersion
	binary.BigEndian.PutUint32(hdr[1:5], uint32(len(records)))
	binary.BigEndian.PutUint64(hdr[5:13], uint64(appended))
	binary.BigEndian.PutUint32(hdr[13:17], crc32.Checksum(hdr[:13], castagnoli))
	v := append([]byte(nil), hdr[:]...)
	for _, r := range records {
		v = binary.AppendUvarint(v, uint64(len(r)))
		v = append(v, r...)
	}
	return binary.BigEndian.AppendUint32(v, crc32.Checksum(v, castagnoli))
}

// TestLegacyFrames reads and grows a version 1 frame of an earlier build.
func TestLegacyFrames(t *testing.T) {
	v := legacyFrame([][]byte{[]byte("a"), []byte("bb")}, 5)
	h, err := parseHeader(v)
	if err != nil || h.hasLoc || h.hdrLen != legacyHeaderLen || verifyFrame(v, h) != nil {
		t.Fatalf("legacy frame: %+v, %v", h, err)
	}
	g, err := growFrame(v, [][]byte{[]byte("c")}, 6)
	if err != nil {
		t.Fatal(err)
	}
	h, err = parseHeader(g)
	if err != nil || h.count != 3 || verifyFrame(g, h) != nil || g[0] != frameVersionSegments {
		t.Fatalf("grown legacy frame: %+v, %v", h, err)
	}
	if l := legacyLength(append(g, "trailing"...), h); l != len(g) {
		t.Fatalf("legacyLength of a grown frame = %d, want %d", l, len(g))
	}
}
