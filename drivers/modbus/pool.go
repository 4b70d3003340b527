package modbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	gmodbus "github.com/goburrow/modbus"
)

// Transport is how an endpoint carries Modbus frames.
type Transport uint8

// Transports.
const (
	// TCP is Modbus TCP (MBAP framing), to host:port.
	TCP Transport = iota
	// RTU is Modbus RTU on a serial device.
	RTU
	// RTUOverTCP is RTU framing over a TCP connection, as serial gateways
	// in transparent mode speak it.
	RTUOverTCP
)

// String returns tcp, rtu or rtuovertcp.
func (t Transport) String() string {
	switch t {
	case TCP:
		return "tcp"
	case RTU:
		return "rtu"
	case RTUOverTCP:
		return "rtuovertcp"
	}
	return fmt.Sprintf("transport(%d)", uint8(t))
}

// ParseTransport parses tcp, rtu or rtuovertcp. Empty means rtu for a
// device path (starting with /) and tcp otherwise.
func ParseTransport(s, address string) (Transport, error) {
	switch s {
	case "":
		if len(address) > 0 && address[0] == '/' {
			return RTU, nil
		}
		return TCP, nil
	case "tcp":
		return TCP, nil
	case "rtu":
		return RTU, nil
	case "rtuovertcp":
		return RTUOverTCP, nil
	}
	return 0, fmt.Errorf("unknown transport %q: want tcp, rtu or rtuovertcp", s)
}

// Serial is the line setting of an RTU serial port.
type Serial struct {
	// BaudRate, default 19200.
	BaudRate int
	// DataBits is 7 or 8, default 8.
	DataBits int
	// Parity is N, E or O, default E (the Modbus default).
	Parity string
	// StopBits is 1 or 2, default 1.
	StopBits int
}

func (s Serial) withDefaults() Serial {
	if s.BaudRate == 0 {
		s.BaudRate = 19200
	}
	if s.DataBits == 0 {
		s.DataBits = 8
	}
	if s.Parity == "" {
		s.Parity = "E"
	}
	if s.StopBits == 0 {
		s.StopBits = 1
	}
	return s
}

// Endpoint is where a device is reached. Devices with the same transport
// and address share one connection.
type Endpoint struct {
	Transport Transport
	// Address is host:port (TCP, RTUOverTCP) or a device path (RTU).
	Address string
	// Serial is the line setting for RTU; ignored otherwise.
	Serial Serial
	// ConnectTimeout bounds a TCP connect or a serial open; default 3s.
	ConnectTimeout time.Duration
}

// key identifies the connection an endpoint uses.
func (e Endpoint) key() string { return e.Transport.String() + "://" + e.Address }

// String returns transport://address.
func (e Endpoint) String() string { return e.key() }

// PoolOptions configures a Pool.
type PoolOptions struct {
	// BackoffMin is the first wait after a failed connect; default 100ms.
	// It doubles after every further failure up to BackoffMax (default
	// 30s) and is reset by a successful connect.
	BackoffMin time.Duration
	BackoffMax time.Duration
	Logger     *slog.Logger
}

// Pool holds one connection per endpoint, shared by every Driver (and
// every unit id) that reads through it. The agent creates one Pool and
// passes it to every Modbus driver. A connection is opened on the first
// request and closed when the last Driver using it stops. The pool also
// keeps the clock of the polls of the Drivers running on it (schedule).
type Pool struct {
	opts PoolOptions
	mu   sync.Mutex
	eps  map[string]*endpoint
	// sched runs the polls of the Drivers running on the pool.
	sched schedule
	// tables are the tag tables of the pool's Drivers, one for each set
	// of identical tags.
	tables tables
}

