package ingest

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unsafe"

	"github.com/iot-producer/iot-producer/drivers"
)

// The last sequence number of every series is kept in the buffer's
// metadata, committed in the same transaction as the records it numbers.
// Series get a small integer handle when first seen; handles are grouped
// in pages of pageSlots, and a commit writes one value per page that
// changed instead of one entry per series:
//
//	"seqv/" + page (8 hex digits): pageSlots big-endian uint64, the last
//	        sequence number of the series in each slot (0: a free slot)
//	"seqn/" + page: for each slot, uvarint length + device, uvarint
//	        length + tag (both empty for a free slot); written when the
//	        page's series change
//	"seq/" + device + "\x00" + tag: 8 bytes big-endian, a series in no
//	        page: pruned after Options.SeriesIdle, or written before
//	        pages existed. Taken back into a page (and the entry deleted
//	        in the same commit) when the series is seen again.
//	"seqd/" + number (16 hex digits): a delta, the new values of the
//	        pages a commit changed: for each, uvarint page, then each
//	        slot's value as a varint difference from the slot before
//	        (from 0 for the first slot). Deltas apply in number order
//	        over the "seqv/" values.
//
// A commit that changes no names writes a delta instead of its pages:
// with 100,000 series, a page value rewrites a leaf page of bbolt's for
// every few series that changed, and a delta (a device's tags, polled
// together, have the same number: a byte a slot) a handful of pages for
// the whole commit. A checkpoint writes the values of every page changed
// since the last one and deletes the deltas, in one commit: when names
// change (a handle may go to another series), and once the deltas hold
// maxDeltaBytes or number maxDeltas.
const (
	pageSlots      = 64
	seqValuePrefix = "seqv/"
	seqNamePrefix  = "seqn/"
	seqDeltaPrefix = "seqd/"
	maxDeltaBytes  = 1 << 20
	maxDeltas      = 256
)

// seriesTable is the ingest stage's per-series state, indexed by handle.
type seriesTable struct {
	ids   seriesIndex
	names []Series
	seqs  []uint64
	// seen is the tick (seconds since the table was made) of the last
	// commit that numbered a sample of the series.
	seen  []uint32
	live  []bool
	free  []uint32 // handles of pruned series, reused first
	pages []pageState
	dirty []uint32 // pages with a value or names to write
	// cold reports that "seq/" entries may exist on disk, so a series not
	// in the table is looked up there first.
	cold bool
	// coldOps are "seq/" entries to write (pruned series) or delete (nil:
	// a series taken back into a page) with the next commit.
	coldOps map[string][]byte
	// shapes are the names and handles of the last batch whose first
	// sample was of a device, by that device.
	shapes map[string]*shape
	// gen changes whenever handles are freed (prune), so that handles
	// kept elsewhere (dropShape) are looked up again.
	gen uint64
	// stale lists the pages whose value on disk is older than a delta
	// written since the last checkpoint (pageState.stale).
	stale []uint32
	// deltaKeys are the deltas on disk, deltaBytes their size, and
	// nextDelta the number of the next one.
	deltaKeys  []string
	deltaBytes int
	nextDelta  uint64
}

// shape is the series of a batch, in order.
type shape struct{ names []shapeEntry }

// shapeEntry is a sample's device and tag, as the addresses and lengths
// of the very strings (which the entry keeps alive), and their handle.
type shapeEntry struct {
	device, tag       *byte
	deviceLen, tagLen uint32 // names are far shorter than 4 GiB
	h                 uint32
}

func shapeName(s *drivers.Sample, h uint32) shapeEntry {
	return shapeEntry{unsafe.StringData(s.Device), unsafe.StringData(s.Tag), uint32(len(s.Device)), uint32(len(s.Tag)), h}
}

// is reports whether s names the entry's series with the same strings.
func (e *shapeEntry) is(s *drivers.Sample) bool {
	return e.device == unsafe.StringData(s.Device) && e.tag == unsafe.StringData(s.Tag) &&
		int(e.deviceLen) == len(s.Device) && int(e.tagLen) == len(s.Tag)
}

type pageState struct {
	valueKey, nameKey     string
	valueDirty, nameDirty bool
	listed                bool // in dirty
	stale                 bool // in seriesTable.stale
}

