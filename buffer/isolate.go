package buffer

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// bbolt cannot be trusted with a damaged file inside the agent's own
// process: on open it walks every page to find the free ones (and its
// consistency check does the same) in a goroutine of its own that panics
// on the first bad page, a cycle of page ids overflows the stack, and
// neither can be recovered. So Open first has bbolt look at an existing
// file in a child process (Options.Isolate): a child that panics, faults
// or dies says the file is damaged, and only a file the child found
// consistent is opened in this process. The same child reads the metadata
// of a damaged file for the salvage.

// Child operations.
const (
	// ChildCheck opens the file read-only and runs bbolt's consistency
	// check; the child writes a ChildReport.
	ChildCheck = "check"
	// ChildMeta reads the system and metadata buckets of a (damaged) file;
	// the child writes a ChildReport with Meta set.
	ChildMeta = "meta"
)

// IsolateFunc returns the command that runs RunChild(op, path, stdout) in a
// child process. See Options.Isolate and SelfIsolate.
type IsolateFunc func(op, path string) *exec.Cmd

// SelfIsolate returns an IsolateFunc that runs this program's own
// executable with args followed by the operation and the path: the
// program must then call RunChild(op, path, os.Stdout) and exit (the agent
// does so for `iot-producer buffer check -child OP -path PATH`).
func SelfIsolate(args ...string) (IsolateFunc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("isolated buffer check: own executable: %w", err)
	}
	return func(op, path string) *exec.Cmd {
		a := append(args[:len(args):len(args)], op, path)
		return exec.Command(exe, a...)
	}, nil
}

// ChildReport is what a child reports about a file.
type ChildReport struct {
	// Problems lists what bbolt's check found; empty when the file is
	// consistent.
	Problems []string `json:"problems,omitempty"`
	// Meta holds the metadata entries (ChildMeta only); nil when they
	// could not be read.
	Meta map[string][]byte `json:"meta,omitempty"`
	// Sys holds the system bucket's entries (format, next frame, epoch)
	// (ChildMeta only).
	Sys map[string][]byte `json:"sys,omitempty"`
	// MetaOK is set when the metadata bucket was read to its end.
	MetaOK bool `json:"meta_ok,omitempty"`
	// Queues names the queues whose buckets the file holds (ChildMeta).
	Queues []string `json:"queues,omitempty"`
	// Acks holds the acknowledgement bitmaps bbolt could read, by queue
	// and frame id (ChildMeta), so that a salvage does not send again
	// what was delivered.
	Acks map[string]map[uint64][]byte `json:"acks,omitempty"`
	// Locked is set when another process held the file's lock for the
	// whole lock timeout; nothing was checked.
	Locked bool `json:"locked,omitempty"`
}

// inChildEnv marks an isolation child.
const inChildEnv = "IOT_PRODUCER_BUFFER_ISOLATED_CHILD"

// lockTimeoutEnv passes Options.LockTimeout to a child.
const lockTimeoutEnv = "IOT_PRODUCER_BUFFER_LOCK_TIMEOUT"

// childLockTimeout is how long a child waits for the file lock.
func childLockTimeout() time.Duration {
	if d, err := time.ParseDuration(os.Getenv(lockTimeoutEnv)); err == nil && d > 0 {
		return d
	}
	return defaultLockTimeout
}

// openReadOnly opens path read-only for a child's operation.
func openReadOnly(path string, lockTimeout time.Duration, r *ChildReport) *bolt.DB {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: lockTimeout})
	if err != nil {
		r.Locked = errors.Is(err, berrors.ErrTimeout)
		r.Problems = append(r.Problems, fmt.Sprintf("open: %v", err))
		return nil
	}
	return db
}

// RunChild performs op on the file at path in this process and writes a
// ChildReport as JSON to w. It is meant for a child process: bbolt may
// kill the process while it runs (which the parent reads as damage).
func RunChild(op, path string, w io.Writer) error {
	if n, err := strconv.ParseUint(os.Getenv(childMemoryEnv), 10, 64); err == nil && n > 0 && !raceEnabled {
		if err := limitMemory(n); err != nil {
			return err
		}
	}
	r, err := runOp(op, path, childLockTimeout())
	if err != nil {
		return err
	}
	return json.NewEncoder(w).Encode(&r)
}

func runOp(op, path string, lockTimeout time.Duration) (ChildReport, error) {
	switch op {
	case ChildCheck:
		return checkInProcess(path, lockTimeout), nil
	case ChildMeta:
		return readMetaInProcess(path, lockTimeout), nil
	}
	return ChildReport{}, fmt.Errorf("unknown child operation %q (want %s or %s)", op, ChildCheck, ChildMeta)
}

// A child is given childBaseTimeout plus the time to read the file at
// childReadRate: bbolt can loop forever on a damaged file (a fuzzed file of
// 64 KiB kept its consistency check busy for minutes), which must not keep
// the agent from starting. A child that runs out of time is killed and the
// file counts as damaged. Variables so that tests can shorten them.
var (
	childBaseTimeout       = 30 * time.Second
	childReadRate    int64 = 16 << 20 // bytes per second: a slow SD card
)

// A child's heap is bounded (on Linux) to childMemoryBase plus an eighth
// of the file's size: a check that needs more counts the file as damaged.
var childMemoryBase uint64 = 256 << 20

// childMemoryEnv passes the bound to a child.
const childMemoryEnv = "IOT_PRODUCER_BUFFER_CHILD_MEMORY"

// childMemory is the memory bound of a child for a file of size bytes.
func childMemory(size int64) uint64 { return childMemoryBase + uint64(max(size, 0))/8 }

