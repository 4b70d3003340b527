package ingest

import "hash/maphash"

// seriesIndex finds a series' handle by its names. It keys a map by a
// 64-bit hash of the names rather than by the names themselves: the map
// then holds no pointers, so the garbage collector does not walk it at
// every cycle, and takes 16 bytes a slot instead of 40. The names behind a
// hash are checked in the table's names; the rare series whose hash
// another series already holds is kept in clash, by its names.
type seriesIndex struct {
	hash   func(Series) uint64
	byHash map[uint64]uint32
	clash  map[Series]uint32
}

func newSeriesIndex() seriesIndex {
	seed := maphash.MakeSeed()
	return seriesIndex{
		hash:   func(k Series) uint64 { return maphash.Comparable(seed, k) },
		byHash: make(map[uint64]uint32),
	}
}

// get returns the handle of k, given the names of every handle.
func (x *seriesIndex) get(k Series, names []Series) (uint32, bool) {
	h, ok := x.byHash[x.hash(k)]
	if ok && names[h] == k {
		return h, true
	}
	if ok && len(x.clash) > 0 {
		h, ok = x.clash[k]
		return h, ok
	}
	return 0, false
}

// put gives k handle h; names must name k at h already.
func (x *seriesIndex) put(k Series, h uint32, names []Series) {
	hk := x.hash(k)
	if e, ok := x.byHash[hk]; ok && e != h && names[e] != k {
		if x.clash == nil {
			x.clash = make(map[Series]uint32)
		}
		x.clash[k] = h
		return
	}
	x.byHash[hk] = h
}

// del forgets k, while names still names it at its handle.
func (x *seriesIndex) del(k Series, names []Series) {
	hk := x.hash(k)
	if e, ok := x.byHash[hk]; !ok || names[e] != k {
		delete(x.clash, k)
		return
	}
	delete(x.byHash, hk)
	for c, h := range x.clash {
		if x.hash(c) == hk {
			// Another series of the same hash takes the slot.
			delete(x.clash, c)
			x.byHash[hk] = h
			return
		}
	}
}

// len returns the number of series in the index.
func (x *seriesIndex) len() int { return len(x.byHash) + len(x.clash) }