func newSeriesTable() *seriesTable {
	return &seriesTable{ids: newSeriesIndex(), coldOps: make(map[string][]byte), shapes: make(map[string]*shape)}
}

// pageKey is the metadata key of page p under prefix.
func pageKey(prefix string, p uint32) string {
	return prefix + fmt.Sprintf("%08x", p)
}

// grow makes room for handle h.
func (t *seriesTable) grow(h uint32) {
	for uint32(len(t.names)) <= h {
		t.names = append(t.names, Series{})
		t.seqs = append(t.seqs, 0)
		t.seen = append(t.seen, 0)
		t.live = append(t.live, false)
	}
	for p := uint32(len(t.pages)); p <= h/pageSlots; p++ {
		t.pages = append(t.pages, pageState{valueKey: pageKey(seqValuePrefix, p), nameKey: pageKey(seqNamePrefix, p)})
	}
}

// set puts series k with last sequence number seq at handle h.
func (t *seriesTable) set(h uint32, k Series, seq uint64) {
	t.grow(h)
	t.names[h] = k
	t.ids.put(k, h, t.names)
	t.seqs[h] = seq
	t.live[h] = true
}

// markValue and markNames note that page of handle h must be written.
func (t *seriesTable) markValue(h uint32) {
	p := &t.pages[h/pageSlots]
	p.valueDirty = true
	t.list(h/pageSlots, p)
}

func (t *seriesTable) markNames(h uint32) {
	p := &t.pages[h/pageSlots]
	p.nameDirty, p.valueDirty = true, true
	t.list(h/pageSlots, p)
}

func (t *seriesTable) list(n uint32, p *pageState) {
	if !p.listed {
		p.listed = true
		t.dirty = append(t.dirty, n)
	}
}

// add gives series k a handle; its last sequence number comes from its
// "seq/" entry when cold is set (lookup reads it), 0 otherwise.
func (t *seriesTable) add(k Series, lookup func(key string) ([]byte, error)) (uint32, error) {
	var seq uint64
	if t.cold && lookup != nil {
		key := SeqKey(k.Device, k.Tag)
		v, err := lookup(key)
		if err != nil {
			return 0, fmt.Errorf("look up the last sequence number of %s/%s: %w", k.Device, k.Tag, err)
		}
		if v != nil {
			if len(v) != 8 {
				return 0, fmt.Errorf("sequence metadata %q: malformed entry (%d bytes)", key, len(v))
			}
			seq = binary.BigEndian.Uint64(v)
			t.coldOps[key] = nil
		}
	}
	var h uint32
	if n := len(t.free); n > 0 {
		h = t.free[n-1]
		t.free = t.free[:n-1]
	} else {
		h = uint32(len(t.names))
	}
	t.set(h, k, seq)
	t.markNames(h)
	return h, nil
}

// prune takes the series not seen since tick before out of the table,
// writing their last sequence numbers to their own "seq/" entries with the
// next commit, and returns how many it took.
func (t *seriesTable) prune(before uint32) int {
	n := 0
	for h := range t.names {
		if !t.live[h] || t.seen[h] >= before {
			continue
		}
		k := t.names[h]
		t.coldOps[SeqKey(k.Device, k.Tag)] = binary.BigEndian.AppendUint64(nil, t.seqs[h])
		t.ids.del(k, t.names)
		t.names[h], t.seqs[h], t.live[h] = Series{}, 0, false
		t.free = append(t.free, uint32(h))
		t.markNames(uint32(h))
		t.cold = true
		n++
	}
	if n > 0 {
		clear(t.shapes) // they may name handles that are free now
		t.gen++
	}
	return n
}

