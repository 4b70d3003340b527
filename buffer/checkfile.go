package buffer

import (
	"cmp"
	"fmt"
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
