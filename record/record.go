// Package record owns the encoded form of a sample: the JSON value that
// consumers read (schema version 2, documented in the README and in
// record.schema.json) and the envelope that the buffer stores for every sink
// (key, timestamp, value). It knows nothing of drivers, the buffer or sinks.
package record

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// SchemaVersion is the version of the JSON value written by AppendJSON. It
// is carried in every value ("schema") and in the record header
// HeaderSchema. Version 2 added "epoch" and leaves "value" out of a bad
// sample; Decode reads both. The optional "status" (the source's name for
// a status other than plain good) came later within version 2: a record
// without it reads as before.
const SchemaVersion = 2

// Header names set on every Kafka record (and as MQTT v5 user properties
// where available).
const (
	HeaderGateway = "iot-gateway" // the gateway id
	HeaderEpoch   = "iot-epoch"   // the stream epoch (schema 2; absent for schema 1)
	HeaderSchema  = "iot-schema"  // the value's schema version in decimal
	HeaderLane    = "iot-lane"    // "live" or "backlog"
)

// Value types, as written in the "type" field.
const (
	TypeFloat  = "float"
	TypeInt    = "int"
	TypeUint   = "uint"
	TypeBool   = "bool"
	TypeString = "string"
)

// Encodings of the float values that JSON numbers cannot carry. They are
// written as JSON strings in "value" with "type": "float".
const (
	NaN         = "NaN"
	PosInfinity = "Infinity"
	NegInfinity = "-Infinity"
)

// Quality names, as written in the "quality" field.
const (
	QualityGood      = "good"
	QualityUncertain = "uncertain"
	QualityBad       = "bad"
)

// Fields is one sample as it appears in a record's JSON value. Exactly one
// of the value fields is meaningful, selected by Type, unless NoValue is
// set.
type Fields struct {
	Gateway string
	// Epoch is the stream epoch: sequence numbers count within it.
	Epoch  string
	Device string
	Tag    string
	Seq    uint64
	Type   string
	Float  float64
	Int    int64
	Uint   uint64
	Bool   bool
	String string
	// NoValue leaves "value" out: a sample whose read failed (quality
	// bad) has no reading, only the Type of its tag.
	NoValue bool
	Quality string
	// Status is the source's name for a status other than plain good
	// (an OPC UA status code such as BadSensorFailure or
	// UncertainLastUsableValue, a Modbus exception such as
	// IllegalDataAddress); empty: omitted.
	Status     string
	ReadTime   time.Time
	SourceTime time.Time // zero: omitted
}

// AppendJSON appends the JSON value of f to dst and returns the extended
// slice. The output is compact, has a fixed key order and exact integers:
// an int64 or uint64 is written digit for digit, never through a float. A
// float is written in the shortest decimal that reads back as the same
// float64 (a float32 reading widened by the drivers reads back as its own
// shortest decimal, 3.14159 rather than 3.141590118408203). It does not
// allocate when dst has room.
func AppendJSON(dst []byte, f *Fields) []byte {
	dst = append(dst, `{"schema":`...)
	dst = strconv.AppendInt(dst, SchemaVersion, 10)
	dst = append(dst, `,"gateway":`...)
	dst = appendString(dst, f.Gateway)
	dst = append(dst, `,"epoch":`...)
	dst = appendString(dst, f.Epoch)
	dst = append(dst, `,"device":`...)
	dst = appendString(dst, f.Device)
	dst = append(dst, `,"tag":`...)
	dst = appendString(dst, f.Tag)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendUint(dst, f.Seq, 10)
	dst = appendBody(dst, f)
	dst = append(dst, `,"read_time":"`...)
	dst = f.ReadTime.UTC().AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, '"')
	return appendTail(dst, f)
}

// appendBody appends the fields between "seq" and "read_time": the type,
// the value, the quality and the status.
func appendBody(dst []byte, f *Fields) []byte {
	dst = append(dst, `,"type":`...)
	dst = appendString(dst, f.Type)
	if !f.NoValue {
		dst = appendValue(dst, f)
	}
	dst = append(dst, `,"quality":`...)
	dst = appendString(dst, f.Quality)
	return appendStatus(dst, f)
}

// appendValue appends the "value" field of f.
func appendValue(dst []byte, f *Fields) []byte {
	dst = append(dst, `,"value":`...)
	switch f.Type {
	case TypeFloat:
		return appendFloat(dst, f.Float)
	case TypeInt:
		return strconv.AppendInt(dst, f.Int, 10)
	case TypeUint:
		return strconv.AppendUint(dst, f.Uint, 10)
	case TypeBool:
		return strconv.AppendBool(dst, f.Bool)
	}
	return appendString(dst, f.String)
}

// appendStatus appends the "status" field of f, if any.
func appendStatus(dst []byte, f *Fields) []byte {
	if f.Status != "" {
		dst = append(dst, `,"status":`...)
		dst = appendString(dst, f.Status)
	}
	return dst
}

