package modbus

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// Faults are misbehaviours a unit shows, for tests.
type Faults struct {
	// Delay holds every answer back this long (a slow device).
	Delay time.Duration
	// DuplicateAfter, when positive, sends every answer a second time this
	// long after the first (a late duplicate; on TCP with the same
	// transaction id).
	DuplicateAfter time.Duration
	// Exception, when not 0, answers every request with this exception
	// code.
	Exception byte
	// Busy answers the next Busy requests with exception 6 (busy).
	Busy int
	// Silent never answers (a dead unit behind a gateway).
	Silent bool
	// Malformed breaks every answer: a byte count one too large on TCP, a
	// wrong CRC on RTU.
	Malformed bool
}

// ServerOptions configures a Server.
type ServerOptions struct {
	// MaxConns, when positive, is the number of TCP connections the server
	// accepts at once; further connections are closed at once (as devices
	// that accept a single connection do).
	MaxConns int
}

// Stats are a server's counters.
type Stats struct {
	// Accepted and Rejected count TCP connections; Peak is the largest
	// number open at once.
	Accepted, Rejected, Peak int
	// Requests counts requests per unit id, answered or not.
	Requests map[uint8]int
	// BadFrames counts RTU frames dropped for a bad CRC, each counted once
	// the line was quiet again (the server is then ready for the next).
	BadFrames int
}

// Server answers Modbus TCP and RTU requests from a Bank, with optional
// faults per unit. One Server may serve several listeners and lines.
type Server struct {
	bank *Bank
	opts ServerOptions

	mu     sync.Mutex
	faults map[uint8]Faults
	open   int
	stats  Stats
}

// NewServer returns a server answering from bank.
func NewServer(bank *Bank, opts ServerOptions) *Server {
	return &Server{bank: bank, opts: opts, faults: map[uint8]Faults{}, stats: Stats{Requests: map[uint8]int{}}}
}

// SetFaults replaces the faults of unit.
func (s *Server) SetFaults(unit uint8, f Faults) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[unit] = f
}

// Stats returns a copy of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Requests = make(map[uint8]int, len(s.stats.Requests))
	for k, v := range s.stats.Requests {
		st.Requests[k] = v
	}
	return st
}

// answer computes the answer PDU to req for unit under its faults. It
// returns false when there is no answer, and the delays to apply.
func (s *Server) answer(unit uint8, req, dst []byte) ([]byte, bool, Faults) {
	s.mu.Lock()
	s.stats.Requests[unit]++
	f := s.faults[unit]
	if f.Busy > 0 {
		nf := f
		nf.Busy--
		s.faults[unit] = nf
	}
	s.mu.Unlock()
	if f.Silent {
		return nil, false, f
	}
	if len(req) > 0 && (f.Busy > 0 || f.Exception != 0) {
		code := f.Exception
		if f.Busy > 0 {
			code = excBusy
		}
		if _, ok := s.bank.read(unit, req, nil); !ok {
			return nil, false, f
		}
		return append(dst, req[0]|0x80, code), true, f
	}
	pdu, ok := s.bank.read(unit, req, dst)
	return pdu, ok, f
}

// ServeTCP answers Modbus TCP on ln until ctx is done, then closes ln and
// every connection and returns once all are finished.
func (s *Server) ServeTCP(ctx context.Context, ln net.Listener) error {
	return s.serveConns(ctx, ln, s.serveTCPConn)
}

// serveConns accepts connections from ln and runs handle on each (at most
// MaxConns at once, the rest refused and counted) until ctx is done, then
// closes ln and every connection and returns once all are finished.
func (s *Server) serveConns(ctx context.Context, ln net.Listener, handle func(net.Conn)) error {
	var conns sync.Map
	stop := context.AfterFunc(ctx, func() {
		ln.Close()
		conns.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
	})
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		s.mu.Lock()
		if s.opts.MaxConns > 0 && s.open >= s.opts.MaxConns {
			s.stats.Rejected++
			s.mu.Unlock()
			c.Close()
			continue
		}
		s.open++
		s.stats.Accepted++
		s.stats.Peak = max(s.stats.Peak, s.open)
		s.mu.Unlock()
		conns.Store(c, nil)
		if ctx.Err() != nil {
			c.Close()
		}
		wg.Go(func() {
			handle(c)
			conns.Delete(c)
			c.Close()
			s.mu.Lock()
			s.open--
			s.mu.Unlock()
		})
	}
}

