package buffer

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Merging small frames keeps the in-memory frame index small whatever the
// backlog. Under load a group commit makes full frames of up to
// maxFrameBytes; a slow trickle makes frames of at most coalesceMaxPayload,
// 20 times as many per byte, and the index costs about 100 bytes per frame
// (twice that in resident memory with the garbage collector's headroom):
// a backlog of 10 million trickled records would cost over 100 MB. The
// background flush therefore rewrites runs of consecutive small frames into
// one frame, in transactions of at most mergeTxBytes, and wakes itself
// again while runs remain.
//
// A frame is merged only if no position in it has left the buffer: no Read
// returned a record of it and Last did not return it (frameInfo.served),
// and it has no acknowledgements. Positions held by readers therefore never
// point into a merged frame, and every merged record keeps its order
// relative to them: the merged frame takes the id of the run's first
// frame, and the run lies between frames whose positions may be held. The
// tail frame is never merged (Appends may grow it).
const (
	// mergeTxBytes bounds the merged frames written per transaction.
	mergeTxBytes = 16 << 20
	// mergeWakeFrames is the number of small frames appended to a queue
	// since its last merge that wakes the background flush early.
	mergeWakeFrames = 1024
)

// mergeSmall is the payload below which a frame is merged with its
// neighbours: a quarter of a full frame. Merging rewrites the frames once
// more, so it is kept to the frames that cost the most memory per byte:
// those of a trickle (at most coalesceMaxPayload) and of group commits of
// fewer than about 80 records of 200 bytes. Frames above it cost at most 4
// times as much memory per byte as full ones. A function of maxFrameBytes,
// which tests change.
var mergeSmall = func() int { return maxFrameBytes / 4 }

// mergeRun is one run of frames to merge into its first.
type mergeRun struct {
	frames []*frameInfo
	// val is the merged frame, set by write; nil if the run was skipped
	// (a frame failed its checksum: Read will find and count it).
	val []byte
}

// mergeable reports whether fi may join a merge run.
func (fi *frameInfo) mergeable() bool {
	return !fi.dead && !fi.served && !fi.growing && fi.acked == 0 &&
		fi.size-keyLen-frameOverhead < int64(mergeSmall())
}

// mergeLocked merges runs of small frames of every queue, at most
// mergeTxBytes of them, in one transaction per queue, and wakes the
// background flush if runs remain. The caller holds b.wmu.
func (b *Buffer) mergeLocked() error {
	more := false
	for _, q := range b.order {
		m, err := q.merge()
		if err != nil {
			return fmt.Errorf("buffer %s: merge frames of queue %q: %w", b.path, q.name, err)
		}
		more = more || m
	}
	if more {
		b.wake()
	}
	return nil
}

// merge merges runs of q's small frames, holding q.mu throughout so that
// no position in them can leave meanwhile. It reports whether runs remain.
func (q *Queue) merge() (more bool, err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.smallSinceMerge = 0
	var runs []mergeRun
	budget := 0
	limit := maxFrameBytes
	var cur []*frameInfo
	payload := 0
	flush := func() {
		if len(cur) >= 2 {
			runs = append(runs, mergeRun{frames: cur})
			budget += payload
		}
		cur, payload = nil, 0
	}
	last := len(q.frames) - 1
	for i := 0; i < last; i++ { // never the tail frame
		fi := q.frames[i]
		if fi.dead {
			continue
		}
		p := int(fi.size) - keyLen - frameOverhead
		if !fi.mergeable() || payload+p > limit {
			flush()
			if !fi.mergeable() {
				continue
			}
		}
		cur = append(cur, fi)
		payload += p
		if budget >= mergeTxBytes {
			more = true
			break
		}
	}
	if !more {
		flush()
	}
	if len(runs) == 0 {
		return false, nil
	}
	err = q.b.update(func(tx *bolt.Tx) error {
		bkt, ab := tx.Bucket(q.bucket), tx.Bucket(q.ackBucket)
		if bkt == nil || ab == nil {
			return fmt.Errorf("queue %q: bucket missing", q.name)
		}
		for r := range runs {
			if err := runs[r].write(bkt, ab); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	for r := range runs {
		q.applyMerge(&runs[r])
	}
	q.tidyLocked()
	return more, nil
}

// write builds the merged frame from the run's frames in the file and
// replaces them by it. A frame that fails its checksum makes it skip the
// run, leaving the frames as they are.
func (r *mergeRun) write(bkt, ab *bolt.Bucket) error {
	var merged []byte
	for k, fi := range r.frames {
		v := getFrame(bkt, fi.id)
		if v == nil {
			return nil
		}
		h, err := parseHeader(v)
		if err != nil || h.count != fi.count || verifyFrame(v, h) != nil {
			return nil
		}
		if k == 0 {
			merged = append([]byte(nil), v...)
			continue
		}
		// Append the frame's records, one segment (append time) at a time.
		_, table, _ := splitFrame(v)
		recs, err := rawRecords(v, h, nil)
		if err != nil {
			return nil
		}
		segs := segments{table: table, cur: h.appended}
		var group [][]byte
		groupAt := h.appended
		off := 0
		for idx := uint32(0); idx < h.count; idx++ {
			s, e := nextRecord(recs, off)
			off = e
			t := segs.at(idx)
			if len(group) > 0 && t != groupAt {
				if merged, err = growFrame(merged, group, groupAt); err != nil {
					return nil
				}
				group = group[:0]
			}
			groupAt = t
			group = append(group, recs[s:e])
		}
		if len(group) > 0 {
			if merged, err = growFrame(merged, group, groupAt); err != nil {
				return nil
			}
		}
	}
	for _, fi := range r.frames[1:] {
		if err := deleteFrame(bkt, fi.id); err != nil {
			return fmt.Errorf("delete merged frame %d: %w", fi.id, err)
		}
		if err := ab.Delete(frameKey(fi.id)); err != nil {
			return fmt.Errorf("delete acks of merged frame %d: %w", fi.id, err)
		}
	}
	if err := putFrame(bkt, r.frames[0].id, merged); err != nil {
		return fmt.Errorf("put merged frame %d: %w", r.frames[0].id, err)
	}
	r.val = merged
	return nil
}

// applyMerge updates memory after a merge committed. The caller holds q.mu.
func (q *Queue) applyMerge(r *mergeRun) {
	if r.val == nil {
		return
	}
	first := r.frames[0]
	for _, fi := range r.frames[1:] {
		first.count += fi.count
		q.bytes -= fi.size
		fi.dead = true
		q.deadN++
	}
	size := int64(len(r.val) + keyLen)
	q.bytes += size - first.size
	first.size = size
	first.verified = true
	first.curIdx, first.curOff, first.curPrev = 0, 0, nil
}
