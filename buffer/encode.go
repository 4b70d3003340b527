package buffer

import "slices"

// encoder builds the frames of one commit into a reused buffer. Each queue
// gets its own encoding: a frame's header names its queue and id.
type encoder struct {
	records  [][]byte
	appended int64
	buf      []byte
}

// chunk is one encoded frame holding records[lo:hi].
type chunk struct {
	lo, hi int
	val    []byte
}

// encode returns the frames for records[lo:hi] of the queue tagged queue,
// numbered from firstID, with the queue's head. Their bytes stay valid
// until the encoder's buffer is reused by the next commit.
func (e *encoder) encode(lo, hi int, queue uint32, firstID, head uint64) []chunk {
	e.buf = slices.Grow(e.buf, int(rangeSize(e.records, lo, hi)))
	var out []chunk
	forEachChunk(e.records, lo, hi, func(a, c, _ int) {
		start := len(e.buf)
		loc := frameLoc{id: firstID + uint64(len(out)), queue: queue, head: head}
		e.buf = appendFrame(e.buf, e.records[a:c], e.appended, loc)
		out = append(out, chunk{lo: a, hi: c, val: e.buf[start:len(e.buf):len(e.buf)]})
	})
	return out
}

// forEachChunk splits records[lo:hi] greedily into frames whose encoded
// records take at most maxFrameBytes (a larger record gets a frame of its
// own) and calls fn with each frame's range and payload size.
func forEachChunk(records [][]byte, lo, hi int, fn func(a, c, payload int)) {
	a, payload := lo, 0
	for i := lo; i < hi; i++ {
		n := recordLen(len(records[i]))
		if i > a && payload+n > maxFrameBytes {
			fn(a, i, payload)
			a, payload = i, 0
		}
		payload += n
	}
	if hi > a {
		fn(a, hi, payload)
	}
}

// frameCost is what a frame with the given payload counts against MaxBytes.
func frameCost(payload int) int64 {
	return int64(encodedFrameLen(payload) + keyLen)
}

// rangeSize is what records[lo:hi] count against MaxBytes once framed.
func rangeSize(records [][]byte, lo, hi int) int64 {
	var total int64
	forEachChunk(records, lo, hi, func(_, _, payload int) { total += frameCost(payload) })
	return total
}

// prefixFit returns the largest n in [lo, hi] such that records[lo:n]
// framed cost at most avail bytes.
func prefixFit(records [][]byte, lo, hi int, avail int64) int {
	var total int64
	payload, open := 0, false
	for i := lo; i < hi; i++ {
		n := recordLen(len(records[i]))
		cost := int64(n)
		if !open || payload+n > maxFrameBytes {
			cost = frameCost(n)
			payload, open = 0, true
		}
		if total+cost > avail {
			return i
		}
		total += cost
		payload += n
	}
	return hi
}

// suffixStart returns the smallest s in [lo, hi] such that records[s:hi]
// framed cost at most limit bytes. The framed size of a suffix shrinks as
// it loses records, so a binary search finds it.
func suffixStart(records [][]byte, lo, hi int, limit int64) int {
	s, e := lo, hi
	for s < e {
		m := int(uint(s+e) >> 1)
		if rangeSize(records, m, hi) <= limit {
			e = m
		} else {
			s = m + 1
		}
	}
	return s
}
