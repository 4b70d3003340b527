package buffer

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"
)

// DropPolicy says what a queue drops when a new Append would exceed
// Options.MaxBytes.
type DropPolicy int

const (
	// DropOldest deletes the oldest frames of the queue to make room for the
	// new records (the default).
	DropOldest DropPolicy = iota
	// DropNewest keeps what is queued and stores only as many of the new
	// records as fit.
	DropNewest
)

// String returns the configuration spelling: drop_oldest or drop_newest.
func (p DropPolicy) String() string {
	switch p {
	case DropOldest:
		return "drop_oldest"
	case DropNewest:
		return "drop_newest"
	}
	return fmt.Sprintf("DropPolicy(%d)", int(p))
}

// ParseDropPolicy parses the configuration spelling; "" means DropOldest.
func ParseDropPolicy(s string) (DropPolicy, error) {
	switch s {
	case "", "drop_oldest":
		return DropOldest, nil
	case "drop_newest":
		return DropNewest, nil
	}
	return 0, fmt.Errorf("unknown drop policy %q (want drop_oldest or drop_newest)", s)
}

// CorruptPolicy says what Open does with a file it cannot read as a buffer.
type CorruptPolicy int

const (
	// Quarantine renames the file to <path>.corrupt-<UTC time>, logs an
	// error and starts a fresh buffer (the default).
	Quarantine CorruptPolicy = iota
	// Fail makes Open return an error wrapping ErrCorrupt.
	Fail
)

// String returns the configuration spelling: quarantine or fail.
func (p CorruptPolicy) String() string {
	switch p {
	case Quarantine:
		return "quarantine"
	case Fail:
		return "fail"
	}
	return fmt.Sprintf("CorruptPolicy(%d)", int(p))
}

// ParseCorruptPolicy parses the configuration spelling; "" means Quarantine.
func ParseCorruptPolicy(s string) (CorruptPolicy, error) {
	switch s {
	case "", "quarantine":
		return Quarantine, nil
	case "fail":
		return Fail, nil
	}
	return 0, fmt.Errorf("unknown on-corrupt policy %q (want quarantine or fail)", s)
}

// Options configures Open. The zero value is usable apart from Queues.
type Options struct {
	// Queues names the queues, one bbolt bucket each (e.g. "kafka",
	// "mqtt"); missing ones are created on Open. Every Append goes to all of
	// them. Queues present in the file but not listed are left untouched.
	Queues []string
	// DeadLetterQueues names more queues that Append does not write to:
	// only AppendTo fills them (the uplink keeps records a broker refused
	// for good there, one per sink, e.g. "kafka.dead"). They are bounded
	// like the others.
	DeadLetterQueues []string
	// LockTimeout bounds the wait for the exclusive file lock. Default 5s.
	// The error then names the path, says another process holds it, and
	// wraps ErrLocked.
	LockTimeout time.Duration
	// MaxBytes bounds each queue's frames (records as the frames hold
	// them, shared with the record before when that saves, plus a few
	// bytes of framing each). The file holds somewhat more: bbolt rounds each frame
	// up to whole 4 KiB pages (full frames fill theirs exactly) and keeps
	// freed pages for reuse. 0 means unbounded (CheckBounds rejects it on
	// 32-bit platforms).
	MaxBytes int64
	// MaxAge drops frames appended longer ago than this. 0 means unbounded.
	MaxAge time.Duration
	// DropPolicy applies when MaxBytes is hit. Default DropOldest. Ages
	// always drop the oldest.
	DropPolicy DropPolicy
	// OnCorrupt says what Open does with a file bbolt cannot open or whose
	// structure is damaged. Default Quarantine.
	OnCorrupt CorruptPolicy
	// Logger receives corruption, drop (at most once a minute) and
	// background-flush messages. Default slog.Default().
	Logger *slog.Logger
	// NoSync skips fsync on commit. For tests and benchmarks only: a power
	// cut can then lose or corrupt committed data.
	NoSync bool
	// Now is the clock for append times and ages. Default time.Now.
	Now func() time.Time
	// MaxFileSize caps the size of the file; an Append that would grow it
	// further is handled as on a full disk: DropOldest drops the oldest
	// frames of every queue to make room and retries once, DropNewest
	// returns an error wrapping ErrFull. 0 means no cap (1 GiB on 32-bit
	// platforms). The file is grown in steps (doubling up to 16 MiB, then
	// 16 MiB at a time), so it may stop short of the cap.
	MaxFileSize int64
	// Series, when set, says which series a record belongs to and its
	// sequence number (ok false: not a numbered record). A salvage then
	// reports the sequence ranges known lost around the frames it found
	// damaged (Recovery.LostRanges); LastSeqs, when set, returns the
	// last number of every series from the metadata of the salvaged file
	// (meta calls fn for every entry, like Buffer.Meta), to end the
	// ranges after a series' last recovered record.
	Series   func(record []byte) (series string, seq uint64, ok bool)
	LastSeqs LastSeqsFunc
	// ReserveBytes is the size of the space reserve, a file of zeros kept
	// beside the buffer file (<path>.reserve): when the disk is full,
	// CommitMeta deletes it to make room for a last commit of the
	// metadata (the sequence state and the drop counters of what could
	// not be stored), so that a loss at shutdown leaves its trace. It is
	// written again once there is room. Default 1 MiB; negative: none.
	ReserveBytes int64
	// FlushInterval is how often acknowledgements, deletions and age drops
	// are committed when no Append does it first, and small frames merged
	// (see doc.go, Memory). Default 1s. A negative value disables the
	// background flush (then only Append, Flush and Close commit them, and
	// frames are not merged).
	FlushInterval time.Duration
	// ReadOnly opens the file for inspection without writing to it: bbolt
	// takes a shared lock, which a running agent's exclusive lock makes
	// wait (up to LockTimeout, then ErrLocked); the file must exist and be a
	// buffer; a damaged file makes Open fail with ErrCorrupt whatever
	// OnCorrupt says; queues missing from the file are empty; Queues may be
	// empty, meaning every queue in the file (Buffer.Queues lists them);
	// Append, AppendTo, Flush and Ack return an error wrapping ErrReadOnly,
	// and there is no background flush.
	ReadOnly bool
	// Isolate runs bbolt on an existing file in a child process before
	// Open trusts it in this one (see isolate.go): bbolt's consistency
	// check, and the metadata read of a damaged file. A program that opens
	// files it did not just write should set it (SelfIsolate); nil runs
	// them in this process, where bbolt can still crash it on a damaged
	// file.
	Isolate IsolateFunc
	// OnDamage, when set, is called by the background flush (outside the
	// buffer's locks) after frames were found corrupt or the file was
	// recovered while running, so that a caller can show it (the agent's
	// /ready). Recovery and Stats say what happened.
	OnDamage func(*Buffer)
}

