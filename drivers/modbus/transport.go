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

// link carries one request at a time over a stream, framing it itself
// (goburrow's client allocated the request, its PDU and the answer's PDU
// for every read). Its fields are used only by the request holding the
// endpoint.
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
	// tid is the transaction id of the last TCP request.
	tid uint16
	// req is the request being sent and buf the answer: both reused by
	// every request of the connection.
	req [12]byte
	buf [260]byte
}

// functionCode returns the read function of table r: 0x01 coils, 0x02
// discrete inputs, 0x03 holding registers, 0x04 input registers.
func (r RegisterType) functionCode() byte {
	switch r {
	case Coil:
		return 0x01
	case Discrete:
		return 0x02
	case Input:
		return 0x04
	}
	return 0x03
}

// read sends one read of qty items at addr in table reg to unit and
// returns the data of the answer (registers or packed bits, after the
// byte count), valid until the next request. It checks what goburrow's
// client checked: the quantity, the transaction id, protocol id and unit
// of a TCP answer or the unit and CRC of an RTU one, the function code (an
// exception is an *ExceptionError) and the byte count; it allocates
// nothing.
func (l *link) read(unit uint8, reg RegisterType, addr, qty uint16) ([]byte, error) {
	if qty < 1 || int(qty) > reg.maxQuantity() {
		return nil, malformedf("quantity %d out of range 1-%d", qty, reg.maxQuantity())
	}
	fc := reg.functionCode()
	var req []byte
	if l.rtu {
		req = append(l.req[:0], unit, fc, byte(addr>>8), byte(addr), byte(qty>>8), byte(qty))
		crc := crc16(req)
		req = append(req, byte(crc), byte(crc>>8))
	} else {
		l.tid++
		req = append(l.req[:0], byte(l.tid>>8), byte(l.tid), 0, 0, 0, 6, unit, fc, byte(addr>>8), byte(addr), byte(qty>>8), byte(qty))
	}
	adu, err := l.Send(req)
	if err != nil {
		return nil, err
	}
	var pdu []byte
	if l.rtu {
		n := len(adu)
		if n < 4 {
			return nil, malformedf("RTU answer of %d bytes", n)
		}
		if adu[0] != unit {
			return nil, malformedf("answer from unit %d, want %d", adu[0], unit)
		}
		if crc := crc16(adu[:n-2]); adu[n-2] != byte(crc) || adu[n-1] != byte(crc>>8) {
			return nil, malformedf("answer CRC 0x%02X%02X, want 0x%04X", adu[n-1], adu[n-2], crc)
		}
		pdu = adu[1 : n-2]
	} else {
		// readTCP checked the transaction id, the protocol id and the
		// length (at least unit and function code).
		if adu[6] != unit {
			return nil, malformedf("answer from unit %d, want %d", adu[6], unit)
		}
		pdu = adu[7:]
	}
	if pdu[0] != fc {
		if pdu[0] == fc|0x80 {
			var code byte
			if len(pdu) > 1 {
				code = pdu[1]
			}
			return nil, &ExceptionError{Function: fc, Code: code}
		}
		return nil, malformedf("answer has function code 0x%02X, want 0x%02X", pdu[0], fc)
	}
	if len(pdu) < 2 {
		return nil, malformedf("answer has no data")
	}
	if int(pdu[1]) != len(pdu)-2 {
		return nil, malformedf("answer says %d bytes of data and has %d", pdu[1], len(pdu)-2)
	}
	return pdu[2:], nil
}

// crc16 is the Modbus RTU CRC (polynomial 0xA001 reflected, initial
// 0xFFFF), sent low byte first.
func crc16(b []byte) uint16 {
	crc := uint16(0xFFFF)
	for _, c := range b {
		crc ^= uint16(c)
		for range 8 {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0xA001
			} else {
				crc >>= 1
			}
		}
	}
	return crc
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
		hdr := l.buf[:7]
		if _, err := io.ReadFull(l.s, hdr); err != nil {
			return nil, err
		}
		length := int(binary.BigEndian.Uint16(hdr[4:]))
		if length < 2 || length > 254 {
			return nil, malformedf("MBAP length %d out of range 2-254", length)
		}
		if binary.BigEndian.Uint16(hdr[2:]) != 0 {
			return nil, malformedf("MBAP protocol id %d, want 0", binary.BigEndian.Uint16(hdr[2:]))
		}
		if _, err := io.ReadFull(l.s, l.buf[7:6+length]); err != nil {
			return nil, err
		}
		if hdr[0] == req[0] && hdr[1] == req[1] {
			return l.buf[:6+length], nil
		}
		l.stale++
	}
	return nil, malformedf("%d answers with another transaction id", maxStaleReplies+1)
}

// readRTU reads one RTU frame whose length follows from its function code
// and byte count; read checks its unit id and CRC.
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
