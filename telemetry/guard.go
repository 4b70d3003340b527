package telemetry

import (
	"container/list"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"
)

// This file holds what keeps the telemetry listeners alive in front of
// clients that mean harm: a cap on connections per listener that sheds the
// oldest connection not being answered, the refusal of request bodies, and
// the scrubbing of what /ready shows.

// connLimitListener caps the connections open at once on one listener.
// When a new connection would exceed the cap, the oldest connection that is
// neither inside a handler nor holding a request not yet read, nor
// younger than shedGrace (a client that is slow to send its request, or a
// keep-alive connection waiting for its next one) is closed to make room. If there is none, every connection
// is being answered: Accept waits for one to end, and newcomers wait in the
// kernel's backlog rather than being turned away. A flood of idle or slow
// connections therefore never keeps a short request such as a /health
// probe out, and never holds more than max descriptors (plus the one
// waiting).
type connLimitListener struct {
	net.Listener
	name string
	max  int
	log  *slog.Logger
	wake chan struct{} // a connection ended or left a handler, or Close

	mu       sync.Mutex
	conns    list.List // of *limitedConn, oldest first
	closed   bool
	shed     int       // connections closed to make room since the last log line
	lastNote time.Time // when shedding was last logged
}

// shedLogInterval rate-limits the warning about shed connections.
const shedLogInterval = time.Minute

// shedGrace protects a new connection from being shed before its client,
// which may not have been scheduled since its connect returned, has had
// time to send its request.
const shedGrace = 200 * time.Millisecond

// fullRecheck is how often a full listener looks again for a connection
// that has become idle (its request read and answered).
const fullRecheck = 10 * time.Millisecond

func newConnLimitListener(ln net.Listener, name string, max int, log *slog.Logger) *connLimitListener {
	return &connLimitListener{Listener: ln, name: name, max: max, log: log, wake: make(chan struct{}, 1)}
}

// Accept returns the next connection, once there is room for it.
func (l *connLimitListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	lc := &limitedConn{Conn: c, l: l, accepted: time.Now()}
	l.mu.Lock()
	for l.conns.Len() >= l.max {
		if l.closed {
			l.mu.Unlock()
			_ = c.Close()
			return nil, net.ErrClosed
		}
		if victim := l.victimLocked(); victim != nil {
			l.conns.Remove(victim.elem)
			victim.elem = nil
			l.shed++
			l.noteShedLocked()
			l.mu.Unlock()
			_ = victim.Conn.Close() // its serving goroutine sees the error and ends
			l.mu.Lock()
			continue
		}
		l.mu.Unlock()
		select {
		case <-l.wake:
		case <-time.After(fullRecheck):
		}
		l.mu.Lock()
	}
	lc.elem = l.conns.PushBack(lc)
	l.mu.Unlock()
	return lc, nil
}

// victimLocked returns the oldest connection that may be shed, or nil.
// l.mu must be held.
func (l *connLimitListener) victimLocked() *limitedConn {
	for e := l.conns.Front(); e != nil; e = e.Next() {
		cand := e.Value.(*limitedConn)
		if cand.busy == 0 && time.Since(cand.accepted) >= shedGrace && !hasUnread(cand.Conn) {
			return cand
		}
	}
	return nil
}

// Close closes the listener; an Accept waiting for room returns.
func (l *connLimitListener) Close() error {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.signal()
	return l.Listener.Close()
}

// signal wakes an Accept waiting for room.
func (l *connLimitListener) signal() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// noteShedLocked logs, at most once per shedLogInterval, how many
// connections were closed to respect the cap. l.mu must be held.
func (l *connLimitListener) noteShedLocked() {
	now := time.Now()
	if now.Sub(l.lastNote) < shedLogInterval {
		return
	}
	l.log.Warn("telemetry: connection limit reached; closing the oldest idle connections",
		"endpoint", l.name, "limit", l.max, "closed", l.shed)
	l.lastNote, l.shed = now, 0
}

