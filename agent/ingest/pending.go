package ingest

import (
	"encoding/binary"
	"fmt"
	"strings"
	"unsafe"

	"github.com/iot-producer/iot-producer/drivers"
)

// pendingItem is one entry of the pending queue: a batch of samples a
// driver emitted, or a drop marker: how many samples of each series were
// dropped there for lack of room. The commit numbers a marker's samples
// without encoding them, so their sequence numbers are skipped and the loss
// shows downstream as a gap in each series, in its place among the others.
type pendingItem struct {
	samples []drivers.Sample
	dropped map[Series]uint64
}

// sampleQueue holds the batches drivers emitted, in order, without copying
// them: a full queue drops from the head (or refuses new batches) and a
// commit takes from the head, whatever the depth. Drops leave markers,
// whose memory is bounded by the number of series: consecutive markers
// are merged.
type sampleQueue struct {
	items []pendingItem
	n     int   // samples in all batches
	bytes int64 // their estimated memory
}

// sampleSize is the memory of one pending sample apart from its string
// value (device and tag names are shared between a driver's samples).
const sampleSize = int64(unsafe.Sizeof(drivers.Sample{}))

// samplesBytes estimates the memory held by a batch.
func samplesBytes(b []drivers.Sample) int64 {
	n := sampleSize * int64(len(b))
	for i := range b {
		n += int64(len(b[i].Value.S))
	}
	return n
}

func (q *sampleQueue) push(b []drivers.Sample, size int64) {
	q.items = append(q.items, pendingItem{samples: b})
	q.n += len(b)
	q.bytes += size
}

// pushDropped records the samples of b as dropped after everything queued.
func (q *sampleQueue) pushDropped(b []drivers.Sample) {
	if len(q.items) == 0 || q.items[len(q.items)-1].dropped == nil {
		q.items = append(q.items, pendingItem{dropped: make(map[Series]uint64)})
	}
	m := q.items[len(q.items)-1].dropped
	for i := range b {
		m[Series{b[i].Device, b[i].Tag}]++
	}
}

// dropOldest turns the oldest pending samples into a drop marker at the
// head until at most maxN samples and maxBytes remain, and returns how
// many it dropped.
func (q *sampleQueue) dropOldest(maxN int, maxBytes int64) int {
	dropped := 0
	var marker map[Series]uint64
	for (q.n > maxN || q.bytes > maxBytes) && q.n > 0 {
		// The head is a marker (merged into) or a batch (dropped from).
		if len(q.items) > 0 && q.items[0].dropped != nil {
			if marker == nil {
				marker = q.items[0].dropped
			} else {
				for k, v := range q.items[0].dropped {
					marker[k] += v
				}
			}
			q.items[0] = pendingItem{}
			q.items = q.items[1:]
			continue
		}
		if marker == nil {
			marker = make(map[Series]uint64)
		}
		head := q.items[0].samples
		k := len(head)
		if over := q.n - maxN; over > 0 && over < k && q.bytes-samplesBytes(head[:over]) <= maxBytes {
			k = over
		}
		for i := range head[:k] {
			marker[Series{head[i].Device, head[i].Tag}]++
		}
		q.n -= k
		q.bytes -= samplesBytes(head[:k])
		dropped += k
		if k == len(head) {
			q.items[0] = pendingItem{}
			q.items = q.items[1:]
		} else {
			q.items[0].samples = head[k:]
		}
	}
	switch {
	case marker == nil:
	case len(q.items) > 0 && q.items[0].dropped != nil:
		for k, v := range marker {
			q.items[0].dropped[k] += v
		}
	default:
		q.items = append([]pendingItem{{dropped: marker}}, q.items...)
	}
	return dropped
}

// popBatches removes up to max samples from the head, as the batches they
// came in (the last one cut short if need be), with the drop markers among
// them.
func (q *sampleQueue) popBatches(max int) []pendingItem {
	var out []pendingItem
	for got := 0; len(q.items) > 0; {
		head := q.items[0]
		if head.dropped != nil {
			out = append(out, head)
			q.items[0] = pendingItem{}
			q.items = q.items[1:]
			continue
		}
		if got >= max {
			break
		}
		k := min(len(head.samples), max-got)
		out = append(out, pendingItem{samples: head.samples[:k:k]})
		q.bytes -= samplesBytes(head.samples[:k])
		if k == len(head.samples) {
			q.items[0] = pendingItem{}
			q.items = q.items[1:]
		} else {
			q.items[0].samples = head.samples[k:]
		}
		q.n -= k
		got += k
	}
	return out
}

// dropKeyPrefix starts the metadata keys holding the ingest stage's drop
// counters, by reason: 8 bytes big-endian each. They are committed with
// the next commit after a drop, so they survive restarts and crashes.
const dropKeyPrefix = "ingest/dropped/"

// loadDrops reads the drop counters from store's metadata.
func loadDrops(store Store) (map[string]uint64, error) {
	out := make(map[string]uint64)
	err := store.Meta(func(key, value []byte) error {
		reason, ok := strings.CutPrefix(string(key), dropKeyPrefix)
		if !ok {
			return nil
		}
		if len(value) != 8 {
			return fmt.Errorf("drop counter %q: malformed entry (%d bytes)", key, len(value))
		}
		out[reason] = binary.BigEndian.Uint64(value)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load drop counters: %w", err)
	}
	return out, nil
}

// Dropped returns the samples dropped so far, by reason, since the buffer
// file was created: the counts committed in earlier runs included.
func (in *Ingest) Dropped() map[string]uint64 {
	in.mu.Lock()
	defer in.mu.Unlock()
	out := make(map[string]uint64, len(in.dropped))
	for k, v := range in.dropped {
		out[k] = v
	}
	return out
}
