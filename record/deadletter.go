package record

import (
	"encoding/binary"
	"fmt"
	"time"
)

// deadLetterVersion starts a dead letter; it differs from envelopeVersion
// so that the two can never be confused.
const deadLetterVersion = 0xD1

// DeadLetter is a record a broker refused for good, as kept in a sink's
// dead-letter queue.
type DeadLetter struct {
	// Reason is the broker's error code name (MESSAGE_TOO_LARGE, …) or
	// "malformed" for a record that could not be decoded.
	Reason string
	// At is when the record was moved to the dead-letter queue.
	At time.Time
	// Envelope is the record as it was buffered (see DecodeEnvelope).
	Envelope []byte
}

// AppendDeadLetter appends the binary form of a dead letter: a version
// byte, the reason's length as a uvarint, the reason, the time in Unix
// nanoseconds as a varint, then the envelope to the end.
func AppendDeadLetter(dst []byte, reason string, at time.Time, envelope []byte) []byte {
	dst = append(dst, deadLetterVersion)
	dst = binary.AppendUvarint(dst, uint64(len(reason)))
	dst = append(dst, reason...)
	dst = binary.AppendVarint(dst, at.UnixNano())
	return append(dst, envelope...)
}

// DecodeDeadLetter parses b. Envelope aliases b.
func DecodeDeadLetter(b []byte) (DeadLetter, error) {
	if len(b) == 0 || b[0] != deadLetterVersion {
		return DeadLetter{}, fmt.Errorf("%w: not a dead letter", ErrMalformed)
	}
	rest := b[1:]
	n, k := binary.Uvarint(rest)
	if k <= 0 || n > uint64(len(rest)-k) {
		return DeadLetter{}, fmt.Errorf("%w: bad dead-letter reason length", ErrMalformed)
	}
	reason := string(rest[k : k+int(n)])
	rest = rest[k+int(n):]
	nanos, k := binary.Varint(rest)
	if k <= 0 {
		return DeadLetter{}, fmt.Errorf("%w: bad dead-letter time", ErrMalformed)
	}
	return DeadLetter{Reason: reason, At: time.Unix(0, nanos), Envelope: rest[k:]}, nil
}
