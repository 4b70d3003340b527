package faultproxy_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/iot-producer/iot-producer/internal/faultproxy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// quiet is how long a read must see nothing for a stall to count as
// delivering nothing; a timed read of this length is the assertion itself.
const quiet = 200 * time.Millisecond

// patience bounds every read that is expected to succeed or fail.
const patience = 5 * time.Second

// echoServer accepts connections and writes back whatever it reads, closing
// a connection when the client half-closes it.
type echoServer struct {
	ln       net.Listener
	accepted atomic.Int64
	received atomic.Int64 // bytes read, counted before they are echoed
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    []net.Conn
}

func newEchoServer(t *testing.T) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("echo server: %v", err)
	}
	s := &echoServer{ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				_, _ = io.Copy(c, countingReader{c, &s.received})
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			_ = c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *echoServer) addr() string { return s.ln.Addr().String() }

type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func newProxy(t *testing.T, target string) *faultproxy.Proxy {
	t.Helper()
	p, err := faultproxy.New(target)
	if err != nil {
		t.Fatalf("New(%s): %v", target, err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return p
}

func dial(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, patience)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c.(*net.TCPConn)
}

// readN reads exactly n bytes within d.
func readN(c net.Conn, n int, d time.Duration) ([]byte, error) {
	_ = c.SetReadDeadline(time.Now().Add(d))
	defer c.SetReadDeadline(time.Time{})
	buf := make([]byte, n)
	_, err := io.ReadFull(c, buf)
	return buf, err
}

func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write %q: %v", msg, err)
	}
	got, err := readN(c, len(msg), patience)
	if err != nil {
		t.Fatalf("read back %q: %v", msg, err)
	}
	if string(got) != msg {
		t.Fatalf("read back %q, want %q", got, msg)
	}
}

// wantReset asserts that a read on c ends because the connection was reset
// or closed, not because the deadline passed.
func wantReset(t *testing.T, c net.Conn) {
	t.Helper()
	_, err := readN(c, 1, patience)
	if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, io.EOF) {
		t.Fatalf("read after cut: got %v, want ECONNRESET or EOF", err)
	}
}

// wantRefused asserts that a connection to addr is reset right away: the
// reset can beat the dialler's own check of the handshake, so it shows as
// either a failed dial or a failed first read.
func wantRefused(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, patience)
	if err != nil {
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("dial %s: got %v, want success or ECONNRESET", addr, err)
		}
		return
	}
	defer c.Close()
	wantReset(t, c)
}

// wantQuiet asserts that nothing arrives on c for the quiet period.
func wantQuiet(t *testing.T, c net.Conn) {
	t.Helper()
	got, err := readN(c, 1, quiet)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read while stalled: got %q, %v; want a deadline error", got, err)
	}
}

func TestForwardsBothWays(t *testing.T) {
	tests := []struct {
		name string
		size int
	}{
		{"one byte", 1},
		{"one buffer", 32 << 10},
		{"many buffers", 1 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			echo := newEchoServer(t)
			p := newProxy(t, echo.addr())
			c := dial(t, p.Addr())
			payload := make([]byte, tt.size)
			_, _ = rand.Read(payload)

			writeErr := make(chan error, 1)
			go func() {
				_, err := c.Write(payload)
				if err == nil {
					err = c.CloseWrite()
				}
				writeErr <- err
			}()
			_ = c.SetReadDeadline(time.Now().Add(patience))
			got, err := io.ReadAll(c) // ends at the FIN passed on from the echo server
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if err := <-writeErr; err != nil {
				t.Fatalf("write: %v", err)
			}
			if !bytes.Equal(got, payload) {
				t.Fatalf("echoed %d bytes differ from the %d sent", len(got), len(payload))
			}
			st := p.Stats()
			want := int64(tt.size)
			if st.ClientToTarget != want || st.TargetToClient != want || st.Accepted != 1 || st.Dials != 1 {
				t.Errorf("Stats = %+v, want %d bytes each way over 1 connection", st, want)
			}
			if st.Mode != faultproxy.ModeForward {
				t.Errorf("Mode = %v, want forward", st.Mode)
			}
		})
	}
}

func TestCut(t *testing.T) {
	tests := []struct {
		name string
		// before runs before Cut and returns the connection to check.
		before func(t *testing.T, p *faultproxy.Proxy) net.Conn
	}{
		{"open connection is reset", func(t *testing.T, p *faultproxy.Proxy) net.Conn {
			c := dial(t, p.Addr())
			roundTrip(t, c, "before")
			return c
		}},
		{"stalled connection is reset", func(t *testing.T, p *faultproxy.Proxy) net.Conn {
			c := dial(t, p.Addr())
			roundTrip(t, c, "before")
			p.Stall()
			if _, err := c.Write([]byte("held")); err != nil {
				t.Fatalf("write: %v", err)
			}
			wantQuiet(t, c)
			return c
		}},
		{"connection held by a stall is reset", func(t *testing.T, p *faultproxy.Proxy) net.Conn {
			p.Stall()
			c := dial(t, p.Addr())
			wantQuiet(t, c)
			return c
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			echo := newEchoServer(t)
			p := newProxy(t, echo.addr())
			c := tt.before(t, p)
			before := p.Stats()

			p.Cut()
			wantReset(t, c)

			// New connections are accepted and reset at once.
			wantRefused(t, p.Addr())
			st := p.Stats()
			if st.Mode != faultproxy.ModeCut || st.Refused != 1 || st.Dials != before.Dials {
				t.Errorf("Stats after cut = %+v, want mode cut, 1 refused, %d dials", st, before.Dials)
			}

			p.Restore()
			roundTrip(t, dial(t, p.Addr()), "after")
			if got := p.Stats().Mode; got != faultproxy.ModeForward {
				t.Errorf("Mode after Restore = %v, want forward", got)
			}
		})
	}
}

