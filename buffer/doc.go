// Package buffer is the durable store-and-forward buffer of the agent: one
// bbolt file holding a FIFO queue of opaque records per sink, plus a small
// set of metadata entries committed atomically with the records.
//
// It owns the file format, group commit, acknowledgement bookkeeping,
// bounds (bytes and age per queue, with a drop policy), corruption handling
// and depth statistics. It must not know what a record means: it stores
// bytes and knows nothing of samples, devices, Modbus, OPC UA, Kafka or
// MQTT. It imports bbolt and the standard library only.
//
// # Layout
//
// Each Append writes the records to every queue in a single bbolt write
// transaction, packed into frames of up to 64 KiB: a frame holds many
// records with a checksummed header (record count, append time, its queue
// and id, see frame.go) and a CRC32C over the whole frame. A group commit
// large enough to fill frames stores each record as what it does not
// share with the record before it (frame_shared.go): a gateway's records
// are much alike (the ingest stage's records of 100 registers a device
// take 43 bytes each in the file instead of 227), and bbolt copies,
// writes and syncs that much less. Frame numbers only ever grow (the next one
// is persisted); a record's position is its frame and its index in the
// frame (Pos), stable across Close and Open once Read or Last has returned
// it (a record no one has seen may move when small frames are merged,
// keeping its order). Each frame is a nested bucket
// of its queue's bucket so that bbolt writes it once and frees it at once
// (see store.go). Small Appends (a few records) within a second of each
// other are coalesced into the queue's tail frame while it is small and
// unacknowledged, so that a slow trickle does not make a frame per commit.
//
// Acknowledgements are tracked in memory per frame; a frame is deleted once
// all its records are acknowledged. Deletions and partial-frame
// acknowledgement bitmaps are written with the next Append, by the
// background flush (Options.FlushInterval), by Flush, or by Close. Open
// rebuilds the in-memory state from the frame headers and the bitmaps
// without reading the records.
//
// Memory: about 100 bytes per frame in the file, plus 8 bytes per 64
// records of frames that are acknowledged in part. Frames are full (64 KiB)
// under load; the small frames a slow trickle makes are merged into full
// ones by the background flush (see merge.go), so the index stays near 3 MB
// per 10 million 200-byte records whatever the rate. Open also walks every
// page of the file once (bbolt's free-page scan and the consistency check):
// a transient of about 1% of the file size.
//
// # What survives what
//
//   - A process crash or power cut after Append returned: the records and
//     metadata of that Append survive (bbolt fsyncs each commit unless
//     Options.NoSync). An Append that returned an error committed nothing.
//   - Acknowledgements are persisted lazily: after a crash, records
//     acknowledged since the last commit are delivered again (at-least-once).
//     After Close and Open, acknowledged records are never delivered again.
//   - A frame whose checksum does not match is skipped, counted
//     (QueueStats.CorruptFrames and Dropped[ReasonCorrupt]) and logged; it
//     never causes a panic.
//   - No bytes in the file can crash the process: an existing file is
//     checked by bbolt in a child process first (Options.Isolate, see
//     isolate.go). A file bbolt cannot open or finds inconsistent is moved
//     aside to <path>.corrupt-<time> and a fresh buffer is started into
//     which every intact frame found by scanning the raw file (rawscan.go,
//     independent of bbolt's pages), and the metadata when bbolt can still
//     read it in full and it is not older than those frames, are copied
//     (OnCorrupt Quarantine, the default), or Open fails (Fail). Recovery
//     says what was recovered and lost; when the metadata could not be
//     carried over (or the file was empty, or missing though it existed)
//     the file has a new epoch and Recovery.StateLost says why. A file
//     damaged while running is handled the same way, in place
//     (recover.go).
//   - Bounds (MaxBytes, MaxAge) drop data instead of blocking, and count
//     what they drop by reason (QueueStats.Dropped, kept in the file),
//     logging totals at most once a minute. A full disk (or
//     Options.MaxFileSize) makes DropOldest drop the oldest frames and
//     retry; if that fails, or with DropNewest, Append returns an error
//     wrapping ErrFull, commits nothing, and the caller may retry later.
//   - A bbolt panic or memory fault on a damaged file is recovered and
//     returned as an error wrapping ErrCorrupt; a write transaction that
//     fails is abandoned rather than rolled back (bbolt's rollback walks
//     the whole file in a goroutine that can crash the process) and the
//     file is recovered.
//
// # Caveats
//
//   - The file never shrinks: pages freed by deletions are reused by later
//     appends. Use Compact offline to rewrite a file at its live size.
//   - bbolt reads through a memory map; pages read count in the process's
//     resident memory although they are file-backed and reclaimable.
//   - On 32-bit platforms the whole file must fit the address space: see
//     MaxBytesLimit32 and CheckBounds.
//   - One process at a time: Open takes an exclusive lock on the file and
//     waits at most Options.LockTimeout for it.
package buffer
