package buffer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// A frame is one bbolt value holding many records of one queue:
//
//	offset  size  field
//	0       1     format version: frameVersion, or frameVersionSegments
//	1       4     record count, big-endian uint32
//	5       8     append time (of the first record), Unix nanoseconds, big-endian int64
//	13      4     CRC32C of bytes 0..12 (lets Open trust the header without reading the frame)
//	17      ...   records, each a uvarint length followed by that many bytes
//	end-4   4     CRC32C of every byte before it
//
// A frame that later Appends grew (see coalesceMaxPayload) has version
// frameVersionSegments and, between its records and its CRC, a segment
// table giving the append time of each later Append's records: k entries
// of (first record index uint32, append time int64), indexes increasing,
// then k as a uint32, all big-endian.
//
// The key is the frame sequence as an 8-byte big-endian integer, so bbolt's
// key order is queue order.
const (
	frameVersion         = 1
	frameVersionSegments = 2
	segmentLen           = 12
	frameHeaderLen       = 17
	frameTrailerLen      = 4
	frameOverhead        = frameHeaderLen + frameTrailerLen
	// keyLen is counted in a frame's size for the byte bounds.
	keyLen = 8
	// maxRecordBytes bounds one record so that its frame fits a bbolt value.
	maxRecordBytes = 1<<30 - 1
)

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
func appendFrame(dst []byte, records [][]byte, appended int64) []byte {
	start := len(dst)
	var hdr [frameHeaderLen]byte
	hdr[0] = frameVersion
	binary.BigEndian.PutUint32(hdr[1:5], uint32(len(records)))
	binary.BigEndian.PutUint64(hdr[5:13], uint64(appended))
	binary.BigEndian.PutUint32(hdr[13:17], crc32.Checksum(hdr[:13], castagnoli))
	dst = append(dst, hdr[:]...)
	for _, r := range records {
		dst = binary.AppendUvarint(dst, uint64(len(r)))
		dst = append(dst, r...)
	}
	sum := crc32.Checksum(dst[start:], castagnoli)
	return binary.BigEndian.AppendUint32(dst, sum)
}

// parseHeader decodes and checks the fixed header of frame v. It reads only
// the first frameHeaderLen bytes of the record area, so it is cheap on a
// memory-mapped value.
func parseHeader(v []byte) (frameHeader, error) {
	if len(v) < frameOverhead {
		return frameHeader{}, fmt.Errorf("%w: %d bytes is shorter than a frame header", errFrameCorrupt, len(v))
	}
	if v[0] != frameVersion && v[0] != frameVersionSegments {
		return frameHeader{}, fmt.Errorf("%w: unknown frame version %d", errFrameCorrupt, v[0])
	}
	if crc32.Checksum(v[:13], castagnoli) != binary.BigEndian.Uint32(v[13:17]) {
		return frameHeader{}, fmt.Errorf("%w: header checksum mismatch", errFrameCorrupt)
	}
	h := frameHeader{
		count:    binary.BigEndian.Uint32(v[1:5]),
		appended: int64(binary.BigEndian.Uint64(v[5:13])),
	}
	// Every record takes at least one byte (its length).
	if int64(h.count) > int64(len(v)-frameOverhead) {
		return frameHeader{}, fmt.Errorf("%w: %d records cannot fit in %d bytes", errFrameCorrupt, h.count, len(v))
	}
	return h, nil
}

// splitFrame returns where the records of frame v end and its raw segment
// table (nil for a frame without one).
func splitFrame(v []byte) (recEnd int, table []byte, err error) {
	if len(v) < frameOverhead {
		return 0, nil, fmt.Errorf("%w: %d bytes is shorter than a frame header", errFrameCorrupt, len(v))
	}
	if v[0] != frameVersionSegments {
		return len(v) - frameTrailerLen, nil, nil
	}
	if len(v) < frameOverhead+4 {
		return 0, nil, fmt.Errorf("%w: no room for a segment table", errFrameCorrupt)
	}
	k := uint64(binary.BigEndian.Uint32(v[len(v)-frameTrailerLen-4:]))
	if k*segmentLen > uint64(len(v)-frameOverhead-4) {
		return 0, nil, fmt.Errorf("%w: segment table of %d entries overruns the frame", errFrameCorrupt, k)
	}
	recEnd = len(v) - frameTrailerLen - 4 - int(k)*segmentLen
	return recEnd, v[recEnd : len(v)-frameTrailerLen-4], nil
}

// verifyFrame checks the whole-frame checksum, that the records fill the
// frame up to its segment table exactly, and the segment table.
func verifyFrame(v []byte, h frameHeader) error {
	if len(v) < frameOverhead {
		return fmt.Errorf("%w: %d bytes is shorter than a frame header", errFrameCorrupt, len(v))
	}
	body := v[:len(v)-frameTrailerLen]
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(v[len(v)-frameTrailerLen:]) {
		return fmt.Errorf("%w: checksum mismatch", errFrameCorrupt)
	}
	recEnd, table, err := splitFrame(v)
	if err != nil {
		return err
	}
	off := frameHeaderLen
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
// added to it.
func growFrame(old []byte, records [][]byte, appended int64) ([]byte, error) {
	h, err := parseHeader(old)
	if err != nil {
		return nil, err
	}
	recEnd, table, err := splitFrame(old)
	if err != nil {
		return nil, err
	}
	last := h.appended
	if len(table) > 0 {
		last = int64(binary.BigEndian.Uint64(table[len(table)-segmentLen+4:]))
	}
	n := recEnd + len(table) + segmentLen + 4 + frameTrailerLen
	for _, r := range records {
		n += recordLen(len(r))
	}
	v := make([]byte, 0, n)
	v = append(v, old[:recEnd]...)
	for _, r := range records {
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
	v[0] = frameVersion
	if k > 0 {
		v[0] = frameVersionSegments
		v = binary.BigEndian.AppendUint32(v, uint32(k))
	}
	binary.BigEndian.PutUint32(v[1:5], h.count+uint32(len(records)))
	binary.BigEndian.PutUint32(v[13:17], crc32.Checksum(v[:13], castagnoli))
	return binary.BigEndian.AppendUint32(v, crc32.Checksum(v, castagnoli)), nil
}

// nextRecord returns the bounds of the record that starts at off in a
// verified frame body, and the offset of the record after it.
func nextRecord(v []byte, off int) (start, end int) {
	n, w := binary.Uvarint(v[off:])
	start = off + w
	return start, start + int(n)
}