// NewPool returns an empty pool.
func NewPool(opts PoolOptions) *Pool {
	if opts.BackoffMin <= 0 {
		opts.BackoffMin = 100 * time.Millisecond
	}
	if opts.BackoffMax <= 0 {
		opts.BackoffMax = 30 * time.Second
	}
	if opts.BackoffMax < opts.BackoffMin {
		opts.BackoffMax = opts.BackoffMin
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Pool{opts: opts, eps: map[string]*endpoint{}}
}

// acquire returns the endpoint for ep, creating it on first use, and counts
// one more user. Serial settings must agree among the users of a port.
func (p *Pool) acquire(ep Endpoint) (*endpoint, error) {
	if ep.Transport == RTU {
		ep.Serial = ep.Serial.withDefaults()
	}
	if ep.ConnectTimeout <= 0 {
		ep.ConnectTimeout = 3 * time.Second
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.eps[ep.key()]
	if e == nil {
		e = newEndpoint(ep, p.opts)
		p.eps[ep.key()] = e
	} else if ep.Transport == RTU && e.spec.Serial != ep.Serial {
		return nil, fmt.Errorf("serial port %s is already used with %+v, not %+v", ep.Address, e.spec.Serial, ep.Serial)
	}
	e.refs++
	return e, nil
}

// release counts one user less and closes the connection after the last.
func (p *Pool) release(e *endpoint) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e.refs--
	if e.refs > 0 {
		return
	}
	delete(p.eps, e.spec.key())
	e.sem <- struct{}{}
	e.closeLink()
	<-e.sem
}

// Demotion constants: see the package documentation.
const (
	demoteAfter       = 3
	demotedTimeoutMin = 100 * time.Millisecond
	demotedWaitMax    = time.Minute
)

// unitHealth tracks the polls without answer of one unit id behind an
// endpoint.
type unitHealth struct {
	timeouts int // polls in a row without answer
	level    int
	until    time.Time
}

// endpoint is one shared connection. sem admits one request at a time;
// everything but spec, refs and units is guarded by it.
type endpoint struct {
	spec Endpoint
	opts PoolOptions
	refs int // guarded by Pool.mu

	sem       chan struct{}
	link      *link
	port      *serialPort
	client    gmodbus.Client
	tcpPk     *gmodbus.TCPClientHandler
	rtuPk     *gmodbus.RTUClientHandler
	backoff   time.Duration
	nextDial  time.Time
	dials     int
	unitsMu   sync.Mutex
	units     map[uint8]*unitHealth
	lastError error

	// curMu guards cur, the poller whose request is being exchanged (nil
	// for an ad-hoc Read), curStream, the stream it uses, and cut, set
	// when that poller's context ended during the exchange (interrupt).
	curMu     sync.Mutex
	cur       *poller
	curStream stream
	cut       bool
}

func newEndpoint(spec Endpoint, opts PoolOptions) *endpoint {
	e := &endpoint{spec: spec, opts: opts, sem: make(chan struct{}, 1), units: map[uint8]*unitHealth{}}
	lk := &link{rtu: spec.Transport != TCP}
	e.link = lk
	if spec.Transport == TCP {
		e.tcpPk = gmodbus.NewTCPClientHandler(spec.Address)
		e.client = gmodbus.NewClient2(e.tcpPk, lk)
	} else {
		e.rtuPk = gmodbus.NewRTUClientHandler(spec.Address)
		e.client = gmodbus.NewClient2(e.rtuPk, lk)
	}
	if spec.Transport == RTU {
		lk.silence = rtuSilence(spec.Serial.BaudRate)
	}
	return e
}

// connectedLocked opens the stream when there is none, unless the backoff
// after a failed attempt has not passed.
func (e *endpoint) connectedLocked(ctx context.Context) error {
	if e.link.s != nil {
		return nil
	}
	now := time.Now()
	if now.Before(e.nextDial) {
		return fmt.Errorf("%w (next attempt in %s; last: %v)", ErrUnavailable, e.nextDial.Sub(now).Round(time.Millisecond), e.lastError)
	}
	e.dials++
	var err error
	switch e.spec.Transport {
	case RTU:
		var p *serialPort
		if p, err = openSerial(e.spec.Serial, e.spec.Address); err == nil {
			e.port = p
			e.link.s = p
			e.link.flushInput = p.flushInput
		}
	default:
		d := net.Dialer{Timeout: e.spec.ConnectTimeout}
		var c net.Conn
		if c, err = d.DialContext(ctx, "tcp", e.spec.Address); err == nil {
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetNoDelay(true)
			}
			e.link.s = c
		}
	}
	if err != nil {
		e.backoff = min(max(2*e.backoff, e.opts.BackoffMin), e.opts.BackoffMax)
		e.nextDial = time.Now().Add(e.backoff)
		e.lastError = err
		e.opts.Logger.Debug("modbus connect failed", "endpoint", e.spec.String(), "retry_in", e.backoff, "err", err)
		return &connectError{err: err}
	}
	e.backoff = 0
	e.lastError = nil
	return nil
}

