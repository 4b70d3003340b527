package buffer

import (
	"encoding/binary"
	"hash/crc32"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// Every metadata value and every drop counter is stored in an envelope
// that names its key and the bbolt transaction that wrote it, checksummed
// like a frame, and each write transaction ends with a commit summary (the
// value of the system bucket's next_frame key, also in an envelope) that
// says how many envelopes it wrote, a checksum over them, which keys it
// deleted, and the epoch. The raw scan (rawscan.go) finds envelopes as it
// finds frames, so a salvage that can read the metadata of an older commit
// (bbolt falls back to the other meta page when one is damaged) can replay
// the commits after it from the envelopes and their summaries, and keep
// the sequence state and its epoch, instead of starting a new epoch:
//
//	offset  size  field
//	0       4     envMagic
//	4       1     kind: envValue or envCommit
//	5       8     commit number, big-endian
//	13      2     key length k, big-endian
//	15      4     value length n, big-endian
//	19      4     CRC32C of bytes 0..18
//	23      k     key: envMetaNS or envSysNS, then the bucket's key
//	23+k    n     value
//	23+k+n  4     CRC32C of every byte before it
//
// A value without an envelope (written by an earlier build) reads as it
// is.
const (
	envMagic     = "\xE7iPv"
	envValue     = 'V'
	envCommit    = 'C'
	envHeaderLen = 23
	envOverhead  = envHeaderLen + frameTrailerLen
	envMetaNS    = 'm'
	envSysNS     = 's'
	// maxEnvScan bounds the envelopes the raw scan reads: a larger value
	// is not recoverable by the scan.
	maxEnvScan = 16 << 20
	// maxSummaryDeletes bounds the keys a commit summary lists as deleted;
	// a commit deleting more cannot be replayed from the scan.
	maxSummaryDeletes = 8 << 10
)

// appendEnvelope appends the envelope of key (with its namespace byte) and
// value, written by transaction txid, to dst.
func appendEnvelope(dst []byte, kind byte, txid uint64, key []byte, value []byte) []byte {
	start := len(dst)
	dst = append(dst, envMagic...)
	dst = append(dst, kind)
	dst = binary.BigEndian.AppendUint64(dst, txid)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(key)))
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(value)))
	dst = binary.BigEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli))
	dst = append(dst, key...)
	dst = append(dst, value...)
	return binary.BigEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli))
}

// envelope is a decoded envelope.
type envelope struct {
	kind  byte
	txid  uint64
	key   []byte
	value []byte
}

// envLength returns the length of the envelope whose header starts v, or
// 0 when v does not start with an intact envelope header.
func envLength(v []byte) int {
	if len(v) < envHeaderLen || string(v[:4]) != envMagic || (v[4] != envValue && v[4] != envCommit) {
		return 0
	}
	if crc32.Checksum(v[:19], castagnoli) != binary.BigEndian.Uint32(v[19:23]) {
		return 0
	}
	n := uint64(envOverhead) + uint64(binary.BigEndian.Uint16(v[13:15])) + uint64(binary.BigEndian.Uint32(v[15:19]))
	if n > maxEnvScan+envOverhead+1<<16 {
		return 0
	}
	return int(n)
}

// parseEnvelope decodes the envelope that is exactly v.
func parseEnvelope(v []byte) (envelope, bool) {
	n := envLength(v)
	if n == 0 || n != len(v) {
		return envelope{}, false
	}
	if crc32.Checksum(v[:n-4], castagnoli) != binary.BigEndian.Uint32(v[n-4:]) {
		return envelope{}, false
	}
	k := int(binary.BigEndian.Uint16(v[13:15]))
	return envelope{
		kind:  v[4],
		txid:  binary.BigEndian.Uint64(v[5:13]),
		key:   v[envHeaderLen : envHeaderLen+k],
		value: v[envHeaderLen+k : n-4],
	}, true
}

// unwrap returns the value a stored value holds: the value of its
// envelope, or the stored bytes themselves (written by an earlier build).
func unwrap(v []byte) []byte {
	if e, ok := parseEnvelope(v); ok && e.kind == envValue {
		return e.value
	}
	return v
}

// commitSummary is what a write transaction says about itself.
type commitSummary struct {
	txid uint64
	// next is the next frame id after the transaction.
	next uint64
	// puts and sum count and checksum the value envelopes it wrote.
	puts uint32
	sum  uint32
	// epoch is the file's epoch.
	epoch string
	// deleted are the metadata keys it deleted; all is false when there
	// were more than maxSummaryDeletes bytes of them.
	deleted [][]byte
	all     bool
}

// entrySum is the checksum of one value envelope in a summary's sum: the
// xor of the entries' CRC32C over their namespaced key and value.
func entrySum(key, value []byte) uint32 {
	s := crc32.Checksum(key, castagnoli)
	s = crc32.Update(s, castagnoli, []byte{0})
	return crc32.Update(s, castagnoli, value)
}

