package buffer

import "slices"

// encoder builds the frames of one commit into a reused buffer. Each queue
// gets its own encoding: a frame's header names its queue and id.
type encoder struct {
	records  [][]byte
	appended int64
	buf      []byte
	// shared is set by prepare when the commit's frames hold shared
	// records (frame_shared.go); shares[i] is what record i shares with
	// record i-1 (the first record of a frame shares nothing).
	shared bool
	shares []share
	// all is the chunking of all the records, once made (plan and encode
	// both walk it).
	all []chunk
}

// share is what a record shares with the record before it: p bytes at
// the start, s at the end.
type share struct{ p, s int32 }

// chunk is one encoded frame holding records[lo:hi], payload bytes of
// them.
type chunk struct {
	lo, hi  int
	payload int
	val     []byte
}

// prepare decides whether the commit's frames hold shared records: when
// the records average at least sharedMinRecord bytes, sharing saves at
// least a quarter of their size, and they still fill a frame (a commit
// under load: its frames are as large as raw ones, so that damage to the
// file takes records by the frame as before, each frame announced when
// lost). shares is reused for e.shares.
func (e *encoder) prepare(shares []share) {
	e.shares = shares[:0]
	raw, stored := 0, 0
	var prev []byte
	p, s := 0, 0
	for _, r := range e.records {
		p, s = sharedLenFrom(prev, r, p, s)
		e.shares = append(e.shares, share{int32(p), int32(s)})
		raw += recordLen(len(r))
		n := sharedBodyLen(p, s, len(r))
		stored += uvarintLen(uint64(n)) + n
		prev = r
	}
	n := len(e.records)
	e.shared = n > 0 && raw >= sharedMinRecord*n && 4*stored <= 3*raw && stored >= maxFrameBytes
}

// cost is the size record i takes in a frame, first when it starts it.
func (e *encoder) cost(i int, first bool) int {
	n := len(e.records[i])
	if !e.shared {
		return recordLen(n)
	}
	p, s := 0, 0
	if !first {
		p, s = int(e.shares[i].p), int(e.shares[i].s)
	}
	b := sharedBodyLen(p, s, n)
	return uvarintLen(uint64(b)) + b
}

// encode returns the frames for records[lo:hi] of the queue tagged queue,
// numbered from firstID, with the queue's head. Their bytes stay valid
// until the encoder's buffer is reused by the next commit.
func (e *encoder) encode(lo, hi int, queue uint32, firstID, head uint64) []chunk {
	e.buf = slices.Grow(e.buf, int(e.rangeSize(lo, hi)))
	var out []chunk
	e.forEachChunk(lo, hi, func(a, c, payload int) {
		start := len(e.buf)
		loc := frameLoc{id: firstID + uint64(len(out)), queue: queue, head: head}
		if e.shared {
			e.buf = appendHeader(e.buf, frameVersion5, uint32(c-a), e.appended, loc, frameOverhead+payload)
			for i := a; i < c; i++ {
				sh := e.shares[i]
				if i == a {
					sh = share{}
				}
				e.buf = appendShared(e.buf, e.records[i], int(sh.p), int(sh.s))
			}
			e.buf = appendTrailer(e.buf, start)
		} else {
			e.buf = appendFrame(e.buf, e.records[a:c], e.appended, loc)
		}
		out = append(out, chunk{lo: a, hi: c, val: e.buf[start:len(e.buf):len(e.buf)]})
	})
	return out
}

// forEachChunk is forEachChunk of the encoder's records, in the form the
// frames hold them.
func (e *encoder) forEachChunk(lo, hi int, fn func(a, c, payload int)) {
	if lo == 0 && hi == len(e.records) {
		if e.all == nil {
			e.chunk(lo, hi, func(a, c, payload int) { e.all = append(e.all, chunk{lo: a, hi: c, payload: payload}) })
		}
		for _, c := range e.all {
			fn(c.lo, c.hi, c.payload)
		}
		return
	}
	e.chunk(lo, hi, fn)
}

// chunk splits records[lo:hi] into frames (forEachChunk).
func (e *encoder) chunk(lo, hi int, fn func(a, c, payload int)) {
	if !e.shared {
		forEachChunk(e.records, lo, hi, fn)
		return
	}
	a, payload := lo, 0
	for i := lo; i < hi; i++ {
		n := e.cost(i, i == a)
		if i > a && payload+n > maxFrameBytes {
			fn(a, i, payload)
			a, payload = i, e.cost(i, true)
			continue
		}
		payload += n
	}
	if hi > a {
		fn(a, hi, payload)
	}
}

// rangeSize is rangeSize of the encoder's records as its frames hold them.
func (e *encoder) rangeSize(lo, hi int) int64 {
	if !e.shared {
		return rangeSize(e.records, lo, hi)
	}
	var total int64
	e.forEachChunk(lo, hi, func(_, _, payload int) { total += frameCost(payload) })
	return total
}

// prefixFit is prefixFit of the encoder's records as its frames hold them.
func (e *encoder) prefixFit(lo, hi int, avail int64) int {
	if !e.shared {
		return prefixFit(e.records, lo, hi, avail)
	}
	var total int64 // of the frames closed
	payload, open := 0, false
	for i := lo; i < hi; i++ {
		n := e.cost(i, !open)
		if open && payload+n > maxFrameBytes {
			total += frameCost(payload)
			payload, n = 0, e.cost(i, true)
		}
		if total+frameCost(payload+n) > avail {
			return i
		}
		payload += n
		open = true
	}
	return hi
}

// suffixStart is suffixStart of the encoder's records as its frames hold
// them. Shared sizes need not shrink with every record left out (the new
// first record is stored whole), so the search's answer is checked.
func (e *encoder) suffixStart(lo, hi int, limit int64) int {
	if !e.shared {
		return suffixStart(e.records, lo, hi, limit)
	}
	s, t := lo, hi
	for s < t {
		m := int(uint(s+t) >> 1)
		if e.rangeSize(m, hi) <= limit {
			t = m
		} else {
			s = m + 1
		}
	}
	for s < hi && e.rangeSize(s, hi) > limit {
		s++
	}
	return s
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
