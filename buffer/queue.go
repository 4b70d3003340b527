package buffer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"runtime/debug"
	"slices"
	"sort"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Pos is the position of one record in a queue: its frame and its index in
// the frame. Positions increase in queue order and, once Read or Last has
// returned them, stay valid across Close and Open. Use only positions that
// Read or Last returned (and Start).
type Pos struct {
	Frame uint64
	Index uint32
}

// Start is the position before the first record: Read(Start(), n) reads
// from the head of the queue. It is the zero Pos.
func Start() Pos { return Pos{} }

// Less reports whether p comes before o in queue order.
func (p Pos) Less(o Pos) bool {
	return p.Frame < o.Frame || (p.Frame == o.Frame && p.Index < o.Index)
}

// String formats p as frame:index.
func (p Pos) String() string { return fmt.Sprintf("%d:%d", p.Frame, p.Index) }

// Record is one record read from a queue.
type Record struct {
	Pos Pos
	// Data is a copy owned by the caller. The Data of records returned by
	// one Read may share a backing array but never overlap.
	Data []byte
	// Appended is the commit time of the record's Append.
	Appended time.Time
}

// DropReason says why records were dropped.
type DropReason string

// Drop reasons, as used in QueueStats.Dropped and the log.
const (
	// ReasonMaxBytes: Options.MaxBytes was reached.
	ReasonMaxBytes DropReason = "max_bytes"
	// ReasonMaxAge: older than Options.MaxAge.
	ReasonMaxAge DropReason = "max_age"
	// ReasonDiskFull: the disk (or Options.MaxFileSize) was full and
	// DropOldest made room for a new Append.
	ReasonDiskFull DropReason = "disk_full"
	// ReasonCorrupt: the record's frame failed its checksum.
	ReasonCorrupt DropReason = "corrupt"
)

// Reasons lists every DropReason, for exporting metrics with zero values.
var Reasons = []DropReason{ReasonMaxBytes, ReasonMaxAge, ReasonDiskFull, ReasonCorrupt}

const numReasons = 4

func reasonIndex(r DropReason) int {
	switch r {
	case ReasonMaxBytes:
		return 0
	case ReasonMaxAge:
		return 1
	case ReasonDiskFull:
		return 2
	}
	return 3
}

// QueueStats describes one queue.
type QueueStats struct {
	// Records is the number of records not yet acknowledged.
	Records int64
	// Bytes is the size of the frames holding them (the records as the
	// frames hold them, see frame_shared.go, plus a few bytes of framing;
	// what MaxBytes bounds). A frame counts in full until all its records
	// are acknowledged.
	Bytes int64
	// Frames is the number of frames holding them.
	Frames int
	// Oldest is the append time of the oldest frame holding unacknowledged
	// records; zero when the queue is empty.
	Oldest time.Time
	// Dropped counts records dropped since the file was created, by
	// reason (every reason in Reasons is present). The counts are kept in
	// the file, committed with the drops themselves (a corrupt frame's
	// with the next commit), so they survive a restart or a crash.
	Dropped map[DropReason]uint64
	// CorruptFrames counts frames skipped since Open because their
	// checksum or layout did not match (or found damaged by a salvage),
	// and CorruptRecords the records they held that were not acknowledged.
	CorruptFrames, CorruptRecords uint64
}

// Queue is one FIFO queue of the buffer. Its methods are safe for
// concurrent use.
type Queue struct {
	b         *Buffer
	name      string
	bucket    []byte
	ackBucket []byte
	// tag is queueTag(name), written into frame headers.
	tag    uint32
	notify chan struct{}
	// deadLetters: only AppendTo writes to this queue.
	deadLetters bool

	mu sync.Mutex
	// frames is sorted by id; it may hold dead entries (deadN of them),
	// never at its head after tidy.
	frames  []*frameInfo
	deadN   int
	records int64
	bytes   int64
	dropped [numReasons]uint64
	// dropsDirty: dropped changed outside a commit (a corrupt frame) and
	// must be persisted by the next one.
	dropsDirty bool
	// corrupt and corruptRecords count corrupt frames since Open and the
	// records they held.
	corrupt, corruptRecords uint64
	pendingDel              []uint64
	delBytes                int64
	dirty                   map[uint64]*frameInfo
	// smallSinceMerge counts small frames appended since the last merge.
	smallSinceMerge int
	// rebuilt holds records of shared frames rebuilt but not returned by
	// a read (decodeSharedLocked).
	rebuilt [2][]byte
}

