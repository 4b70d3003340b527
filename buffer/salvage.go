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
	// CommitsReplayed counts the commits newer than the metadata bbolt
	// could read (one when a meta page was lost) whose metadata the raw
	// scan found complete and replayed, so that the state was kept.
	CommitsReplayed int
	// LostRanges lists the sequence ranges of series known lost, when
	// Options.Series says what records carry: the longest first, at most
	// maxLostRanges (50); LostRangeCount counts them all, LostSeries the
	// series (per queue) they touch, LostSeqs the numbers in them (those
	// of a range open at its end, To 0, are not known).
	LostRanges     []LostRange
	LostRangeCount int
	LostSeries     int
	LostSeqs       uint64
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
	r.LostRanges = slices.Clone(r.LostRanges)
	return r
}

// salvage copies into the fresh file what the quarantined file src still
// holds: the metadata (read by bbolt in isolation) and every intact frame
// (found by scanning the raw file, whatever happened to bbolt's pages). It
// logs what it copied and what is known lost; it never fails Open.
func (b *Buffer) salvage(src string) {
	r := &b.recovery
	mr, err := b.runChild(ChildMeta, src)
	base := err == nil && mr.MetaOK
	// gen is the commit whose tree bbolt read.
	gen := commitGen(mr.Sys[string(keyNext)])
	keep := func(e envelope) bool {
		if e.kind == envValue && isDropKey(e.key) {
			return true // drop counters only grow: the largest found wins
		}
		return base && e.txid > gen
	}
	maxID, envs, serr := b.salvageFrames(src, mr.Acks, keep)
	if serr != nil {
		b.log.Error("buffer salvage: scanning the damaged file failed; what was not copied stays in it", "moved_to", src, "error", serr)
	}
	meta := unwrapAll(mr.Meta)
	sys := unwrapAll(mr.Sys)
	switch {
	case err != nil:
		r.StateLost = append(r.StateLost, fmt.Sprintf("the metadata of the damaged file could not be read: %v", err))
	case !mr.MetaOK:
		r.StateLost = append(r.StateLost, fmt.Sprintf("the metadata of the damaged file could not be read: %s", firstOr(mr.Problems, "no metadata bucket")))
	default:
		// bbolt read the tree of commit gen, an older one when a meta
		// page was lost: replay the newer commits the scan found.
		epoch := ""
		if v := sys[string(keyEpoch)]; validEpoch(v) {
			epoch = string(v)
		}
		n, why := replay(gen, epoch, meta, sys, envs, maxID, sysNextFrame(mr.Sys))
		if why != "" {
			r.StateLost = append(r.StateLost, "the metadata of the damaged file misses its last commits: "+why)
		} else {
			r.CommitsReplayed = n
		}
	}
	for k, v := range maxDrops(envs) {
		if old, ok := sys[k]; !ok || len(old) != len(v) || greaterDrops(v, old) {
			sys[k] = v
		}
	}
	if err == nil {
		copyMeta := len(r.StateLost) == 0
		if werr := b.restoreMeta(meta, sys, copyMeta); werr != nil {
			r.StateLost = append(r.StateLost, fmt.Sprintf("the metadata of the damaged file could not be copied: %v", werr))
		} else {
			r.MetaRecovered = copyMeta
		}
	} else if werr := b.restoreMeta(nil, sys, false); werr != nil {
		b.log.Warn("buffer salvage: the drop counters found could not be copied", "error", werr)
	}
	b.closeRanges(r.MetaRecovered)
	attrs := []any{"moved_to", src, "frames_recovered", r.FramesRecovered, "records_recovered", r.RecordsRecovered,
		"frames_lost", r.FramesLost, "records_lost", r.RecordsLost, "metadata_recovered", r.MetaRecovered}
	if r.LostSeries > 0 {
		attrs = append(attrs, "series_with_lost_ranges", r.LostSeries, "sequence_numbers_lost", r.LostSeqs)
		for i, l := range r.LostRanges {
			if i == 10 {
				attrs = append(attrs, "lost_ranges_more", r.LostRangeCount-10)
				break
			}
			attrs = append(attrs, slog.Group(fmt.Sprintf("lost_range_%d", i), "queue", l.Queue, "series", l.Series, "from", l.From, "to", l.To))
		}
	}
	if r.CommitsReplayed > 0 {
		attrs = append(attrs, "commits_replayed_from_scan", r.CommitsReplayed)
	}
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

// unwrapAll returns the values of a bucket dump out of their envelopes.
func unwrapAll(m map[string][]byte) map[string][]byte {
	out := make(map[string][]byte, len(m))
	for k, v := range m {
		out[k] = unwrap(v)
	}
	return out
}

// isDropKey reports whether the namespaced key of an envelope is a queue's
// drop counters.
func isDropKey(nk []byte) bool {
	return len(nk) > 0 && nk[0] == envSysNS && bytes.HasPrefix(nk[1:], droppedKeyPrefix)
}

// maxDrops returns, per system key, the largest drop counters among the
// envelopes (counters only grow, so the largest are the newest).
func maxDrops(envs []envelope) map[string][]byte {
	out := map[string][]byte{}
	for _, e := range envs {
		if e.kind != envValue || !isDropKey(e.key) || len(e.value) != 8*numReasons {
			continue
		}
		k := string(e.key[1:])
		if old, ok := out[k]; !ok || greaterDrops(e.value, old) {
			out[k] = e.value
		}
	}
	return out
}

// greaterDrops reports whether the counters a add up to more than b.
func greaterDrops(a, b []byte) bool {
	var sa, sb uint64
	da, db := decodeDrops(a), decodeDrops(b)
	for i := range da {
		sa += da[i]
		sb += db[i]
	}
	return sa > sb
}

// replay applies to meta and sys (the buckets as of commit base) the
// commits after base whose envelopes and summaries the raw scan found. It
// returns how many commits it replayed, or why the state cannot be trusted:
// a commit after base whose summary or envelopes are missing or ambiguous,
// or frames newer than the newest commit found. epoch is the file's epoch
// (the summaries must agree), maxID the largest frame id found intact and
// next the next frame id as of base.
func replay(base uint64, epoch string, meta, sys map[string][]byte, envs []envelope, maxID, next uint64) (int, string) {
	sums := map[uint64][]commitSummary{}
	vals := map[uint64]map[string][]byte{}
	maxTx := base
	for _, e := range envs {
		if e.txid <= base {
			continue
		}
		maxTx = max(maxTx, e.txid)
		if e.kind == envCommit {
			s, ok := decodeSummary(e.txid, e.value)
			if !ok {
				continue
			}
			dup := false
			for _, o := range sums[e.txid] {
				dup = dup || bytes.Equal(o.encode(), s.encode())
			}
			if !dup {
				sums[e.txid] = append(sums[e.txid], s)
			}
			continue
		}
		m := vals[e.txid]
		if m == nil {
			m = map[string][]byte{}
			vals[e.txid] = m
		}
		k := string(e.key)
		if prev, ok := m[k]; ok && !bytes.Equal(prev, e.value) {
			return 0, fmt.Sprintf("commit %d wrote %q twice (two different copies found)", e.txid, e.key[1:])
		}
		m[k] = e.value
	}
	if maxTx-base > uint64(len(envs)) {
		return 0, fmt.Sprintf("commits %d to %d are not all in the file", base+1, maxTx)
	}
	for t := base + 1; t <= maxTx; t++ {
		ss := sums[t]
		switch {
		case len(ss) == 0:
			return 0, fmt.Sprintf("the summary of commit %d (after commit %d, the newest bbolt could read) was not found", t, base)
		case len(ss) > 1:
			return 0, fmt.Sprintf("commit %d has %d different summaries", t, len(ss))
		}
		s := ss[0]
		if epoch != "" && s.epoch != epoch {
			return 0, fmt.Sprintf("commit %d names epoch %q, the file has %q", t, s.epoch, epoch)
		}
		if !s.all {
			return 0, fmt.Sprintf("commit %d deleted more keys than its summary lists", t)
		}
		var sum uint32
		for k, v := range vals[t] {
			sum ^= entrySum([]byte(k), v)
		}
		if uint32(len(vals[t])) != s.puts || sum != s.sum {
			return 0, fmt.Sprintf("commit %d wrote %d values, %d of them were found intact", t, s.puts, len(vals[t]))
		}
		for k, v := range vals[t] {
			switch k[0] {
			case envMetaNS:
				meta[k[1:]] = v
			case envSysNS:
				sys[k[1:]] = v
			}
		}
		for _, k := range s.deleted {
			delete(meta, string(k))
		}
		next = s.next
	}
	if maxID > 0 && next <= maxID {
		return 0, fmt.Sprintf("frame %d was found but the newest commit found (%d) knows frames below %d only", maxID, maxTx, next)
	}
	return int(maxTx - base), ""
}

// restoreMeta copies the next frame number, the drop counters and, with
// entries set, the metadata entries and the epoch read from the damaged
// file.
func (b *Buffer) restoreMeta(meta, sys map[string][]byte, entries bool) error {
	if n, ok := sysNext(sys[string(keyNext)]); ok {
		b.nextFrame = max(b.nextFrame, n)
	}
	return b.update(func(tx *bolt.Tx) error {
		mb := tx.Bucket(metaBucket)
		for k, v := range meta {
			if !entries {
				break
			}
			if k == "" {
				continue
			}
			if err := b.txw.putEnv(mb, envMetaNS, []byte(k), v); err != nil {
				return err
			}
		}
		sb := tx.Bucket(sysBucket)
		if v := sys[string(keyEpoch)]; entries && validEpoch(v) {
			// The numbering goes on: so does its epoch.
			if err := sb.Put(keyEpoch, v); err != nil {
				return err
			}
			b.epoch = string(v)
		}
		for k, v := range sys {
			if !bytes.HasPrefix([]byte(k), droppedKeyPrefix) || len(v) != 8*numReasons {
				continue
			}
			if err := b.txw.putEnv(sb, envSysNS, []byte(k), v); err != nil {
				return err
			}
		}
		return nil
	})
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
func (b *Buffer) salvageFrames(src string, acks map[string]map[uint64][]byte, keepEnv func(envelope) bool) (maxID uint64, envs []envelope, err error) {
	f, err := os.Open(src)
	if err != nil {
		return 0, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, nil, err
	}
	frames, envs, err := scanReaderEnv(f, fi.Size(), keepEnv)
	if err != nil {
		return 0, envs, err
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
	var keep, written, lostLoc []found
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
			lostLoc = append(lostLoc, fr)
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
			return maxID, envs, err
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
			return maxID, envs, err
		}
		if bits := acks[q.name][fr.h.loc.id]; bits != nil {
			if err := w.putAck(q, fr.h.loc.id, bits); err != nil {
				return maxID, envs, err
			}
		}
		written = append(written, fr)
		r.FramesRecovered++
		r.RecordsRecovered += uint64(fr.h.count)
	}
	names := make(map[uint32]string, len(byTag))
	for tag, q := range byTag {
		names[tag] = q.name
	}
	if r.LostRanges, err = lostRanges(f, written, lostLoc, names, b.opts.Series); err != nil {
		return maxID, envs, err
	}
	next := max(b.nextFrame, maxID+1)
	if len(legacy) > 0 && len(b.order) > 0 {
		q := b.order[0]
		for _, fr := range legacy {
			if buf, err = readFrame(f, fr, buf); err != nil {
				return maxID, envs, err
			}
			if err := w.put(q, next, buf); err != nil {
				return maxID, envs, err
			}
			next++
			r.FramesRecovered++
			r.RecordsRecovered += uint64(fr.h.count)
		}
	}
	b.nextFrame = next
	return maxID, envs, w.commit()
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
	_, table, err := splitFrame(v)
	if err != nil {
		return nil
	}
	recs, err := rawRecords(v, h, nil)
	if err != nil {
		return nil
	}
	m := &mergedFrame{queue: h.loc.queue, records: bytes.Clone(recs), times: map[int64]bool{h.appended: true}}
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
	recs, err := rawRecords(v, h, nil)
	if err != nil || len(recs) >= len(m.records) {
		return false
	}
	return bytes.Contains(m.records, recs)
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

// closeRanges ends the ranges open at their end where each series'
// numbering stopped (Options.LastSeqs, from the metadata carried over:
// only when it was), drops those where nothing is missing, counts them all
// and keeps the first maxLostRanges.
func (b *Buffer) closeRanges(metaKept bool) {
	r := &b.recovery
	var last map[string]uint64
	open := false
	for _, l := range r.LostRanges {
		open = open || l.To == 0
	}
	if open && metaKept && b.opts.LastSeqs != nil {
		var err error
		if last, err = b.opts.LastSeqs(b.Meta); err != nil {
			b.log.Warn("buffer salvage: the sequence state could not be read to end the lost ranges", "error", err)
		}
	}
	r.LostRanges, r.LostRangeCount, r.LostSeries, r.LostSeqs = summarizeRanges(r.LostRanges, last)
}
