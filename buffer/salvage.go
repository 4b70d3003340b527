package buffer

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

const salvageTxBytes = 64 << 20

// Recovery says what Open found about the file's past and what it did: a
// new file, an empty or missing one, or a damaged one moved aside and
// salvaged.
type Recovery struct {
	// NewFile is set when Open created the file (or found it empty).
	NewFile bool
	// StateLost gives the reasons why the file's metadata (the sequence
	// numbers a caller keeps there) could not be carried over; empty when
	// it was, or when the file is new and nothing existed before. A caller
	// numbering records in the metadata must start a new epoch.
	StateLost []string
	// Quarantined is where a damaged file was moved; Cause says what was
	// wrong with it.
	Quarantined, Cause string
	// MetaRecovered is set when the metadata of a quarantined file was
	// read in full and copied.
	MetaRecovered bool
	// FramesRecovered and RecordsRecovered count the intact frames (and
	// their records) found in the quarantined file and copied. Records
	// delivered shortly before the damage may come back (at-least-once).
	FramesRecovered, RecordsRecovered uint64
	// FramesLost and RecordsLost count frames whose header is intact but
	// whose records are damaged: known losses. Damage that destroyed a
	// frame's header too leaves no trace of it.
	FramesLost, RecordsLost uint64
	// Lost lists the first lost frames (at most maxLostListed).
	Lost []LostFrame
	// UnknownQueueFrames counts intact frames of queues not configured now:
	// they stay in the quarantined file.
	UnknownQueueFrames uint64
	// StaleFrames counts intact frames left out because they are old
	// copies of frames a merge had combined into another (still in the
	// pages the merge freed): their records came back once, with it.
	StaleFrames uint64
	// Runtime counts the files found damaged while running and recovered
	// in place; the other fields then add up every recovery (Quarantined,
	// Cause and MetaRecovered are the last one's).
	Runtime int
}

// LostFrame is one frame found damaged by the salvage.
type LostFrame struct {
	// Queue is the frame's queue ("" when its header does not say).
	Queue string
	// Frame is its id (0 when its header does not say).
	Frame uint64
	// Records is the number of records it held.
	Records uint32
	// Appended is the append time of its first record.
	Appended time.Time
}

const maxLostListed = 100

// Recovery returns what Open found and did about the file's past.
func (b *Buffer) Recovery() Recovery {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	r := b.recovery
	r.StateLost = slices.Clone(r.StateLost)
	r.Lost = slices.Clone(r.Lost)
	return r
}

// salvage copies into the fresh file what the quarantined file src still
// holds: the metadata (read by bbolt in isolation) and every intact frame
// (found by scanning the raw file, whatever happened to bbolt's pages). It
// logs what it copied and what is known lost; it never fails Open.
func (b *Buffer) salvage(src string) {
	r := &b.recovery
	mr, err := b.runChild(ChildMeta, src)
	maxID, serr := b.salvageFrames(src, mr.Acks)
	if serr != nil {
		b.log.Error("buffer salvage: scanning the damaged file failed; what was not copied stays in it", "moved_to", src, "error", serr)
	}
	switch next := sysNextFrame(mr.Sys); {
	case err != nil:
		r.StateLost = append(r.StateLost, fmt.Sprintf("the metadata of the damaged file could not be read: %v", err))
	case !mr.MetaOK:
		r.StateLost = append(r.StateLost, fmt.Sprintf("the metadata of the damaged file could not be read: %s", firstOr(mr.Problems, "no metadata bucket")))
	case maxID > 0 && next <= maxID:
		// bbolt read an older commit (a meta page was lost): the newest
		// frames are not covered by this metadata.
		r.StateLost = append(r.StateLost, fmt.Sprintf("the metadata of the damaged file is older than its newest frames (it knows frames below %d, frame %d was found): its last commits are lost", next, maxID))
	}
	if err == nil {
		copyMeta := len(r.StateLost) == 0
		if werr := b.restoreMeta(mr, copyMeta); werr != nil {
			r.StateLost = append(r.StateLost, fmt.Sprintf("the metadata of the damaged file could not be copied: %v", werr))
		} else {
			r.MetaRecovered = copyMeta
		}
	}
	attrs := []any{"moved_to", src, "frames_recovered", r.FramesRecovered, "records_recovered", r.RecordsRecovered,
		"frames_lost", r.FramesLost, "records_lost", r.RecordsLost, "metadata_recovered", r.MetaRecovered}
	if r.UnknownQueueFrames > 0 {
		attrs = append(attrs, "frames_of_other_queues_left_in_file", r.UnknownQueueFrames)
	}
	if r.StaleFrames > 0 {
		attrs = append(attrs, "merged_copies_skipped", r.StaleFrames)
	}
	for i, l := range r.Lost {
		if i == 10 {
			attrs = append(attrs, "lost_more", len(r.Lost)-10)
			break
		}
		attrs = append(attrs, slog.Group(fmt.Sprintf("lost_%d", i), "queue", l.Queue, "frame", l.Frame, "records", l.Records,
			"appended", l.Appended.UTC().Format(time.RFC3339Nano)))
	}
	level := slog.LevelWarn
	if r.RecordsLost > 0 || len(r.StateLost) > 0 {
		level = slog.LevelError
	}
	b.log.Log(context.Background(), level, "buffer salvaged the damaged file", attrs...)
	if len(r.StateLost) > 0 {
		b.log.Error("buffer sequence state lost: a new epoch starts", "why", r.StateLost)
	}
}