func (s *commitSummary) encode() []byte {
	v := binary.BigEndian.AppendUint64(nil, s.next)
	v = binary.BigEndian.AppendUint32(v, s.puts)
	v = binary.BigEndian.AppendUint32(v, s.sum)
	v = append(v, byte(len(s.epoch)))
	v = append(v, s.epoch...)
	if !s.all {
		return binary.BigEndian.AppendUint32(v, 0xFFFFFFFF)
	}
	v = binary.BigEndian.AppendUint32(v, uint32(len(s.deleted)))
	for _, k := range s.deleted {
		v = binary.BigEndian.AppendUint16(v, uint16(len(k)))
		v = append(v, k...)
	}
	return v
}

// decodeSummary decodes the value of a commit summary envelope.
func decodeSummary(txid uint64, v []byte) (commitSummary, bool) {
	s := commitSummary{txid: txid}
	if len(v) < 17 {
		return s, false
	}
	s.next = binary.BigEndian.Uint64(v)
	s.puts = binary.BigEndian.Uint32(v[8:])
	s.sum = binary.BigEndian.Uint32(v[12:])
	el := int(v[16])
	v = v[17:]
	if len(v) < el+4 {
		return s, false
	}
	s.epoch = string(v[:el])
	n := binary.BigEndian.Uint32(v[el:])
	v = v[el+4:]
	if n == 0xFFFFFFFF {
		return s, len(v) == 0
	}
	s.all = true
	for range n {
		if len(v) < 2 {
			return s, false
		}
		k := int(binary.BigEndian.Uint16(v))
		if len(v) < 2+k {
			return s, false
		}
		s.deleted = append(s.deleted, v[2:2+k])
		v = v[2+k:]
	}
	return s, len(v) == 0
}

// sysNext decodes the system bucket's next_frame value: a commit summary,
// or 8 bytes written by an earlier build.
func sysNext(v []byte) (uint64, bool) {
	if len(v) == 8 {
		return binary.BigEndian.Uint64(v), true
	}
	if e, ok := parseEnvelope(v); ok && e.kind == envCommit {
		if s, ok := decodeSummary(e.txid, e.value); ok {
			return s.next, true
		}
	}
	return 0, false
}

// commitGen returns the commit number in the system bucket's next_frame
// value: that of its commit summary, 0 for a value of an earlier build.
func commitGen(v []byte) uint64 {
	if e, ok := parseEnvelope(v); ok && e.kind == envCommit {
		return e.txid
	}
	return 0
}

// txWrites collects what one write transaction wrote, for its summary.
type txWrites struct {
	txid    uint64
	puts    uint32
	sum     uint32
	deleted [][]byte
	delSize int
	// env holds the envelopes the transaction Put; its array is reused
	// by the next transaction, once bbolt is done with this one.
	env []byte
}

// putEnv stores value under key in bucket bkt (namespace ns: envMetaNS or
// envSysNS), in an envelope, and counts it in the transaction's summary.
func (w *txWrites) putEnv(bkt *bolt.Bucket, ns byte, key, value []byte) error {
	nk := append([]byte{ns}, key...)
	// bbolt keeps the value until the transaction ends: each its own part
	// of w.env, which is never moved (a new array when it is full) and
	// reused only by the next transaction.
	n := envOverhead + len(nk) + len(value)
	if cap(w.env)-len(w.env) < n {
		w.env = make([]byte, 0, max(n, 2*cap(w.env), 4096))
	}
	start := len(w.env)
	w.env = appendEnvelope(w.env, envValue, w.txid, nk, value)
	v := w.env[start:len(w.env):len(w.env)]
	if err := bkt.Put(key, v); err != nil {
		return err
	}
	w.puts++
	w.sum ^= entrySum(nk, value)
	return nil
}

// deleteMeta deletes a metadata key and notes it in the summary.
func (w *txWrites) deleteMeta(bkt *bolt.Bucket, key []byte) error {
	if err := bkt.Delete(key); err != nil {
		return err
	}
	w.delSize += 2 + len(key)
	if w.delSize <= maxSummaryDeletes {
		w.deleted = append(w.deleted, slices.Clone(key))
	}
	return nil
}

// summary writes the commit summary into the system bucket of tx.
func (w *txWrites) summary(tx *bolt.Tx, next uint64, epoch string) error {
	s := commitSummary{next: next, puts: w.puts, sum: w.sum, epoch: epoch, deleted: w.deleted, all: w.delSize <= maxSummaryDeletes}
	v := appendEnvelope(nil, envCommit, w.txid, append([]byte{envSysNS}, keyNext...), s.encode())
	return tx.Bucket(sysBucket).Put(keyNext, v)
}
