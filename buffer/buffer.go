package buffer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Bucket names. Queue buckets carry a prefix so that a queue can never be
// named like an internal bucket.
var (
	sysBucket  = []byte("buffer")
	metaBucket = []byte("meta")
	keyFormat  = []byte("format")
	keyNext    = []byte("next_frame")
)

const (
	formatVersion    = 1
	queuePrefix      = "q/"
	ackPrefix        = "a/"
	deleteKickBytes  = 64 << 20 // pending deletions that wake the flusher early
	compactTxMaxSize = 64 << 20
)

// Buffer is an open buffer file. Its methods are safe for concurrent use.
type Buffer struct {
	path string
	opts Options
	log  *slog.Logger
	db   *bolt.DB
	// pageSize is the file's page size.
	pageSize int64
	// epoch is the stream epoch of the file (epoch.go), set by Open.
	epoch string

	queues map[string]*Queue
	order  []*Queue

	// wmu serialises write transactions and guards nextFrame, scratch and closed.
	wmu       sync.Mutex
	nextFrame uint64
	scratch   []byte
	shares    []share
	closed    bool
	isClosed  atomic.Bool

	cancel context.CancelFunc
	done   chan struct{}
	kick   chan struct{}

	drops dropLog
	// recovery is what Open found (salvage.go), and runtime recoveries
	// (recover.go); guarded by wmu after Open.
	recovery Recovery
	// dbmu guards db against its replacement by a runtime recovery for
	// the users that hold neither wmu nor every queue's lock (Meta, Stats).
	dbmu sync.RWMutex
	// needRecover asks the background flush to recover a damaged file.
	needRecover atomic.Bool
	// damaged asks the background flush to call Options.OnDamage.
	damaged atomic.Bool
	// abandoned is set when a write transaction was abandoned (see
	// update): db must not be written to or closed. Guarded by wmu.
	abandoned bool
	// txw collects the current write transaction's envelopes for its
	// summary (envelope.go). Guarded by wmu.
	txw txWrites
	// gen numbers the commits that end with a summary (envelope.go): the
	// last one's. It is kept in the summary, so it goes on across Compact
	// (which renumbers bbolt's transactions). Guarded by wmu.
	gen uint64
	// reserveMissing is set while the space reserve (reserve.go) is not
	// written; reserveTried is the last attempt. Guarded by wmu.
	reserveMissing bool
	reserveTried   time.Time

	commits, commitErrors atomic.Uint64
	commitNanos           atomic.Int64
}

// Open opens (creating if needed) the buffer file at path, takes its lock,
// rebuilds the in-memory queue state from the frame headers, and starts the
// background flush. An existing file is first checked by bbolt in
// isolation (Options.Isolate); a damaged file is handled per
// Options.OnCorrupt. What Open found (a new, empty, missing or damaged
// file) is in Recovery.
func Open(path string, opts Options) (*Buffer, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("buffer %s: options: %w", path, err)
	}
	b := &Buffer{path: path, opts: o, log: o.Logger.With("path", path)}
	rec, err := b.precheck()
	if err == nil {
		err = b.load()
	}
	if err != nil {
		var ce *corruptError
		if !errors.As(err, &ce) {
			return nil, err
		}
		if o.OnCorrupt == Fail || o.ReadOnly {
			return nil, fmt.Errorf("buffer %s: %w: %w", path, ErrCorrupt, err)
		}
		b, err = quarantine(path, o, err, false)
		if err != nil {
			return nil, err
		}
		b.recovery.StateLost = append(rec.StateLost, b.recovery.StateLost...)
	} else {
		rec.StateLost = append(rec.StateLost, b.recovery.StateLost...)
		b.recovery = rec
	}
	if !o.ReadOnly {
		b.writeMarker()
		b.ensureReserve()
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	b.done = make(chan struct{})
	b.kick = make(chan struct{}, 1)
	go b.run(ctx)
	return b, nil
}

