package buffer

import (
	"fmt"
	"log/slog"
	"time"

	bolt "go.etcd.io/bbolt"
)

// queuePlan is one queue's part of a commit, decided before the write
// transaction and applied to memory only if it commits.
type queuePlan struct {
	q      *Queue
	frames []newFrame
	// appended is the append time of frames.
	appended int64
	// lost counts new records refused by MaxBytes.
	lost uint64
	// grow is the queue's tail frame when the new records are appended to
	// it instead of starting a frame (see coalesceMaxPayload); growRecs are
	// those records and growSize the frame's new size once written.
	grow     *frameInfo
	growRecs [][]byte
	growSize int64
	drops    []planDrop
	del      []uint64
	dirty    []dirtyBits
	// dropped is the queue's drop totals once the plan commits, persisted
	// by write when writeDrops.
	dropped    [numReasons]uint64
	writeDrops bool
}

type newFrame struct {
	id    uint64
	val   []byte
	count uint32
}

type planDrop struct {
	fi     *frameInfo
	reason DropReason
	// n is the records it drops (those not acknowledged when planned).
	n uint64
}

type dirtyBits struct {
	id   uint64
	bits []byte
}

func (p *queuePlan) empty() bool {
	return len(p.frames) == 0 && p.grow == nil && p.lost == 0 && len(p.drops) == 0 && len(p.del) == 0 && len(p.dirty) == 0 && !p.writeDrops
}

// addDrop plans dropping fi for reason. The caller holds q.mu.
func (p *queuePlan) addDrop(fi *frameInfo, reason DropReason) {
	p.drops = append(p.drops, planDrop{fi: fi, reason: reason, n: uint64(fi.count - fi.acked)})
}

// sealDropsLocked computes the drop totals the plan persists. The caller
// holds q.mu.
func (p *queuePlan) sealDropsLocked() {
	q := p.q
	p.dropped = q.dropped
	p.dropped[reasonIndex(ReasonMaxBytes)] += p.lost
	for _, d := range p.drops {
		p.dropped[reasonIndex(d.reason)] += d.n
	}
	p.writeDrops = q.dropsDirty || p.dropped != q.dropped
	q.dropsDirty = false
}

// plan decides what this commit writes to q: the new frames (numbered from
// firstID) that the bounds let in, the frames the bounds drop, and the
// pending deletions and acknowledgement bitmaps. It moves the pending work
// into the plan; restore puts it back if the commit fails.
func (q *Queue) plan(enc *encoder, now time.Time, firstID uint64) queuePlan {
	o := &q.b.opts
	q.mu.Lock()
	defer q.mu.Unlock()
	p := queuePlan{q: q, appended: enc.appended}

	n := len(enc.records)
	lo, hi := 0, n
	var newSize int64
	if n > 0 {
		newSize = enc.rangeSize(0, n)
	}
	i := 0 // next frame the bounds may drop
	bytes := q.bytes
	if o.MaxAge > 0 {
		cutoff := now.Add(-o.MaxAge).UnixNano()
		for ; i < len(q.frames); i++ {
			fi := q.frames[i]
			if fi.dead {
				continue
			}
			if fi.appended >= cutoff {
				break
			}
			p.addDrop(fi, ReasonMaxAge)
			bytes -= fi.size
		}
	}
	if o.MaxBytes > 0 {
		switch o.DropPolicy {
		case DropNewest:
			if n > 0 && bytes+newSize > o.MaxBytes {
				hi = enc.prefixFit(0, n, o.MaxBytes-bytes)
				p.lost = uint64(n - hi)
			}
		default: // DropOldest
			if newSize > o.MaxBytes {
				lo = enc.suffixStart(0, n, o.MaxBytes)
				p.lost = uint64(lo)
				newSize = enc.rangeSize(lo, n)
			}
			for ; bytes+newSize > o.MaxBytes && i < len(q.frames); i++ {
				fi := q.frames[i]
				if fi.dead {
					continue
				}
				p.addDrop(fi, ReasonMaxBytes)
				bytes -= fi.size
			}
		}
	}
	if hi > lo && q.canGrowLocked(i, enc.records[lo:hi], now) {
		fi := q.frames[len(q.frames)-1]
		fi.growing = true
		p.grow, p.growRecs = fi, enc.records[lo:hi]
	} else if hi > lo {
		for k, c := range enc.encode(lo, hi, q.tag, firstID, q.headLocked(firstID)) {
			p.frames = append(p.frames, newFrame{id: firstID + uint64(k), val: c.val, count: uint32(c.hi - c.lo)})
		}
	}
	p.del, q.pendingDel, q.delBytes = q.pendingDel, nil, 0
	for id, fi := range q.dirty {
		if !fi.dead {
			p.dirty = append(p.dirty, dirtyBits{id, encodeBits(fi.bits)})
		}
	}
	clear(q.dirty)
	p.sealDropsLocked()
	return p
}