// appendTail appends what follows the read time: the source time and the
// closing brace.
func appendTail(dst []byte, f *Fields) []byte {
	if !f.SourceTime.IsZero() {
		dst = append(dst, `,"source_time":"`...)
		dst = f.SourceTime.UTC().AppendFormat(dst, time.RFC3339Nano)
		dst = append(dst, '"')
	}
	return append(dst, '}')
}

// appendFloat writes f the way encoding/json does for finite values and as
// one of the strings NaN, Infinity, -Infinity otherwise.
func appendFloat(dst []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		return append(dst, `"`+NaN+`"`...)
	case math.IsInf(f, 1):
		return append(dst, `"`+PosInfinity+`"`...)
	case math.IsInf(f, -1):
		return append(dst, `"`+NegInfinity+`"`...)
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	start := len(dst)
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' {
		// Shorten e-07 to e-7 as encoding/json does.
		n := len(dst) - start
		if n >= 4 && dst[len(dst)-4] == 'e' && dst[len(dst)-3] == '-' && dst[len(dst)-2] == '0' {
			dst[len(dst)-2] = dst[len(dst)-1]
			dst = dst[:len(dst)-1]
		}
	}
	return dst
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string. Invalid UTF-8 becomes U+FFFD so
// that the output is always valid JSON.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// Envelope is what the buffer stores for one record: everything a sink
// needs to send it without decoding the JSON value.
type Envelope struct {
	// Key is the device name: the Kafka record key and the {device} of
	// topic templates.
	Key string
	// Time is the sample's read time: the Kafka record timestamp and the
	// start of iot_sample_delivery_seconds.
	Time time.Time
	// Schema is the schema version of Value: 1 for records buffered by a
	// build before epochs, SchemaVersion otherwise.
	Schema int
	// Epoch is the stream epoch written into Value (empty for schema 1).
	// It aliases the decoded bytes.
	Epoch []byte
	// Value is the JSON value written by AppendJSON.
	Value []byte
}

// Envelope versions. Version 1 (schema 1 values) had no epoch; version 2
// carries the epoch of a schema 2 value so that a sink can set its header
// without decoding the JSON.
const (
	envelopeV1      = 1
	envelopeVersion = 2
)

// ErrMalformed is wrapped by every error of DecodeEnvelope.
var ErrMalformed = errors.New("malformed record envelope")

// AppendEnvelope appends the binary form of an envelope: a version byte
// (2), the key length as a uvarint, the key, the time in Unix nanoseconds
// as a varint, the epoch's length as a uvarint, the epoch, then the value
// (written by AppendJSON with the same epoch) to the end.
func AppendEnvelope(dst []byte, key string, t time.Time, epoch string, value []byte) []byte {
	dst = append(dst, envelopeVersion)
	dst = binary.AppendUvarint(dst, uint64(len(key)))
	dst = append(dst, key...)
	dst = binary.AppendVarint(dst, t.UnixNano())
	dst = binary.AppendUvarint(dst, uint64(len(epoch)))
	dst = append(dst, epoch...)
	return append(dst, value...)
}

// DecodeEnvelope parses b, of version 1 or 2. Key is a copy; Epoch and
// Value alias b.
func DecodeEnvelope(b []byte) (Envelope, error) {
	return DecodeEnvelopeKey(b, func(k []byte) string { return string(k) })
}

// DecodeEnvelopeKey is DecodeEnvelope with Key made by keyOf from the
// key's bytes (which alias b: keyOf must not keep them), so that a reader
// decoding many records of the same devices can hand out strings it made
// before instead of a copy per record.
func DecodeEnvelopeKey(b []byte, keyOf func([]byte) string) (Envelope, error) {
	if len(b) == 0 {
		return Envelope{}, fmt.Errorf("%w: empty", ErrMalformed)
	}
	if b[0] != envelopeVersion && b[0] != envelopeV1 {
		return Envelope{}, fmt.Errorf("%w: version %d, want %d or %d", ErrMalformed, b[0], envelopeV1, envelopeVersion)
	}
	env := Envelope{Schema: int(b[0])}
	rest := b[1:]
	keyBytes, rest, ok := cutBytes(rest)
	if !ok {
		return Envelope{}, fmt.Errorf("%w: bad key length", ErrMalformed)
	}
	nanos, n := binary.Varint(rest)
	if n <= 0 {
		return Envelope{}, fmt.Errorf("%w: bad timestamp", ErrMalformed)
	}
	rest = rest[n:]
	if env.Schema == envelopeVersion {
		if env.Epoch, rest, ok = cutBytes(rest); !ok {
			return Envelope{}, fmt.Errorf("%w: bad epoch length", ErrMalformed)
		}
	}
	env.Key, env.Time, env.Value = keyOf(keyBytes), time.Unix(0, nanos), rest
	return env, nil
}

// cutBytes splits a uvarint length and that many bytes off the front of b.
func cutBytes(b []byte) (field, rest []byte, ok bool) {
	l, n := binary.Uvarint(b)
	if n <= 0 || l > uint64(len(b)-n) {
		return nil, nil, false
	}
	b = b[n:]
	return b[:l:l], b[l:], true
}
