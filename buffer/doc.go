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
// Each Append writes one or more frames to every queue in a single bbolt
// write transaction. A frame packs many records into one bbolt value under
// an 8-byte big-endian key (the frame sequence, which only ever grows), with
// a checksummed header (record count, append time) and a CRC32C over the
// whole frame. A record's position is its frame and its index in the frame
// (Pos). Acknowledged records are tracked in memory per frame; a frame is
// deleted once all its records are acknowledged. Deletions and partial
// acknowledgements are written with the next Append, by a background flush
// (Options.FlushInterval), by Flush, or by Close.
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
//     never causes a panic. A file bbolt cannot open is moved aside to
//     <path>.corrupt-<time> and a fresh buffer is started (OnCorrupt
//     Quarantine, the default), or Open fails (Fail).
//   - A full disk makes Append fail with the error from bbolt; nothing is
//     committed and the caller may retry. Bounds (MaxBytes, MaxAge) drop
//     data instead of blocking, and count what they drop by reason.
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
