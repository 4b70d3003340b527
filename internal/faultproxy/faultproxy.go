// Package faultproxy is a TCP proxy for tests that can cut, stall and
// restore the link between a client and a server on the loopback interface.
//
// It owns the sockets it accepts and the ones it dials to its target, and
// nothing else. It must not know the protocol it carries: Kafka, MQTT and
// Modbus are all just bytes here, so it has no dependency outside the
// standard library. Helpers that put it in front of a particular server (such
// as kfake, in the kfakeproxy sub-package) live elsewhere.
//
// A Proxy is in one of three modes:
//
//   - ModeForward: every accepted connection is dialled through to the target
//     and bytes are copied both ways, half-closes (FIN) included.
//   - ModeCut: every open connection is reset (RST on both the client and the
//     target side) and new connections are accepted and reset at once, as a
//     firewall that rejects would do.
//   - ModeStall: a blackhole. Open connections stay open but nothing is
//     forwarded in either direction, FINs and resets included; new
//     connections are accepted but the target is not dialled. Bytes read
//     from a peer are held, and TCP flow control holds back the rest.
//
// Restore goes back to ModeForward. Held bytes of a stalled connection are
// then delivered, as TCP retransmission would deliver them after a short
// partition heals; a client that gave up during the stall has usually closed
// its socket, and the delivery then ends in a reset. To model a blackhole
// that ends in resets instead, call Cut before Restore.
package faultproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Mode is what a Proxy does with the bytes it carries.
type Mode int32

const (
	// ModeForward copies bytes both ways.
	ModeForward Mode = iota
	// ModeCut resets every connection and refuses new ones.
	ModeCut
	// ModeStall holds every byte and every new connection.
	ModeStall
)

// String returns "forward", "cut" or "stall".
func (m Mode) String() string {
	switch m {
	case ModeForward:
		return "forward"
	case ModeCut:
		return "cut"
	case ModeStall:
		return "stall"
	default:
		return fmt.Sprintf("Mode(%d)", int32(m))
	}
}

// Stats is a snapshot of a Proxy's counters. Every counter starts at zero
// when the Proxy is created and only grows.
type Stats struct {
	// Mode is the current mode.
	Mode Mode
	// Accepted counts connections accepted on the listener, refused ones
	// included.
	Accepted int64
	// Refused counts connections reset at once because the link was cut.
	Refused int64
	// Open is the number of client connections open now (stalled ones
	// included).
	Open int
	// Dials counts connections attempted to the target.
	Dials int64
	// DialErrors counts attempts to reach the target that failed; the
	// client connection is then reset.
	DialErrors int64
	// ClientToTarget counts bytes delivered to the target.
	ClientToTarget int64
	// TargetToClient counts bytes delivered to clients.
	TargetToClient int64
}

// bufSize is the size of each direction's copy buffer, and so the most bytes
// a stalled connection holds in user space per direction.
const bufSize = 32 << 10

// Proxy forwards connections accepted on a loopback listener to a target
// address, and can cut, stall and restore them. Its methods are safe for
// concurrent use.
type Proxy struct {
	ln     net.Listener
	target string
	ctx    context.Context // cancelled by Close: ends dials and waits
	cancel context.CancelFunc
	wg     sync.WaitGroup // the accept loop and one per connection

	mu      sync.Mutex
	mode    Mode
	changed chan struct{} // closed and replaced on every mode change
	links   map[*link]struct{}
	closed  bool

	accepted, refused, dials, dialErrors atomic.Int64
	toTarget, toClient                   atomic.Int64
}

// link is one proxied connection.
type link struct {
	client net.Conn
	target net.Conn // nil until dialled; guarded by Proxy.mu
	dead   bool     // reset by Cut, Close or an error; guarded by Proxy.mu
}

// New returns a Proxy that listens on a free port of 127.0.0.1 and forwards
// to target (host:port).
func New(target string) (*Proxy, error) {
	return Listen("127.0.0.1:0", target)
}

// Listen returns a Proxy that listens on addr (host:port, such as the address
// a server advertises to its clients) and forwards to target (host:port). The
// proxy starts in ModeForward; call Close to stop it.
func Listen(addr, target string) (*Proxy, error) {
	if _, _, err := net.SplitHostPort(target); err != nil {
		return nil, fmt.Errorf("faultproxy: target %q: %w", target, err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen on %s for %s: %w", addr, target, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		ln:      ln,
		target:  target,
		ctx:     ctx,
		cancel:  cancel,
		changed: make(chan struct{}),
		links:   make(map[*link]struct{}),
	}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr returns the host:port the proxy listens on.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target returns the host:port the proxy forwards to.
func (p *Proxy) Target() string { return p.target }

// Cut resets every open connection, on both the client and the target side,
// and resets every new connection right after accepting it, until Restore.
// Bytes held by a stall are dropped.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.setModeLocked(ModeCut)
	for l := range p.links {
		p.killLocked(l)
	}
}

// Stall stops forwarding in both directions, without closing anything, until
// Restore: bytes read afterwards are held, EOFs and resets are not passed
// on, and new connections are accepted but the target is not dialled. A chunk
// already read before Stall was called may still be delivered.
func (p *Proxy) Stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.setModeLocked(ModeStall)
}

