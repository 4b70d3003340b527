// Package drivers owns the Sample model and the Driver interface that every
// source of samples implements: the Modbus and OPC UA drivers in the
// sub-packages and the simulator's in-process source. It knows nothing of the
// buffer or of any sink.
package drivers

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"time"
)

// Quality says how far a sample can be trusted.
type Quality uint8

// Qualities, from OPC UA status classes and Modbus exceptions or timeouts.
// A sample of QualityBad has no reading (see Sample).
const (
	QualityGood Quality = iota
	QualityUncertain
	QualityBad
)

// String returns "good", "uncertain" or "bad".
func (q Quality) String() string {
	switch q {
	case QualityGood:
		return "good"
	case QualityUncertain:
		return "uncertain"
	case QualityBad:
		return "bad"
	}
	return fmt.Sprintf("quality(%d)", uint8(q))
}

// Kind is the type of a Value.
type Kind uint8

// Kinds of values a tag can carry.
const (
	KindFloat Kind = iota
	KindInt
	KindUint
	KindBool
	KindString
)

// String returns the kind's name as used in records: "float", "int",
// "uint", "bool" or "string".
func (k Kind) String() string {
	switch k {
	case KindFloat:
		return "float"
	case KindInt:
		return "int"
	case KindUint:
		return "uint"
	case KindBool:
		return "bool"
	case KindString:
		return "string"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Value is a typed reading. Only the field selected by Kind is meaningful.
// It is a plain struct rather than an interface so that a sample costs no
// allocation on the hot path.
type Value struct {
	Kind Kind
	F    float64
	I    int64
	U    uint64
	B    bool
	S    string
}

// Float returns a float Value.
func Float(f float64) Value { return Value{Kind: KindFloat, F: f} }

// Float32 returns the float Value of a float32 reading: the float64
// nearest to the shortest decimal that reads back as f, so that records,
// the CLI and /ready show the number the device holds (3.14159, not
// 3.141590118408203). float32(v.F) is f, bit for bit; NaN and the
// infinities are kept as they are. It does not allocate.
func Float32(f float32) Value {
	w := float64(f)
	if math.IsNaN(w) || math.IsInf(w, 0) || w == 0 {
		return Float(w)
	}
	var buf [32]byte
	if d, err := strconv.ParseFloat(string(strconv.AppendFloat(buf[:0], w, 'g', -1, 32)), 64); err == nil && float32(d) == f {
		w = d
	}
	return Float(w)
}

// NoValue returns the Value of a sample without reading (quality bad): it
// gives only the kind of the tag.
func NoValue(k Kind) Value { return Value{Kind: k} }

// Int returns a signed integer Value.
func Int(i int64) Value { return Value{Kind: KindInt, I: i} }

// Uint returns an unsigned integer Value.
func Uint(u uint64) Value { return Value{Kind: KindUint, U: u} }

// Bool returns a boolean Value.
func Bool(b bool) Value { return Value{Kind: KindBool, B: b} }

// String returns a string Value.
func String(s string) Value { return Value{Kind: KindString, S: s} }

// Float64 returns the value as a float: integers converted, true as 1,
// false and strings as 0.
func (v Value) Float64() float64 {
	switch v.Kind {
	case KindFloat:
		return v.F
	case KindInt:
		return float64(v.I)
	case KindUint:
		return float64(v.U)
	case KindBool:
		if v.B {
			return 1
		}
	}
	return 0
}

// Equal reports whether two values have the same kind and content. NaN
// equals NaN here, so that a round trip of a NaN reading compares equal.
func (v Value) Equal(o Value) bool {
	if v.Kind != o.Kind {
		return false
	}
	switch v.Kind {
	case KindFloat:
		return v.F == o.F || (math.IsNaN(v.F) && math.IsNaN(o.F))
	case KindInt:
		return v.I == o.I
	case KindUint:
		return v.U == o.U
	case KindBool:
		return v.B == o.B
	case KindString:
		return v.S == o.S
	}
	return false
}

// Sample is one reading of one tag of one device.
type Sample struct {
	Device string
	Tag    string
	// Value is the reading. A sample of QualityBad has none (a failed
	// read): only Value.Kind, the type of the tag, is meaningful, and the
	// record leaves the value out (HasValue).
	Value   Value
	Quality Quality
	// Status is the source's own name for a status other than plain good,
	// kept in the record's "status": an OPC UA status code
	// (BadSensorFailure, UncertainLastUsableValue), a Modbus exception
	// (IllegalDataAddress). Empty for plain good.
	Status string
	// SourceTime is the time the PLC gives for the value; zero when it
	// gives none.
	SourceTime time.Time
	// ReadTime is the gateway's clock when the value was read.
	ReadTime time.Time
}

// HasValue reports whether the sample carries a reading: every quality
// but QualityBad.
func (s *Sample) HasValue() bool { return s.Quality != QualityBad }

// Emit hands a batch of samples to the ingest stage. It never blocks the
// caller for long and takes ownership of the slice.
type Emit func(samples []Sample)

// Driver reads samples from one source until its context is cancelled.
type Driver interface {
	// Name identifies the driver in logs, metrics and /ready.
	Name() string
	// Run polls or subscribes, passing every batch of samples to emit. It
	// returns nil when ctx is cancelled and an error only when it cannot go
	// on at all; transient device errors are reported as samples of bad
	// quality and counted, not returned.
	Run(ctx context.Context, emit Emit) error
}

// Starter is a Driver that runs without a goroutine of its own (its work
// runs on shared workers, as Modbus polls do on their pool's): the agent
// starts it instead of calling Run, and so keeps no goroutine per device.
type Starter interface {
	Driver
	// Start begins what Run does and returns at once. ended is called
	// exactly once, from any goroutine, with what Run would have returned,
	// once the driver has stopped: ctx cancelled (nil) or a failure. An
	// error means the driver did not start, and ended is not called.
	Start(ctx context.Context, emit Emit, ended func(error)) error
}