// appendMeta adds the entries of every dirty page, as a delta or in a
// checkpoint, and the pending "seq/" writes and deletions to meta, their
// values appended to values (which must not move: the caller grows it
// first, see metaBytes), and clears them.
func (t *seriesTable) appendMeta(meta map[string][]byte, values []byte) []byte {
	if t.checkpointDue() {
		values = t.appendCheckpoint(meta, values)
	} else if len(t.dirty) > 0 {
		start := len(values)
		for _, n := range t.dirty {
			p := &t.pages[n]
			values = binary.AppendUvarint(values, uint64(n))
			lo := n * pageSlots
			hi := min(lo+pageSlots, uint32(len(t.names)))
			prev := uint64(0)
			for h := lo; h < lo+pageSlots; h++ {
				var seq uint64
				if h < hi {
					seq = t.seqs[h]
				}
				values = binary.AppendVarint(values, int64(seq-prev))
				prev = seq
			}
			if !p.stale {
				p.stale = true
				t.stale = append(t.stale, n)
			}
			p.valueDirty, p.listed = false, false
		}
		key := deltaKey(t.nextDelta)
		t.nextDelta++
		meta[key] = values[start:len(values):len(values)]
		t.deltaKeys = append(t.deltaKeys, key)
		t.deltaBytes += len(values) - start
		t.dirty = t.dirty[:0]
	}
	for k, v := range t.coldOps {
		meta[k] = v
	}
	clear(t.coldOps)
	return values
}

// checkpointDue reports whether this commit writes pages rather than a
// delta: names change (or "seq/" entries), or the deltas are many.
func (t *seriesTable) checkpointDue() bool {
	if len(t.coldOps) > 0 || t.deltaBytes >= maxDeltaBytes || len(t.deltaKeys) >= maxDeltas {
		return true
	}
	for _, n := range t.dirty {
		if t.pages[n].nameDirty {
			return true
		}
	}
	return false
}

// appendCheckpoint writes the values of every dirty or stale page and the
// names of every page whose names changed, and deletes the deltas.
func (t *seriesTable) appendCheckpoint(meta map[string][]byte, values []byte) []byte {
	for _, n := range t.stale {
		p := &t.pages[n]
		p.stale = false
		if !p.listed {
			p.listed = true
			t.dirty = append(t.dirty, n)
		}
		p.valueDirty = true
	}
	t.stale = t.stale[:0]
	for _, n := range t.dirty {
		p := &t.pages[n]
		lo := n * pageSlots
		hi := min(lo+pageSlots, uint32(len(t.names)))
		if p.valueDirty {
			start := len(values)
			for h := lo; h < lo+pageSlots; h++ {
				var seq uint64
				if h < hi {
					seq = t.seqs[h]
				}
				values = binary.BigEndian.AppendUint64(values, seq)
			}
			meta[p.valueKey] = values[start:len(values):len(values)]
		}
		if p.nameDirty {
			start := len(values)
			for h := lo; h < hi; h++ {
				values = binary.AppendUvarint(values, uint64(len(t.names[h].Device)))
				values = append(values, t.names[h].Device...)
				values = binary.AppendUvarint(values, uint64(len(t.names[h].Tag)))
				values = append(values, t.names[h].Tag...)
			}
			meta[p.nameKey] = values[start:len(values):len(values)]
		}
		p.valueDirty, p.nameDirty, p.listed = false, false, false
	}
	t.dirty = t.dirty[:0]
	for _, k := range t.deltaKeys {
		meta[k] = nil
	}
	t.deltaKeys, t.deltaBytes = t.deltaKeys[:0], 0
	return values
}

// metaBytes bounds what appendMeta appends.
func (t *seriesTable) metaBytes() int {
	n := 8 * pageSlots * len(t.stale)
	for _, p := range t.dirty {
		n += binary.MaxVarintLen32 + binary.MaxVarintLen64*pageSlots
		if t.pages[p].nameDirty {
			lo := p * pageSlots
			for h := lo; h < min(lo+pageSlots, uint32(len(t.names))); h++ {
				n += 2*binary.MaxVarintLen64 + len(t.names[h].Device) + len(t.names[h].Tag)
			}
		}
	}
	return n
}

// deltaKey is the metadata key of delta number n.
func deltaKey(n uint64) string { return fmt.Sprintf("%s%016x", seqDeltaPrefix, n) }

// seqPages gathers the sequence pages of a store's metadata.
type seqPages struct {
	values, names map[uint32][]byte
	cold          map[Series]uint64
	// deltas by number, and their keys and size.
	deltas     map[uint64][]byte
	deltaKeys  []string
	deltaBytes int
	// touched are the pages the deltas changed.
	touched map[uint32]bool
}

