package buffer

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"time"
)

// CheckOptions configures CheckFile.
type CheckOptions struct {
	// Isolate runs bbolt in a child process (see Options.Isolate).
	Isolate IsolateFunc
	// LockTimeout bounds the wait for the file lock. Default 5s.
	LockTimeout time.Duration
	// Series and LastSeqs are as in Options: with Series, the report
	// lists the sequence ranges known lost around the damaged frames.
	Series   func(record []byte) (series string, seq uint64, ok bool)
	LastSeqs LastSeqsFunc
}

// FileReport is what CheckFile found in a buffer file.
type FileReport struct {
	// Size is the file's size.
	Size int64
	// Problems lists what bbolt's consistency check found; empty when the
	// file is consistent.
	Problems []string
	// MetaReadable is set when bbolt read the metadata to its end;
	// MetaEntries counts the entries and Epoch is the stored epoch.
	MetaReadable bool
	MetaEntries  int
	Epoch        string
	// Queues counts, per queue, the frames a scan of the raw file finds
	// intact and those whose header is intact and records are not. Queues
	// are named from the file's buckets, or "tag <hex>" when bbolt cannot
	// say; frames of earlier builds, which do not name their queue, are
	// counted under "(unnamed)".
	Queues []QueueFrames
	// LostRanges lists the sequence ranges a salvage would report lost
	// (CheckOptions.Series), the longest first, at most 50;
	// LostRangeCount, LostSeries and LostSeqs count them all, as in
	// Recovery.
	LostRanges     []LostRange
	LostRangeCount int
	LostSeries     int
	LostSeqs       uint64
}

// QueueFrames counts the frames of one queue found by the raw scan.
type QueueFrames struct {
	Queue           string
	Intact, Damaged FrameCount
}

// FrameCount counts frames and the records they hold.
type FrameCount struct{ Frames, Records uint64 }

// CheckFile checks the buffer file at path without opening it as a buffer
// and without writing to it: bbolt's consistency check and a read of the
// metadata (both isolated per o.Isolate), and a scan of the raw file for
// frames. Frames are counted whatever their state: stale copies of frames
// already delivered included. It fails only when the file cannot be read,
// or is locked (ErrLocked).
func CheckFile(path string, o CheckOptions) (FileReport, error) {
	var rep FileReport
	fi, err := os.Stat(path)
	if err != nil {
		return rep, fmt.Errorf("buffer file: %w", err)
	}
	rep.Size = fi.Size()
	if o.LockTimeout <= 0 {
		o.LockTimeout = defaultLockTimeout
	}
	b := &Buffer{path: path, opts: Options{Isolate: o.Isolate, LockTimeout: o.LockTimeout}}
	if rep.Size == 0 {
		rep.Problems = []string{"the file is empty (zero bytes)"}
		return rep, nil
	}
	cr, err := b.runChild(ChildCheck, path)
	if err != nil {
		return rep, err
	}
	if cr.Locked {
		return rep, fmt.Errorf("buffer %s: another process holds the file lock (waited %s): %w", path, o.LockTimeout, ErrLocked)
	}
	rep.Problems = cr.Problems
	mr, err := b.runChild(ChildMeta, path)
	if err != nil {
		return rep, err
	}
	rep.MetaReadable, rep.MetaEntries = mr.MetaOK, len(mr.Meta)
	if v := mr.Sys[string(keyEpoch)]; validEpoch(v) {
		rep.Epoch = string(v)
	}
	names := map[uint32]string{}
	for _, n := range append(mr.Queues, "kafka", "mqtt", "kafka.dead", "mqtt.dead") {
		if _, ok := names[queueTag(n)]; !ok {
			names[queueTag(n)] = n
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return rep, err
	}
	defer f.Close()
	frames, err := scanFile(f)
	if err != nil {
		return rep, err
	}
	if o.Series != nil {
		if err := rep.lostRanges(f, frames, names, mr, o); err != nil {
			return rep, err
		}
	}
	by := map[string]*QueueFrames{}
	for _, fr := range frames {
		name := "(unnamed)"
		if fr.h.hasLoc {
			if n, ok := names[fr.h.loc.queue]; ok {
				name = n
			} else {
				name = fmt.Sprintf("tag %08x", fr.h.loc.queue)
			}
		}
		q := by[name]
		if q == nil {
			q = &QueueFrames{Queue: name}
			by[name] = q
		}
		c := &q.Damaged
		if fr.intact {
			c = &q.Intact
		}
		c.Frames++
		c.Records += uint64(fr.h.count)
	}
	for _, q := range by {
		rep.Queues = append(rep.Queues, *q)
	}
	slices.SortFunc(rep.Queues, func(a, c QueueFrames) int { return cmp.Compare(a.Queue, c.Queue) })
	return rep, nil
}

// lostRanges fills the report's lost ranges as a salvage would find them:
// the newest copy of each frame at or above its queue's head, intact or
// damaged.
func (rep *FileReport) lostRanges(r io.ReaderAt, frames []found, names map[uint32]string, mr ChildReport, o CheckOptions) error {
	type key struct {
		tag uint32
		id  uint64
	}
	best := map[key]found{}
	heads := map[uint32]uint64{}
	for _, fr := range frames {
		if !fr.h.hasLoc {
			continue
		}
		heads[fr.h.loc.queue] = max(heads[fr.h.loc.queue], fr.h.loc.head)
		k := key{fr.h.loc.queue, fr.h.loc.id}
		cur, ok := best[k]
		if !ok || (fr.intact && !cur.intact) || (fr.intact == cur.intact && fr.h.count > cur.h.count) {
			best[k] = fr
		}
	}
	var kept, lost []found
	for k, fr := range best {
		if k.id < heads[k.tag] {
			continue
		}
		if fr.intact {
			kept = append(kept, fr)
		} else {
			lost = append(lost, fr)
		}
	}
	slices.SortFunc(kept, func(a, c found) int {
		return cmp.Or(cmp.Compare(a.h.loc.queue, c.h.loc.queue), cmp.Compare(a.h.loc.id, c.h.loc.id))
	})
	rs, err := lostRanges(r, kept, lost, names, o.Series)
	if err != nil {
		return err
	}
	var last map[string]uint64
	if mr.MetaOK && o.LastSeqs != nil {
		meta := unwrapAll(mr.Meta)
		keys := slices.Sorted(maps.Keys(meta))
		last, _ = o.LastSeqs(func(fn func(k, v []byte) error) error {
			for _, k := range keys {
				if err := fn([]byte(k), meta[k]); err != nil {
					return err
				}
			}
			return nil
		})
	}
	rep.LostRanges, rep.LostRangeCount, rep.LostSeries, rep.LostSeqs = summarizeRanges(rs, last)
	return nil
}
