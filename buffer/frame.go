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
//	0       1     format version (frameVersion)
//	1       4     record count, big-endian uint32
//	5       8     append time, Unix nanoseconds, big-endian int64
//	13      4     CRC32C of bytes 0..12 (lets Open trust the header without reading the frame)
//	17      ...   records, each a uvarint length followed by that many bytes
//	end-4   4     CRC32C of every byte before it
//
// The key is the frame sequence as an 8-byte big-endian integer, so bbolt's
// key order is queue order.
const (
	frameVersion    = 1
	frameHeaderLen  = 17
	frameTrailerLen = 4
	frameOverhead   = frameHeaderLen + frameTrailerLen
	// keyLen is counted in a frame's size for the byte bounds.
	keyLen = 8
	// maxRecordBytes bounds one record so that its frame fits a bbolt value.
	maxRecordBytes = 1<<30 - 1
)

// maxFrameBytes is the payload size at which an Append starts another
// frame. Large values need long runs of contiguous free pages in bbolt;
// this keeps them short enough to be found among freed pages. A variable
// so that tests can make frames small.
var maxFrameBytes = 64 << 10

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
	if v[0] != frameVersion {
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

// verifyFrame checks the whole-frame checksum and that the records fill the
// frame exactly.
func verifyFrame(v []byte, h frameHeader) error {
	if len(v) < frameOverhead {
		return fmt.Errorf("%w: %d bytes is shorter than a frame header", errFrameCorrupt, len(v))
	}
	body := v[:len(v)-frameTrailerLen]
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(v[len(v)-frameTrailerLen:]) {
		return fmt.Errorf("%w: checksum mismatch", errFrameCorrupt)
	}
	off := frameHeaderLen
	for i := uint32(0); i < h.count; i++ {
		n, w := binary.Uvarint(body[off:])
		if w <= 0 || n > uint64(len(body)-off-w) {
			return fmt.Errorf("%w: record %d overruns the frame", errFrameCorrupt, i)
		}
		off += w + int(n)
	}
	if off != len(body) {
		return fmt.Errorf("%w: %d trailing bytes after %d records", errFrameCorrupt, len(body)-off, h.count)
	}
	return nil
}

// nextRecord returns the bounds of the record that starts at off in a
// verified frame body, and the offset of the record after it.
func nextRecord(v []byte, off int) (start, end int) {
	n, w := binary.Uvarint(v[off:])
	start = off + w
	return start, start + int(n)
}
