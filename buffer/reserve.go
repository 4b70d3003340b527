package buffer

import (
	"errors"
	"fmt"
	"os"
	"time"
)

// The space reserve is a file of zeros beside the buffer file
// (Options.ReserveBytes): a full disk leaves no room for the commit that
// records what was lost (at shutdown, the samples still waiting in memory
// are dropped and their sequence numbers and drop counters must reach the
// file, or a later start would number again from an older state). Deleting
// the reserve frees that room.

// reservePath is the reserve's path.
func (b *Buffer) reservePath() string { return b.path + ".reserve" }

// reserveRetry is the least time between two attempts to write the reserve
// again after it could not be written.
const reserveRetry = time.Minute

// ensureReserve writes the reserve if it is missing or short. A failure
// (the disk is full) is logged and retried later by the background flush.
func (b *Buffer) ensureReserve() {
	if b.opts.ReserveBytes <= 0 || b.opts.ReadOnly {
		return
	}
	b.reserveTried = time.Now()
	p := b.reservePath()
	if fi, err := os.Stat(p); err == nil && fi.Size() >= b.opts.ReserveBytes {
		b.reserveMissing = false
		return
	}
	err := writeZeros(p, b.opts.ReserveBytes)
	if err != nil {
		_ = os.Remove(p)
		if !b.reserveMissing {
			b.log.Warn("buffer: cannot write the space reserve (is the disk full?); will retry", "reserve", p, "bytes", b.opts.ReserveBytes, "error", err)
		}
		b.reserveMissing = true
		return
	}
	if b.reserveMissing {
		b.log.Info("buffer: space reserve written again", "reserve", p, "bytes", b.opts.ReserveBytes)
	}
	b.reserveMissing = false
}

// writeZeros writes n zero bytes to a new file at path and syncs it (real
// blocks, not a sparse file, so that deleting it frees them).
func writeZeros(path string, n int64) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	buf := make([]byte, 64<<10)
	for left := n; left > 0; {
		k := min(left, int64(len(buf)))
		if _, err := f.Write(buf[:k]); err != nil {
			f.Close()
			return err
		}
		left -= k
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// CommitMeta commits the metadata entries alone (with any pending
// deletions and acknowledgements). When the disk is full it deletes the
// space reserve and tries once more: it is meant for the last commit of a
// stage that could not store its records, so that what it numbered and
// counted as lost survives. The rules of Append apply to meta.
func (b *Buffer) CommitMeta(meta map[string][]byte) error {
	if err := checkMeta(meta); err != nil {
		return fmt.Errorf("buffer %s: commit metadata: %w", b.path, err)
	}
	b.wmu.Lock()
	defer b.wmu.Unlock()
	if b.closed {
		return fmt.Errorf("buffer %s: commit metadata: %w", b.path, ErrClosed)
	}
	err := b.commitOrRecoverLocked(nil, meta, nil, true)
	if !errors.Is(err, ErrFull) || b.opts.ReserveBytes <= 0 {
		return err
	}
	if rerr := os.Remove(b.reservePath()); rerr != nil {
		return fmt.Errorf("%w (and no space reserve to release: %w)", err, rerr)
	}
	b.reserveMissing = true
	b.log.Warn("buffer: disk full: released the space reserve for a metadata commit", "reserve", b.reservePath(), "bytes", b.opts.ReserveBytes)
	if err := b.commitLocked(nil, meta, nil, true); err != nil {
		return fmt.Errorf("buffer %s: commit metadata with the space reserve released: %w", b.path, err)
	}
	return nil
}