func firstOr(s []string, def string) string {
	if len(s) > 0 {
		return s[0]
	}
	return def
}

// restoreMeta copies the next frame number and the drop counters read from
// the damaged file and, with entries set, the metadata entries.
func (b *Buffer) restoreMeta(mr ChildReport, entries bool) error {
	b.nextFrame = max(b.nextFrame, sysNextFrame(mr.Sys))
	return b.update(func(tx *bolt.Tx) error {
		mb := tx.Bucket(metaBucket)
		for k, v := range mr.Meta {
			if !entries {
				break
			}
			if k == "" {
				continue
			}
			if err := mb.Put([]byte(k), v); err != nil {
				return err
			}
		}
		sys := tx.Bucket(sysBucket)
		if v := mr.Sys[string(keyEpoch)]; entries && validEpoch(v) {
			// The numbering goes on: so does its epoch.
			if err := sys.Put(keyEpoch, v); err != nil {
				return err
			}
			b.epoch = string(v)
		}
		return b.restoreSys(sys, mr.Sys)
	})
}

// restoreSys carries the entries of the damaged file's system bucket that
// belong to the file's history over to the fresh file.
func (b *Buffer) restoreSys(sys *bolt.Bucket, old map[string][]byte) error {
	for k, v := range old {
		if !bytes.HasPrefix([]byte(k), droppedKeyPrefix) || len(v) != 8*numReasons {
			continue
		}
		if err := sys.Put([]byte(k), v); err != nil {
			return err
		}
	}
	return nil
}

// found is one frame the raw scan found.
type found struct {
	off      int64
	h        frameHeader
	length   int
	intact   bool
	legacyID uint64 // for legacy frames: the trailer checksum, to tell copies apart
}

// salvageFrames scans the raw file src for frames and copies the intact
// ones into the fresh file: version 3 frames into the queue and under the
// id their header names (the newest copy when there are several; none
// below the queue's head, which were delivered), older frames into the
// first queue after them in append order.
//
// It returns the largest id of the version 3 frames it found intact.
//
// acks are the acknowledgement bitmaps read from the damaged file: they
// are copied with their frames, so what was delivered is not sent again.
func (b *Buffer) salvageFrames(src string, acks map[string]map[uint64][]byte) (maxID uint64, err error) {
	f, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	frames, err := scanFile(f)
	if err != nil {
		return 0, err
	}
	r := &b.recovery
	byTag := make(map[uint32]*Queue, len(b.order))
	for _, q := range b.order {
		byTag[q.tag] = q
	}
	type key struct {
		tag uint32
		id  uint64
	}
	best := map[key]found{}
	heads := map[uint32]uint64{}
	var legacy []found
	legacySeen := map[[2]uint64]bool{}
	var lostLegacy []found
	for _, fr := range frames {
		if !fr.h.hasLoc {
			if !fr.intact {
				lostLegacy = append(lostLegacy, fr)
				continue
			}
			k := [2]uint64{fr.legacyID, uint64(fr.h.appended)}
			if !legacySeen[k] {
				legacySeen[k] = true
				legacy = append(legacy, fr)
			}
			continue
		}
		heads[fr.h.loc.queue] = max(heads[fr.h.loc.queue], fr.h.loc.head)
		k := key{fr.h.loc.queue, fr.h.loc.id}
		cur, ok := best[k]
		switch {
		case !ok:
			best[k] = fr
		case fr.intact && !cur.intact:
			best[k] = fr
		case fr.intact == cur.intact && fr.h.count > cur.h.count:
			best[k] = fr
		}
	}
	var keep []found
	for k, fr := range best {
		if k.id < heads[k.tag] {
			continue // delivered before the newest frame was written
		}
		q := byTag[k.tag]
		if q == nil {
			if fr.intact {
				r.UnknownQueueFrames++
			}
			continue
		}
		if !fr.intact {
			b.noteLost(q.name, k.id, fr)
			continue
		}
		keep = append(keep, fr)
		maxID = max(maxID, k.id)
	}
	for _, fr := range lostLegacy {
		b.noteLost("", 0, fr)
	}
	slices.SortFunc(keep, func(a, c found) int {
		return cmp.Or(cmp.Compare(a.h.loc.queue, c.h.loc.queue), cmp.Compare(a.h.loc.id, c.h.loc.id))
	})
	slices.SortStableFunc(legacy, func(a, c found) int { return cmp.Compare(a.h.appended, c.h.appended) })

	w := &salvageWriter{b: b}
	defer w.rollback()
	buf := make([]byte, 0, 64<<10)
	var merged *mergedFrame
	for _, fr := range keep {
		if buf, err = readFrame(f, fr, buf); err != nil {
			return maxID, err
		}
		if merged != nil && merged.queue != fr.h.loc.queue {
			merged = nil
		}
		if merged.holds(buf, fr.h) {
			r.StaleFrames++
			continue
		}
		merged = newMergedFrame(buf, fr.h)
		q := byTag[fr.h.loc.queue]
		if err := w.put(q, fr.h.loc.id, buf); err != nil {
			return maxID, err
		}
		if bits := acks[q.name][fr.h.loc.id]; bits != nil {
			if err := w.putAck(q, fr.h.loc.id, bits); err != nil {
				return maxID, err
			}
		}
		r.FramesRecovered++
		r.RecordsRecovered += uint64(fr.h.count)
	}
	next := max(b.nextFrame, maxID+1)
	if len(legacy) > 0 && len(b.order) > 0 {
		q := b.order[0]
		for _, fr := range legacy {
			if buf, err = readFrame(f, fr, buf); err != nil {
				return maxID, err
			}
			if err := w.put(q, next, buf); err != nil {
				return maxID, err
			}
			next++
			r.FramesRecovered++
			r.RecordsRecovered += uint64(fr.h.count)
		}
	}
	b.nextFrame = next
	return maxID, w.commit()
}