// headLocked returns the id of the queue's oldest live frame, or next when
// it has none: every frame below it was delivered or dropped.
func (q *Queue) headLocked(next uint64) uint64 {
	for _, fi := range q.frames {
		if !fi.dead {
			return fi.id
		}
	}
	return next
}

// coalesceMaxPayload and coalesceMaxAge bound appending records to the
// queue's tail frame instead of starting a new one. Small commits (a few
// samples each, the common case at low rates) would otherwise make a frame
// each; coalescing them into frames of up to a page keeps the frame count,
// the memory per frame and the per-frame overhead on disk low, at no extra
// I/O: a value this small lives in a leaf page that the commit rewrites
// anyway. Variables so that tests can turn coalescing off.
var (
	coalesceMaxPayload = 3 << 10
	coalesceMaxAge     = time.Second
)

// canGrowLocked reports whether records can be appended to the tail frame:
// it is live, written by this process (verified), not acknowledged in part,
// not dropped by this plan (dropFrom is the plan's drop cursor), young,
// and stays small.
func (q *Queue) canGrowLocked(dropFrom int, records [][]byte, now time.Time) bool {
	n := len(q.frames)
	if n == 0 || n-1 < dropFrom {
		return false
	}
	fi := q.frames[n-1]
	if fi.dead || !fi.verified || fi.acked > 0 || fi.growing || now.UnixNano()-fi.appended >= int64(coalesceMaxAge) {
		return false
	}
	payload := int(fi.size) - keyLen - frameOverhead
	for _, r := range records {
		payload += recordLen(len(r))
		if payload > coalesceMaxPayload {
			return false
		}
	}
	return true
}

// planDropOldest plans dropping the oldest live frames of q until at least
// need bytes (or everything) are dropped, for the given reason.
func (q *Queue) planDropOldest(need int64, reason DropReason) queuePlan {
	q.mu.Lock()
	defer q.mu.Unlock()
	p := queuePlan{q: q}
	for _, fi := range q.frames {
		if need <= 0 {
			break
		}
		if fi.dead || fi.growing {
			continue
		}
		p.addDrop(fi, reason)
		need -= fi.size
	}
	p.sealDropsLocked()
	return p
}

// write performs the plan inside the write transaction.
func (p *queuePlan) write(tx *bolt.Tx) error {
	q := p.q
	bkt, ab := tx.Bucket(q.bucket), tx.Bucket(q.ackBucket)
	if bkt == nil || ab == nil {
		return fmt.Errorf("queue %q: bucket missing", q.name)
	}
	if fi := p.grow; fi != nil {
		old := getFrame(bkt, fi.id)
		if old == nil {
			return fmt.Errorf("queue %q: tail frame %d missing", q.name, fi.id)
		}
		v, err := growFrame(old, p.growRecs, p.appended)
		if err != nil {
			return fmt.Errorf("queue %q: tail frame %d: %w", q.name, fi.id, err)
		}
		if err := putFrame(bkt, fi.id, v); err != nil {
			return fmt.Errorf("queue %q: put frame %d: %w", q.name, fi.id, err)
		}
		p.growSize = int64(len(v) + keyLen)
	}
	for _, f := range p.frames {
		if err := putFrame(bkt, f.id, f.val); err != nil {
			return fmt.Errorf("queue %q: put frame %d: %w", q.name, f.id, err)
		}
	}
	for _, d := range p.dirty {
		if err := ab.Put(frameKey(d.id), d.bits); err != nil {
			return fmt.Errorf("queue %q: put acks of frame %d: %w", q.name, d.id, err)
		}
	}
	del := func(id uint64) error {
		if err := deleteFrame(bkt, id); err != nil {
			return fmt.Errorf("queue %q: delete frame %d: %w", q.name, id, err)
		}
		if err := ab.Delete(frameKey(id)); err != nil {
			return fmt.Errorf("queue %q: delete acks of frame %d: %w", q.name, id, err)
		}
		return nil
	}
	for _, id := range p.del {
		if err := del(id); err != nil {
			return err
		}
	}
	for _, d := range p.drops {
		if err := del(d.fi.id); err != nil {
			return err
		}
	}
	if p.writeDrops {
		if err := q.b.txw.putEnv(tx.Bucket(sysBucket), envSysNS, q.droppedKey(), encodeDrops(p.dropped)); err != nil {
			return fmt.Errorf("queue %q: put drop counters: %w", q.name, err)
		}
	}
	return nil
}

