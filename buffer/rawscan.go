package buffer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
)

// The raw scan finds frames in a file by their own checksums, without
// reading bbolt's pages: a frame is a header whose checksum matches,
// followed by records and a trailer checksum over the whole frame. bbolt
// keeps a value's bytes contiguous in the file (a large frame on
// consecutive overflow pages, a small one inside its leaf page), so every
// frame that was written and not overwritten since can be found, whatever
// became of the pages that pointed at it.

const (
	// scanWindow is the part of the file held in memory at once.
	scanWindow = 4 << 20
	// maxLegacyScan bounds the frames of earlier builds the scan can
	// read: their header does not give their length.
	maxLegacyScan = 1 << 20
)

// scanFile returns every frame header found in f (intact or not), in file
// order. Reading errors end the scan with what was found so far.
func scanFile(f *os.File) ([]found, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	return scanReader(f, fi.Size())
}

// scanReader scans the size bytes of r for frames.
func scanReader(r io.ReaderAt, size int64) ([]found, error) {
	out, _, err := scanReaderEnv(r, size, nil)
	return out, err
}

// scanReaderEnv scans the size bytes of r for frames and for the
// envelopes of metadata and commit summaries (envelope.go): it returns
// copies of the intact envelopes keep accepts (none when keep is nil).
func scanReaderEnv(r io.ReaderAt, size int64, keep func(envelope) bool) (out []found, envs []envelope, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("BUG: raw scan panicked: %v", p)
		}
	}()
	win := make([]byte, min(size, scanWindow)+frameOverhead)
	var frameBuf []byte
	for pos := int64(0); pos < size; {
		n := int(min(int64(len(win)), size-pos))
		if _, err := r.ReadAt(win[:n], pos); err != nil && !errors.Is(err, io.EOF) {
			return out, envs, fmt.Errorf("read at offset %d: %w", pos, err)
		}
		w := win[:n]
		// Headers starting in [pos, pos+end) are looked at in this window.
		end := min(n, scanWindow)
		next := pos + int64(end)
		for i := 0; i < end; i++ {
			ver := w[i]
			off := pos + int64(i)
			var length int
			switch {
			case ver == envMagic[0]:
				l := envLength(w[i:])
				if l == 0 || off+int64(l) > size {
					continue
				}
				if frameBuf, err = readAt(r, off, l, frameBuf); err != nil {
					return out, envs, err
				}
				e, ok := parseEnvelope(frameBuf)
				if !ok {
					continue
				}
				if keep != nil && keep(e) {
					e.key, e.value = bytes.Clone(e.key), bytes.Clone(e.value)
					envs = append(envs, e)
				}
				length = l
			case ver >= frameVersion && ver <= frameVersion5Segments:
				h, err := parseHeader(w[i:])
				if err != nil {
					continue
				}
				var fr found
				fr, frameBuf, err = readCandidate(r, size, off, h, frameBuf)
				if err != nil {
					return out, envs, err
				}
				out = append(out, fr)
				if !fr.intact {
					continue
				}
				length = fr.length
			default:
				continue
			}
			// Go on after the frame or envelope: a header inside it
			// would be a record's bytes.
			after := off + int64(length)
			if after >= next {
				next = after
				break
			}
			i = int(after-pos) - 1
		}
		pos = next
	}
	return out, envs, nil
}

// readCandidate reads and verifies the frame whose header h was found at
// off.
func readCandidate(r io.ReaderAt, size, off int64, h frameHeader, buf []byte) (found, []byte, error) {
	fr := found{off: off, h: h}
	if h.hasLoc {
		fr.length = int(h.length)
		if off+int64(h.length) > size {
			return fr, buf, nil // cut short by the end of the file
		}
		var err error
		if buf, err = readAt(r, off, fr.length, buf); err != nil {
			return fr, buf, err
		}
		fr.intact = verifyFrame(buf, h) == nil
		return fr, buf, nil
	}
	n := int(min(size-off, maxLegacyScan))
	var err error
	if buf, err = readAt(r, off, n, buf); err != nil {
		return fr, buf, err
	}
	if l := legacyLength(buf, h); l > 0 {
		fr.length, fr.intact = l, true
		fr.legacyID = uint64(binary.BigEndian.Uint32(buf[l-frameTrailerLen:]))
	}
	return fr, buf, nil
}

func readAt(r io.ReaderAt, off int64, n int, buf []byte) ([]byte, error) {
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := r.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
		return buf, fmt.Errorf("read at offset %d: %w", off, err)
	}
	return buf, nil
}

// legacyLength returns the length of the version 1 or 2 frame at the start
// of v whose header h is intact, or 0 when no intact frame is there.
func legacyLength(v []byte, h frameHeader) int {
	off := h.hdrLen
	for i := uint32(0); i < h.count; i++ {
		n, w := binary.Uvarint(v[off:])
		if w <= 0 || n > uint64(len(v)-off-w) {
			return 0
		}
		off += w + int(n)
	}
	if !hasSegments(v[0]) {
		if off+frameTrailerLen > len(v) {
			return 0
		}
		if crc32.Checksum(v[:off], castagnoli) == binary.BigEndian.Uint32(v[off:]) {
			return off + frameTrailerLen
		}
		return 0
	}
	// A segment table of k entries, then k, then the checksum.
	sum := crc32.Checksum(v[:off], castagnoli)
	for k := 1; k < int(h.count); k++ {
		t := off + k*segmentLen
		if t+4+frameTrailerLen > len(v) {
			return 0
		}
		sum = crc32.Update(sum, castagnoli, v[t-segmentLen:t])
		if binary.BigEndian.Uint32(v[t:]) != uint32(k) {
			continue
		}
		if crc32.Update(sum, castagnoli, v[t:t+4]) == binary.BigEndian.Uint32(v[t+4:]) {
			l := t + 4 + frameTrailerLen
			if verifyFrame(v[:l], h) == nil {
				return l
			}
		}
	}
	return 0
}
