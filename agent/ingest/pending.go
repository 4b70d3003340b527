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
	dropped *dropMarker
}

// dropMarker counts dropped samples. A driver emits the same series in the
// same order poll after poll (the same strings, even), so a dropped batch
// is counted as one more drop of its shape, whatever its length: dropping
// costs a comparison of pointers per sample and no allocation, and the
// batch goes back to the drivers at once. Samples of batches of no known
// shape (a part of a batch, a driver that emits changes only) are counted
// by series.
type dropMarker struct {
	shapes map[*dropShape]uint64
	series map[Series]uint64
}

// dropShape is the series of a dropped batch, in order. names is set
// when the shape is made and never changes; handles are the series'
// handles, filled by the commit (Run's goroutine alone) and valid while
// gen is the series table's.
type dropShape struct {
	names   []Series
	handles []uint32
	gen     uint64
}

// add counts n drops of every series of m into d.
func (d *dropMarker) add(m *dropMarker) {
	for sh, n := range m.shapes {
		d.addShape(sh, n)
	}
	for k, n := range m.series {
		d.addSeries(k, n)
	}
}

func (d *dropMarker) addShape(sh *dropShape, n uint64) {
	if d.shapes == nil {
		d.shapes = make(map[*dropShape]uint64)
	}
	d.shapes[sh] += n
}

func (d *dropMarker) addSeries(k Series, n uint64) {
	if d.series == nil {
		d.series = make(map[Series]uint64)
	}
	d.series[k] += n
}

// each calls fn for every series the marker counts, with how many of its
// samples were dropped; a series may come more than once.
func (d *dropMarker) each(fn func(k Series, n uint64)) {
	for sh, n := range d.shapes {
		for _, k := range sh.names {
			fn(k, n)
		}
	}
	for k, n := range d.series {
		fn(k, n)
	}
}

// total returns the number of samples the marker counts.
func (d *dropMarker) total() uint64 {
	var t uint64
	d.each(func(_ Series, n uint64) { t += n })
	return t
}

// Bounds of the table of shapes of dropped batches: beyond them, batches
// of new shapes are counted by series until no marker refers to the
// table's shapes any more and it starts afresh.
const (
	maxDropShapes     = 4096
	maxDropShapeNames = 1 << 20
)

// dropShapes finds the shape of a dropped batch by the addresses of its
// names.
type dropShapes struct {
	byPrint map[uint64]*dropShape
	names   int // in all shapes
}

// fingerprint mixes the addresses and lengths of b's names.
func fingerprint(b []drivers.Sample) uint64 {
	h := uint64(len(b)) * 0x9e3779b97f4a7c15
	for i := range b {
		h = (h ^ uint64(uintptr(unsafe.Pointer(unsafe.StringData(b[i].Device))))) * 0x100000001b3
		h = (h ^ uint64(uintptr(unsafe.Pointer(unsafe.StringData(b[i].Tag))))) * 0x100000001b3
		h = (h ^ uint64(len(b[i].Device))<<32 ^ uint64(len(b[i].Tag))) * 0x100000001b3
	}
	return h
}

// same reports whether b names the series of sh with the very same strings.
func (sh *dropShape) same(b []drivers.Sample) bool {
	if len(b) != len(sh.names) {
		return false
	}
	for i := range b {
		k := &sh.names[i]
		if unsafe.StringData(k.Device) != unsafe.StringData(b[i].Device) || len(k.Device) != len(b[i].Device) ||
			unsafe.StringData(k.Tag) != unsafe.StringData(b[i].Tag) || len(k.Tag) != len(b[i].Tag) {
			return false
		}
	}
	return true
}