// quarantine moves a damaged file aside and opens a fresh one at path into
// which salvage copies what it recovers from the moved file.
//
// abandoned says that this process still holds the file open (recover.go).
func quarantine(path string, o Options, cause error, abandoned bool) (*Buffer, error) {
	log := o.Logger.With("path", path)
	dst := fmt.Sprintf("%s.corrupt-%s", path, o.Now().UTC().Format("20060102T150405.000000000Z"))
	if rerr := os.Rename(path, dst); rerr != nil {
		return nil, fmt.Errorf("buffer %s: corrupt (%w) and cannot be moved aside: %w", path, cause, rerr)
	}
	log.Error("buffer file corrupt: moved aside, starting a fresh buffer and copying every intact frame found in it", "moved_to", dst, "error", cause)
	if abandoned {
		unlockAbandoned(dst)
	}
	b := &Buffer{path: path, opts: o, log: log}
	if err := b.load(); err != nil {
		return nil, fmt.Errorf("buffer %s: fresh file after quarantine: %w", path, err)
	}
	b.recovery.Quarantined = dst
	b.recovery.Cause = cause.Error()
	b.salvage(dst)
	// Rebuild the queues from what the salvage wrote.
	for i, q := range b.order {
		nq := newQueue(b, q.name)
		nq.deadLetters = q.deadLetters
		b.order[i], b.queues[q.name] = nq, nq
	}
	if err := b.scan(); err != nil {
		_ = b.db.Close()
		return nil, fmt.Errorf("buffer %s: fresh file after quarantine: %w", path, err)
	}
	for _, l := range b.recovery.Lost {
		if q := b.queues[l.Queue]; q != nil {
			q.dropped[reasonIndex(ReasonCorrupt)] += uint64(l.Records)
			q.corrupt++
			q.dropsDirty = true
		}
	}
	return b, nil
}

// precheck looks at the file before bbolt opens it in this process: a
// zero-length file, a missing file that existed (its marker is there), or
// a new one; an existing file is checked by bbolt in isolation, and a
// damaged one returned as *corruptError.
func (b *Buffer) precheck() (Recovery, error) {
	var rec Recovery
	fi, err := os.Stat(b.path)
	switch {
	case err == nil && fi.Size() == 0:
		if b.opts.ReadOnly {
			return rec, &corruptError{fmt.Errorf("%s is empty (zero bytes)", b.path)}
		}
		rec.StateLost = append(rec.StateLost, "the buffer file was empty (zero bytes): its records and sequence state are gone")
		rec.NewFile = true
		b.log.Error("buffer file is empty (zero bytes): whatever it held is lost; starting a new file and a new epoch")
		return rec, nil
	case errors.Is(err, os.ErrNotExist):
		if b.opts.ReadOnly {
			return rec, nil // bbolt says so
		}
		rec.NewFile = true
		if m, merr := os.ReadFile(b.markerPath()); merr == nil {
			rec.StateLost = append(rec.StateLost, fmt.Sprintf("the buffer file is missing although one existed here (%s: %s): its records and sequence state are gone",
				filepath.Base(b.markerPath()), strings.TrimSpace(string(m))))
			b.log.Error("buffer file missing although one existed here: whatever it held is lost; starting a new file and a new epoch",
				"marker", b.markerPath(), "marker_says", strings.TrimSpace(string(m)))
		} else {
			b.log.Info("buffer file created (a new volume or a first start): a new epoch starts")
		}
		return rec, nil
	case err != nil:
		return rec, fmt.Errorf("buffer %s: %w", b.path, err)
	}
	r, err := b.runChild(ChildCheck, b.path)
	if err != nil {
		return rec, fmt.Errorf("buffer %s: %w", b.path, err)
	}
	if r.Locked {
		return rec, fmt.Errorf("buffer %s: another process holds the file lock (waited %s): %w", b.path, b.opts.LockTimeout, ErrLocked)
	}
	if len(r.Problems) > 0 {
		return rec, &corruptError{fmt.Errorf("bbolt check of %s: %s", b.path, strings.Join(r.Problems, "; "))}
	}
	return rec, nil
}

// markerPath is a small file written beside the buffer file once it
// exists, so that a later start can tell a missing file from a new volume.
func (b *Buffer) markerPath() string { return b.path + ".created" }

// writeMarker writes the marker unless it is there. A failure is logged:
// the marker only improves a later diagnosis.
func (b *Buffer) writeMarker() {
	if _, err := os.Stat(b.markerPath()); err == nil {
		return
	}
	msg := fmt.Sprintf("buffer file created %s\n", b.opts.Now().UTC().Format(time.RFC3339))
	if err := os.WriteFile(b.markerPath(), []byte(msg), 0o600); err != nil {
		b.log.Warn("cannot write the buffer marker file", "marker", b.markerPath(), "error", err)
	}
}