// restore puts the plan's pending work back after a failed commit.
func (q *Queue) restore(p *queuePlan) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.pendingDel = append(p.del, q.pendingDel...)
	q.dropsDirty = q.dropsDirty || p.writeDrops
	if fi := p.grow; fi != nil {
		fi.growing = false
		if !fi.dead && fi.acked == fi.count { // acknowledged in full meanwhile
			q.killLocked(fi)
			q.deleteLocked(fi)
		}
	}
	for _, d := range p.dirty {
		if fi := q.lookupLocked(d.id); fi != nil {
			q.dirty[d.id] = fi
		}
	}
}

// apply updates memory after the plan committed. It reports whether
// anything was dropped.
func (q *Queue) apply(p *queuePlan) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	dropped := p.lost > 0
	for _, d := range p.drops {
		// Counted as planned (and persisted), even if acknowledged meanwhile.
		q.dropped[reasonIndex(d.reason)] += d.n
		dropped = true
		if !d.fi.dead {
			q.killLocked(d.fi)
		}
	}
	q.dropped[reasonIndex(ReasonMaxBytes)] += p.lost
	if fi := p.grow; fi != nil {
		add := uint32(len(p.growRecs))
		fi.growing = false
		fi.count += add
		if fi.bits != nil {
			fi.bits = append(fi.bits, make([]uint64, (fi.count+63)/64-uint32(len(fi.bits)))...)
		}
		q.records += int64(add)
		q.bytes += p.growSize - fi.size
		fi.size = p.growSize
	}
	for _, f := range p.frames {
		fi := &frameInfo{id: f.id, count: f.count, size: int64(len(f.val) + keyLen), appended: p.appended, verified: true}
		q.frames = append(q.frames, fi)
		q.records += int64(fi.count)
		q.bytes += fi.size
		if fi.mergeable() {
			q.smallSinceMerge++
		}
	}
	if q.smallSinceMerge >= mergeWakeFrames && q.b.opts.FlushInterval > 0 {
		q.b.wake()
	}
	q.tidyLocked()
	return dropped
}

// dropLog rate-limits the drop messages.
type dropLog struct {
	last   time.Time
	logged map[string][numReasons]uint64
}

// logDrops logs, per queue, the records dropped since the last message and
// the totals, at most once per dropLogInterval unless final. The caller
// holds b.wmu.
func (b *Buffer) logDrops(final bool) {
	now := b.opts.Now()
	d := &b.drops
	if !final && !d.last.IsZero() && now.Sub(d.last) < dropLogInterval {
		return
	}
	if d.logged == nil {
		d.logged = make(map[string][numReasons]uint64)
	}
	logged := false
	for _, q := range b.order {
		tot := q.droppedTotals()
		prev := d.logged[q.name]
		if tot == prev {
			continue
		}
		logged = true
		d.logged[q.name] = tot
		var since, total []any
		for _, r := range Reasons {
			k := reasonIndex(r)
			since = append(since, slog.Uint64(string(r), tot[k]-prev[k]))
			total = append(total, slog.Uint64(string(r), tot[k]))
		}
		b.log.Warn("buffer dropped records (queue bound or corruption)", "queue", q.name,
			slog.Group("dropped", since...), slog.Group("dropped_total", total...))
	}
	if logged {
		d.last = now
	}
}
