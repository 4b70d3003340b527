package buffer

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"runtime/debug"
	"time"

	bolt "go.etcd.io/bbolt"
)

const (
	salvageLockTimeout = 100 * time.Millisecond
	salvageTxBytes     = 64 << 20
)

// salvageStats counts what salvage copied and lost.
type salvageStats struct {
	frames, records, lostFrames, meta int
	lostBuckets                       []string
}

// salvage copies every intact frame (header and checksum verified),
// acknowledgement bitmap and metadata entry of the quarantined file src into
// the fresh file, for the configured queues. A damaged bucket is skipped
// from the point where reading it fails. It logs what it copied and lost;
// it never fails Open.
func (b *Buffer) salvage(src string) {
	st, err := b.salvageFrom(src)
	if err != nil {
		b.log.Error("buffer salvage of the quarantined file failed; its data stays in that file", "moved_to", src, "error", err,
			"frames_copied", st.frames, "records_copied", st.records)
		return
	}
	b.log.Warn("buffer salvaged the quarantined file", "moved_to", src, "frames_copied", st.frames,
		"records_copied", st.records, "meta_copied", st.meta, "frames_lost", st.lostFrames, "damaged_buckets", st.lostBuckets)
}

func (b *Buffer) salvageFrom(src string) (st salvageStats, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("bbolt panicked: %v", r)
		}
	}()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	sdb, err := bolt.Open(src, 0o600, &bolt.Options{ReadOnly: true, Timeout: salvageLockTimeout})
	if err != nil {
		return st, fmt.Errorf("open %s: %w", src, err)
	}
	defer sdb.Close()

	w := &salvageWriter{db: b.db}
	defer w.rollback()
	err = sdb.View(func(stx *bolt.Tx) error {
		if sys := stx.Bucket(sysBucket); sys != nil {
			if v := sys.Get(keyNext); len(v) == 8 {
				b.nextFrame = max(b.nextFrame, binary.BigEndian.Uint64(v))
			}
		}
		// copyBucket copies the entries of bucket name that keep accepts;
		// with frames set, the frames of queue bucket name.
		copyBucket := func(name []byte, frames bool, keep func(k, v []byte) bool) (copied int) {
			defer func() {
				if r := recover(); r != nil {
					st.lostBuckets = append(st.lostBuckets, fmt.Sprintf("%s (%v)", name, r))
				}
			}()
			bkt := stx.Bucket(name)
			if bkt == nil {
				return 0
			}
			c := bkt.Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				if frames {
					if v != nil || len(k) != keyLen {
						continue
					}
					v = getFrame(bkt, binary.BigEndian.Uint64(k))
				}
				if v == nil || !keep(k, v) {
					continue
				}
				if err := w.put(name, frames, k, v); err != nil {
					panic(fmt.Sprintf("write: %v", err)) // recovered above; the bucket counts as damaged
				}
				copied++
			}
			return copied
		}
		st.meta = copyBucket(metaBucket, false, func(k, v []byte) bool { return true })
		for _, q := range b.order {
			st.frames += copyBucket(q.bucket, true, func(k, v []byte) bool {
				h, err := parseHeader(v)
				if len(k) != keyLen || err != nil || verifyFrame(v, h) != nil {
					st.lostFrames++
					return false
				}
				st.records += int(h.count)
				return true
			})
			copyBucket(q.ackBucket, false, func(k, v []byte) bool { return len(k) == keyLen })
		}
		return nil
	})
	if err != nil {
		return st, err
	}
	return st, w.commit()
}

// salvageWriter writes into the fresh file in transactions of bounded size.
type salvageWriter struct {
	db   *bolt.DB
	tx   *bolt.Tx
	size int
}

func (w *salvageWriter) put(bucket []byte, frame bool, k, v []byte) error {
	if w.tx != nil && w.size >= salvageTxBytes {
		if err := w.commit(); err != nil {
			return err
		}
	}
	if w.tx == nil {
		tx, err := w.db.Begin(true)
		if err != nil {
			return err
		}
		w.tx, w.size = tx, 0
	}
	// Copy out of the source's memory map: a fault there must happen here,
	// not inside the destination's commit.
	k, v = bytes.Clone(k), bytes.Clone(v)
	w.size += len(k) + len(v)
	if frame {
		return putFrame(w.tx.Bucket(bucket), binary.BigEndian.Uint64(k), v)
	}
	return w.tx.Bucket(bucket).Put(k, v)
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
