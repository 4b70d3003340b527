package buffer

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/bits"
)

// Frames of versions 5 and 6 hold their records in shared form: each
// record is stored as what it does not share with the record before it in
// the frame. Consecutive records of a gateway are much alike (the same
// device, gateway and read time, the same keys): the ingest stage's
// records of 100 registers a device take 43 bytes each instead of 227, and
// every byte saved is a byte that bbolt does not copy, write and sync, and
// the garbage collector does not see. The records stay opaque: the
// sharing looks at bytes only.
//
// A shared record is framed like a raw one (a uvarint length, then that
// many bytes), and those bytes are
//
//	uvarint p   bytes shared with the start of the record before
//	uvarint s   bytes shared with the end of the record before
//	...         the bytes in between
//
// so that the record is prev[:p] + the bytes in between + prev[len(prev)-s:],
// with p+s at most the length of the record before (0 for the first record
// of a frame). verifyFrame checks that every record can be rebuilt so.
//
// A commit's frames are shared when that saves at least a quarter of their
// size and the records average at least sharedMinRecord bytes (sharing
// short records saves little and costs two bytes of lengths).
const sharedMinRecord = 48

// isShared reports whether a frame of version ver holds shared records.
func isShared(ver byte) bool { return ver == frameVersion5 || ver == frameVersion5Segments }

// sharedLen returns how many bytes r shares with the start (p) and with
// the end (s) of prev, the two not overlapping in either.
func sharedLen(prev, r []byte) (p, s int) { return sharedLenFrom(prev, r, 0, 0) }

// sharedLenFrom is sharedLen, trying first whether r shares hp and hs
// bytes with prev as the record before did (one comparison of each run,
// many bytes an instruction, in a run of alike records).
func sharedLenFrom(prev, r []byte, hp, hs int) (p, s int) {
	n := min(len(prev), len(r))
	if hp >= 16 && hp <= n && bytes.Equal(prev[:hp], r[:hp]) {
		p = hp
	}
	for p+8 <= n {
		if x := binary.LittleEndian.Uint64(prev[p:]) ^ binary.LittleEndian.Uint64(r[p:]); x != 0 {
			p += bits.TrailingZeros64(x) >> 3
			goto suffix
		}
		p += 8
	}
	for p < n && prev[p] == r[p] {
		p++
	}
suffix:
	n -= p
	lp, lr := len(prev), len(r)
	if hs >= 16 && hs <= n && bytes.Equal(prev[lp-hs:], r[lr-hs:]) {
		s = hs
	}
	for s+8 <= n {
		if x := binary.BigEndian.Uint64(prev[lp-s-8:]) ^ binary.BigEndian.Uint64(r[lr-s-8:]); x != 0 {
			return p, s + bits.TrailingZeros64(x)>>3
		}
		s += 8
	}
	for s < n && prev[lp-s-1] == r[lr-s-1] {
		s++
	}
	return p, s
}

// sharedBodyLen is the size of the stored bytes of a record of n bytes that
// shares p and s bytes with the record before.
func sharedBodyLen(p, s, n int) int {
	return uvarintLen(uint64(p)) + uvarintLen(uint64(s)) + n - p - s
}

// appendSharedRecord appends record r, stored against prev (nil for the
// first record of a frame), to dst.
func appendSharedRecord(dst, prev, r []byte) []byte {
	p, s := sharedLen(prev, r)
	return appendShared(dst, r, p, s)
}

// appendShared appends record r, which shares p and s bytes with the
// record before it, to dst.
func appendShared(dst, r []byte, p, s int) []byte {
	dst = binary.AppendUvarint(dst, uint64(sharedBodyLen(p, s, len(r))))
	dst = binary.AppendUvarint(dst, uint64(p))
	dst = binary.AppendUvarint(dst, uint64(s))
	return append(dst, r[p:len(r)-s]...)
}

// expandRecord appends to dst the record whose stored bytes are body,
// given the record before it (prev). body must come from a verified frame.
func expandRecord(dst, prev, body []byte) []byte {
	p, w := binary.Uvarint(body)
	body = body[w:]
	s, w := binary.Uvarint(body)
	body = body[w:]
	dst = append(dst, prev[:p]...)
	dst = append(dst, body...)
	return append(dst, prev[len(prev)-int(s):]...)
}

// expandedLen is the length of the record expandRecord rebuilds.
func expandedLen(prev, body []byte) int {
	p, w := binary.Uvarint(body)
	body = body[w:]
	s, w := binary.Uvarint(body)
	return int(p) + len(body) - w + int(s)
}

// verifyShared checks that the count records of a shared frame's record
// bytes recs (framed as raw records, already checked) can be rebuilt.
func verifyShared(recs []byte, count uint32) error {
	prevLen := uint64(0)
	off := 0
	for i := uint32(0); i < count; i++ {
		s, e := nextRecord(recs, off)
		off = e
		body := recs[s:e]
		p, w := binary.Uvarint(body)
		if w <= 0 {
			return fmt.Errorf("%w: shared record %d: bad prefix length", errFrameCorrupt, i)
		}
		body = body[w:]
		sfx, w := binary.Uvarint(body)
		if w <= 0 {
			return fmt.Errorf("%w: shared record %d: bad suffix length", errFrameCorrupt, i)
		}
		if p > prevLen || sfx > prevLen-p {
			return fmt.Errorf("%w: shared record %d shares %d+%d bytes of a record of %d", errFrameCorrupt, i, p, sfx, prevLen)
		}
		prevLen = p + sfx + uint64(len(body)-w)
		if prevLen > maxRecordBytes {
			return fmt.Errorf("%w: shared record %d of %d bytes", errFrameCorrupt, i, prevLen)
		}
	}
	return nil
}

// rawRecords returns the records of verified frame v (header h) as a raw
// frame holds them: each a uvarint length and its bytes. For a raw frame
// that is a part of v; a shared frame's records are rebuilt into scratch's
// array (reused from its start, grown as needed).
func rawRecords(v []byte, h frameHeader, scratch []byte) ([]byte, error) {
	recEnd, _, err := splitFrame(v)
	if err != nil {
		return nil, err
	}
	recs := v[h.hdrLen:recEnd]
	if !isShared(v[0]) {
		return recs, nil
	}
	out := scratch[:0]
	var tmp, prev []byte
	for off := 0; off < len(recs); {
		s, e := nextRecord(recs, off)
		off = e
		tmp = expandRecord(tmp[:0], prev, recs[s:e])
		out = binary.AppendUvarint(out, uint64(len(tmp)))
		out = append(out, tmp...)
		prev = append(prev[:0], tmp...)
	}
	return out, nil
}
