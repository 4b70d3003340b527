package modbus

import (
	"fmt"
	"strconv"
	"strings"
)

// RegisterType is one of the four Modbus data tables.
type RegisterType uint8

// The Modbus data tables.
const (
	Holding RegisterType = iota
	Input
	Coil
	Discrete
)

// String returns coil, discrete, holding or input.
func (r RegisterType) String() string {
	switch r {
	case Holding:
		return "holding"
	case Input:
		return "input"
	case Coil:
		return "coil"
	case Discrete:
		return "discrete"
	}
	return fmt.Sprintf("register(%d)", uint8(r))
}

// IsBit reports whether the table holds single bits (coils and discrete
// inputs).
func (r RegisterType) IsBit() bool { return r == Coil || r == Discrete }

// maxQuantity is the largest number of items one read may ask for.
func (r RegisterType) maxQuantity() int {
	if r.IsBit() {
		return 2000
	}
	return 125
}

// ParseRegisterType parses coil, discrete, holding or input.
func ParseRegisterType(s string) (RegisterType, error) {
	switch strings.ToLower(s) {
	case "holding":
		return Holding, nil
	case "input":
		return Input, nil
	case "coil":
		return Coil, nil
	case "discrete":
		return Discrete, nil
	}
	return 0, fmt.Errorf("unknown register type %q: want coil, discrete, holding or input", s)
}

// Base is the base type of a tag's value.
type Base uint8

// Base types.
const (
	Bool Base = iota
	Int16
	Uint16
	Int32
	Uint32
	Int64
	Uint64
	Float32
	Float64
	String
)

var baseNames = [...]string{"bool", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "string"}

// String returns the type's name as the config writes it.
func (b Base) String() string {
	if int(b) < len(baseNames) {
		return baseNames[b]
	}
	return fmt.Sprintf("base(%d)", uint8(b))
}

// Type is a tag's value type: a base type and, for strings, a length in
// bytes.
type Type struct {
	Base Base
	// Len is the length in bytes of a string; 0 for other types.
	Len int
}

// String returns the type as the config writes it: "float32",
// "string(16)".
func (t Type) String() string {
	if t.Base == String {
		return fmt.Sprintf("string(%d)", t.Len)
	}
	return t.Base.String()
}

// Registers returns how many 16-bit registers a value of type t occupies;
// bool occupies one register when read from a register table.
func (t Type) Registers() int {
	switch t.Base {
	case Bool, Int16, Uint16:
		return 1
	case Int32, Uint32, Float32:
		return 2
	case Int64, Uint64, Float64:
		return 4
	case String:
		return (t.Len + 1) / 2
	}
	return 0
}

// MaxStringLen is the longest string one read can return: 125 registers.
const MaxStringLen = 250

// ParseType parses bool, int16, uint16, int32, uint32, int64, uint64,
// float32, float64 or string(n) with n from 1 to 250.
func ParseType(s string) (Type, error) {
	for i, n := range baseNames {
		if s == n && Base(i) != String {
			return Type{Base: Base(i)}, nil
		}
	}
	if rest, ok := strings.CutPrefix(s, "string("); ok {
		if num, ok := strings.CutSuffix(rest, ")"); ok {
			n, err := strconv.Atoi(num)
			if err == nil && n >= 1 && n <= MaxStringLen {
				return Type{Base: String, Len: n}, nil
			}
			return Type{}, fmt.Errorf("string length in %q out of range: want 1 to %d", s, MaxStringLen)
		}
	}
	if s == "string" {
		return Type{}, fmt.Errorf("a modbus string needs a length in bytes, e.g. string(16)")
	}
	return Type{}, fmt.Errorf("unknown type %q: want %s or string(n)", s, strings.Join(baseNames[:String], ", "))
}

// ByteOrder is the order of the bytes of a multi-byte value on the wire.
type ByteOrder uint8

// Byte orders; see the package documentation.
const (
	ABCD ByteOrder = iota
	CDAB
	BADC
	DCBA
)

// ByteOrders lists every byte order.
var ByteOrders = []ByteOrder{ABCD, CDAB, BADC, DCBA}

// String returns ABCD, CDAB, BADC or DCBA.
func (o ByteOrder) String() string {
	switch o {
	case ABCD:
		return "ABCD"
	case CDAB:
		return "CDAB"
	case BADC:
		return "BADC"
	case DCBA:
		return "DCBA"
	}
	return fmt.Sprintf("order(%d)", uint8(o))
}

// wordSwap reports whether the order sends the least significant word
// first.
func (o ByteOrder) wordSwap() bool { return o == CDAB || o == DCBA }

// byteSwap reports whether the order sends the low byte of each word first.
func (o ByteOrder) byteSwap() bool { return o == BADC || o == DCBA }

// ParseByteOrder parses ABCD, CDAB, BADC or DCBA; empty means ABCD.
func ParseByteOrder(s string) (ByteOrder, error) {
	switch strings.ToUpper(s) {
	case "", "ABCD":
		return ABCD, nil
	case "CDAB":
		return CDAB, nil
	case "BADC":
		return BADC, nil
	case "DCBA":
		return DCBA, nil
	}
	return 0, fmt.Errorf("unknown byte order %q: want ABCD, CDAB, BADC or DCBA", s)
}

// ParseAddress resolves a tag's address and register type as the package
// documentation describes: with register empty, a five- or six-digit
// address starting with 0, 1, 3 or 4 is in Modicon notation and any other
// address is a 0-based holding register; with register set, the address
// is 0-based in that table.
func ParseAddress(addr, register string) (RegisterType, uint16, error) {
	if addr == "" {
		return 0, 0, fmt.Errorf("address is empty")
	}
	for _, c := range addr {
		if c < '0' || c > '9' {
			return 0, 0, fmt.Errorf("address %q: want digits only, 0-based (0-65535) or in 4xxxx notation", addr)
		}
	}
	if register != "" {
		reg, err := ParseRegisterType(register)
		if err != nil {
			return 0, 0, err
		}
		n, err := strconv.ParseUint(addr, 10, 16)
		if err != nil {
			return 0, 0, fmt.Errorf("address %q with register %s is 0-based: want 0 to 65535 (leave register out to use 4xxxx notation)", addr, register)
		}
		return reg, uint16(n), nil
	}
	if len(addr) < 5 {
		n, _ := strconv.ParseUint(addr, 10, 16) // at most 4 digits: fits
		return Holding, uint16(n), nil
	}
	if len(addr) > 6 {
		return 0, 0, fmt.Errorf("address %q: too long; want 0-based (0-65535) or 5- or 6-digit notation such as 40001", addr)
	}
	var reg RegisterType
	switch addr[0] {
	case '0':
		reg = Coil
	case '1':
		reg = Discrete
	case '3':
		reg = Input
	case '4':
		reg = Holding
	default:
		return 0, 0, fmt.Errorf("address %q: in notation the first digit is 0 (coil), 1 (discrete), 3 (input) or 4 (holding); for a 0-based address set register", addr)
	}
	n, _ := strconv.ParseUint(addr[1:], 10, 32)
	if n < 1 || n > 65536 {
		return 0, 0, fmt.Errorf("address %q: register number %d out of range: want 1 to %d", addr, n, maxNumber(len(addr)))
	}
	if len(addr) == 5 && n > 9999 {
		return 0, 0, fmt.Errorf("address %q: out of range", addr)
	}
	return reg, uint16(n - 1), nil
}

func maxNumber(digits int) int {
	if digits == 5 {
		return 9999
	}
	return 65536
}