// serveTCPConn answers requests on one connection until it fails.
func (s *Server) serveTCPConn(c net.Conn) {
	var wmu sync.Mutex
	var late sync.WaitGroup
	defer late.Wait()
	var buf [260]byte
	for {
		if _, err := io.ReadFull(c, buf[:7]); err != nil {
			return
		}
		length := int(binary.BigEndian.Uint16(buf[4:]))
		if length < 2 || length > 254 {
			return
		}
		if _, err := io.ReadFull(c, buf[7:6+length]); err != nil {
			return
		}
		unit := buf[6]
		pdu, ok, f := s.answer(unit, buf[7:6+length], make([]byte, 0, 256))
		if !ok {
			continue
		}
		if f.Malformed && len(pdu) > 1 {
			pdu[1]++
		}
		frame := make([]byte, 7, 7+len(pdu))
		copy(frame, buf[:4])
		binary.BigEndian.PutUint16(frame[4:], uint16(len(pdu)+1))
		frame[6] = unit
		frame = append(frame, pdu...)
		if f.Delay > 0 {
			time.Sleep(f.Delay)
		}
		wmu.Lock()
		_, err := c.Write(frame)
		wmu.Unlock()
		if err != nil {
			return
		}
		if f.DuplicateAfter > 0 {
			late.Go(func() {
				time.Sleep(f.DuplicateAfter)
				wmu.Lock()
				_, _ = c.Write(frame)
				wmu.Unlock()
			})
		}
	}
}

// Line is a serial line (or one end of a pty) with deadlines.
type Line interface {
	io.ReadWriteCloser
	SetReadDeadline(t time.Time) error
}

// ServeRTU answers Modbus RTU frames on line until ctx is done or the line
// fails; it closes the line when it returns. Frames with a bad CRC are
// dropped, as the serial line specification says; units the bank does not
// have stay silent.
func (s *Server) ServeRTU(ctx context.Context, line Line) error {
	stop := context.AfterFunc(ctx, func() { _ = line.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	defer line.Close()
	var late sync.WaitGroup
	defer late.Wait()
	var wmu sync.Mutex
	var buf [260]byte
	for {
		if ctx.Err() != nil {
			return nil
		}
		_ = line.SetReadDeadline(time.Time{})
		if ctx.Err() != nil {
			return nil
		}
		n, err := readRTURequest(line, buf[:])
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, errResync) {
				resync(line)
				continue
			}
			return err
		}
		frame := buf[:n]
		if crc16(frame[:n-2]) != uint16(frame[n-2])|uint16(frame[n-1])<<8 {
			resync(line)
			s.mu.Lock()
			s.stats.BadFrames++
			s.mu.Unlock()
			continue
		}
		unit := frame[0]
		if unit == 0 {
			continue // broadcast: never answered
		}
		pdu, ok, f := s.answer(unit, frame[1:n-2], make([]byte, 1, 260))
		if !ok {
			continue
		}
		pdu[0] = unit
		c := crc16(pdu)
		if f.Malformed {
			c++
		}
		out := append(pdu, byte(c), byte(c>>8))
		if f.Delay > 0 {
			time.Sleep(f.Delay)
		}
		wmu.Lock()
		_, err = line.Write(out)
		wmu.Unlock()
		if err != nil {
			return nil
		}
		if f.DuplicateAfter > 0 {
			late.Go(func() {
				time.Sleep(f.DuplicateAfter)
				wmu.Lock()
				_, _ = line.Write(out)
				wmu.Unlock()
			})
		}
	}
}

var errResync = errors.New("unknown function code")

// readRTURequest reads one request frame into buf and returns its length.
func readRTURequest(r io.Reader, buf []byte) (int, error) {
	if _, err := io.ReadFull(r, buf[:2]); err != nil {
		return 0, err
	}
	switch fc := buf[1]; {
	case fc >= 1 && fc <= 6:
		_, err := io.ReadFull(r, buf[2:8])
		return 8, err
	case fc == 15 || fc == 16:
		if _, err := io.ReadFull(r, buf[2:7]); err != nil {
			return 0, err
		}
		n := 7 + int(buf[6]) + 2
		_, err := io.ReadFull(r, buf[7:n])
		return n, err
	}
	return 0, errResync
}

// resync discards input until the line has been silent for 20ms.
func resync(line Line) {
	var junk [256]byte
	for {
		_ = line.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		if _, err := line.Read(junk[:]); err != nil {
			return
		}
	}
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

// ServeRTUOverTCP answers RTU frames on every connection accepted from ln
// (a serial gateway in transparent mode) until ctx is done, with the same
// connection handling as ServeTCP.
func (s *Server) ServeRTUOverTCP(ctx context.Context, ln net.Listener) error {
	return s.serveConns(ctx, ln, func(c net.Conn) { _ = s.ServeRTU(ctx, c.(*net.TCPConn)) })
}