// mergedFrame is a frame that a merge made from a run of small frames (it
// has a segment table): the old copies of those frames, still in the pages
// the merge freed, follow it in id order and hold a part of its records.
type mergedFrame struct {
	queue   uint32
	records []byte
	times   map[int64]bool
}

// newMergedFrame returns v as a mergedFrame, or nil when it has no segment
// table.
func newMergedFrame(v []byte, h frameHeader) *mergedFrame {
	if !hasSegments(v[0]) {
		return nil
	}
	recEnd, table, err := splitFrame(v)
	if err != nil {
		return nil
	}
	m := &mergedFrame{queue: h.loc.queue, records: bytes.Clone(v[h.hdrLen:recEnd]), times: map[int64]bool{h.appended: true}}
	for i := 0; i+segmentLen <= len(table); i += segmentLen {
		m.times[int64(binary.BigEndian.Uint64(table[i+4:]))] = true
	}
	return m
}

// holds reports whether frame v is an old copy of frames merged into m:
// appended at the time of one of m's segments, its records a run of m's.
func (m *mergedFrame) holds(v []byte, h frameHeader) bool {
	if m == nil || h.count == 0 || !m.times[h.appended] {
		return false
	}
	recEnd, _, err := splitFrame(v)
	if err != nil || recEnd-h.hdrLen >= len(m.records) {
		return false
	}
	return bytes.Contains(m.records, v[h.hdrLen:recEnd])
}

// noteLost counts a frame whose header is intact and whose records are not.
func (b *Buffer) noteLost(queue string, id uint64, fr found) {
	r := &b.recovery
	r.FramesLost++
	r.RecordsLost += uint64(fr.h.count)
	if len(r.Lost) < maxLostListed {
		r.Lost = append(r.Lost, LostFrame{Queue: queue, Frame: id, Records: fr.h.count, Appended: time.Unix(0, fr.h.appended)})
	}
}

// readFrame reads the frame fr of f into buf.
func readFrame(f *os.File, fr found, buf []byte) ([]byte, error) {
	buf = slices.Grow(buf[:0], fr.length)[:fr.length]
	if _, err := f.ReadAt(buf, fr.off); err != nil {
		return nil, fmt.Errorf("read frame at offset %d: %w", fr.off, err)
	}
	return buf, nil
}

// salvageWriter writes frames into the fresh file in transactions of
// bounded size.
type salvageWriter struct {
	b    *Buffer
	tx   *bolt.Tx
	size int
}

func (w *salvageWriter) put(q *Queue, id uint64, v []byte) error {
	if w.tx != nil && w.size >= salvageTxBytes {
		if err := w.commit(); err != nil {
			return err
		}
	}
	if w.tx == nil {
		tx, err := w.b.db.Begin(true)
		if err != nil {
			return err
		}
		w.tx, w.size = tx, 0
	}
	w.size += len(v)
	// bbolt keeps v until the commit: give it its own copy.
	return putFrame(w.tx.Bucket(q.bucket), id, bytes.Clone(v))
}

// putAck writes the acknowledgement bitmap of frame id of q, in the
// transaction of the frame's put.
func (w *salvageWriter) putAck(q *Queue, id uint64, bits []byte) error {
	return w.tx.Bucket(q.ackBucket).Put(frameKey(id), bytes.Clone(bits))
}

func (w *salvageWriter) commit() error {
	if w.tx == nil {
		return nil
	}
	tx := w.tx
	w.tx = nil
	return tx.Commit()
}

func (w *salvageWriter) rollback() {
	if w.tx != nil {
		_ = w.tx.Rollback()
		w.tx = nil
	}
}

// putUint64s encodes counters big-endian.
func putUint64s(vs []uint64) []byte {
	out := make([]byte, 0, 8*len(vs))
	for _, v := range vs {
		out = binary.BigEndian.AppendUint64(out, v)
	}
	return out
}