// sampleQueue holds the batches drivers emitted, in order, without copying
// them: a full queue drops from the head (or refuses new batches) and a
// commit takes from the head, whatever the depth. Drops leave markers,
// whose memory is bounded by the shapes table and the number of series:
// consecutive markers are merged.
type sampleQueue struct {
	items []pendingItem
	n     int   // samples in all batches
	bytes int64 // their estimated memory
	// shapes of dropped batches; markers counts the markers queued that
	// may refer to them.
	shapes  dropShapes
	markers int
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

// countDropped counts the samples of the whole batch b into m, by its
// shape when it has one or may get one.
func (q *sampleQueue) countDropped(m *dropMarker, b []drivers.Sample) {
	if len(b) == 0 {
		return
	}
	fp := fingerprint(b)
	sh := q.shapes.byPrint[fp]
	if sh == nil || !sh.same(b) {
		if q.shapes.names+len(b) > maxDropShapeNames || len(q.shapes.byPrint) >= maxDropShapes || sh != nil {
			for i := range b {
				m.addSeries(Series{b[i].Device, b[i].Tag}, 1)
			}
			return
		}
		sh = &dropShape{names: make([]Series, len(b))}
		for i := range b {
			sh.names[i] = Series{b[i].Device, b[i].Tag}
		}
		if q.shapes.byPrint == nil {
			q.shapes.byPrint = make(map[uint64]*dropShape)
		}
		q.shapes.byPrint[fp] = sh
		q.shapes.names += len(b)
	}
	m.addShape(sh, 1)
}

// newMarker returns an empty marker, counted in q.markers until it leaves
// the queue (markerGone).
func (q *sampleQueue) newMarker() *dropMarker {
	q.markers++
	return &dropMarker{}
}

// markerGone notes that a marker left the queue or was merged into
// another; with none left, a full shapes table starts afresh.
func (q *sampleQueue) markerGone() {
	q.markers--
	if q.markers == 0 && (len(q.shapes.byPrint) >= maxDropShapes || q.shapes.names >= maxDropShapeNames/2) {
		q.shapes = dropShapes{}
	}
}

// pushDropped records the samples of b as dropped after everything queued
// and gives b back to the drivers.
func (q *sampleQueue) pushDropped(b []drivers.Sample) {
	if len(q.items) == 0 || q.items[len(q.items)-1].dropped == nil {
		q.items = append(q.items, pendingItem{dropped: q.newMarker()})
	}
	q.countDropped(q.items[len(q.items)-1].dropped, b)
	drivers.ReleaseBatch(b)
}

// dropOldest turns the oldest pending samples into a drop marker at the
// head until at most maxN samples and maxBytes remain, gives the batches
// dropped whole back to the drivers, and returns how many samples it
// dropped. The marker at the head stays in place, so that dropping costs
// nothing per batch still queued.
func (q *sampleQueue) dropOldest(maxN int, maxBytes int64) int {
	dropped := 0
	var marker *dropMarker
	i := 0 // the next item to drop from
	if len(q.items) > 0 && q.items[0].dropped != nil {
		marker, i = q.items[0].dropped, 1
	}
	for (q.n > maxN || q.bytes > maxBytes) && q.n > 0 {
		if marker == nil {
			marker = q.newMarker()
		}
		it := &q.items[i]
		if it.dropped != nil {
			marker.add(it.dropped)
			q.markerGone()
			i++
			continue
		}
		head := it.samples
		k := len(head)
		if over := q.n - maxN; over > 0 && over < k && q.bytes-samplesBytes(head[:over]) <= maxBytes {
			k = over
		}
		size := samplesBytes(head[:k])
		if k == len(head) {
			q.countDropped(marker, head)
			drivers.ReleaseBatch(head)
			i++
		} else {
			for j := range head[:k] {
				marker.addSeries(Series{head[j].Device, head[j].Tag}, 1)
			}
			it.samples = head[k:]
		}
		q.n -= k
		q.bytes -= size
		dropped += k
	}
	// A marker right after the dropped ones joins them.
	for marker != nil && i > 0 && i < len(q.items) && q.items[i].dropped != nil {
		marker.add(q.items[i].dropped)
		q.markerGone()
		i++
	}
	switch {
	case marker == nil:
	case i == 0:
		// Only part of the head batch: the marker goes before it.
		q.items = append([]pendingItem{{dropped: marker}}, q.items...)
	default:
		clear(q.items[:i-1])
		q.items[i-1] = pendingItem{dropped: marker}
		q.items = q.items[i-1:]
	}
	return dropped
}

// popBatches removes up to max samples from the head, as the batches they
// came in, with the drop markers among them. It takes whole batches, and
// cuts one short only when it alone is more than max: a batch cut in two
// would no longer match its driver's shape, neither for the commit (which
// then hashes every name) nor for a drop.
func (q *sampleQueue) popBatches(max int) []pendingItem {
	var out []pendingItem
	for got := 0; len(q.items) > 0; {
		head := q.items[0]
		if head.dropped != nil {
			out = append(out, head)
			q.items[0] = pendingItem{}
			q.items = q.items[1:]
			q.markerGone()
			continue
		}
		if got >= max || (got > 0 && got+len(head.samples) > max) {
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