func TestStall(t *testing.T) {
	tests := []struct {
		name string
		// conn returns a connection stalled with "held" written to it.
		conn func(t *testing.T, p *faultproxy.Proxy) net.Conn
		// dialsWhileStalled is how many target dials the stall leaves.
		dialsWhileStalled int64
	}{
		{"open connection", func(t *testing.T, p *faultproxy.Proxy) net.Conn {
			c := dial(t, p.Addr())
			roundTrip(t, c, "before")
			p.Stall()
			return c
		}, 1},
		{"new connection", func(t *testing.T, p *faultproxy.Proxy) net.Conn {
			p.Stall()
			return dial(t, p.Addr())
		}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			echo := newEchoServer(t)
			p := newProxy(t, echo.addr())
			c := tt.conn(t, p)
			// The echo server counts a byte before echoing it, so
			// after a round trip this is final.
			before := echo.received.Load()
			if _, err := c.Write([]byte("held")); err != nil {
				t.Fatalf("write: %v", err)
			}

			wantQuiet(t, c)
			if got := echo.received.Load(); got != before {
				t.Errorf("the server received %d bytes while stalled", got-before)
			}
			st := p.Stats()
			if st.Mode != faultproxy.ModeStall || st.Dials != tt.dialsWhileStalled || st.Open != 1 {
				t.Errorf("Stats while stalled = %+v, want mode stall, %d dials, 1 open", st, tt.dialsWhileStalled)
			}

			// Restore delivers the held bytes, and the link works on.
			p.Restore()
			got, err := readN(c, len("held"), patience)
			if err != nil || string(got) != "held" {
				t.Fatalf("read after Restore: %q, %v; want the held bytes", got, err)
			}
			roundTrip(t, c, "after")
			if got := echo.accepted.Load(); got != 1 {
				t.Errorf("echo server accepted %d connections, want 1", got)
			}
		})
	}
}

func TestCloseEndsEveryConnection(t *testing.T) {
	echo := newEchoServer(t)
	ignore := goleak.IgnoreCurrent() // the echo server's goroutines
	p, err := faultproxy.New(echo.addr())
	if err != nil {
		t.Fatal(err)
	}
	open := dial(t, p.Addr())
	roundTrip(t, open, "open")
	p.Stall()
	if _, err := open.Write([]byte("held")); err != nil {
		t.Fatal(err)
	}
	pending := dial(t, p.Addr()) // accepted, waiting for the stall to end
	wantQuiet(t, pending)

	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for _, c := range []net.Conn{open, pending} {
		wantReset(t, c)
	}
	if _, err := net.DialTimeout("tcp", p.Addr(), patience); err == nil {
		t.Error("dial after Close succeeded, want connection refused")
	}
	goleak.VerifyNone(t, ignore)
}

func TestDialErrorResetsClient(t *testing.T) {
	// A port nothing listens on: take a free one and close it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := ln.Addr().String()
	_ = ln.Close()

	p := newProxy(t, target)
	wantRefused(t, p.Addr())
	if st := p.Stats(); st.Dials != 1 || st.DialErrors != 1 {
		t.Errorf("Stats = %+v, want 1 dial, 1 dial error", st)
	}
}

func TestListen(t *testing.T) {
	echo := newEchoServer(t)
	taken := newProxy(t, echo.addr())
	tests := []struct {
		name, addr, target string
		wantErr            bool
	}{
		{"given port", "127.0.0.1:0", echo.addr(), false},
		{"port in use", taken.Addr(), echo.addr(), true},
		{"target without port", "127.0.0.1:0", "127.0.0.1", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := faultproxy.Listen(tt.addr, tt.target)
			if tt.wantErr {
				if err == nil {
					_ = p.Close()
					t.Fatalf("Listen(%q, %q) succeeded, want an error", tt.addr, tt.target)
				}
				return
			}
			if err != nil {
				t.Fatalf("Listen(%q, %q): %v", tt.addr, tt.target, err)
			}
			t.Cleanup(func() { _ = p.Close() })
			if p.Target() != tt.target {
				t.Errorf("Target() = %q, want %q", p.Target(), tt.target)
			}
			roundTrip(t, dial(t, p.Addr()), "hello")
		})
	}
}

func TestModeString(t *testing.T) {
	tests := []struct {
		mode faultproxy.Mode
		want string
	}{
		{faultproxy.ModeForward, "forward"},
		{faultproxy.ModeCut, "cut"},
		{faultproxy.ModeStall, "stall"},
		{faultproxy.Mode(9), "Mode(9)"},
	}
	for _, tt := range tests {
		if got := tt.mode.String(); got != tt.want {
			t.Errorf("Mode(%d).String() = %q, want %q", int32(tt.mode), got, tt.want)
		}
	}
}
