package modbus

import (
	"encoding/binary"
	"encoding/hex"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/iot-producer/iot-producer/drivers"
)

// The expected wire bytes below are computed without the decoder's
// toBigEndian/fromBigEndian: each value's big-endian bytes are written as
// literal hex (IEEE 754 patterns taken from the standard's tables), or
// produced by encoding/binary, and then permuted by these literal index
// tables, which spell out the byte order names letter by letter.
var wirePerm = map[int]map[ByteOrder][]int{
	2: {ABCD: {0, 1}, CDAB: {0, 1}, BADC: {1, 0}, DCBA: {1, 0}},
	4: {ABCD: {0, 1, 2, 3}, CDAB: {2, 3, 0, 1}, BADC: {1, 0, 3, 2}, DCBA: {3, 2, 1, 0}},
	8: {
		ABCD: {0, 1, 2, 3, 4, 5, 6, 7}, // ABCDEFGH
		CDAB: {6, 7, 4, 5, 2, 3, 0, 1}, // GHEFCDAB
		BADC: {1, 0, 3, 2, 5, 4, 7, 6}, // BADCFEHG
		DCBA: {7, 6, 5, 4, 3, 2, 1, 0}, // HGFEDCBA
	},
}

// wire permutes big-endian bytes into byte order o: wire[i] = be[perm[i]].
func wire(t *testing.T, be []byte, o ByteOrder) []byte {
	t.Helper()
	perm := wirePerm[len(be)]
	if perm == nil {
		t.Fatalf("no permutation for %d bytes", len(be))
	}
	out := make([]byte, len(be))
	for i, j := range perm[o] {
		out[i] = be[j]
	}
	return out
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeKnownVectors(t *testing.T) {
	cases := []struct {
		typ  string
		be   string // big-endian bytes, literal
		want drivers.Value
	}{
		{"bool", "0000", drivers.Bool(false)},
		{"bool", "0100", drivers.Bool(true)},
		{"int16", "fffe", drivers.Int(-2)},
		{"int16", "8000", drivers.Int(math.MinInt16)},
		{"uint16", "abcd", drivers.Uint(0xabcd)},
		{"int32", "f8a432eb", drivers.Int(-123456789)},
		{"int32", "01020304", drivers.Int(0x01020304)},
		{"uint32", "deadbeef", drivers.Uint(0xdeadbeef)},
		{"float32", "42f6e979", drivers.Float(123.456)}, // the shortest decimal of the float32
		{"float32", "bf800000", drivers.Float(-1)},
		{"float32", "7fc00000", drivers.Float(math.NaN())},
		{"float32", "ff800000", drivers.Float(math.Inf(-1))},
		{"int64", "fffffffffffffffe", drivers.Int(-2)},
		{"int64", "0102030405060708", drivers.Int(0x0102030405060708)},
		{"uint64", "fedcba9876543210", drivers.Uint(0xfedcba9876543210)},
		{"float64", "400921fb54442d18", drivers.Float(math.Pi)},
		{"float64", "c000000000000000", drivers.Float(-2)},
	}
	for _, c := range cases {
		typ, err := ParseType(c.typ)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range ByteOrders {
			t.Run(c.typ+"/"+c.be+"/"+o.String(), func(t *testing.T) {
				be := mustHex(t, c.be)
				raw := wire(t, be, o)
				got, err := Decode(raw, typ, o)
				if err != nil {
					t.Fatal(err)
				}
				if !got.Equal(c.want) {
					t.Fatalf("Decode(% x, %s, %s) = %+v, want %+v", raw, typ, o, got, c.want)
				}
				enc, err := Encode(c.want, typ, o)
				if err != nil {
					t.Fatal(err)
				}
				if c.typ != "bool" && hex.EncodeToString(enc) != hex.EncodeToString(raw) {
					t.Fatalf("Encode(%+v, %s, %s) = % x, want % x", c.want, typ, o, enc, raw)
				}
			})
		}
	}
}

// TestDecodeRandomVectors checks every numeric type in every order on
// random values, with the wire bytes made by encoding/binary and the
// literal permutations.
func TestDecodeRandomVectors(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 500 {
		u := r.Uint64()
		vectors := []struct {
			typ  Type
			be   []byte
			want drivers.Value
		}{
			{Type{Base: Int16}, binary.BigEndian.AppendUint16(nil, uint16(u)), drivers.Int(int64(int16(u)))},
			{Type{Base: Uint16}, binary.BigEndian.AppendUint16(nil, uint16(u)), drivers.Uint(uint64(uint16(u)))},
			{Type{Base: Int32}, binary.BigEndian.AppendUint32(nil, uint32(u)), drivers.Int(int64(int32(u)))},
			{Type{Base: Uint32}, binary.BigEndian.AppendUint32(nil, uint32(u)), drivers.Uint(uint64(uint32(u)))},
			{Type{Base: Float32}, binary.BigEndian.AppendUint32(nil, uint32(u)), drivers.Float32(math.Float32frombits(uint32(u)))},
			{Type{Base: Int64}, binary.BigEndian.AppendUint64(nil, u), drivers.Int(int64(u))},
			{Type{Base: Uint64}, binary.BigEndian.AppendUint64(nil, u), drivers.Uint(u)},
			{Type{Base: Float64}, binary.BigEndian.AppendUint64(nil, u), drivers.Float(math.Float64frombits(u))},
		}
		for _, v := range vectors {
			for _, o := range ByteOrders {
				raw := wire(t, v.be, o)
				got, err := Decode(raw, v.typ, o)
				if err != nil || !got.Equal(v.want) {
					t.Fatalf("Decode(% x, %s, %s) = %+v, %v; want %+v", raw, v.typ, o, got, err, v.want)
				}
			}
		}
	}
}

func TestDecodeString(t *testing.T) {
	cases := []struct {
		name  string
		typ   string
		order ByteOrder
		raw   string
		want  string
	}{
		{"high byte first", "string(6)", ABCD, "48656c6c6f21", "Hello!"},
		{"word swap does not move string bytes", "string(6)", CDAB, "48656c6c6f21", "Hello!"},
		{"low byte first", "string(6)", BADC, "65486c6c216f", "Hello!"},
		{"low byte first, DCBA", "string(6)", DCBA, "65486c6c216f", "Hello!"},
		{"cut at NUL", "string(8)", ABCD, "4142000043440000", "AB"},
		{"odd length reads the high byte of the last register", "string(3)", ABCD, "41424358", "ABC"},
		{"odd length, low byte first", "string(3)", BADC, "42415843", "ABC"},
		{"invalid UTF-8 replaced", "string(2)", ABCD, "ff41", "\uFFFDA"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			typ, err := ParseType(c.typ)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Decode(mustHex(t, c.raw), typ, c.order)
			if err != nil {
				t.Fatal(err)
			}
			if got.Kind != drivers.KindString || got.S != c.want {
				t.Fatalf("got %+v, want %q", got, c.want)
			}
		})
	}
}

