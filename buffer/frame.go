package buffer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// A frame is one bbolt value holding many records of one queue. Frames
// written by this build (versions 3 and 4) say where they belong, so that a
// scan of the raw file finds and places them without bbolt's pages:
//
//	offset  size  field
//	0       1     format version: frameVersion3, or frameVersion3Segments
//	1       4     record count, big-endian uint32
//	5       8     append time (of the first record), Unix nanoseconds, big-endian int64
//	13      8     frame id (its key), big-endian uint64
//	21      4     queue tag: CRC32C of the queue's name
//	25      4     frame length in bytes, this header and the trailer included
//	29      8     queue head: id of the queue's oldest live frame when this
//	              frame was written (frames below it were already delivered)
//	37      4     CRC32C of bytes 0..36 (lets Open trust the header without reading the frame)
//	41      ...   records, each a uvarint length followed by that many bytes
//	end-4   4     CRC32C of every byte before it
//
// Frames of earlier builds (versions 1 and 2) have a 17-byte header: the
// version, count and append time, then the CRC32C of those 13 bytes; they
// are read as before.
//
// A frame that later Appends grew (see coalesceMaxPayload) has version
// frameVersion3Segments (frameVersionSegments before version 3) and,
// between its records and its CRC, a segment table giving the append time
// of each later Append's records: k entries of (first record index uint32,
// append time int64), indexes increasing, then k as a uint32, all
// big-endian.
//
// Frames of versions 5 and 6 (with a segment table) have the header of
// version 3 and hold their records in shared form (frame_shared.go).
//
// The key is the frame id as an 8-byte big-endian integer, so bbolt's
// key order is queue order.
const (
	frameVersion          = 1
	frameVersionSegments  = 2
	frameVersion3         = 3
	frameVersion3Segments = 4
	frameVersion5         = 5
	frameVersion5Segments = 6
	segmentLen            = 12
	// legacyHeaderLen is the header of versions 1 and 2.
	legacyHeaderLen = 17
	// frameHeaderLen is the header of versions 3 and 4.
	frameHeaderLen  = 41
	frameTrailerLen = 4
	frameOverhead   = frameHeaderLen + frameTrailerLen
	// keyLen is counted in a frame's size for the byte bounds.
	keyLen = 8
	// maxRecordBytes bounds one record so that its frame fits a bbolt value.
	maxRecordBytes = 1<<30 - 1
)

// frameLoc is where a frame belongs: written into version 3 headers.
type frameLoc struct {
	id    uint64
	queue uint32
	head  uint64
}

// queueTag is the tag of the queue named name in frame headers.
func queueTag(name string) uint32 { return crc32.Checksum([]byte(name), castagnoli) }

// headerLen returns the header length of a frame of version ver.
func headerLen(ver byte) int {
	if ver >= frameVersion3 && ver <= frameVersion5Segments {
		return frameHeaderLen
	}
	return legacyHeaderLen
}

// hasSegments reports whether a frame of version ver has a segment table.
func hasSegments(ver byte) bool {
	return ver == frameVersionSegments || ver == frameVersion3Segments || ver == frameVersion5Segments
}

// maxFrameBytes is the payload size at which an Append starts another
// frame. Large values need long runs of contiguous free pages in bbolt;
// smaller ones cost more per record. A full frame fills its bbolt node (a
// page header, one element header, the one-byte data key and the frame)
// to exactly frameNodePages pages, so that freed frames are reused by new
// ones without waste. A variable so that tests can make frames small.
var maxFrameBytes = frameNodePages*4096 - 16 - 16 - 1 - frameOverhead

// frameNodePages is the size of a full frame's bbolt node in 4 KiB pages.
// Measured with 200-byte records, fsync on: 16 pages (64 KiB) and 64 pages
// write the same bytes per record (4% over the records' own) and append at
// about the same CPU per record; 16 drains with less (185 against 215
// ns/record); 4 costs a third more CPU.
const frameNodePages = 16

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errFrameCorrupt marks a frame whose bytes do not match their checksum or layout.
var errFrameCorrupt = errors.New("corrupt frame")