// frameInfo is the in-memory state of one frame.
type frameInfo struct {
	id       uint64
	count    uint32
	acked    uint32
	size     int64
	appended int64
	bits     []uint64 // acknowledged records; nil until the first ack
	dead     bool     // fully acknowledged, dropped or corrupt
	verified bool     // checksum checked since Open, or written by this process
	growing  bool     // a commit in flight appends records to it
	served   bool     // Read returned a record of it or Last its position: never merged
	// read cursor: the offset of record curIdx, to resume decoding, and
	// for a shared frame the record before it (rebuilt, owned), nil when
	// unknown.
	curIdx  uint32
	curOff  int
	curPrev []byte
}

func (fi *frameInfo) isAcked(i uint32) bool {
	return fi.bits != nil && fi.bits[i/64]&(1<<(i%64)) != 0
}

func newQueue(b *Buffer, name string) *Queue {
	return &Queue{
		b:         b,
		name:      name,
		bucket:    []byte(queuePrefix + name),
		ackBucket: []byte(ackPrefix + name),
		tag:       queueTag(name),
		notify:    make(chan struct{}, 1),
		dirty:     make(map[uint64]*frameInfo),
	}
}

// Name returns the queue's name.
func (q *Queue) Name() string { return q.name }

// Notify returns a channel that receives (without blocking the sender,
// capacity 1) after each Append that added records. Use it to wake a reader
// waiting at the tail; it is shared by all callers of this queue.
func (q *Queue) Notify() <-chan struct{} { return q.notify }

func frameKey(id uint64) []byte {
	k := make([]byte, keyLen)
	binary.BigEndian.PutUint64(k, id)
	return k
}

// search returns the index of the first frame with id >= id.
func (q *Queue) search(id uint64) int {
	return sort.Search(len(q.frames), func(i int) bool { return q.frames[i].id >= id })
}

// lookupLocked returns the live frame id, or nil.
func (q *Queue) lookupLocked(id uint64) *frameInfo {
	i := q.search(id)
	if i < len(q.frames) && q.frames[i].id == id && !q.frames[i].dead {
		return q.frames[i]
	}
	return nil
}

// killLocked removes a frame from the live state. The caller decides
// whether it needs deleting from disk.
func (q *Queue) killLocked(fi *frameInfo) {
	fi.dead = true
	q.deadN++
	q.records -= int64(fi.count - fi.acked)
	q.bytes -= fi.size
	delete(q.dirty, fi.id)
}

// tidyLocked drops dead frames from the head of the index and compacts it
// when most of it is dead.
func (q *Queue) tidyLocked() {
	i := 0
	for i < len(q.frames) && q.frames[i].dead {
		q.frames[i] = nil
		i++
	}
	q.frames = q.frames[i:]
	q.deadN -= i
	if q.deadN > 32 && q.deadN*2 > len(q.frames) {
		live := make([]*frameInfo, 0, len(q.frames)-q.deadN)
		for _, fi := range q.frames {
			if !fi.dead {
				live = append(live, fi)
			}
		}
		q.frames, q.deadN = live, 0
	}
}

// deleteLocked schedules a dead frame's deletion from disk.
func (q *Queue) deleteLocked(fi *frameInfo) {
	q.pendingDel = append(q.pendingDel, fi.id)
	q.delBytes += fi.size
	if q.delBytes >= deleteKickBytes {
		q.delBytes = 0
		q.b.wake()
	}
}

// Read returns up to n unacknowledged records that come after `after` in
// queue order; Start() reads from the head. It does not block: with nothing
// to read it returns no records and no error. Frames that fail their
// checksum are skipped, counted and logged. Read holds a bbolt read
// transaction only while it copies at most n records.
func (q *Queue) Read(after Pos, n int) ([]Record, error) {
	recs, _, err := q.ReadAppend(after, n, nil, nil)
	if err != nil {
		return nil, err
	}
	return recs, nil
}