// connectError is a failed connect or open.
type connectError struct{ err error }

// Error is the cause alone: the error kind (connect) already says what
// failed, and Go's dial errors name the address.
func (e *connectError) Error() string { return e.err.Error() }
func (e *connectError) Unwrap() error { return e.err }

func (e *endpoint) closeLink() {
	if e.link.s != nil {
		_ = e.link.s.Close()
		e.link.s = nil
		e.link.reset()
		e.link.flushInput = nil
		e.port = nil
	}
}

// freshRetryDelay is the wait before a request that failed on a brand-new
// connection (closed by the device at once, as single-connection devices
// do while they still hold the previous one) is sent once more.
const freshRetryDelay = 25 * time.Millisecond

// read performs one read of qty items at addr in table reg of unit and
// appends the raw answer (registers or packed bits) to dst. It waits for
// its turn on the connection until ctx is done.
//
// A poller's request is cut short through interrupt, which the Driver's
// Start registers to run once its context is done; an ad-hoc read (owner
// nil) registers for its own context.
func (e *endpoint) read(ctx context.Context, owner *poller, unit uint8, reg RegisterType, addr, qty uint16, timeout time.Duration, dst []byte) ([]byte, string, error) {
	select {
	case e.sem <- struct{}{}:
	case <-ctx.Done():
		return dst, KindTimeout, ctx.Err()
	}
	defer func() { <-e.sem }()
	for attempt := 0; ; attempt++ {
		fresh := e.link.s == nil
		if err := e.connectedLocked(ctx); err != nil {
			if errors.Is(err, ErrUnavailable) {
				return dst, KindUnavailable, err
			}
			return dst, KindConnect, err
		}
		res, kind, err := e.exchangeLocked(ctx, owner, unit, reg, addr, qty, timeout)
		if err == nil {
			return append(dst, res...), "", nil
		}
		if kind == KindIO && fresh && attempt == 0 && ctx.Err() == nil {
			t := time.NewTimer(freshRetryDelay)
			select {
			case <-ctx.Done():
				t.Stop()
			case <-t.C:
				continue
			}
		}
		if ctx.Err() != nil {
			return dst, kind, ctx.Err()
		}
		return dst, kind, err
	}
}

// exchangeLocked sends one request on the open link and returns the raw
// answer, valid until the next exchange. After any error but an exception
// the link is closed.
func (e *endpoint) exchangeLocked(ctx context.Context, owner *poller, unit uint8, reg RegisterType, addr, qty uint16, timeout time.Duration) ([]byte, string, error) {
	if e.tcpPk != nil {
		e.tcpPk.SlaveId = unit
	} else {
		e.rtuPk.SlaveId = unit
	}
	if err := ctx.Err(); err != nil {
		return nil, KindTimeout, err
	}
	e.link.timeout = timeout
	s := e.link.s
	var stop func() bool
	if owner == nil {
		stop = context.AfterFunc(ctx, func() { _ = s.SetDeadline(time.Unix(1, 0)) })
	} else {
		e.curMu.Lock()
		e.cur, e.curStream, e.cut = owner, s, false
		e.curMu.Unlock()
		stop = func() bool {
			e.curMu.Lock()
			defer e.curMu.Unlock()
			cut := e.cut || ctx.Err() != nil
			e.cur, e.curStream, e.cut = nil, nil, false
			return !cut
		}
	}
	var res []byte
	var err error
	switch reg {
	case Holding:
		res, err = e.client.ReadHoldingRegisters(addr, qty)
	case Input:
		res, err = e.client.ReadInputRegisters(addr, qty)
	case Coil:
		res, err = e.client.ReadCoils(addr, qty)
	case Discrete:
		res, err = e.client.ReadDiscreteInputs(addr, qty)
	}
	if !stop() {
		// ctx ended during the request: its deadline may be cut short
		// at any moment, so the stream is not reused.
		e.closeLink()
	}
	if err == nil {
		want := 2 * int(qty)
		if reg.IsBit() {
			want = (int(qty) + 7) / 8
		}
		if len(res) != want {
			err = malformedf("answer has %d bytes of data, want %d", len(res), want)
		}
	}
	if err != nil {
		kind := classify(err)
		if ee, ok := asException(err); ok {
			err = ee // readable: exception 0x0B gateway target device failed to respond (function 0x03 ...)
		}
		if kind != KindException {
			// Whatever the stream holds now cannot be trusted: start over.
			e.closeLink()
		}
		return nil, kind, err
	}
	return res, "", nil
}

