package record

import (
	"encoding/binary"
	"strconv"
	"time"
)

// Encoder writes the stored form of records, the envelope around the JSON
// value, byte for byte as AppendEnvelope(dst, f.Device, f.ReadTime,
// f.Epoch, AppendJSON(nil, f)) does, without escaping and formatting again
// what the record before had: the gateway and epoch, the device name and
// the read time. A driver's batch shares its device and read time, so most
// of a record is copied rather than encoded. The zero Encoder is ready to
// use; an Encoder is not safe for concurrent use.
type Encoder struct {
	// head is `{"schema":2,"gateway":...,"epoch":...,"device":` for
	// gateway and epoch, and epochEnv the epoch as the envelope holds it.
	gateway, epoch string
	head, epochEnv []byte
	// devEnv starts the envelope of a record of device (version, key
	// length, key) and devJSON is the device as a JSON string, then
	// `,"tag":`.
	device          string
	devEnv, devJSON []byte
	// timeEnv is the read time as the envelope holds it (Unix nanoseconds,
	// a varint), timeJSON as the JSON value does (the "read_time" key, RFC
	// 3339 in UTC, the closing quote), of the instant sec, nsec.
	timeSet           bool
	sec               int64
	nsec              int
	timeEnv, timeJSON []byte
	// pre is what every record of the device, time, gateway and epoch
	// starts with, up to the tag: devEnv, timeEnv, epochEnv, head,
	// devJSON. It is made again when one of them changes.
	pre []byte
	// The last sequence number written and its digits, the last type and
	// `,"type":` with it, the last quality and `,"quality":` with it: the
	// tags of a device, polled together, mostly share all three.
	seqSet            bool
	seq               uint64
	seqJSON           []byte
	typ, quality      string
	typJSON, qualJSON []byte
}

// Append appends the envelope of f (key f.Device, time f.ReadTime, epoch
// f.Epoch) with the JSON value of f to dst and returns the extended slice.
// It does not allocate when dst has room and the device, read time,
// gateway and epoch are those of the record before.
func (e *Encoder) Append(dst []byte, f *Fields) []byte {
	stale := e.pre == nil
	if e.head == nil || f.Gateway != e.gateway || f.Epoch != e.epoch {
		e.setStream(f.Gateway, f.Epoch)
		stale = true
	}
	if e.devEnv == nil || f.Device != e.device {
		e.setDevice(f.Device)
		stale = true
	}
	if !e.timeSet || f.ReadTime.Unix() != e.sec || f.ReadTime.Nanosecond() != e.nsec {
		e.setTime(f.ReadTime)
		stale = true
	}
	if stale {
		e.pre = append(e.pre[:0], e.devEnv...)
		e.pre = append(e.pre, e.timeEnv...)
		e.pre = append(e.pre, e.epochEnv...)
		e.pre = append(e.pre, e.head...)
		e.pre = append(e.pre, e.devJSON...)
	}
	dst = append(dst, e.pre...)
	dst = appendString(dst, f.Tag)
	if !e.seqSet || f.Seq != e.seq {
		e.seqSet, e.seq = true, f.Seq
		e.seqJSON = strconv.AppendUint(append(e.seqJSON[:0], `,"seq":`...), f.Seq, 10)
	}
	dst = append(dst, e.seqJSON...)
	if e.typJSON == nil || f.Type != e.typ {
		e.typ = f.Type
		e.typJSON = appendString(append(e.typJSON[:0], `,"type":`...), f.Type)
	}
	dst = append(dst, e.typJSON...)
	if !f.NoValue {
		dst = appendValue(dst, f)
	}
	if e.qualJSON == nil || f.Quality != e.quality {
		e.quality = f.Quality
		e.qualJSON = appendString(append(e.qualJSON[:0], `,"quality":`...), f.Quality)
	}
	dst = append(dst, e.qualJSON...)
	dst = appendStatus(dst, f)
	dst = append(dst, e.timeJSON...)
	return appendTail(dst, f)
}

func (e *Encoder) setStream(gateway, epoch string) {
	e.gateway, e.epoch = gateway, epoch
	h := append(e.head[:0], `{"schema":`...)
	h = strconv.AppendInt(h, SchemaVersion, 10)
	h = append(h, `,"gateway":`...)
	h = appendString(h, gateway)
	h = append(h, `,"epoch":`...)
	h = appendString(h, epoch)
	e.head = append(h, `,"device":`...)
	e.epochEnv = binary.AppendUvarint(e.epochEnv[:0], uint64(len(epoch)))
	e.epochEnv = append(e.epochEnv, epoch...)
}

func (e *Encoder) setDevice(device string) {
	e.device = device
	e.devEnv = append(e.devEnv[:0], envelopeVersion)
	e.devEnv = binary.AppendUvarint(e.devEnv, uint64(len(device)))
	e.devEnv = append(e.devEnv, device...)
	e.devJSON = appendString(e.devJSON[:0], device)
	e.devJSON = append(e.devJSON, `,"tag":`...)
}

func (e *Encoder) setTime(t time.Time) {
	e.timeSet, e.sec, e.nsec = true, t.Unix(), t.Nanosecond()
	e.timeEnv = binary.AppendVarint(e.timeEnv[:0], t.UnixNano())
	e.timeJSON = append(e.timeJSON[:0], `,"read_time":"`...)
	e.timeJSON = t.UTC().AppendFormat(e.timeJSON, time.RFC3339Nano)
	e.timeJSON = append(e.timeJSON, '"')
}