// Restore goes back to forwarding. Connections that were stalled deliver the
// bytes they hold, in order; connections that were cut stay gone, and new
// ones are forwarded again.
func (p *Proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.setModeLocked(ModeForward)
}

// Mode returns the current mode.
func (p *Proxy) Mode() Mode {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode
}

// Stats returns a snapshot of the counters and the current mode.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	mode, open := p.mode, len(p.links)
	p.mu.Unlock()
	return Stats{
		Mode:           mode,
		Accepted:       p.accepted.Load(),
		Refused:        p.refused.Load(),
		Open:           open,
		Dials:          p.dials.Load(),
		DialErrors:     p.dialErrors.Load(),
		ClientToTarget: p.toTarget.Load(),
		TargetToClient: p.toClient.Load(),
	}
}

// Close stops listening, closes every connection and waits until every
// goroutine of the proxy has returned. Calling it again waits the same way
// and returns nil.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.wg.Wait()
		return nil
	}
	p.closed = true
	close(p.changed)
	p.changed = make(chan struct{})
	for l := range p.links {
		l.dead = true
		_ = l.client.Close()
		if l.target != nil {
			_ = l.target.Close()
		}
	}
	p.mu.Unlock()
	p.cancel()
	err := p.ln.Close()
	p.wg.Wait()
	if err != nil {
		return fmt.Errorf("faultproxy: close listener %s: %w", p.Addr(), err)
	}
	return nil
}

func (p *Proxy) setModeLocked(m Mode) {
	if p.mode == m {
		return
	}
	p.mode = m
	close(p.changed)
	p.changed = make(chan struct{})
}

// killLocked resets both sides of l once.
func (p *Proxy) killLocked(l *link) {
	if l.dead {
		return
	}
	l.dead = true
	reset(l.client)
	if l.target != nil {
		reset(l.target)
	}
}

func (p *Proxy) kill(l *link) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.killLocked(l)
}

// waitForward blocks while the proxy is stalled. It reports true once the
// proxy forwards, false if it is cut or closed.
func (p *Proxy) waitForward() bool {
	for {
		p.mu.Lock()
		mode, changed, closed := p.mode, p.changed, p.closed
		p.mu.Unlock()
		switch {
		case closed || mode == ModeCut:
			return false
		case mode == ModeForward:
			return true
		}
		select {
		case <-changed:
		case <-p.ctx.Done():
			return false
		}
	}
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off, as
			// net/http does, unless we are closing.
			select {
			case <-p.ctx.Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		p.accepted.Add(1)
		p.mu.Lock()
		switch {
		case p.closed:
			p.mu.Unlock()
			_ = c.Close()
			return
		case p.mode == ModeCut:
			p.mu.Unlock()
			p.refused.Add(1)
			reset(c)
			continue
		}
		l := &link{client: c}
		p.links[l] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.serve(l)
	}
}

// serve dials the target for l, once the proxy forwards, and copies bytes
// both ways until both directions end.
func (p *Proxy) serve(l *link) {
	defer p.wg.Done()
	defer p.drop(l)
	if !p.waitForward() {
		return
	}
	p.dials.Add(1)
	var d net.Dialer
	t, err := d.DialContext(p.ctx, "tcp", p.target)
	if err != nil {
		// The client sees what it would see dialling a closed port.
		p.dialErrors.Add(1)
		p.kill(l)
		return
	}
	p.mu.Lock()
	if l.dead {
		p.mu.Unlock()
		reset(t)
		return
	}
	l.target = t
	p.mu.Unlock()

	done := make(chan struct{})
	go func() {
		defer close(done)
		p.pipe(l, l.client, t, &p.toClient)
	}()
	p.pipe(l, t, l.client, &p.toTarget)
	<-done
}

// pipe copies src to dst, holding each chunk while the proxy is stalled. An
// EOF from src becomes a half-close of dst; any other error, or a cut,
// resets both sides.
func (p *Proxy) pipe(l *link, dst, src net.Conn, delivered *atomic.Int64) {
	buf := make([]byte, bufSize)
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			if !p.waitForward() {
				p.kill(l)
				return
			}
			w, werr := dst.Write(buf[:n])
			delivered.Add(int64(w))
			if werr != nil {
				p.kill(l)
				return
			}
		}
		if rerr == nil {
			continue
		}
		// A stalled link passes on neither a FIN nor a reset.
		if !p.waitForward() {
			p.kill(l)
			return
		}
		if errors.Is(rerr, io.EOF) {
			closeWrite(dst)
			return
		}
		p.kill(l)
		return
	}
}

// drop forgets l and closes both of its sockets.
func (p *Proxy) drop(l *link) {
	p.mu.Lock()
	delete(p.links, l)
	l.dead = true
	t := l.target
	p.mu.Unlock()
	_ = l.client.Close()
	if t != nil {
		_ = t.Close()
	}
}

// reset closes c with SO_LINGER 0, so the peer gets a RST rather than a FIN.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// closeWrite half-closes c (sends a FIN), or closes it if it cannot.
func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		return
	}
	_ = c.Close()
}
