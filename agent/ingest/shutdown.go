package ingest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"maps"

	"github.com/iot-producer/iot-producer/drivers"
)

// MetaCommitter is a Store that can commit metadata alone and make room
// for it on a full disk (buffer.Buffer.CommitMeta releases its space
// reserve).
type MetaCommitter interface {
	CommitMeta(meta map[string][]byte) error
}

// commitLoss runs after the final commit failed: it numbers the samples not
// yet numbered and commits, as metadata alone, the sequence numbers of
// every sample that could not be stored and the drop counters (which
// already count them as shutdown_commit_failed). The samples keep their
// numbers, so a consumer sees their loss as a gap, and the counters
// survive the restart.
func (in *Ingest) commitLoss() error {
	mc, ok := in.store.(MetaCommitter)
	if !ok {
		return errors.New("the store cannot commit metadata alone")
	}
	meta := map[string][]byte{}
	add := func(m map[string][]byte) {
		for k, v := range m {
			meta[k] = bytes.Clone(v)
		}
	}
	if in.held != nil {
		add(in.held.meta)
		in.held = nil
	}
	for {
		if in.taken == nil {
			items, _ := in.take()
			if len(items) == 0 {
				break
			}
			in.taken = &takenItems{items: items}
		}
		if err := in.resolve(in.taken.items); err != nil {
			return err
		}
		add(in.encode(in.taken.items, nil).meta)
		for _, it := range in.taken.items {
			drivers.ReleaseBatch(it.samples)
		}
		in.taken = nil
	}
	in.mu.Lock()
	drops := maps.Clone(in.dropped)
	in.mu.Unlock()
	for reason, n := range drops {
		meta[dropKeyPrefix+reason] = binary.BigEndian.AppendUint64(nil, n)
	}
	if err := mc.CommitMeta(meta); err != nil {
		return err
	}
	in.persisted = drops
	return nil
}
