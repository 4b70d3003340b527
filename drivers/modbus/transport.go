package modbus

import (
	"encoding/binary"
	"io"
	"time"
)

// stream is an open connection: a TCP connection or a serial port, both
// with deadlines.
type stream interface {
	io.ReadWriteCloser
	SetDeadline(t time.Time) error
}

// maxStaleReplies bounds how many answers with another transaction id a
// TCP request skips (late answers to earlier, timed-out requests) before it
// gives up and the connection is reopened.
const maxStaleReplies = 4

// link carries one request at a time over a stream; it is the goburrow
// Transporter of an endpoint. Its fields are used only by the request
// holding the endpoint.
type link struct {
	s   stream
	rtu bool
	// timeout bounds the whole exchange of the next request.
	timeout time.Duration
	// flushInput, when set, discards unread input (serial ports) before a
	// request, so a late answer is never read as the next one.
	flushInput func() error
	// silence is the RTU inter-frame gap (3.5 characters) kept before a
	// request; lastIO is when the line was last used.
	silence time.Duration
	lastIO  time.Time
	// stale counts answers skipped for a wrong transaction id.
	stale int
	// buf holds an RTU answer; on TCP, what was read and not yet taken,
	// from buf[r] to buf[w]: answers are read with as few system calls as
	// they arrive in (usually one), not a header and then the rest.
	buf  [260]byte
	r, w int
}

// reset forgets what was read from a stream that is closed.
func (l *link) reset() { l.r, l.w = 0, 0 }

// fill reads until at least n bytes (n at most len(l.buf)) are buffered
// from l.r on.
func (l *link) fill(n int) error {
	if l.r+n > len(l.buf) {
		l.w = copy(l.buf[:], l.buf[l.r:l.w])
		l.r = 0
	}
	for l.w-l.r < n {
		m, err := l.s.Read(l.buf[l.w:])
		l.w += m
		if l.w-l.r >= n {
			return nil
		}
		if err != nil {
			if err == io.EOF && l.w > l.r {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// Send writes one request ADU and returns the answer ADU; the slice is
// valid until the next Send.
func (l *link) Send(req []byte) ([]byte, error) {
	if l.flushInput != nil {
		if err := l.flushInput(); err != nil {
			return nil, err
		}
	}
	if l.silence > 0 {
		if d := l.silence - time.Since(l.lastIO); d > 0 {
			time.Sleep(d)
		}
	}
	if err := l.s.SetDeadline(time.Now().Add(l.timeout)); err != nil {
		return nil, err
	}
	defer func() { l.lastIO = time.Now() }()
	if _, err := l.s.Write(req); err != nil {
		return nil, err
	}
	if l.rtu {
		return l.readRTU(req)
	}
	return l.readTCP(req)
}

// readTCP reads MBAP frames until one carries the request's transaction
// id, skipping at most maxStaleReplies others.
func (l *link) readTCP(req []byte) ([]byte, error) {
	for range maxStaleReplies + 1 {
		if err := l.fill(7); err != nil {
			return nil, err
		}
		hdr := l.buf[l.r : l.r+7]
		length := int(binary.BigEndian.Uint16(hdr[4:]))
		if length < 2 || length > 254 {
			return nil, malformedf("MBAP length %d out of range 2-254", length)
		}
		if binary.BigEndian.Uint16(hdr[2:]) != 0 {
			return nil, malformedf("MBAP protocol id %d, want 0", binary.BigEndian.Uint16(hdr[2:]))
		}
		if err := l.fill(6 + length); err != nil {
			return nil, err
		}
		frame := l.buf[l.r : l.r+6+length]
		l.r += 6 + length
		if frame[0] == req[0] && frame[1] == req[1] {
			return frame, nil
		}
		l.stale++
	}
	return nil, malformedf("%d answers with another transaction id", maxStaleReplies+1)
}

// readRTU reads one RTU frame whose length follows from its function code
// and byte count; goburrow checks its unit id and CRC.
func (l *link) readRTU(req []byte) ([]byte, error) {
	b := l.buf[:]
	if _, err := io.ReadFull(l.s, b[:3]); err != nil {
		return nil, err
	}
	fc := req[1]
	var total int
	switch {
	case b[1] == fc|0x80:
		total = 5
	case b[1] != fc:
		return nil, malformedf("RTU answer has function code %d, want %d", b[1], fc)
	case fc >= 1 && fc <= 4:
		total = 3 + int(b[2]) + 2
	default:
		total = 8
	}
	if _, err := io.ReadFull(l.s, b[3:total]); err != nil {
		return nil, err
	}
	return b[:total], nil
}

// rtuSilence returns the 3.5-character gap at baud (1.75ms above 19200
// baud, as the serial line specification says).
func rtuSilence(baud int) time.Duration {
	if baud <= 0 || baud > 19200 {
		return 1750 * time.Microsecond
	}
	// 11 bits per character.
	return time.Duration(3.5*11*float64(time.Second)) / time.Duration(baud)
}
