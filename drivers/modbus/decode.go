package modbus

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"unicode/utf8"

	"github.com/iot-producer/iot-producer/drivers"
)

// toBigEndian copies the registers of one value from wire order in src to
// big-endian order in dst (len(dst) == len(src), both even).
func toBigEndian(dst, src []byte, o ByteOrder) {
	n := len(src) / 2
	for i := range n {
		w := i
		if o.wordSwap() {
			w = n - 1 - i
		}
		hi, lo := src[2*w], src[2*w+1]
		if o.byteSwap() {
			hi, lo = lo, hi
		}
		dst[2*i], dst[2*i+1] = hi, lo
	}
}

// fromBigEndian is the inverse of toBigEndian.
func fromBigEndian(dst, src []byte, o ByteOrder) {
	n := len(src) / 2
	for i := range n {
		w := i
		if o.wordSwap() {
			w = n - 1 - i
		}
		hi, lo := src[2*i], src[2*i+1]
		if o.byteSwap() {
			hi, lo = lo, hi
		}
		dst[2*w], dst[2*w+1] = hi, lo
	}
}

// Decode decodes one value of type t from its registers as read from the
// wire (2 bytes per register, t.Registers() registers) in byte order o. A
// bool is true when its register is not 0. Strings are cut at the first
// NUL, and invalid UTF-8 is replaced by U+FFFD. Decode fails only when regs
// has the wrong length.
func Decode(regs []byte, t Type, o ByteOrder) (drivers.Value, error) {
	n := t.Registers()
	if n == 0 || len(regs) != 2*n {
		return drivers.Value{}, fmt.Errorf("decode %s: got %d bytes, want %d", t, len(regs), 2*n)
	}
	if t.Base == String {
		return decodeString(regs, t.Len, o), nil
	}
	var buf [8]byte
	b := buf[:len(regs)]
	toBigEndian(b, regs, o)
	switch t.Base {
	case Bool:
		return drivers.Bool(b[0]|b[1] != 0), nil
	case Int16:
		return drivers.Int(int64(int16(binary.BigEndian.Uint16(b)))), nil
	case Uint16:
		return drivers.Uint(uint64(binary.BigEndian.Uint16(b))), nil
	case Int32:
		return drivers.Int(int64(int32(binary.BigEndian.Uint32(b)))), nil
	case Uint32:
		return drivers.Uint(uint64(binary.BigEndian.Uint32(b))), nil
	case Int64:
		return drivers.Int(int64(binary.BigEndian.Uint64(b))), nil
	case Uint64:
		return drivers.Uint(binary.BigEndian.Uint64(b)), nil
	case Float32:
		return drivers.Float32(math.Float32frombits(binary.BigEndian.Uint32(b))), nil
	case Float64:
		return drivers.Float(math.Float64frombits(binary.BigEndian.Uint64(b))), nil
	}
	return drivers.Value{}, fmt.Errorf("decode: unknown type %s", t)
}

// decodeString reads n bytes, swapping the bytes inside each register for
// the byte-swapped orders (BADC, DCBA).
func decodeString(regs []byte, n int, o ByteOrder) drivers.Value {
	var sb strings.Builder
	sb.Grow(n)
	for i := 0; i < n; i++ {
		j := i
		if o.byteSwap() {
			j = i ^ 1
		}
		c := regs[j]
		if c == 0 {
			break
		}
		sb.WriteByte(c)
	}
	s := sb.String()
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	return drivers.String(s)
}

// DecodeBit returns bit number bit (0 the least significant) of the
// register in regs (2 bytes) read in byte order o.
func DecodeBit(regs []byte, o ByteOrder, bit int) (bool, error) {
	if len(regs) != 2 || bit < 0 || bit > 15 {
		return false, fmt.Errorf("decode bit %d: got %d bytes, want 2 and a bit from 0 to 15", bit, len(regs))
	}
	var b [2]byte
	toBigEndian(b[:], regs, o)
	return binary.BigEndian.Uint16(b[:])&(1<<bit) != 0, nil
}

// Encode is the inverse of Decode: it returns the registers of v as type t
// in byte order o. Numbers are converted to t, rounded to the nearest
// integer and clamped to t's range; a bool is 1 or 0; a string is padded
// with NULs or cut to t.Len bytes.
func Encode(v drivers.Value, t Type, o ByteOrder) ([]byte, error) {
	n := t.Registers()
	if n == 0 {
		return nil, fmt.Errorf("encode: unknown type %s", t)
	}
	out := make([]byte, 2*n)
	if t.Base == String {
		if v.Kind != drivers.KindString {
			return nil, fmt.Errorf("encode %s: value is %s, not a string", t, v.Kind)
		}
		for i := 0; i < t.Len && i < len(v.S); i++ {
			j := i
			if o.byteSwap() {
				j = i ^ 1
			}
			out[j] = v.S[i]
		}
		return out, nil
	}
	var buf [8]byte
	b := buf[:2*n]
	switch t.Base {
	case Bool:
		if truthy(v) {
			b[1] = 1
		}
	case Int16:
		binary.BigEndian.PutUint16(b, uint16(int16(clampInt(v, math.MinInt16, math.MaxInt16))))
	case Uint16:
		binary.BigEndian.PutUint16(b, uint16(clampUint(v, math.MaxUint16)))
	case Int32:
		binary.BigEndian.PutUint32(b, uint32(int32(clampInt(v, math.MinInt32, math.MaxInt32))))
	case Uint32:
		binary.BigEndian.PutUint32(b, uint32(clampUint(v, math.MaxUint32)))
	case Int64:
		binary.BigEndian.PutUint64(b, uint64(clampInt(v, math.MinInt64, math.MaxInt64)))
	case Uint64:
		binary.BigEndian.PutUint64(b, clampUint(v, math.MaxUint64))
	case Float32:
		binary.BigEndian.PutUint32(b, math.Float32bits(float32(v.Float64())))
	case Float64:
		binary.BigEndian.PutUint64(b, math.Float64bits(v.Float64()))
	}
	fromBigEndian(out, b, o)
	return out, nil
}

func truthy(v drivers.Value) bool {
	switch v.Kind {
	case drivers.KindBool:
		return v.B
	case drivers.KindInt:
		return v.I != 0
	case drivers.KindUint:
		return v.U != 0
	case drivers.KindFloat:
		return v.F != 0
	}
	return v.S != ""
}

func clampInt(v drivers.Value, lo, hi int64) int64 {
	switch v.Kind {
	case drivers.KindInt:
		return max(lo, min(hi, v.I))
	case drivers.KindUint:
		if v.U > uint64(hi) {
			return hi
		}
		return int64(v.U)
	}
	f := math.Round(v.Float64())
	switch {
	case math.IsNaN(f):
		return 0
	case f <= float64(lo):
		return lo
	case f >= float64(hi):
		return hi
	}
	return int64(f)
}

func clampUint(v drivers.Value, hi uint64) uint64 {
	switch v.Kind {
	case drivers.KindUint:
		return min(hi, v.U)
	case drivers.KindInt:
		if v.I < 0 {
			return 0
		}
		return min(hi, uint64(v.I))
	}
	f := math.Round(v.Float64())
	switch {
	case math.IsNaN(f) || f <= 0:
		return 0
	case f >= float64(hi):
		return hi
	}
	return uint64(f)
}