// open returns the number of connections currently counted.
func (l *connLimitListener) open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.conns.Len()
}

// limitedConn is a connection counted by a connLimitListener.
type limitedConn struct {
	net.Conn
	l        *connLimitListener
	accepted time.Time
	elem     *list.Element // nil once removed; guarded by l.mu
	busy     int           // handlers running on this connection; guarded by l.mu
}

// Close forgets the connection and closes it.
func (c *limitedConn) Close() error {
	c.l.mu.Lock()
	if c.elem != nil {
		c.l.conns.Remove(c.elem)
		c.elem = nil
	}
	c.l.mu.Unlock()
	c.l.signal()
	return c.Conn.Close()
}

// setBusy marks the connection as inside a handler (or not): a busy
// connection is not shed.
func (c *limitedConn) setBusy(busy bool) {
	c.l.mu.Lock()
	if busy {
		c.busy++
	} else {
		c.busy--
	}
	c.l.mu.Unlock()
	if !busy {
		c.l.signal()
	}
}

// connKey is the context key under which ConnContext stores the connection.
type connKey struct{}

// withConn is http.Server.ConnContext: it lets handlers find their
// connection.
func withConn(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// maxSymbolBody bounds the one request body accepted: the addresses that
// `go tool pprof` posts to /debug/pprof/symbol.
const maxSymbolBody = 64 << 10

// guard wraps an endpoint's handler: it marks the connection busy while the
// handler runs, and refuses requests that carry a body (none of the
// endpoints reads one) by answering 413 and closing the connection without
// reading the body, so a slow body cannot hold the connection. bodyOK
// names requests that may carry a body of at most maxSymbolBody bytes.
func guard(next http.Handler, bodyOK func(*http.Request) bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if lc, ok := r.Context().Value(connKey{}).(*limitedConn); ok {
			lc.setBusy(true)
			defer lc.setBusy(false)
		}
		if r.ContentLength != 0 || len(r.TransferEncoding) > 0 {
			if bodyOK == nil || !bodyOK(r) {
				refuseBody(w)
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, maxSymbolBody)
		}
		next.ServeHTTP(w, r)
	})
}

// refuseBody answers 413 and closes the connection at once. Through
// Hijack the server does not try to read (and discard) the body first.
func refuseBody(w http.ResponseWriter) {
	const msg = "request bodies are not accepted\n"
	hj, ok := w.(http.Hijacker)
	if !ok {
		w.Header().Set("Connection", "close")
		http.Error(w, strings.TrimSuffix(msg, "\n"), http.StatusRequestEntityTooLarge)
		return
	}
	c, _, err := hj.Hijack()
	if err != nil {
		return
	}
	defer c.Close()
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = fmt.Fprintf(c, "HTTP/1.1 413 Request Entity Too Large\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", len(msg), msg)
}

// remoteIsLoopback reports whether r comes from this machine.
func remoteIsLoopback(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// loopbackAddr reports whether a listen address binds loopback only
// ("localhost" or a loopback IP; an empty host is every interface).
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

var (
	// filePath matches an absolute or ./ ../ relative file path that
	// starts a word: "open /var/lib/x/buffer.db: ..." but not the path of
	// a URL ("opc.tcp://host/x"), which follows a colon.
	filePath = regexp.MustCompile(`(^|[\s"'(=\[])(\.{0,2}/[^\s"':,;()\[\]]+)`)
	// urlUserinfo matches the credentials of a URL: scheme://user:pw@.
	urlUserinfo = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s"'\x60]*@`)
)

// scrubDetail removes from a component's detail what /ready must not
// show to whoever reaches it: file paths become "<path>" and the
// credentials of URLs "REDACTED". The state and the error stay.
func scrubDetail(s string) string {
	if strings.Contains(s, "/") {
		s = urlUserinfo.ReplaceAllString(s, "${1}REDACTED@")
		s = filePath.ReplaceAllString(s, "${1}<path>")
	}
	return s
}