// corruptError marks a failure that OnCorrupt handles.
type corruptError struct{ err error }

func (e *corruptError) Error() string { return e.err.Error() }
func (e *corruptError) Unwrap() error { return e.err }

func isBoltCorruption(err error) bool {
	return errors.Is(err, berrors.ErrInvalid) || errors.Is(err, berrors.ErrChecksum) ||
		errors.Is(err, berrors.ErrVersionMismatch) || errors.Is(err, berrors.ErrInvalidMapping)
}

// load opens the bbolt file and rebuilds the queues. Errors caused by a
// damaged file are returned as *corruptError with the db closed.
func (b *Buffer) load() (err error) {
	// bbolt follows page ids from the file into its memory map; make a
	// bad one a recoverable panic rather than a fatal fault.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	bo := &bolt.Options{
		Timeout:        b.opts.LockTimeout,
		NoSync:         b.opts.NoSync,
		ReadOnly:       b.opts.ReadOnly,
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	}
	if o := b.opts.MaxFileSize; o > 0 && o <= math.MaxInt {
		bo.MaxSize = int(o)
	}
	db, err := openBolt(b.path, bo)
	if err != nil {
		switch {
		case errors.Is(err, berrors.ErrTimeout):
			return fmt.Errorf("buffer %s: another process holds the file lock (waited %s): %w", b.path, b.opts.LockTimeout, ErrLocked)
		case isBoltCorruption(err):
			return &corruptError{fmt.Errorf("open %s: %w", b.path, err)}
		default:
			var ce *corruptError
			if errors.As(err, &ce) {
				return err
			}
			return fmt.Errorf("buffer %s: open: %w", b.path, err)
		}
	}
	b.db = db
	b.pageSize = int64(db.Info().PageSize) // Info races with a remap: read it once, before any writer
	defer func() {
		if err != nil {
			_ = db.Close()
			b.db = nil
		}
	}()
	if err := b.init(); err != nil {
		return err
	}
	return b.scan()
}

// openBolt is bolt.Open with bbolt's panics on damaged pages turned into a
// *corruptError.
func openBolt(path string, bo *bolt.Options) (db *bolt.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &corruptError{fmt.Errorf("open %s: bbolt panicked: %v", path, r)}
		}
	}()
	return bolt.Open(path, 0o600, bo)
}

