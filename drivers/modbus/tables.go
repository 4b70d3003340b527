package modbus

import (
	"encoding/binary"
	"math"
	"runtime"
	"sync"
	"weak"
)

// tagTable is a device's parsed tags and the requests that read them.
// Devices of one model list the same tags (a YAML anchor given to a
// thousand PLCs): their Drivers share one table, held weakly by the Pool,
// instead of a copy each. A table is never changed once made.
type tagTable struct {
	tags []Tag
	reqs []request
}

// tables finds the table of identical tags already in use.
type tables struct {
	mu sync.Mutex
	m  map[string]weak.Pointer[tagTable]
}

// get returns the table of tags planned with gap and maxRegisters: one
// already in use when there is one, else build's, kept for the next.
func (ts *tables) get(tags []Tag, gap, maxRegisters int, build func() *tagTable) *tagTable {
	key := tableKey(tags, gap, maxRegisters)
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if t := ts.m[key].Value(); t != nil {
		return t
	}
	t := build()
	if ts.m == nil {
		ts.m = map[string]weak.Pointer[tagTable]{}
	}
	wp := weak.Make(t)
	ts.m[key] = wp
	// Forget the entry with the last Driver using the table.
	runtime.AddCleanup(t, func(key string) {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		if ts.m[key] == wp {
			delete(ts.m, key)
		}
	}, key)
	return t
}

// tableKey spells out everything a table is made of.
func tableKey(tags []Tag, gap, maxRegisters int) string {
	b := binary.AppendVarint(nil, int64(gap))
	b = binary.AppendVarint(b, int64(maxRegisters))
	for i := range tags {
		t := &tags[i]
		b = binary.AppendUvarint(b, uint64(len(t.Name)))
		b = append(b, t.Name...)
		b = append(b, byte(t.Register), byte(t.Type.Base), byte(t.Order), byte(t.Bit+1))
		b = binary.AppendUvarint(b, uint64(t.Address))
		b = binary.AppendUvarint(b, uint64(t.Type.Len))
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(t.Scale))
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(t.Offset))
	}
	return string(b)
}