// ReadAppend is Read into the caller's memory, for a reader that recycles
// it: it appends the records to dst, copies their bytes into buf's spare
// capacity (beyond its length), and returns both extended. When buf has
// too little room the bytes go to a new, larger array instead (buf is
// never moved: records sliced out of it keep pointing into it). The caller
// may reuse the returned slices (from length 0) only once nothing holds the
// records' Data any more. With nil dst and buf it is Read.
func (q *Queue) ReadAppend(after Pos, n int, dst []Record, buf []byte) (recs []Record, arena []byte, err error) {
	recs, arena = dst, buf
	if q.b.isClosed.Load() {
		return recs, arena, fmt.Errorf("buffer %s: queue %q: read: %w", q.b.path, q.name, ErrClosed)
	}
	if n <= 0 {
		return recs, arena, nil
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	defer func() {
		if r := recover(); r != nil {
			recs, arena = dst, buf
			err = fmt.Errorf("buffer %s: queue %q: read after %s: %w: bbolt panicked: %v", q.b.path, q.name, after, ErrCorrupt, r)
			q.b.requestRecover()
		}
	}()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	i := q.search(after.Frame)
	if i == len(q.frames) {
		return recs, arena, nil
	}
	// Sized to what lies after `after` (a reader at the tail asks for a
	// whole batch and usually gets a few records).
	avail := 0
	for j := i; j < len(q.frames) && avail < n; j++ {
		if fi := q.frames[j]; !fi.dead {
			avail += int(fi.count - fi.acked)
		}
	}
	if want := min(n, avail); cap(recs)-len(recs) < want {
		recs = slices.Grow(recs, want)
	}
	base := len(recs)
	var bad []*frameInfo
	var badErr []error
	err = q.b.db.View(func(tx *bolt.Tx) error {
		bkt := tx.Bucket(q.bucket)
		if bkt == nil {
			return fmt.Errorf("bucket %s missing", q.bucket)
		}
		for ; i < len(q.frames) && len(recs)-base < n; i++ {
			fi := q.frames[i]
			if fi.dead {
				continue
			}
			from := uint32(0)
			if fi.id == after.Frame {
				if after.Index >= fi.count-1 {
					continue
				}
				from = after.Index + 1
			}
			if fi.count-fi.acked == 0 {
				continue
			}
			v := getFrame(bkt, fi.id)
			if !fi.verified || v == nil {
				if err := q.verify(fi, v); err != nil {
					bad, badErr = append(bad, fi), append(badErr, err)
					continue
				}
				fi.verified = true
			}
			recs, arena = q.decodeLocked(fi, v, from, n-(len(recs)-base), recs, arena, buf == nil)
		}
		return nil
	})
	for k, fi := range bad {
		q.corruptLocked(fi, badErr[k])
	}
	if len(bad) > 0 {
		q.tidyLocked()
	}
	if err != nil {
		return recs[:base], arena, fmt.Errorf("buffer %s: queue %q: read after %s: %w", q.b.path, q.name, after, err)
	}
	return recs, arena, nil
}

// verify checks frame v against its in-memory state.
func (q *Queue) verify(fi *frameInfo, v []byte) error {
	if v == nil {
		return fmt.Errorf("%w: frame missing from the file", errFrameCorrupt)
	}
	h, err := parseHeader(v)
	if err != nil {
		return err
	}
	if h.count != fi.count || h.appended != fi.appended || int64(len(v)+keyLen) != fi.size {
		return fmt.Errorf("%w: header changed since open", errFrameCorrupt)
	}
	if err := q.checkLoc(h, fi.id); err != nil {
		return err
	}
	return verifyFrame(v, h)
}

// checkLoc checks that a version 3 header names this queue and frame id.
func (q *Queue) checkLoc(h frameHeader, id uint64) error {
	if !h.hasLoc {
		return nil
	}
	if h.loc.id != id || h.loc.queue != q.tag {
		return fmt.Errorf("%w: header names frame %d of queue tag %08x, found as frame %d of queue %q", errFrameCorrupt, h.loc.id, h.loc.queue, id, q.name)
	}
	return nil
}

// corruptLocked skips a damaged frame for good: counts, logs and deletes it.
func (q *Queue) corruptLocked(fi *frameInfo, err error) {
	lost := uint64(fi.count - fi.acked)
	q.b.log.Error("buffer frame corrupt; skipping it", "queue", q.name, "frame", fi.id, "records_lost", lost, "error", err)
	q.corrupt++
	q.corruptRecords += lost
	q.dropped[reasonIndex(ReasonCorrupt)] += lost
	q.dropsDirty = true
	q.b.damaged.Store(true)
	q.b.wake()
	q.killLocked(fi)
	q.deleteLocked(fi)
}

// decodeLocked appends up to want unacknowledged records of verified frame
// v, starting at index from, to recs. The records' bytes are copied once
// into arena's spare capacity, and the records sliced out of the copy.
//
// When exact is set (Read: nothing to recycle), it walks the frame to find
// the byte range of the wanted records and copies that range into a new
// arena of its exact size when arena has too little room. Otherwise it
// copies the rest of the frame into arena (a new one at least twice as
// large when it has too little room, so that a recycled arena soon holds a
// whole read) before looking at it: the records are found in the copy,
// which the copy has brought into the processor's cache, rather than by
// walking the memory-mapped frame first (a cache miss, or a page fault,
// per record). The arena's length covers only the records taken; the rest
// of the copy is spare capacity again.
func (q *Queue) decodeLocked(fi *frameInfo, v []byte, from uint32, want int, recs []Record, arena []byte, exact bool) ([]Record, []byte) {
	if isShared(v[0]) {
		return q.decodeSharedLocked(fi, v, from, want, recs, arena)
	}
	idx, off := uint32(0), headerLen(v[0])
	if fi.curIdx > 0 && fi.curIdx <= from {
		idx, off = fi.curIdx, fi.curOff
	}
	for ; idx < from; idx++ {
		_, off = nextRecord(v, off)
	}
	recEnd, table, _ := splitFrame(v)
	size := recEnd - off
	if exact {
		// The byte range holding the wanted records.
		n, endIdx, endOff := 0, idx, off
		for endIdx < fi.count && n < want {
			_, e := nextRecord(v, endOff)
			if !fi.isAcked(endIdx) {
				n++
			}
			endIdx, endOff = endIdx+1, e
		}
		if n == 0 {
			fi.curIdx, fi.curOff = endIdx, endOff
			return recs, arena
		}
		size = endOff - off
	}
	if size <= 0 {
		return recs, arena
	}
	if cap(arena)-len(arena) < size {
		// A new array: the records already sliced out of the old one
		// keep it.
		c := size
		if !exact {
			c = max(size, 2*cap(arena))
		}
		arena = make([]byte, 0, c)
	}
	src := arena[len(arena) : len(arena)+size : len(arena)+size]
	copy(src, v[off:off+size])
	segs := segments{table: table, cur: fi.appended}
	appendedNs, appended := fi.appended, time.Unix(0, fi.appended)
	n, o := 0, 0
	for idx < fi.count && n < want && o < size {
		s, e := nextRecord(src, o)
		o = e
		if t := segs.at(idx); t != appendedNs {
			appendedNs, appended = t, time.Unix(0, t)
		}
		if !fi.isAcked(idx) {
			recs = append(recs, Record{Pos: Pos{Frame: fi.id, Index: idx}, Data: src[s:e:e], Appended: appended})
			n++
		}
		idx++
	}
	fi.curIdx, fi.curOff = idx, off+o
	if n == 0 {
		return recs, arena
	}
	fi.served = true
	return recs, arena[:len(arena)+o]
}

// decodeSharedLocked is decodeLocked for a frame of shared records: each
// record is rebuilt from the record before it, into arena (a new one, at
// least twice as large, when it has too little room) for the records
// returned, into q.rebuilt for those passed over. The cursor keeps the
// last record rebuilt, so that the next read of the frame goes on from
// there rather than from its first record.
func (q *Queue) decodeSharedLocked(fi *frameInfo, v []byte, from uint32, want int, recs []Record, arena []byte) ([]Record, []byte) {
	recEnd, table, _ := splitFrame(v)
	idx, off := uint32(0), frameHeaderLen
	var prev []byte
	if fi.curIdx > 0 && fi.curIdx <= from && fi.curPrev != nil {
		idx, off, prev = fi.curIdx, fi.curOff, fi.curPrev
	}
	k := 0
	pass := func(body []byte) {
		q.rebuilt[k] = expandRecord(q.rebuilt[k][:0], prev, body)
		prev = q.rebuilt[k]
		k ^= 1
	}
	for ; idx < from && off < recEnd; idx++ {
		s, e := nextRecord(v, off)
		off = e
		pass(v[s:e])
	}
	segs := segments{table: table, cur: fi.appended}
	appendedNs, appended := fi.appended, time.Unix(0, fi.appended)
	n := 0
	for idx < fi.count && n < want && off < recEnd {
		s, e := nextRecord(v, off)
		off = e
		body := v[s:e]
		if t := segs.at(idx); t != appendedNs {
			appendedNs, appended = t, time.Unix(0, t)
		}
		if fi.isAcked(idx) {
			pass(body)
			idx++
			continue
		}
		if need := expandedLen(prev, body); cap(arena)-len(arena) < need {
			// A new array: the records already sliced out of the old one
			// keep it.
			arena = make([]byte, 0, max(need, 2*cap(arena), 4096))
		}
		start := len(arena)
		arena = expandRecord(arena, prev, body)
		prev = arena[start:len(arena):len(arena)]
		recs = append(recs, Record{Pos: Pos{Frame: fi.id, Index: idx}, Data: prev, Appended: appended})
		n++
		idx++
	}
	fi.curIdx, fi.curOff = idx, off
	if idx < fi.count {
		fi.curPrev = append(fi.curPrev[:0:0], prev...)
	} else {
		fi.curPrev = nil
	}
	if n > 0 {
		fi.served = true
	}
	return recs, arena
}

// Ack marks records as delivered. Positions may come in any order and any
// subset; acknowledging a record twice, or a record already dropped, is a
// no-op. A frame is deleted once all its records are acknowledged; the
// deletion is committed by the next Append, background flush, Flush or
// Close. It returns an error naming the count of positions that cannot
// exist (index beyond the frame's record count); the others are still
// acknowledged.
func (q *Queue) Ack(positions ...Pos) error {
	if q.b.isClosed.Load() {
		return fmt.Errorf("buffer %s: queue %q: ack: %w", q.b.path, q.name, ErrClosed)
	}
	if q.b.opts.ReadOnly {
		return fmt.Errorf("buffer %s: queue %q: ack: %w", q.b.path, q.name, ErrReadOnly)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	var fi *frameInfo
	var bad int
	var firstBad Pos
	for _, p := range positions {
		if fi == nil || fi.id != p.Frame {
			fi = q.lookupLocked(p.Frame)
		}
		if fi == nil || fi.dead {
			continue
		}
		if p.Index >= fi.count {
			if bad == 0 {
				firstBad = p
			}
			bad++
			continue
		}
		if fi.bits == nil {
			fi.bits = make([]uint64, (fi.count+63)/64)
		}
		w, m := p.Index/64, uint64(1)<<(p.Index%64)
		if fi.bits[w]&m != 0 {
			continue
		}
		fi.bits[w] |= m
		fi.acked++
		q.records--
		if fi.acked == fi.count && !fi.growing {
			q.killLocked(fi)
			q.deleteLocked(fi)
		} else {
			q.dirty[fi.id] = fi
		}
	}
	q.tidyLocked()
	if bad > 0 {
		return fmt.Errorf("buffer %s: queue %q: ack: %d positions beyond their frame's records (first %s)", q.b.path, q.name, bad, firstBad)
	}
	return nil
}

// Stats returns the queue's depth and drop counters.
func (q *Queue) Stats() QueueStats {
	q.mu.Lock()
	defer q.mu.Unlock()
	s := QueueStats{
		Records:        q.records,
		Bytes:          q.bytes,
		Frames:         len(q.frames) - q.deadN,
		Dropped:        make(map[DropReason]uint64, len(Reasons)),
		CorruptFrames:  q.corrupt,
		CorruptRecords: q.corruptRecords,
	}
	if len(q.frames) > 0 {
		s.Oldest = time.Unix(0, q.frames[0].appended)
	}
	for _, r := range Reasons {
		s.Dropped[r] = q.dropped[reasonIndex(r)]
	}
	return s
}

func (q *Queue) droppedTotals() [numReasons]uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.dropped
}

// scan rebuilds the queue's state from its buckets in tx and returns the
// largest frame id seen.
func (q *Queue) scan(tx *bolt.Tx) (uint64, error) {
	bkt, ab := tx.Bucket(q.bucket), tx.Bucket(q.ackBucket)
	if q.b.opts.ReadOnly && bkt == nil {
		return 0, nil // not in the file: empty
	}
	if bkt == nil || (ab == nil && !q.b.opts.ReadOnly) {
		return 0, errors.New("BUG: queue buckets missing after init")
	}
	if sys := tx.Bucket(sysBucket); sys != nil {
		q.dropped = decodeDrops(unwrap(sys.Get(q.droppedKey())))
	}
	var last uint64
	c := bkt.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if len(k) != keyLen {
			q.corrupt++
			q.b.log.Error("buffer queue holds a key that is not a frame; ignoring it", "queue", q.name, "key_len", len(k))
			continue
		}
		id := binary.BigEndian.Uint64(k)
		last = max(last, id)
		var err error
		if v != nil {
			err = errors.New("a plain value where a frame bucket belongs")
		} else if v = getFrame(bkt, id); v == nil {
			err = errors.New("frame bucket without frame data")
		}
		var h frameHeader
		if err == nil {
			h, err = parseHeader(v)
		}
		if err == nil {
			err = q.checkLoc(h, id)
		}
		if err != nil {
			q.corrupt++
			q.pendingDel = append(q.pendingDel, id)
			q.b.log.Error("buffer frame corrupt; skipping it", "queue", q.name, "frame", id, "error", err)
			continue
		}
		if h.count == 0 {
			q.pendingDel = append(q.pendingDel, id)
			continue
		}
		fi := &frameInfo{id: id, count: h.count, size: int64(len(v) + keyLen), appended: h.appended}
		q.frames = append(q.frames, fi)
		q.records += int64(fi.count)
		q.bytes += fi.size
	}
	if ab == nil {
		q.tidyLocked()
		return last, nil
	}
	err := ab.ForEach(func(k, v []byte) error {
		if len(k) != keyLen {
			return nil
		}
		id := binary.BigEndian.Uint64(k)
		fi := q.lookupLocked(id)
		if fi == nil {
			q.pendingDel = append(q.pendingDel, id) // a stale bitmap
			return nil
		}
		fi.bits = decodeBits(v, fi.count)
		for _, w := range fi.bits {
			fi.acked += uint32(bits.OnesCount64(w))
		}
		q.records -= int64(fi.acked)
		if fi.acked == fi.count {
			q.killLocked(fi)
			q.pendingDel = append(q.pendingDel, id)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	q.tidyLocked()
	return last, nil
}

// encodeBits and decodeBits store an acknowledgement bitmap as
// little-endian 64-bit words.
func encodeBits(words []uint64) []byte {
	out := make([]byte, 8*len(words))
	for i, w := range words {
		binary.LittleEndian.PutUint64(out[8*i:], w)
	}
	return out
}

func decodeBits(v []byte, count uint32) []uint64 {
	words := make([]uint64, (count+63)/64)
	for i := range words {
		if 8*i+8 <= len(v) {
			words[i] = binary.LittleEndian.Uint64(v[8*i:])
		}
	}
	if r := count % 64; r != 0 && len(words) > 0 {
		words[len(words)-1] &= 1<<r - 1
	}
	return words
}