func TestDecodeBit(t *testing.T) {
	cases := []struct {
		raw   string
		order ByteOrder
		bit   int
		want  bool
	}{
		{"0001", ABCD, 0, true},
		{"0001", ABCD, 1, false},
		{"8000", ABCD, 15, true},
		{"0100", BADC, 0, true},
		{"0100", ABCD, 8, true},
		{"0080", DCBA, 15, true},
	}
	for _, c := range cases {
		got, err := DecodeBit(mustHex(t, c.raw), c.order, c.bit)
		if err != nil || got != c.want {
			t.Errorf("DecodeBit(%s, %s, %d) = %v, %v; want %v", c.raw, c.order, c.bit, got, err, c.want)
		}
	}
	if _, err := DecodeBit([]byte{0}, ABCD, 0); err == nil {
		t.Error("DecodeBit of 1 byte: no error")
	}
	if _, err := DecodeBit([]byte{0, 0}, ABCD, 16); err == nil {
		t.Error("DecodeBit of bit 16: no error")
	}
}

func TestDecodeWrongLength(t *testing.T) {
	for _, typ := range []string{"int16", "float32", "uint64", "string(5)"} {
		ty, _ := ParseType(typ)
		if _, err := Decode(make([]byte, 2*ty.Registers()+2), ty, ABCD); err == nil {
			t.Errorf("%s: no error for too many bytes", typ)
		}
		if _, err := Decode(nil, ty, ABCD); err == nil {
			t.Errorf("%s: no error for no bytes", typ)
		}
	}
}