// interrupt cuts short p's request, when one is being exchanged: p's
// context has ended (Start registers it once for the poller, rather than
// each request registering with the context).
func (e *endpoint) interrupt(p *poller) {
	e.curMu.Lock()
	defer e.curMu.Unlock()
	if e.cur == p && e.curStream != nil {
		e.cut = true
		_ = e.curStream.SetDeadline(time.Unix(1, 0))
	}
}

// unitReady reports whether unit may be polled at now (a demoted unit
// waits), and the timeout to use.
func (e *endpoint) unitReady(unit uint8, now time.Time, timeout time.Duration) (bool, time.Duration) {
	e.unitsMu.Lock()
	defer e.unitsMu.Unlock()
	h := e.units[unit]
	if h == nil || h.level == 0 {
		return true, timeout
	}
	return !now.Before(h.until), max(timeout/4, demotedTimeoutMin)
}

// unitResult records the outcome of a poll of unit: timedOut when the unit
// did not answer (a timeout, or a gateway saying so). It reports whether
// this poll demoted a unit that was not demoted before.
func (e *endpoint) unitResult(unit uint8, timedOut bool, interval time.Duration) (demoted bool) {
	e.unitsMu.Lock()
	defer e.unitsMu.Unlock()
	h := e.units[unit]
	if h == nil {
		if !timedOut {
			return false
		}
		h = &unitHealth{}
		e.units[unit] = h
	}
	if !timedOut {
		h.timeouts, h.level = 0, 0
		return false
	}
	h.timeouts++
	if h.timeouts < demoteAfter {
		return false
	}
	if h.level < 16 {
		h.level++
	}
	wait := interval << h.level
	if wait <= 0 || wait > demotedWaitMax {
		wait = demotedWaitMax
	}
	h.until = time.Now().Add(wait)
	return h.level == 1
}

// Read sends one read of qty items at addr in table reg to unit through
// ep's connection and returns the raw answer: 2 bytes per register in wire
// order, or packed bits (item i in bit i%8 of byte i/8). It is the
// commissioning tools' ad-hoc read; errors are *ReadError.
func (p *Pool) Read(ctx context.Context, ep Endpoint, unit uint8, reg RegisterType, addr, qty uint16, timeout time.Duration) ([]byte, error) {
	if qty < 1 || int(qty) > reg.maxQuantity() || int(addr)+int(qty) > 65536 {
		return nil, fmt.Errorf("read %s %d: quantity %d out of range 1-%d or past 65535", reg, addr, qty, reg.maxQuantity())
	}
	e, err := p.acquire(ep)
	if err != nil {
		return nil, err
	}
	defer p.release(e)
	out, kind, err := e.read(ctx, nil, unit, reg, addr, qty, timeout, nil)
	if err != nil {
		return nil, &ReadError{Endpoint: e.spec.String(), Unit: unit, Register: reg, Address: addr, Quantity: qty, Kind: kind, Err: err}
	}
	return out, nil
}
