package opcua

import (
	"math"
	"time"

	"github.com/gopcua/opcua/ua"
)

// TypeValue is a variable of the "types" device.
type TypeValue struct {
	Name  string
	Value any
}

// TypeValues returns one value of every built-in scalar type, chosen at the
// edges where a conversion loses something: 64-bit integers beyond 2^53, a
// float32 that is not a short decimal in float64, a date with nanoseconds.
func TypeValues() []TypeValue {
	return []TypeValue{
		{"Boolean", true},
		{"SByte", int8(-128)},
		{"Byte", uint8(255)},
		{"Int16", int16(-32768)},
		{"UInt16", uint16(65535)},
		{"Int32", int32(math.MinInt32)},
		{"UInt32", uint32(math.MaxUint32)},
		{"Int64", int64(math.MinInt64 + 1)},
		{"UInt64", uint64(math.MaxUint64 - 1)},
		{"Float", float32(0.1)},
		{"Double", 0.1},
		{"String", "Grüße, \"OPC\" ☃"},
		{"DateTime", time.Date(2026, 11, 26, 8, 0, 0, 123456700, time.UTC)},
		{"Guid", ua.NewGUID("72962B91-FA75-4AE6-8D28-B404DC7DAF63")},
		{"ByteString", []byte{0, 1, 2, 0xfe, 0xff}},
		{"XmlElement", ua.XMLElement("<a>1</a>")},
		{"NodeId", ua.NewStringNodeID(3, "x")},
		{"StatusCode", ua.StatusBadOutOfRange},
		{"QualifiedName", &ua.QualifiedName{NamespaceIndex: 2, Name: "q"}},
		{"LocalizedText", &ua.LocalizedText{EncodingMask: ua.LocalizedTextText | ua.LocalizedTextLocale, Locale: "de", Text: "Druck"}},
	}
}