// init checks the structure, the format version, and creates the buckets.
func (b *Buffer) init() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &corruptError{fmt.Errorf("check %s: bbolt panicked: %v", b.path, r)}
		}
	}()
	queues := b.opts.Queues
	// precheck had bbolt check the file (in isolation).
	if err := b.db.View(func(tx *bolt.Tx) error {
		if !b.opts.ReadOnly {
			return nil
		}
		if len(queues) == 0 && len(b.opts.DeadLetterQueues) == 0 {
			queues = fileQueues(tx)
		}
		b.readEpoch(tx.Bucket(sysBucket))
		return b.checkFormat(tx.Bucket(sysBucket))
	}); err != nil {
		return err
	}
	b.queues = make(map[string]*Queue, len(queues))
	for _, name := range queues {
		q := newQueue(b, name)
		b.queues[name] = q
		b.order = append(b.order, q)
	}
	for _, name := range b.opts.DeadLetterQueues {
		q := newQueue(b, name)
		q.deadLetters = true
		b.queues[name] = q
		b.order = append(b.order, q)
	}
	if b.opts.ReadOnly {
		return nil
	}
	err = b.db.Update(func(tx *bolt.Tx) error {
		sys, err := tx.CreateBucketIfNotExists(sysBucket)
		if err != nil {
			return &corruptError{fmt.Errorf("bucket %s: %w", sysBucket, err)}
		}
		if sys.Get(keyFormat) == nil {
			if err := sys.Put(keyFormat, []byte{formatVersion}); err != nil {
				return err
			}
		}
		if err := b.checkFormat(sys); err != nil {
			return err
		}
		if err := b.initEpoch(sys); err != nil {
			return err
		}
		if _, err := tx.CreateBucketIfNotExists(metaBucket); err != nil {
			return &corruptError{fmt.Errorf("bucket %s: %w", metaBucket, err)}
		}
		for _, q := range b.order {
			for _, name := range [][]byte{q.bucket, q.ackBucket} {
				if _, err := tx.CreateBucketIfNotExists(name); err != nil {
					return &corruptError{fmt.Errorf("bucket %s: %w", name, err)}
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("buffer %s: init: %w", b.path, err)
	}
	return nil
}

// checkFormat checks the format marker in the system bucket sys and reads
// the next frame number.
func (b *Buffer) checkFormat(sys *bolt.Bucket) error {
	if sys == nil {
		return fmt.Errorf("not a buffer file: no %q bucket", sysBucket)
	}
	switch v := sys.Get(keyFormat); {
	case v == nil:
		return fmt.Errorf("not a buffer file: no format marker")
	case len(v) != 1:
		return &corruptError{fmt.Errorf("format marker of %d bytes", len(v))}
	case v[0] != formatVersion:
		return fmt.Errorf("file format version %d, this build reads %d", v[0], formatVersion)
	}
	v := sys.Get(keyNext)
	if n, ok := sysNext(v); ok {
		b.nextFrame = n
	}
	b.gen = commitGen(v)
	return nil
}

// fileQueues returns the names of the queues in the file, in name order.
func fileQueues(tx *bolt.Tx) []string {
	var names []string
	_ = tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
		if n, ok := strings.CutPrefix(string(name), queuePrefix); ok && n != "" {
			names = append(names, n)
		}
		return nil
	})
	return names
}

// scan rebuilds every queue's frame index from the frame headers and the
// persisted acknowledgements.
func (b *Buffer) scan() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &corruptError{fmt.Errorf("scan %s: bbolt panicked: %v", b.path, r)}
		}
	}()
	maxID := uint64(0)
	err = b.db.View(func(tx *bolt.Tx) error {
		for _, q := range b.order {
			last, err := q.scan(tx)
			if err != nil {
				return err
			}
			maxID = max(maxID, last)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("buffer %s: scan: %w", b.path, err)
	}
	b.nextFrame = max(b.nextFrame, maxID+1, 1)
	return nil
}

// Close commits pending acknowledgements and deletions, stops the
// background flush and closes the file. It is safe to call more than once.
func (b *Buffer) Close() error {
	b.wmu.Lock()
	if b.closed {
		b.wmu.Unlock()
		return nil
	}
	b.wmu.Unlock()
	b.cancel()
	<-b.done

	b.wmu.Lock()
	defer b.wmu.Unlock()
	if b.closed {
		return nil
	}
	var ferr error
	if !b.opts.ReadOnly {
		ferr = b.commitLocked(nil, nil, nil, false)
	}
	b.closed = true
	b.isClosed.Store(true)
	b.logDrops(true)
	var cerr error
	if !b.abandoned {
		cerr = b.db.Close()
	}
	if cerr != nil {
		cerr = fmt.Errorf("buffer %s: close: %w", b.path, cerr)
	}
	return errors.Join(ferr, cerr)
}

// Path returns the file path given to Open.
func (b *Buffer) Path() string { return b.path }

// Append commits records to every queue, and the metadata entries, in one
// bbolt write transaction, together with any pending deletions and
// acknowledgements. Callers group records: one call per group commit of
// many records. A nil value in meta deletes that key.
//
// Append never blocks on a full queue: MaxBytes and MaxAge drop data per
// Options.DropPolicy and count it. On a full disk (or MaxFileSize) with
// DropOldest it drops the oldest frames of every queue in a transaction of
// their own and tries once more.
//
// On error none of records and meta is committed (frames dropped to make
// room stay dropped) and the caller may retry the same call. An error
// wrapping ErrFull means the disk is full; one wrapping ErrCorrupt means the
// file is damaged and retrying will not help: Close and Open it again
// (Options.OnCorrupt then applies). records are not retained after Append
// returns.
func (b *Buffer) Append(records [][]byte, meta map[string][]byte) error {
	for i, r := range records {
		if len(r) > maxRecordBytes {
			return fmt.Errorf("buffer %s: append: record %d is %d bytes, more than %d", b.path, i, len(r), maxRecordBytes)
		}
	}
	if err := checkMeta(meta); err != nil {
		return fmt.Errorf("buffer %s: append: %w", b.path, err)
	}
	b.wmu.Lock()
	defer b.wmu.Unlock()
	if b.closed {
		return fmt.Errorf("buffer %s: append: %w", b.path, ErrClosed)
	}
	err := b.commitOrRecoverLocked(records, meta, nil, true)
	if errors.Is(err, ErrFull) && b.opts.DropPolicy == DropOldest && len(records) > 0 {
		// Make room: drop twice the new data's size from the head of every
		// queue (bbolt needs contiguous pages), then try once more.
		e := encoder{records: records}
		e.prepare(b.shares)
		need := 2 * e.rangeSize(0, len(records))
		if rerr := b.makeRoomLocked(need); rerr == nil {
			err = b.commitLocked(records, meta, nil, true)
		}
	}
	return err
}

// checkMeta checks the keys and sizes of metadata entries.
func checkMeta(meta map[string][]byte) error {
	for k, v := range meta {
		switch {
		case k == "":
			return errors.New("empty metadata key")
		case len(k) > bolt.MaxKeySize:
			return fmt.Errorf("metadata key of %d bytes, more than %d", len(k), bolt.MaxKeySize)
		case len(v) > maxRecordBytes:
			return fmt.Errorf("metadata value %q of %d bytes, more than %d", k, len(v), maxRecordBytes)
		}
	}
	return nil
}

// makeRoomLocked drops at least need bytes of the oldest frames of every
// queue, counted as ReasonDiskFull, in a transaction of its own.
func (b *Buffer) makeRoomLocked(need int64) error {
	plans := make([]queuePlan, len(b.order))
	for i, q := range b.order {
		plans[i] = q.planDropOldest(need, ReasonDiskFull)
	}
	err := b.update(func(tx *bolt.Tx) error {
		for i := range plans {
			if err := plans[i].write(tx); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		for i := range plans {
			plans[i].q.restore(&plans[i])
		}
		return fmt.Errorf("buffer %s: make room: %w", b.path, err)
	}
	for i := range plans {
		plans[i].q.apply(&plans[i])
	}
	b.logDrops(false)
	return nil
}

// isNoSpace reports whether err says the disk or the file size cap is full.
func isNoSpace(err error) bool {
	return errors.Is(err, berrors.ErrMaxSizeReached) || errors.Is(err, syscall.ENOSPC) ||
		errors.Is(err, syscall.EDQUOT) || strings.Contains(err.Error(), "no space left on device")
}

// AppendTo commits records to the named queue only, in one transaction
// with any pending work. The uplink uses it for dead letters (queue
// "<sink>.dead"), which no sink reads. The other rules of Append apply.
func (b *Buffer) AppendTo(queue string, records [][]byte) error {
	q := b.Queue(queue)
	if q == nil {
		return fmt.Errorf("buffer %s: append to %q: no such queue", b.path, queue)
	}
	for i, r := range records {
		if len(r) > maxRecordBytes {
			return fmt.Errorf("buffer %s: append to %s: record %d is %d bytes, more than %d", b.path, queue, i, len(r), maxRecordBytes)
		}
	}
	b.wmu.Lock()
	defer b.wmu.Unlock()
	if b.closed {
		return fmt.Errorf("buffer %s: append to %s: %w", b.path, queue, ErrClosed)
	}
	return b.commitOrRecoverLocked(records, nil, q, true)
}

// Flush commits pending acknowledgements and deletions and applies the age
// bound now, instead of waiting for the next Append or background flush.
func (b *Buffer) Flush() error {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	if b.closed {
		return fmt.Errorf("buffer %s: flush: %w", b.path, ErrClosed)
	}
	return b.commitOrRecoverLocked(nil, nil, nil, false)
}

// commitLocked runs one write transaction: new frames from records, meta,
// and each queue's pending work. With force false it skips the transaction
// when there is nothing to write. The caller holds b.wmu.
func (b *Buffer) commitLocked(records [][]byte, meta map[string][]byte, only *Queue, force bool) error {
	if b.opts.ReadOnly {
		return fmt.Errorf("buffer %s: commit: %w", b.path, ErrReadOnly)
	}
	now := b.opts.Now()
	enc := encoder{records: records, appended: now.UnixNano(), buf: b.scratch[:0]}
	enc.prepare(b.shares)
	b.shares = enc.shares
	none := encoder{appended: now.UnixNano()}
	plans := make([]queuePlan, len(b.order))
	work := force || len(meta) > 0
	maxFrames := 0
	for i, q := range b.order {
		if (only != nil && q != only) || (only == nil && q.deadLetters) {
			plans[i] = q.plan(&none, now, b.nextFrame)
		} else {
			plans[i] = q.plan(&enc, now, b.nextFrame)
		}
		work = work || !plans[i].empty()
		maxFrames = max(maxFrames, len(plans[i].frames))
	}
	if !work {
		return nil
	}
	next := b.nextFrame + uint64(maxFrames)
	start := time.Now()
	err := b.updateNext(next, func(tx *bolt.Tx) error {
		for i := range plans {
			if err := plans[i].write(tx); err != nil {
				return err
			}
		}
		if len(meta) > 0 {
			mb := tx.Bucket(metaBucket)
			for k, v := range meta {
				var err error
				if v == nil {
					err = b.txw.deleteMeta(mb, []byte(k))
				} else {
					err = b.txw.putEnv(mb, envMetaNS, []byte(k), v)
				}
				if err != nil {
					return fmt.Errorf("meta %q: %w", k, err)
				}
			}
		}
		return nil
	})
	// bbolt has copied the values into its pages (or rolled back): the
	// scratch buffer may be reused.
	b.scratch = enc.buf[:0]
	b.commitNanos.Add(int64(time.Since(start)))
	b.commits.Add(1)
	if err != nil {
		b.commitErrors.Add(1)
		for i := range plans {
			plans[i].q.restore(&plans[i])
		}
		if isNoSpace(err) {
			return fmt.Errorf("buffer %s: commit: %w: %w", b.path, ErrFull, err)
		}
		return fmt.Errorf("buffer %s: commit: %w", b.path, err)
	}
	b.nextFrame = next
	dropped := false
	for i := range plans {
		if plans[i].q.apply(&plans[i]) {
			dropped = true
		}
	}
	if dropped {
		b.logDrops(false)
	}
	if len(records) > 0 {
		for _, q := range b.order {
			if (only != nil && q != only) || (only == nil && q.deadLetters) {
				continue
			}
			select {
			case q.notify <- struct{}{}:
			default:
			}
		}
	}
	return nil
}

// update runs a write transaction, turning a bbolt panic or memory fault
// on a damaged file into an error wrapping ErrCorrupt.
//
// A write transaction that fails is not rolled back: with
// NoFreelistSync, bbolt's rollback walks every page of the file to rebuild
// the free list, in a goroutine that crashes the process on a damaged
// page. A transaction whose function panics or fails is abandoned instead
// (it keeps bbolt's writer lock, so nothing writes to that file again) and
// the error wraps ErrCorrupt: the file is then replaced by a salvaged copy
// (recover.go). A failed Commit rolls back inside bbolt, as before (a full
// disk, on a file that was consistent at Open).
func (b *Buffer) update(fn func(*bolt.Tx) error) error {
	return b.updateNext(b.nextFrame, fn)
}

// updateNext is update for a transaction after which the next frame id is
// next: it ends with the transaction's commit summary (envelope.go).
func (b *Buffer) updateNext(next uint64, fn func(*bolt.Tx) error) (err error) {
	if b.abandoned {
		return fmt.Errorf("%w: a failed transaction left the file unusable", ErrCorrupt)
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	tx, err := b.db.Begin(true)
	if err != nil {
		return err
	}
	defer func() {
		if r := recover(); r != nil {
			b.abandoned = true
			err = fmt.Errorf("%w: bbolt panicked: %v", ErrCorrupt, r)
		}
	}()
	// The previous write transaction has ended: its envelopes' memory
	// can hold this one's.
	b.txw = txWrites{txid: b.gen + 1, env: b.txw.env[:0]}
	if err := fn(tx); err != nil {
		b.abandoned = true
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	if err := b.txw.summary(tx, next, b.epoch); err != nil {
		b.abandoned = true
		return fmt.Errorf("%w: commit summary: %w", ErrCorrupt, err)
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	b.gen++
	return nil
}

// run is the background flush: it commits pending deletions,
// acknowledgements and age drops every FlushInterval, or sooner when many
// deletions are pending, until ctx is cancelled.
func (b *Buffer) run(ctx context.Context) {
	defer close(b.done)
	var tick <-chan time.Time
	if b.opts.FlushInterval > 0 {
		t := time.NewTicker(b.opts.FlushInterval)
		defer t.Stop()
		tick = t.C
	}
	var lastErr time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
		case <-b.kick:
		}
		b.wmu.Lock()
		var err error
		if !b.closed && !b.opts.ReadOnly {
			if b.needRecover.Load() {
				err = b.recoverLocked(fmt.Errorf("%w: reading a queue failed", ErrCorrupt))
			}
			if err == nil {
				err = b.commitOrRecoverLocked(nil, nil, nil, false)
			}
			b.logDrops(false)
			if b.reserveMissing && time.Since(b.reserveTried) >= reserveRetry {
				b.ensureReserve()
			}
			if err == nil && b.opts.FlushInterval > 0 {
				err = b.mergeLocked()
			}
		}
		b.wmu.Unlock()
		if b.damaged.Swap(false) && b.opts.OnDamage != nil {
			b.opts.OnDamage(b)
		}
		if err != nil && time.Since(lastErr) >= dropLogInterval {
			lastErr = time.Now()
			b.log.Error("buffer background flush failed; will retry", "error", err)
		}
	}
}

// wake asks the background flush to run soon.
func (b *Buffer) wake() {
	if b.kick == nil {
		return
	}
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// Meta calls fn for every metadata entry in key order. key and value are
// copies owned by fn. It stops at the first error fn returns.
func (b *Buffer) Meta(fn func(key, value []byte) error) error {
	var kvs [][2][]byte
	b.dbmu.RLock()
	defer b.dbmu.RUnlock()
	err := b.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(metaBucket).ForEach(func(k, v []byte) error {
			kvs = append(kvs, [2][]byte{append([]byte(nil), k...), append([]byte(nil), unwrap(v)...)})
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("buffer %s: read meta: %w", b.path, err)
	}
	for _, kv := range kvs {
		if err := fn(kv[0], kv[1]); err != nil {
			return err
		}
	}
	return nil
}

// MetaValue returns a copy of the value of one metadata entry, nil when
// there is none.
func (b *Buffer) MetaValue(key string) ([]byte, error) {
	var out []byte
	err := b.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(metaBucket).Get([]byte(key)); v != nil {
			out = append([]byte{}, unwrap(v)...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("buffer %s: read meta %q: %w", b.path, key, err)
	}
	return out, nil
}

// Queue returns the named queue, or nil if it was not in Options.Queues
// or Options.DeadLetterQueues.
func (b *Buffer) Queue(name string) *Queue {
	return b.queues[name]
}

// Queues returns the queues in the order of Options.Queues.
func (b *Buffer) Queues() []*Queue {
	return append([]*Queue(nil), b.order...)
}

// Stats describes the whole buffer file.
type Stats struct {
	// FileSize is the size of the file on disk.
	FileSize int64
	// FreeBytes is the part of the file bbolt holds free for reuse
	// (including pages freed by transactions still being read).
	FreeBytes int64
	// Commits counts write transactions since Open (Appends, flushes,
	// Close), CommitErrors those that failed, and CommitTime is the time
	// spent in them (fsync included): CommitTime/Commits is the mean
	// commit latency.
	Commits, CommitErrors uint64
	CommitTime            time.Duration
	// Queues holds each queue's statistics by name.
	Queues map[string]QueueStats
}

// Stats returns the file size, free space and per-queue statistics.
func (b *Buffer) Stats() Stats {
	s := Stats{
		Queues:       make(map[string]QueueStats, len(b.order)),
		Commits:      b.commits.Load(),
		CommitErrors: b.commitErrors.Load(),
		CommitTime:   time.Duration(b.commitNanos.Load()),
	}
	if fi, err := os.Stat(b.path); err == nil {
		s.FileSize = fi.Size()
	}
	if !b.isClosed.Load() {
		b.dbmu.RLock()
		bs := b.db.Stats()
		b.dbmu.RUnlock()
		s.FreeBytes = int64(bs.FreePageN+bs.PendingPageN) * b.pageSize
	}
	for _, q := range b.order {
		s.Queues[q.name] = q.Stats()
	}
	return s
}
