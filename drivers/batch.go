package drivers

import "sync"

// batches recycles the slices of emitted samples: the ingest stage gives a
// batch back once it has encoded it, and the next poll fills it again
// instead of allocating.
var batches sync.Pool

// NewBatch returns an empty batch with room for at least n samples,
// recycled when one was released. Emitting it hands it over as any batch.
func NewBatch(n int) []Sample {
	if p, ok := batches.Get().(*[]Sample); ok && cap(*p) >= n {
		return (*p)[:0]
	}
	return make([]Sample, 0, n)
}

// ReleaseBatch gives back a batch that nothing refers to any more (the
// ingest stage calls it once the samples are encoded), for NewBatch to
// reuse.
func ReleaseBatch(b []Sample) {
	if cap(b) == 0 {
		return
	}
	b = b[:cap(b)]
	clear(b) // drop the references to strings
	batches.Put(&b)
}
