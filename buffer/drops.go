package buffer

import "encoding/binary"

// droppedKeyPrefix starts the system bucket key holding a queue's drop
// counters: numReasons big-endian uint64s in the order of Reasons.
var droppedKeyPrefix = []byte("dropped/")

func (q *Queue) droppedKey() []byte {
	return append(append([]byte(nil), droppedKeyPrefix...), q.name...)
}

func encodeDrops(d [numReasons]uint64) []byte {
	return putUint64s(d[:])
}

// decodeDrops decodes stored counters; anything malformed reads as zero.
func decodeDrops(v []byte) [numReasons]uint64 {
	var d [numReasons]uint64
	if len(v) != 8*numReasons {
		return d
	}
	for i := range d {
		d[i] = binary.BigEndian.Uint64(v[8*i:])
	}
	return d
}
