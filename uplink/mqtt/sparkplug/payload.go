// Package sparkplug encodes and decodes Sparkplug B payloads (Eclipse
// Sparkplug 3.0, the org.eclipse.tahu.protobuf Payload message) and names
// Sparkplug topics. It covers what an edge node that publishes scalar
// metrics needs: metrics with names, aliases, time stamps, data types,
// the historical and null flags, scalar values and flat property sets.
// Data sets, templates and nested property sets are not written, and are
// skipped when read.
//
// It writes the protobuf wire format directly with protowire, field by
// field as the specification's sparkplug_b.proto numbers them, so there is
// no generated code to keep in step.
package sparkplug

import (
	"fmt"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// Namespace is the first level of every Sparkplug B topic.
const Namespace = "spBv1.0"

// Message types (the third topic level).
const (
	NBirth = "NBIRTH"
	NDeath = "NDEATH"
	DBirth = "DBIRTH"
	DDeath = "DDEATH"
	NData  = "NDATA"
	DData  = "DDATA"
	NCmd   = "NCMD"
	DCmd   = "DCMD"
)

// Well-known metric names.
const (
	MetricBdSeq   = "bdSeq"
	MetricRebirth = "Node Control/Rebirth"
)

// DataType is a Sparkplug B data type.
type DataType uint32

// Data types used for scalar metrics and property values.
const (
	Int8     DataType = 1
	Int16    DataType = 2
	Int32    DataType = 3
	Int64    DataType = 4
	UInt8    DataType = 5
	UInt16   DataType = 6
	UInt32   DataType = 7
	UInt64   DataType = 8
	Float    DataType = 9
	Double   DataType = 10
	Boolean  DataType = 11
	String   DataType = 12
	DateTime DataType = 13
	Text     DataType = 14
)

// Topic returns spBv1.0/group/msgType/node, and /device when device is
// not empty.
func Topic(group, msgType, node, device string) string {
	t := Namespace + "/" + group + "/" + msgType + "/" + node
	if device != "" {
		t += "/" + device
	}
	return t
}

// Value is a scalar value of a metric or property. Which field counts
// depends on the data type: Int for Int8 to UInt32 (two's complement in 32
// bits), Long for Int64, UInt64 and DateTime (two's complement in 64 bits),
// Float, Double, Bool, and Str for String and Text.
type Value struct {
	Int    uint32
	Long   uint64
	Float  float32
	Double float64
	Bool   bool
	Str    string
}

// Property is one entry of a metric's property set.
type Property struct {
	Key    string
	Type   DataType
	IsNull bool
	Value  Value
}

// Metric is one metric of a payload.
type Metric struct {
	Name         string // empty: not sent (DATA messages that use the alias)
	Alias        uint64
	HasAlias     bool
	Timestamp    uint64 // ms since the Unix epoch; 0: not sent
	Type         DataType
	IsHistorical bool
	IsNull       bool
	Value        Value
	Properties   []Property
}

// Payload is a Sparkplug B payload.
type Payload struct {
	Timestamp uint64 // ms since the Unix epoch
	Metrics   []Metric
	Seq       uint64
	HasSeq    bool // NDEATH carries no seq
}

// Field numbers of sparkplug_b.proto.
const (
	fPayloadTimestamp = 1
	fPayloadMetrics   = 2
	fPayloadSeq       = 3

	fMetricName       = 1
	fMetricAlias      = 2
	fMetricTimestamp  = 3
	fMetricDatatype   = 4
	fMetricHistorical = 5
	fMetricIsNull     = 7
	fMetricProperties = 9
	fMetricInt        = 10
	fMetricLong       = 11
	fMetricFloat      = 12
	fMetricDouble     = 13
	fMetricBool       = 14
	fMetricString     = 15

	fSetKeys   = 1
	fSetValues = 2

	fPropType   = 1
	fPropIsNull = 2
	fPropInt    = 3
	fPropLong   = 4
	fPropFloat  = 5
	fPropDouble = 6
	fPropBool   = 7
	fPropString = 8
)

// Append appends the wire form of p to dst.
func (p *Payload) Append(dst []byte) []byte {
	dst = protowire.AppendTag(dst, fPayloadTimestamp, protowire.VarintType)
	dst = protowire.AppendVarint(dst, p.Timestamp)
	var scratch []byte
	for i := range p.Metrics {
		scratch = p.Metrics[i].appendTo(scratch[:0])
		dst = protowire.AppendTag(dst, fPayloadMetrics, protowire.BytesType)
		dst = protowire.AppendBytes(dst, scratch)
	}
	if p.HasSeq {
		dst = protowire.AppendTag(dst, fPayloadSeq, protowire.VarintType)
		dst = protowire.AppendVarint(dst, p.Seq)
	}
	return dst
}

func (m *Metric) appendTo(dst []byte) []byte {
	if m.Name != "" {
		dst = protowire.AppendTag(dst, fMetricName, protowire.BytesType)
		dst = protowire.AppendString(dst, m.Name)
	}
	if m.HasAlias {
		dst = protowire.AppendTag(dst, fMetricAlias, protowire.VarintType)
		dst = protowire.AppendVarint(dst, m.Alias)
	}
	if m.Timestamp != 0 {
		dst = protowire.AppendTag(dst, fMetricTimestamp, protowire.VarintType)
		dst = protowire.AppendVarint(dst, m.Timestamp)
	}
	dst = protowire.AppendTag(dst, fMetricDatatype, protowire.VarintType)
	dst = protowire.AppendVarint(dst, uint64(m.Type))
	if m.IsHistorical {
		dst = protowire.AppendTag(dst, fMetricHistorical, protowire.VarintType)
		dst = protowire.AppendVarint(dst, 1)
	}
	if m.IsNull {
		dst = protowire.AppendTag(dst, fMetricIsNull, protowire.VarintType)
		dst = protowire.AppendVarint(dst, 1)
	}
	if len(m.Properties) > 0 {
		var set []byte
		for _, p := range m.Properties {
			set = protowire.AppendTag(set, fSetKeys, protowire.BytesType)
			set = protowire.AppendString(set, p.Key)
		}
		var pv []byte
		for _, p := range m.Properties {
			pv = pv[:0]
			pv = protowire.AppendTag(pv, fPropType, protowire.VarintType)
			pv = protowire.AppendVarint(pv, uint64(p.Type))
			if p.IsNull {
				pv = protowire.AppendTag(pv, fPropIsNull, protowire.VarintType)
				pv = protowire.AppendVarint(pv, 1)
			} else {
				pv = appendValue(pv, p.Type, &p.Value, fPropInt, fPropLong, fPropFloat, fPropDouble, fPropBool, fPropString)
			}
			set = protowire.AppendTag(set, fSetValues, protowire.BytesType)
			set = protowire.AppendBytes(set, pv)
		}
		dst = protowire.AppendTag(dst, fMetricProperties, protowire.BytesType)
		dst = protowire.AppendBytes(dst, set)
	}
	if !m.IsNull {
		dst = appendValue(dst, m.Type, &m.Value, fMetricInt, fMetricLong, fMetricFloat, fMetricDouble, fMetricBool, fMetricString)
	}
	return dst
}

// appendValue appends v in the field its type selects.
func appendValue(dst []byte, t DataType, v *Value, fInt, fLong, fFloat, fDouble, fBool, fString protowire.Number) []byte {
	switch t {
	case Int8, Int16, Int32, UInt8, UInt16, UInt32:
		dst = protowire.AppendTag(dst, fInt, protowire.VarintType)
		dst = protowire.AppendVarint(dst, uint64(v.Int))
	case Int64, UInt64, DateTime:
		dst = protowire.AppendTag(dst, fLong, protowire.VarintType)
		dst = protowire.AppendVarint(dst, v.Long)
	case Float:
		dst = protowire.AppendTag(dst, fFloat, protowire.Fixed32Type)
		dst = protowire.AppendFixed32(dst, math.Float32bits(v.Float))
	case Double:
		dst = protowire.AppendTag(dst, fDouble, protowire.Fixed64Type)
		dst = protowire.AppendFixed64(dst, math.Float64bits(v.Double))
	case Boolean:
		dst = protowire.AppendTag(dst, fBool, protowire.VarintType)
		dst = protowire.AppendVarint(dst, protowire.EncodeBool(v.Bool))
	case String, Text:
		dst = protowire.AppendTag(dst, fString, protowire.BytesType)
		dst = protowire.AppendString(dst, v.Str)
	}
	return dst
}

// Decode reads a payload. Fields it does not know are skipped.
func Decode(b []byte) (Payload, error) {
	var p Payload
	err := fields(b, func(num protowire.Number, typ protowire.Type, v uint64, raw []byte) error {
		switch {
		case num == fPayloadTimestamp && typ == protowire.VarintType:
			p.Timestamp = v
		case num == fPayloadSeq && typ == protowire.VarintType:
			p.Seq, p.HasSeq = v, true
		case num == fPayloadMetrics && typ == protowire.BytesType:
			m, err := decodeMetric(raw)
			if err != nil {
				return fmt.Errorf("metric %d: %w", len(p.Metrics), err)
			}
			p.Metrics = append(p.Metrics, m)
		}
		return nil
	})
	if err != nil {
		return Payload{}, fmt.Errorf("sparkplug payload: %w", err)
	}
	return p, nil
}

func decodeMetric(b []byte) (Metric, error) {
	var m Metric
	var keys []string
	var props []Property
	err := fields(b, func(num protowire.Number, typ protowire.Type, v uint64, raw []byte) error {
		switch num {
		case fMetricName:
			m.Name = string(raw)
		case fMetricAlias:
			m.Alias, m.HasAlias = v, true
		case fMetricTimestamp:
			m.Timestamp = v
		case fMetricDatatype:
			m.Type = DataType(v)
		case fMetricHistorical:
			m.IsHistorical = v != 0
		case fMetricIsNull:
			m.IsNull = v != 0
		case fMetricProperties:
			return fields(raw, func(num protowire.Number, typ protowire.Type, _ uint64, raw []byte) error {
				switch num {
				case fSetKeys:
					keys = append(keys, string(raw))
				case fSetValues:
					pr, err := decodeProperty(raw)
					if err != nil {
						return err
					}
					props = append(props, pr)
				}
				return nil
			})
		default:
			readValue(&m.Value, num, v, raw, fMetricInt, fMetricLong, fMetricFloat, fMetricDouble, fMetricBool, fMetricString)
		}
		return nil
	})
	if err != nil {
		return Metric{}, err
	}
	if len(keys) != len(props) {
		return Metric{}, fmt.Errorf("property set has %d keys and %d values", len(keys), len(props))
	}
	for i := range props {
		props[i].Key = keys[i]
	}
	m.Properties = props
	return m, nil
}

func decodeProperty(b []byte) (Property, error) {
	var p Property
	err := fields(b, func(num protowire.Number, _ protowire.Type, v uint64, raw []byte) error {
		switch num {
		case fPropType:
			p.Type = DataType(v)
		case fPropIsNull:
			p.IsNull = v != 0
		default:
			readValue(&p.Value, num, v, raw, fPropInt, fPropLong, fPropFloat, fPropDouble, fPropBool, fPropString)
		}
		return nil
	})
	return p, err
}

func readValue(dst *Value, num protowire.Number, v uint64, raw []byte, fInt, fLong, fFloat, fDouble, fBool, fString protowire.Number) {
	switch num {
	case fInt:
		dst.Int = uint32(v)
	case fLong:
		dst.Long = v
	case fFloat:
		dst.Float = math.Float32frombits(uint32(v))
	case fDouble:
		dst.Double = math.Float64frombits(v)
	case fBool:
		dst.Bool = v != 0
	case fString:
		dst.Str = string(raw)
	}
}

// fields calls f for each field of a message: varint and fixed values in
// v, length-delimited ones in raw. Groups are refused.
func fields(b []byte, f func(num protowire.Number, typ protowire.Type, v uint64, raw []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("tag: %w", protowire.ParseError(n))
		}
		b = b[n:]
		var v uint64
		var raw []byte
		switch typ {
		case protowire.VarintType:
			v, n = protowire.ConsumeVarint(b)
		case protowire.Fixed32Type:
			var x uint32
			x, n = protowire.ConsumeFixed32(b)
			v = uint64(x)
		case protowire.Fixed64Type:
			v, n = protowire.ConsumeFixed64(b)
		case protowire.BytesType:
			raw, n = protowire.ConsumeBytes(b)
		default:
			return fmt.Errorf("field %d: wire type %d not supported", num, typ)
		}
		if n < 0 {
			return fmt.Errorf("field %d: %w", num, protowire.ParseError(n))
		}
		b = b[n:]
		if err := f(num, typ, v, raw); err != nil {
			return err
		}
	}
	return nil
}
