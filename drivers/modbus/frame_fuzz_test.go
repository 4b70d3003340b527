package modbus

import (
	"bytes"
	"context"
	"os"
	"slices"
	"testing"
	"time"
)

// fuzzStream is a connection whose peer answers with fixed bytes: what a
// broken or hostile device (or a line with noise) sends back.
type fuzzStream struct {
	reply  *bytes.Reader
	read   int // bytes the driver read
	closed bool
	// patch, called with the request on its first write, may rewrite the
	// answer (to echo the request's transaction id).
	patch func(req []byte)
}

func (s *fuzzStream) Write(p []byte) (int, error) {
	if s.patch != nil {
		s.patch(p)
		s.patch = nil
	}
	return len(p), nil
}

func (s *fuzzStream) Read(p []byte) (int, error) {
	if s.reply.Len() == 0 {
		// The device says nothing more: the read would time out.
		return 0, os.ErrDeadlineExceeded
	}
	n, err := s.reply.Read(p)
	s.read += n
	return n, err
}

func (s *fuzzStream) Close() error                    { s.closed = true; return nil }
func (s *fuzzStream) SetDeadline(time.Time) error     { return nil }
func (s *fuzzStream) SetReadDeadline(time.Time) error { return nil }

// crc16 is the Modbus RTU CRC (polynomial 0xA001, initial 0xFFFF), low
// byte first on the wire.
func crc16(b []byte) []byte {
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
	return []byte{byte(crc), byte(crc >> 8)}
}

// FuzzReadFrame feeds arbitrary answers to one read request over Modbus
// TCP (MBAP framing), RTU and RTU over TCP (function code and byte count
// framing, CRC): lengths out of range, byte counts that disagree with the
// request, other function codes, exceptions, stale transaction ids, cut
// frames. No answer may panic, read past the frame buffer, or yield data of
// another length than the request asked for; every failure has a kind, and
// the connection is dropped after any failure but an exception.
func FuzzReadFrame(f *testing.F) {
	tcpHolding := []byte{0, 0, 0, 0, 0, 7, 1, 3, 4, 0, 1, 0, 2}
	f.Add(uint8(0), uint8(0), uint16(2), true, false, tcpHolding)
	f.Add(uint8(0), uint8(2), uint16(9), true, false, []byte{0, 0, 0, 0, 0, 5, 1, 1, 2, 0xff, 1})
	f.Add(uint8(0), uint8(0), uint16(2), true, false, []byte{0, 0, 0, 0, 0, 3, 1, 0x83, 2})                                  // exception
	f.Add(uint8(0), uint8(0), uint16(2), false, false, append([]byte{9, 9, 0, 0, 0, 7, 1, 3, 4, 0, 1, 0, 2}, tcpHolding...)) // stale id
	f.Add(uint8(0), uint8(0), uint16(2), true, false, []byte{0, 0, 0, 0, 0xff, 0xff, 1, 3})                                  // MBAP length
	f.Add(uint8(1), uint8(0), uint16(2), false, true, []byte{1, 3, 4, 0, 1, 0, 2})
	f.Add(uint8(1), uint8(1), uint16(1), false, true, []byte{1, 0x84, 2})
	f.Add(uint8(2), uint8(3), uint16(16), false, true, []byte{1, 2, 2, 0xaa, 0x55})
	f.Add(uint8(1), uint8(0), uint16(125), false, true, []byte{1, 3, 0xff})
	f.Fuzz(func(t *testing.T, transport, regSel uint8, qty uint16, echoID, appendCRC bool, reply []byte) {
		tr := []Transport{TCP, RTU, RTUOverTCP}[int(transport)%3]
		reg := []RegisterType{Holding, Input, Coil, Discrete}[int(regSel)%4]
		e := newEndpoint(Endpoint{Transport: tr, Address: "fuzz"}, PoolOptions{})
		e.link.silence = 0
		answer := slices.Clone(reply)
		if appendCRC && tr != TCP {
			answer = append(answer, crc16(answer)...)
		}
		s := &fuzzStream{reply: bytes.NewReader(answer)}
		if echoID && tr == TCP {
			s.patch = func(req []byte) {
				if len(answer) >= 2 && len(req) >= 2 {
					copy(answer[:2], req[:2])
				}
			}
		}
		e.link.s = s
		res, kind, err := e.exchangeLocked(context.Background(), nil, 1, reg, 0, qty, time.Second)
		if s.read > (maxStaleReplies+1)*len(e.link.buf) {
			t.Fatalf("read %d bytes for one request", s.read)
		}
		if err != nil {
			if kind == "" {
				t.Fatalf("error without a kind: %v", err)
			}
			if kind != KindException && e.link.s != nil {
				t.Fatalf("link kept after a %s error: %v", kind, err)
			}
			return
		}
		want := 2 * int(qty)
		if reg.IsBit() {
			want = (int(qty) + 7) / 8
		}
		if len(res) != want {
			t.Fatalf("%v %v qty %d: %d bytes of data, want %d", tr, reg, qty, len(res), want)
		}
		if qty == 0 || (reg.IsBit() && qty > 2000) || (!reg.IsBit() && qty > 125) {
			t.Fatalf("quantity %d accepted for %v", qty, reg)
		}
	})
}