const (
	defaultLockTimeout   = 5 * time.Second
	defaultFlushInterval = time.Second
	defaultReserveBytes  = 1 << 20
	// dropLogInterval is the least time between two drop messages.
	dropLogInterval = time.Minute
)

// MaxBytesLimit32 is the largest total of MaxBytes over all queues that
// CheckBounds accepts on a 32-bit platform. bbolt maps the whole file into
// memory and grows the mapping in steps up to 1 GiB; the file also holds
// pages freed but not yet reused and pending deletions, so the live data is
// held to half of that. On 32-bit platforms Open also caps the file at
// maxFile32 so that a write fails cleanly instead of the mapping.
const MaxBytesLimit32 int64 = 512 << 20

// maxFile32 is bbolt's MaxSize on 32-bit platforms.
const maxFile32 = 1 << 30

// is32bit reports whether int (and the address space) is 32 bits wide.
const is32bit = math.MaxInt == math.MaxInt32

// CheckBounds reports whether maxBytes per queue over the given number of
// queues fits this platform: on 32-bit platforms maxBytes must be set and
// maxBytes*queues must not exceed MaxBytesLimit32; on 64-bit platforms any
// non-negative value is accepted. Configuration validation calls it. Open
// does not: on 32-bit platforms it caps the file at 1 GiB instead (see
// Options.MaxFileSize), so a larger bound ends in drops for disk_full.
func CheckBounds(maxBytes int64, queues int) error {
	return checkBounds(maxBytes, queues, is32bit)
}

func checkBounds(maxBytes int64, queues int, bits32 bool) error {
	if maxBytes < 0 {
		return fmt.Errorf("max_bytes %d is negative", maxBytes)
	}
	if !bits32 {
		return nil
	}
	if maxBytes == 0 {
		return fmt.Errorf("max_bytes must be set on a 32-bit platform (at most %d bytes over all queues)", MaxBytesLimit32)
	}
	if queues < 1 {
		queues = 1
	}
	if maxBytes > MaxBytesLimit32/int64(queues) {
		return fmt.Errorf("max_bytes %d times %d queues exceeds %d bytes, the limit on a 32-bit platform (the file must fit the address space)", maxBytes, queues, MaxBytesLimit32)
	}
	return nil
}

// withDefaults validates o and fills in defaults.
func (o Options) withDefaults() (Options, error) {
	if len(o.Queues) == 0 && !o.ReadOnly {
		return o, errors.New("no queues")
	}
	seen := make(map[string]bool, len(o.Queues))
	for _, q := range append(o.Queues[:len(o.Queues):len(o.Queues)], o.DeadLetterQueues...) {
		if q == "" {
			return o, errors.New("empty queue name")
		}
		if seen[q] {
			return o, fmt.Errorf("queue %q listed twice", q)
		}
		seen[q] = true
	}
	if o.MaxBytes < 0 {
		return o, fmt.Errorf("max bytes %d is negative", o.MaxBytes)
	}
	if o.MaxFileSize < 0 {
		return o, fmt.Errorf("max file size %d is negative", o.MaxFileSize)
	}
	if is32bit && (o.MaxFileSize == 0 || o.MaxFileSize > maxFile32) {
		o.MaxFileSize = maxFile32
	}
	if o.MaxAge < 0 {
		return o, fmt.Errorf("max age %s is negative", o.MaxAge)
	}
	if o.DropPolicy != DropOldest && o.DropPolicy != DropNewest {
		return o, fmt.Errorf("unknown drop policy %d", int(o.DropPolicy))
	}
	if o.OnCorrupt != Quarantine && o.OnCorrupt != Fail {
		return o, fmt.Errorf("unknown on-corrupt policy %d", int(o.OnCorrupt))
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = defaultLockTimeout
	}
	if o.FlushInterval == 0 {
		o.FlushInterval = defaultFlushInterval
	}
	if o.ReadOnly {
		o.FlushInterval = -1
	}
	if o.ReserveBytes == 0 {
		o.ReserveBytes = defaultReserveBytes
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o, nil
}

// LastSeqsFunc returns the last sequence number of every series (named as
// Options.Series names them) from metadata entries: meta calls fn for every
// entry in key order.
type LastSeqsFunc func(meta func(fn func(key, value []byte) error) error) (map[string]uint64, error)
