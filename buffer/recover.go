package buffer

import (
	"errors"
	"fmt"
)

// A file damaged while the buffer runs (bbolt panics on a page that was
// fine at Open, or reports a structural error) is handled as at Open, in
// place: the background flush, or the commit that met the damage, closes
// the file, moves it aside, salvages it into a fresh file and carries on
// with it. Queue values stay valid; frame ids do not change (the raw scan
// finds them in the frame headers), so positions already returned remain
// usable, and records in flight may be delivered again (at-least-once).
// The caller's sequence numbering continues from memory.

// isCorruption reports whether err from a transaction says the file is
// damaged.
func isCorruption(err error) bool {
	return errors.Is(err, ErrCorrupt) || isBoltCorruption(err)
}

// requestRecover asks the background flush to recover the file: Read met
// damage and cannot take the write lock itself.
func (b *Buffer) requestRecover() {
	if b.opts.ReadOnly || b.opts.OnCorrupt != Quarantine {
		return
	}
	b.needRecover.Store(true)
	b.wake()
}

// commitOrRecoverLocked runs commitLocked and, when it fails because the
// file is damaged, recovers the file and commits once more.
func (b *Buffer) commitOrRecoverLocked(records [][]byte, meta map[string][]byte, only *Queue, force bool) error {
	err := b.commitLocked(records, meta, only, force)
	if err == nil || !isCorruption(err) || b.opts.ReadOnly || b.opts.OnCorrupt != Quarantine {
		return err
	}
	if rerr := b.recoverLocked(err); rerr != nil {
		return fmt.Errorf("%w (and recovering the file failed: %w)", err, rerr)
	}
	return b.commitLocked(records, meta, only, force)
}

// recoverLocked closes the damaged file, quarantines and salvages it, and
// adopts the fresh file. The caller holds b.wmu.
func (b *Buffer) recoverLocked(cause error) error {
	b.needRecover.Store(false)
	b.log.Error("buffer file damaged while running: moving it aside, salvaging it and carrying on with a fresh file", "error", cause)
	for _, q := range b.order {
		q.mu.Lock()
	}
	defer func() {
		for _, q := range b.order {
			q.mu.Unlock()
		}
	}()
	b.dbmu.Lock()
	defer b.dbmu.Unlock()
	if b.abandoned {
		// A transaction holds its writer lock: the damaged file stays
		// open (and mapped) until the process ends.
		b.log.Warn("the damaged buffer file stays open until the agent restarts")
	} else if err := b.db.Close(); err != nil {
		b.log.Warn("closing the damaged buffer file", "error", err)
	}
	nb, err := quarantine(b.path, b.opts, cause, b.abandoned)
	if err != nil {
		// Carry on with the file as it is, if it can still be opened, and
		// try again later.
		if b.abandoned {
			b.needRecover.Store(true)
			return err
		}
		if lerr := b.reopenLocked(); lerr != nil {
			return fmt.Errorf("%w; reopening it: %w", err, lerr)
		}
		b.needRecover.Store(true)
		return err
	}
	b.db, b.pageSize, b.abandoned, b.gen = nb.db, nb.pageSize, false, nb.gen
	b.nextFrame = max(b.nextFrame, nb.nextFrame)
	b.epoch = nb.epoch
	lost := map[string]uint64{}
	for _, l := range nb.recovery.Lost {
		lost[l.Queue] += uint64(l.Records)
	}
	for _, q := range b.order {
		q.adoptLocked(nb.queues[q.name], lost[q.name])
	}
	r := &b.recovery
	r.Quarantined, r.Cause = nb.recovery.Quarantined, nb.recovery.Cause
	r.MetaRecovered = nb.recovery.MetaRecovered
	r.StateLost = append(r.StateLost, nb.recovery.StateLost...)
	r.FramesRecovered += nb.recovery.FramesRecovered
	r.RecordsRecovered += nb.recovery.RecordsRecovered
	r.FramesLost += nb.recovery.FramesLost
	r.RecordsLost += nb.recovery.RecordsLost
	r.UnknownQueueFrames += nb.recovery.UnknownQueueFrames
	r.StaleFrames += nb.recovery.StaleFrames
	r.CommitsReplayed += nb.recovery.CommitsReplayed
	r.LostRanges = append(r.LostRanges, nb.recovery.LostRanges...)
	if len(r.LostRanges) > maxLostRanges {
		r.LostRanges = r.LostRanges[len(r.LostRanges)-maxLostRanges:]
	}
	r.LostRangeCount += nb.recovery.LostRangeCount
	r.LostSeries += nb.recovery.LostSeries
	r.LostSeqs += nb.recovery.LostSeqs
	r.Lost = append(r.Lost, nb.recovery.Lost...)
	if len(r.Lost) > maxLostListed {
		r.Lost = r.Lost[len(r.Lost)-maxLostListed:]
	}
	r.Runtime++
	b.damaged.Store(true)
	return nil
}

// reopenLocked opens the file at b.path again after recoverLocked closed
// it and could not replace it.
func (b *Buffer) reopenLocked() error {
	nb := &Buffer{path: b.path, opts: b.opts, log: b.log}
	if err := nb.load(); err != nil {
		return err
	}
	b.db, b.pageSize = nb.db, nb.pageSize
	return nil
}

// adoptLocked takes over the state of nq, the same queue of a fresh file,
// keeping q's drop counters (newer than the file's) plus lost records
// found damaged. The caller holds q.mu.
func (q *Queue) adoptLocked(nq *Queue, lost uint64) {
	dropped := q.dropped
	dropped[reasonIndex(ReasonCorrupt)] += lost
	q.frames, q.deadN = nq.frames, nq.deadN
	q.records, q.bytes = nq.records, nq.bytes
	q.pendingDel, q.delBytes = nq.pendingDel, nq.delBytes
	q.dirty = nq.dirty
	q.smallSinceMerge = nq.smallSinceMerge
	q.corrupt += nq.corrupt
	q.dropped = dropped
	q.dropsDirty = true
}