func TestEncodeClamps(t *testing.T) {
	cases := []struct {
		typ  string
		v    drivers.Value
		want string
	}{
		{"int16", drivers.Float(1e9), "7fff"},
		{"int16", drivers.Float(-1e9), "8000"},
		{"uint16", drivers.Int(-5), "0000"},
		{"uint16", drivers.Float(12.6), "000d"},
		{"int32", drivers.Uint(math.MaxUint64), "7fffffff"},
		{"uint64", drivers.Float(math.NaN()), "0000000000000000"},
		{"string(3)", drivers.String("ABCDE"), "41424300"},
	}
	for _, c := range cases {
		ty, _ := ParseType(c.typ)
		got, err := Encode(c.v, ty, ABCD)
		if err != nil || hex.EncodeToString(got) != c.want {
			t.Errorf("Encode(%+v, %s) = %x, %v; want %s", c.v, c.typ, got, err, c.want)
		}
	}
}

// FuzzDecode checks that decoding any bytes as any type in any order
// never panics, that Decode and Encode are inverse on the bytes of every
// numeric type, and that strings come out valid UTF-8.
func FuzzDecode(f *testing.F) {
	f.Add([]byte{0x42, 0xf6, 0xe9, 0x79, 1, 2, 3, 4}, uint8(7), uint8(1), uint8(3))
	f.Add([]byte("Hello, plant floor"), uint8(9), uint8(2), uint8(17))
	f.Add([]byte{0xff, 0xfe}, uint8(1), uint8(3), uint8(0))
	f.Fuzz(func(t *testing.T, data []byte, base, order, strLen uint8) {
		typ := Type{Base: Base(base % 10)}
		if typ.Base == String {
			typ.Len = int(strLen)%MaxStringLen + 1
		}
		o := ByteOrder(order % 4)
		n := 2 * typ.Registers()
		v, err := Decode(data, typ, o)
		if len(data) != n {
			if err == nil {
				t.Fatalf("Decode of %d bytes as %s: no error, want one for %d bytes", len(data), typ, n)
			}
			return
		}
		if err != nil {
			t.Fatalf("Decode(% x, %s, %s): %v", data, typ, o, err)
		}
		switch typ.Base {
		case Bool:
			_, _ = DecodeBit(data, o, int(strLen%16))
		case String:
			if v.Kind != drivers.KindString || !utf8Valid(v.S) || len(v.S) > 3*typ.Len {
				t.Fatalf("Decode as %s gave %+v", typ, v)
			}
		default:
			enc, err := Encode(v, typ, o)
			if err != nil {
				t.Fatal(err)
			}
			if hex.EncodeToString(enc) != hex.EncodeToString(data) && !isNaNBytes(v) {
				t.Fatalf("Encode(Decode(% x)) = % x as %s %s", data, enc, typ, o)
			}
		}
	})
}

func isNaNBytes(v drivers.Value) bool { return v.Kind == drivers.KindFloat && math.IsNaN(v.F) }

func BenchmarkDecode(b *testing.B) {
	raw := []byte{0x42, 0xf6, 0xe9, 0x79, 0x01, 0x02, 0x03, 0x04}
	for _, typ := range []Type{{Base: Uint16}, {Base: Float32}, {Base: Float64}, {Base: String, Len: 8}} {
		n := 2 * typ.Registers()
		b.Run(typ.String(), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = Decode(raw[:n], typ, CDAB)
			}
		})
	}
}