// frameHeader is the decoded fixed part of a frame.
type frameHeader struct {
	count    uint32
	appended int64
	// hdrLen is where the records start.
	hdrLen int
	// loc and length are set for version 3 and 4 frames (hasLoc).
	hasLoc bool
	loc    frameLoc
	length uint32
}

// recordLen is the encoded size of a record of n bytes inside a frame.
func recordLen(n int) int {
	return uvarintLen(uint64(n)) + n
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

// encodedFrameLen is the value size of a frame holding payload bytes of
// encoded records.
func encodedFrameLen(payload int) int { return frameOverhead + payload }

// appendFrame encodes records into a frame appended to dst.
func appendFrame(dst []byte, records [][]byte, appended int64, loc frameLoc) []byte {
	start := len(dst)
	n := frameOverhead
	for _, r := range records {
		n += recordLen(len(r))
	}
	dst = appendHeader(dst, frameVersion3, uint32(len(records)), appended, loc, n)
	for _, r := range records {
		dst = binary.AppendUvarint(dst, uint64(len(r)))
		dst = append(dst, r...)
	}
	return appendTrailer(dst, start)
}

// appendHeader appends the header of a frame of version ver (3 or 5)
// holding count records in length bytes in all.
func appendHeader(dst []byte, ver byte, count uint32, appended int64, loc frameLoc, length int) []byte {
	var hdr [frameHeaderLen]byte
	hdr[0] = ver
	binary.BigEndian.PutUint32(hdr[1:5], count)
	binary.BigEndian.PutUint64(hdr[5:13], uint64(appended))
	binary.BigEndian.PutUint64(hdr[13:21], loc.id)
	binary.BigEndian.PutUint32(hdr[21:25], loc.queue)
	binary.BigEndian.PutUint32(hdr[25:29], uint32(length))
	binary.BigEndian.PutUint64(hdr[29:37], loc.head)
	binary.BigEndian.PutUint32(hdr[37:41], crc32.Checksum(hdr[:37], castagnoli))
	return append(dst, hdr[:]...)
}

// appendTrailer appends the checksum of the frame that starts at start.
func appendTrailer(dst []byte, start int) []byte {
	sum := crc32.Checksum(dst[start:], castagnoli)
	return binary.BigEndian.AppendUint32(dst, sum)
}

// sealHeader rewrites the length and the header checksum of frame v after
// its count, version or size changed.
func sealHeader(v []byte) {
	if headerLen(v[0]) == frameHeaderLen {
		binary.BigEndian.PutUint32(v[25:29], uint32(len(v)))
		binary.BigEndian.PutUint32(v[37:41], crc32.Checksum(v[:37], castagnoli))
		return
	}
	binary.BigEndian.PutUint32(v[13:17], crc32.Checksum(v[:13], castagnoli))
}

// parseHeader decodes and checks the fixed header of frame v. It reads only
// the header, so it is cheap on a memory-mapped value. v may be longer than
// the frame when hasLoc (the raw scan passes what follows in the file).
func parseHeader(v []byte) (frameHeader, error) {
	if len(v) < legacyHeaderLen+frameTrailerLen {
		return frameHeader{}, fmt.Errorf("%w: %d bytes is shorter than a frame header", errFrameCorrupt, len(v))
	}
	var h frameHeader
	switch v[0] {
	case frameVersion, frameVersionSegments:
		if crc32.Checksum(v[:13], castagnoli) != binary.BigEndian.Uint32(v[13:17]) {
			return frameHeader{}, fmt.Errorf("%w: header checksum mismatch", errFrameCorrupt)
		}
		h.hdrLen = legacyHeaderLen
	case frameVersion3, frameVersion3Segments, frameVersion5, frameVersion5Segments:
		if len(v) < frameOverhead {
			return frameHeader{}, fmt.Errorf("%w: %d bytes is shorter than a frame header", errFrameCorrupt, len(v))
		}
		if crc32.Checksum(v[:37], castagnoli) != binary.BigEndian.Uint32(v[37:41]) {
			return frameHeader{}, fmt.Errorf("%w: header checksum mismatch", errFrameCorrupt)
		}
		h.hdrLen = frameHeaderLen
		h.hasLoc = true
		h.loc = frameLoc{
			id:    binary.BigEndian.Uint64(v[13:21]),
			queue: binary.BigEndian.Uint32(v[21:25]),
			head:  binary.BigEndian.Uint64(v[29:37]),
		}
		h.length = binary.BigEndian.Uint32(v[25:29])
		if h.length < frameOverhead {
			return frameHeader{}, fmt.Errorf("%w: frame length %d is shorter than its header", errFrameCorrupt, h.length)
		}
	default:
		return frameHeader{}, fmt.Errorf("%w: unknown frame version %d", errFrameCorrupt, v[0])
	}
	h.count = binary.BigEndian.Uint32(v[1:5])
	h.appended = int64(binary.BigEndian.Uint64(v[5:13]))
	// Every record takes at least one byte (its length).
	room := int64(len(v) - h.hdrLen - frameTrailerLen)
	if h.hasLoc {
		room = int64(h.length) - frameOverhead
	}
	if int64(h.count) > room {
		return frameHeader{}, fmt.Errorf("%w: %d records cannot fit in %d bytes", errFrameCorrupt, h.count, room)
	}
	return h, nil
}

// splitFrame returns where the records of frame v end and its raw segment
// table (nil for a frame without one).
func splitFrame(v []byte) (recEnd int, table []byte, err error) {
	if len(v) < legacyHeaderLen+frameTrailerLen || len(v) < headerLen(v[0])+frameTrailerLen {
		return 0, nil, fmt.Errorf("%w: %d bytes is shorter than a frame header", errFrameCorrupt, len(v))
	}
	if !hasSegments(v[0]) {
		return len(v) - frameTrailerLen, nil, nil
	}
	overhead := headerLen(v[0]) + frameTrailerLen
	if len(v) < overhead+4 {
		return 0, nil, fmt.Errorf("%w: no room for a segment table", errFrameCorrupt)
	}
	k := uint64(binary.BigEndian.Uint32(v[len(v)-frameTrailerLen-4:]))
	if k*segmentLen > uint64(len(v)-overhead-4) {
		return 0, nil, fmt.Errorf("%w: segment table of %d entries overruns the frame", errFrameCorrupt, k)
	}
	recEnd = len(v) - frameTrailerLen - 4 - int(k)*segmentLen
	return recEnd, v[recEnd : len(v)-frameTrailerLen-4], nil
}

// verifyFrame checks the whole-frame checksum, that the records fill the
// frame up to its segment table exactly, and the segment table.
func verifyFrame(v []byte, h frameHeader) error {
	if len(v) < h.hdrLen+frameTrailerLen || h.hdrLen == 0 {
		return fmt.Errorf("%w: %d bytes is shorter than a frame header", errFrameCorrupt, len(v))
	}
	if h.hasLoc && int64(h.length) != int64(len(v)) {
		return fmt.Errorf("%w: frame of %d bytes says it has %d", errFrameCorrupt, len(v), h.length)
	}
	body := v[:len(v)-frameTrailerLen]
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(v[len(v)-frameTrailerLen:]) {
		return fmt.Errorf("%w: checksum mismatch", errFrameCorrupt)
	}
	recEnd, table, err := splitFrame(v)
	if err != nil {
		return err
	}
	off := h.hdrLen
	for i := uint32(0); i < h.count; i++ {
		n, w := binary.Uvarint(v[off:recEnd])
		if w <= 0 || n > uint64(recEnd-off-w) {
			return fmt.Errorf("%w: record %d overruns the frame", errFrameCorrupt, i)
		}
		off += w + int(n)
	}
	if off != recEnd {
		return fmt.Errorf("%w: %d trailing bytes after %d records", errFrameCorrupt, recEnd-off, h.count)
	}
	if isShared(v[0]) {
		if err := verifyShared(v[h.hdrLen:recEnd], h.count); err != nil {
			return err
		}
	}
	prev := uint32(0)
	for i := 0; i < len(table); i += segmentLen {
		start := binary.BigEndian.Uint32(table[i:])
		if start <= prev || start >= h.count {
			return fmt.Errorf("%w: segment at record %d out of order", errFrameCorrupt, start)
		}
		prev = start
	}
	return nil
}

// segments yields the append time of each record of a verified frame, for
// record indexes visited in increasing order: start with the table from
// splitFrame and the header's append time.
type segments struct {
	table []byte
	cur   int64
}

// at returns the append time of record idx.
func (s *segments) at(idx uint32) int64 {
	for len(s.table) >= segmentLen && binary.BigEndian.Uint32(s.table) <= idx {
		s.cur = int64(binary.BigEndian.Uint64(s.table[4:]))
		s.table = s.table[segmentLen:]
	}
	return s.cur
}

// growFrame returns frame old with records, appended at time appended,
// added to it, in the form of its records (raw or shared).
func growFrame(old []byte, records [][]byte, appended int64) ([]byte, error) {
	h, err := parseHeader(old)
	if err != nil {
		return nil, err
	}
	recEnd, table, err := splitFrame(old)
	if err != nil {
		return nil, err
	}
	shared := isShared(old[0])
	var prev []byte // the last record of old, for a shared frame
	if shared && h.count > 0 {
		raw, err := rawRecords(old, h, nil)
		if err != nil {
			return nil, err
		}
		for off := 0; off < len(raw); {
			s, e := nextRecord(raw, off)
			prev, off = raw[s:e], e
		}
	}
	last := h.appended
	if len(table) > 0 {
		last = int64(binary.BigEndian.Uint64(table[len(table)-segmentLen+4:]))
	}
	n := recEnd + len(table) + segmentLen + 4 + frameTrailerLen
	for _, r := range records {
		n += recordLen(len(r)) + 2*binary.MaxVarintLen32
	}
	v := make([]byte, 0, n)
	v = append(v, old[:recEnd]...)
	for _, r := range records {
		if shared {
			v = appendSharedRecord(v, prev, r)
			prev = r
			continue
		}
		v = binary.AppendUvarint(v, uint64(len(r)))
		v = append(v, r...)
	}
	v = append(v, table...)
	k := len(table) / segmentLen
	if appended != last {
		v = binary.BigEndian.AppendUint32(v, h.count)
		v = binary.BigEndian.AppendUint64(v, uint64(appended))
		k++
	}
	plain, segs := byte(frameVersion), byte(frameVersionSegments)
	switch {
	case shared:
		plain, segs = frameVersion5, frameVersion5Segments
	case h.hasLoc:
		plain, segs = frameVersion3, frameVersion3Segments
	}
	v[0] = plain
	if k > 0 {
		v[0] = segs
		v = binary.BigEndian.AppendUint32(v, uint32(k))
	}
	binary.BigEndian.PutUint32(v[1:5], h.count+uint32(len(records)))
	v = v[:len(v)+frameTrailerLen] // the length counts the trailer
	sealHeader(v)
	v = v[:len(v)-frameTrailerLen]
	return binary.BigEndian.AppendUint32(v, crc32.Checksum(v, castagnoli)), nil
}

// nextRecord returns the bounds of the record that starts at off in a
// verified frame body, and the offset of the record after it.
func nextRecord(v []byte, off int) (start, end int) {
	n, w := binary.Uvarint(v[off:])
	start = off + w
	return start, start + int(n)
}
