// Package record owns the encoded form of a sample: the JSON value that
// consumers read (schema version 1, documented in the README and in
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
// HeaderSchema.
const SchemaVersion = 1

// Header names set on every Kafka record (and as MQTT v5 user properties
// where available).
const (
	HeaderGateway = "iot-gateway" // the gateway id
	HeaderSchema  = "iot-schema"  // SchemaVersion in decimal
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

// Fields is one sample as it appears in a record's JSON value. Exactly one
// of the value fields is meaningful, selected by Type.
type Fields struct {
	Gateway    string
	Device     string
	Tag        string
	Seq        uint64
	Type       string
	Float      float64
	Int        int64
	Uint       uint64
	Bool       bool
	String     string
	Quality    string
	ReadTime   time.Time
	SourceTime time.Time // zero: omitted
}

// AppendJSON appends the JSON value of f to dst and returns the extended
// slice. The output is compact, has a fixed key order and exact integers:
// an int64 or uint64 is written digit for digit, never through a float.
func AppendJSON(dst []byte, f *Fields) []byte {
	dst = append(dst, `{"schema":`...)
	dst = strconv.AppendInt(dst, SchemaVersion, 10)
	dst = append(dst, `,"gateway":`...)
	dst = appendString(dst, f.Gateway)
	dst = append(dst, `,"device":`...)
	dst = appendString(dst, f.Device)
	dst = append(dst, `,"tag":`...)
	dst = appendString(dst, f.Tag)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendUint(dst, f.Seq, 10)
	dst = append(dst, `,"type":`...)
	dst = appendString(dst, f.Type)
	dst = append(dst, `,"value":`...)
	switch f.Type {
	case TypeFloat:
		dst = appendFloat(dst, f.Float)
	case TypeInt:
		dst = strconv.AppendInt(dst, f.Int, 10)
	case TypeUint:
		dst = strconv.AppendUint(dst, f.Uint, 10)
	case TypeBool:
		dst = strconv.AppendBool(dst, f.Bool)
	default:
		dst = appendString(dst, f.String)
	}
	dst = append(dst, `,"quality":`...)
	dst = appendString(dst, f.Quality)
	dst = append(dst, `,"read_time":"`...)
	dst = f.ReadTime.UTC().AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, '"')
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
	// Value is the JSON value written by AppendJSON.
	Value []byte
}

const envelopeVersion = 1

// ErrMalformed is wrapped by every error of DecodeEnvelope.
var ErrMalformed = errors.New("malformed record envelope")

// AppendEnvelope appends the binary form of an envelope: a version byte,
// the key length as a uvarint, the key, the time in Unix nanoseconds as a
// varint, then the value to the end.
func AppendEnvelope(dst []byte, key string, t time.Time, value []byte) []byte {
	dst = append(dst, envelopeVersion)
	dst = binary.AppendUvarint(dst, uint64(len(key)))
	dst = append(dst, key...)
	dst = binary.AppendVarint(dst, t.UnixNano())
	return append(dst, value...)
}

// DecodeEnvelope parses b. Key and Value alias b.
func DecodeEnvelope(b []byte) (Envelope, error) {
	if len(b) == 0 {
		return Envelope{}, fmt.Errorf("%w: empty", ErrMalformed)
	}
	if b[0] != envelopeVersion {
		return Envelope{}, fmt.Errorf("%w: version %d, want %d", ErrMalformed, b[0], envelopeVersion)
	}
	rest := b[1:]
	keyLen, n := binary.Uvarint(rest)
	if n <= 0 || keyLen > uint64(len(rest)-n) {
		return Envelope{}, fmt.Errorf("%w: bad key length", ErrMalformed)
	}
	rest = rest[n:]
	key := rest[:keyLen]
	rest = rest[keyLen:]
	nanos, n := binary.Varint(rest)
	if n <= 0 {
		return Envelope{}, fmt.Errorf("%w: bad timestamp", ErrMalformed)
	}
	return Envelope{Key: string(key), Time: time.Unix(0, nanos), Value: rest[n:]}, nil
}
