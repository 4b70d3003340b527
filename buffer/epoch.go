package buffer

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// The stream epoch is a random id created with the buffer file and kept in
// its system bucket. Whatever a caller numbers in the metadata (the
// per-series sequence numbers) is numbered within the epoch: a new file, or
// one whose numbering cannot be recovered, starts a new epoch, so that
// numbers which start again are never mistaken for numbers already seen.
var keyEpoch = []byte("epoch")

// epochBytes is the size of the random part: 16 hex characters.
const epochBytes = 8

// Epoch returns the stream epoch of the file: 16 lowercase hexadecimal
// characters, fixed for the life of the file. It is empty only for a file
// opened ReadOnly that has none (written by an older build).
func (b *Buffer) Epoch() string { return b.epoch }

// newEpoch returns a fresh random epoch.
func newEpoch() (string, error) {
	var r [epochBytes]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", fmt.Errorf("random epoch: %w", err)
	}
	return hex.EncodeToString(r[:]), nil
}

// validEpoch reports whether v is a well-formed epoch.
func validEpoch(v []byte) bool {
	if len(v) != 2*epochBytes {
		return false
	}
	for _, c := range v {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// readEpoch sets b.epoch from the system bucket sys, if it holds a valid one.
func (b *Buffer) readEpoch(sys *bolt.Bucket) {
	if sys == nil {
		return
	}
	if v := sys.Get(keyEpoch); validEpoch(v) {
		b.epoch = string(v)
	}
}

// initEpoch reads the epoch of the file from the system bucket sys, or
// creates and stores a new one when the file has none (a new file, or one
// written before epochs) or a damaged one. It runs in the write
// transaction that opens the file.
func (b *Buffer) initEpoch(sys *bolt.Bucket) error {
	v := sys.Get(keyEpoch)
	if validEpoch(v) {
		b.epoch = string(v)
		return nil
	}
	e, err := newEpoch()
	if err != nil {
		return err
	}
	if err := sys.Put(keyEpoch, []byte(e)); err != nil {
		return fmt.Errorf("store epoch: %w", err)
	}
	if v != nil {
		b.recovery.StateLost = append(b.recovery.StateLost, fmt.Sprintf("the stored epoch %q is damaged", v))
		b.log.Warn("buffer epoch damaged: starting a new epoch", "stored", fmt.Sprintf("%q", v), "epoch", e)
	} else {
		b.log.Info("buffer epoch created", "epoch", e)
	}
	b.epoch = e
	return nil
}
