package modbus_test

import (
	"strings"
	"testing"

	mb "github.com/iot-producer/iot-producer/drivers/modbus"
)

// TestTagParseByteOrder: a byte order is taken wherever a value has bytes
// (on a 16-bit value or a bit of a register the byte swap matters) and
// refused on the bit tables, where it would be ignored.
func TestTagParseByteOrder(t *testing.T) {
	bit := 3
	cases := []struct {
		name    string
		tag     mb.TagConfig
		wantErr string
	}{
		{"int16 byte-swapped", mb.TagConfig{Name: "a", Address: "40001", Type: "int16", ByteOrder: "BADC", Scale: 1}, ""},
		{"uint16 little-endian", mb.TagConfig{Name: "a", Address: "30001", Type: "uint16", ByteOrder: "DCBA", Scale: 1}, ""},
		{"bit of a register", mb.TagConfig{Name: "a", Address: "40001", Type: "bool", Bit: &bit, ByteOrder: "BADC", Scale: 1}, ""},
		{"float32 word-swapped", mb.TagConfig{Name: "a", Address: "40001", Type: "float32", ByteOrder: "CDAB", Scale: 1}, ""},
		{"coil", mb.TagConfig{Name: "a", Address: "5", Register: "coil", Type: "bool", ByteOrder: "ABCD", Scale: 1}, "byte_order: coil registers hold single bits"},
		{"discrete input", mb.TagConfig{Name: "a", Address: "10001", Type: "bool", ByteOrder: "DCBA", Scale: 1}, "byte_order: discrete registers hold single bits"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tag, err := c.tag.Parse(125)
			switch {
			case c.wantErr == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
				t.Fatalf("error %v, want one containing %q", err, c.wantErr)
			case c.wantErr == "" && tag.Order.String() != c.tag.ByteOrder:
				t.Fatalf("byte order %s, want %s", tag.Order, c.tag.ByteOrder)
			}
		})
	}
}