// childTimeout is the time a child gets for a file of size bytes.
func childTimeout(size int64) time.Duration {
	return childBaseTimeout + time.Duration(size/childReadRate)*time.Second
}

// checkInProcess opens path read-only and runs bbolt's consistency check.
// Panics on the calling goroutine are reported as problems; those on
// bbolt's own goroutines kill the process.
func checkInProcess(path string, lockTimeout time.Duration) (r ChildReport) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			r.Problems = append(r.Problems, fmt.Sprintf("bbolt panicked: %v", p))
		}
	}()
	db := openReadOnly(path, lockTimeout, &r)
	if db == nil {
		return r
	}
	defer db.Close()
	err := db.View(func(tx *bolt.Tx) error {
		for cerr := range tx.Check() {
			r.Problems = append(r.Problems, cerr.Error())
			if len(r.Problems) >= 20 {
				break
			}
		}
		return nil
	})
	if err != nil {
		r.Problems = append(r.Problems, err.Error())
	}
	return r
}

// readMetaInProcess reads the system and metadata buckets of path.
func readMetaInProcess(path string, lockTimeout time.Duration) (r ChildReport) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			r.Problems = append(r.Problems, fmt.Sprintf("bbolt panicked: %v", p))
			r.MetaOK = false
		}
	}()
	db := openReadOnly(path, lockTimeout, &r)
	if db == nil {
		return r
	}
	defer db.Close()
	err := db.View(func(tx *bolt.Tx) error {
		r.Queues = fileQueues(tx)
		if sys := tx.Bucket(sysBucket); sys != nil {
			r.Sys = map[string][]byte{}
			_ = sys.ForEach(func(k, v []byte) error {
				if v != nil {
					r.Sys[string(k)] = bytes.Clone(v)
				}
				return nil
			})
		}
		mb := tx.Bucket(metaBucket)
		if mb == nil {
			return errors.New("no metadata bucket")
		}
		r.Meta = map[string][]byte{}
		err := mb.ForEach(func(k, v []byte) error {
			if v != nil {
				r.Meta[string(k)] = bytes.Clone(v)
			}
			return nil
		})
		r.MetaOK = err == nil
		return err
	})
	if err != nil {
		r.Problems = append(r.Problems, err.Error())
	}
	r.Acks = readAcks(db)
	return r
}

// readAcks reads the acknowledgement bitmaps of every queue of db, as far
// as bbolt can: a damaged bucket yields what was read before the damage.
func readAcks(db *bolt.DB) map[string]map[uint64][]byte {
	out := map[string]map[uint64][]byte{}
	_ = db.View(func(tx *bolt.Tx) error {
		for _, name := range fileQueues(tx) {
			func() {
				defer func() { _ = recover() }()
				ab := tx.Bucket([]byte(ackPrefix + name))
				if ab == nil {
					return
				}
				m := map[uint64][]byte{}
				out[name] = m
				_ = ab.ForEach(func(k, v []byte) error {
					if len(k) == keyLen && v != nil {
						m[binary.BigEndian.Uint64(k)] = bytes.Clone(v)
					}
					return nil
				})
			}()
		}
		return nil
	})
	return out
}

// runChild runs op on path in a child process (or in this process without
// Options.Isolate) and returns its report. A child that dies, panics or
// writes no report makes a report with the reason as its only problem;
// err is set only when the child could not be run at all.
func (b *Buffer) runChild(op, path string) (ChildReport, error) {
	// A child never starts another: a program that did not call RunChild
	// for its isolation arguments would otherwise start itself forever.
	if b.opts.Isolate == nil || os.Getenv(inChildEnv) != "" {
		return runOp(op, path, b.opts.LockTimeout)
	}
	var size int64
	if fi, err := os.Stat(path); err == nil {
		size = fi.Size()
	}
	timeout := childTimeout(size)
	cmd := b.opts.Isolate(op, path)
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	cmd.Env = append(cmd.Env, lockTimeoutEnv+"="+b.opts.LockTimeout.String(), inChildEnv+"=1",
		childMemoryEnv+"="+strconv.FormatUint(childMemory(size), 10))
	dieWithParent(cmd)
	var stdout bytes.Buffer
	stderr := &tailBuffer{max: 4096}
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	if err := cmd.Start(); err != nil {
		return ChildReport{}, fmt.Errorf("start the isolated %s of %s: %w", op, path, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var werr error
	select {
	case werr = <-done:
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-done
		return ChildReport{Problems: []string{fmt.Sprintf("bbolt's %s did not finish in %s: killed", op, timeout)}}, nil
	}
	var r ChildReport
	if jerr := json.Unmarshal(stdout.Bytes(), &r); werr != nil || jerr != nil {
		why := "no report"
		if werr != nil {
			why = werr.Error()
		}
		return ChildReport{Problems: []string{fmt.Sprintf("bbolt crashed reading the file (%s): %s", why, firstPanicLine(stderr.String()))}}, nil
	}
	return r, nil
}

// firstPanicLine returns the line of a crash output that says why.
func firstPanicLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "panic: ") || strings.HasPrefix(l, "fatal error: ") || strings.HasPrefix(l, "runtime: ") {
			return strings.TrimSpace(l)
		}
	}
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

// tailBuffer keeps the first max bytes written to it (a crash's reason
// comes first).
type tailBuffer struct {
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	if room := t.max - len(t.buf); room > 0 {
		t.buf = append(t.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.buf) }

// sysNextFrame returns the next frame number kept in a system bucket dump.
func sysNextFrame(sys map[string][]byte) uint64 {
	n, _ := sysNext(sys[string(keyNext)])
	return n
}