// add takes one metadata entry; entries other than sequence state are
// left alone.
func (s *seqPages) add(key, value []byte) error {
	k := string(key)
	switch {
	case strings.HasPrefix(k, seqKeyPrefix):
		device, tag, ok := strings.Cut(k[len(seqKeyPrefix):], "\x00")
		if !ok || len(value) != 8 {
			return fmt.Errorf("sequence metadata %q: malformed entry (%d bytes)", k, len(value))
		}
		s.cold[Series{device, tag}] = binary.BigEndian.Uint64(value)
	case strings.HasPrefix(k, seqDeltaPrefix):
		n, err := strconv.ParseUint(k[len(seqDeltaPrefix):], 16, 64)
		if err != nil {
			return fmt.Errorf("sequence metadata %q: malformed key", k)
		}
		s.deltas[n] = value
		s.deltaKeys = append(s.deltaKeys, k)
		s.deltaBytes += len(value)
	case strings.HasPrefix(k, seqValuePrefix), strings.HasPrefix(k, seqNamePrefix):
		p, err := strconv.ParseUint(k[len(seqValuePrefix):], 16, 32)
		if err != nil {
			return fmt.Errorf("sequence metadata %q: malformed key", k)
		}
		if strings.HasPrefix(k, seqValuePrefix) {
			if len(value) != 8*pageSlots {
				return fmt.Errorf("sequence metadata %q: malformed page (%d bytes)", k, len(value))
			}
			s.values[uint32(p)] = value
		} else {
			s.names[uint32(p)] = value
		}
	}
	return nil
}

// each calls fn for every series in a page with its handle and last
// sequence number.
func (s *seqPages) each(fn func(h uint32, k Series, seq uint64)) error {
	for p, names := range s.names {
		values, ok := s.values[p]
		if !ok {
			return fmt.Errorf("sequence metadata %q: no values for the page", pageKey(seqNamePrefix, p))
		}
		for slot := uint32(0); len(names) > 0; slot++ {
			if slot >= pageSlots {
				return fmt.Errorf("sequence metadata %q: more than %d series", pageKey(seqNamePrefix, p), pageSlots)
			}
			var parts [2]string
			for i := range parts {
				n, w := binary.Uvarint(names)
				if w <= 0 || uint64(len(names)-w) < n {
					return fmt.Errorf("sequence metadata %q: malformed names", pageKey(seqNamePrefix, p))
				}
				parts[i] = string(names[w : w+int(n)])
				names = names[w+int(n):]
			}
			if parts[0] == "" && parts[1] == "" {
				continue // a free slot
			}
			fn(p*pageSlots+slot, Series{parts[0], parts[1]}, binary.BigEndian.Uint64(values[8*slot:]))
		}
	}
	return nil
}

// applyDeltas applies the deltas to the page values, in number order.
func (s *seqPages) applyDeltas() error {
	nums := make([]uint64, 0, len(s.deltas))
	for n := range s.deltas {
		nums = append(nums, n)
	}
	slices.Sort(nums)
	for _, num := range nums {
		d := s.deltas[num]
		bad := fmt.Errorf("sequence metadata %q: malformed delta", deltaKey(num))
		for len(d) > 0 {
			p, w := binary.Uvarint(d)
			if w <= 0 || p > math.MaxUint32 {
				return bad
			}
			d = d[w:]
			page := s.values[uint32(p)]
			if page == nil {
				page = make([]byte, 8*pageSlots)
				s.values[uint32(p)] = page
			}
			prev := uint64(0)
			for slot := range pageSlots {
				v, w := binary.Varint(d)
				if w <= 0 {
					return bad
				}
				d = d[w:]
				prev += uint64(v)
				binary.BigEndian.PutUint64(page[8*slot:], prev)
			}
			s.touched[uint32(p)] = true
		}
	}
	return nil
}

// loadSeqPages reads the sequence state from store's metadata, the deltas
// applied.
func loadSeqPages(store Store) (*seqPages, error) {
	s := &seqPages{values: map[uint32][]byte{}, names: map[uint32][]byte{}, cold: map[Series]uint64{},
		deltas: map[uint64][]byte{}, touched: map[uint32]bool{}}
	if err := store.Meta(s.add); err != nil {
		return nil, fmt.Errorf("load sequence numbers: %w", err)
	}
	if err := s.applyDeltas(); err != nil {
		return nil, fmt.Errorf("load sequence numbers: %w", err)
	}
	return s, nil
}
