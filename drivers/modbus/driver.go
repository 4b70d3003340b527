package modbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iot-producer/iot-producer/drivers"
)

// Tag is one value read from a device.
type Tag struct {
	Name     string
	Register RegisterType
	// Address is 0-based; see ParseAddress for the notations.
	Address uint16
	Type    Type
	Order   ByteOrder
	// Bit, when 0 to 15, reads one bit of a register as a bool (0 the
	// least significant); -1 otherwise.
	Bit int
	// Scale and Offset turn a number into value*Scale + Offset, a float;
	// with Scale 1 and Offset 0 the value keeps its type. A Scale of 0
	// means 1.
	Scale  float64
	Offset float64
}

// check applies the rules every tag follows: the type its table can hold,
// a bit only of a register, and the value within the address space and
// within one request of maxRegisters (0 means 125).
func (t *Tag) check(maxRegisters int) error {
	if maxRegisters <= 0 || maxRegisters > 125 {
		maxRegisters = 125
	}
	if t.Register.IsBit() && t.Type.Base != Bool {
		return &fieldError{"type", fmt.Errorf("%s registers hold bits: the type must be bool, not %s", t.Register, t.Type)}
	}
	if t.Bit >= 0 && (t.Bit > 15 || t.Type.Base != Bool || t.Register.IsBit()) {
		return &fieldError{"bit", fmt.Errorf("bit %d needs type bool on a holding or input register and a bit from 0 to 15", t.Bit)}
	}
	if n := span(t); n > maxRegisters && !t.Register.IsBit() {
		return &fieldError{"type", fmt.Errorf("%s needs %d registers, more than one request may read (%d)", t.Type, n, maxRegisters)}
	}
	if int(t.Address)+span(t) > 65536 {
		return &fieldError{"address", fmt.Errorf("%s at %s %d runs past address 65535", t.Type, t.Register, t.Address)}
	}
	return nil
}

// Options configures one Driver: one device, one unit id.
type Options struct {
	// Name is the device name, carried by every sample.
	Name     string
	Endpoint Endpoint
	// Unit is the unit (slave) id; 0 to 255 (1 to 247 on serial lines).
	Unit uint8
	// Interval is the time between polls; default 1s.
	Interval time.Duration
	// Timeout bounds each request; default 1s.
	Timeout time.Duration
	// MaxGap is the largest run of unused registers (or bits) a request may
	// read to join two tags: 0 joins only adjacent tags, negative disables
	// joining. A configured device gets DefaultMaxGap unless its max_gap
	// says otherwise.
	MaxGap int
	// MaxRegisters caps the registers of one request for devices that
	// accept fewer than 125; 0 means 125.
	MaxRegisters int
	Tags         []Tag
	// DropOnError emits no sample for a failed read instead of a sample of
	// bad quality.
	DropOnError bool
	// Pool is the connection pool shared by the agent's Modbus drivers;
	// required.
	Pool *Pool
	// OnError, when set, is called for every failed request with its
	// kind (one of the Kind constants); it must not block.
	OnError func(kind string)
	// OnReadError, when set, is given every failed request's *ReadError;
	// it must not block.
	OnReadError func(err error)
	Logger      *slog.Logger
}

// Driver polls one device and emits a sample per tag per poll. It
// implements drivers.Driver.
type Driver struct {
	opts Options
	// table holds opts.Tags and reqs, shared with the Drivers of the same
	// tags.
	table   *tagTable
	reqs    []request
	running atomic.Bool
	// polls counts completed polls (for tests and benchmarks).
	polls atomic.Uint64
}

var _ drivers.Starter = (*Driver)(nil)

// New checks opts and plans the requests. Errors name the device and tag.
func New(opts Options) (*Driver, error) {
	name := opts.Name
	if name == "" {
		return nil, errors.New("modbus: device name is empty")
	}
	if opts.Pool == nil {
		return nil, fmt.Errorf("modbus %s: no connection pool", name)
	}
	if opts.Endpoint.Address == "" {
		return nil, fmt.Errorf("modbus %s: endpoint address is empty", name)
	}
	if len(opts.Tags) == 0 {
		return nil, fmt.Errorf("modbus %s: no tags", name)
	}
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	if opts.Timeout <= 0 {
		opts.Timeout = time.Second
	}
	if opts.MaxRegisters <= 0 || opts.MaxRegisters > 125 {
		opts.MaxRegisters = 125
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Endpoint.Transport == RTU && (opts.Unit < 1 || opts.Unit > 247) {
		return nil, fmt.Errorf("modbus %s: unit %d: on a serial line unit ids are 1 to 247 (0 is broadcast, never answered)", name, opts.Unit)
	}
	opts.Tags = append([]Tag(nil), opts.Tags...)
	seen := map[string]bool{}
	for i := range opts.Tags {
		t := &opts.Tags[i]
		if t.Name == "" || seen[t.Name] {
			return nil, fmt.Errorf("modbus %s: tag %d: name %q is empty or repeated", name, i, t.Name)
		}
		seen[t.Name] = true
		if t.Scale == 0 {
			t.Scale = 1
		}
		if err := t.check(opts.MaxRegisters); err != nil {
			return nil, fmt.Errorf("modbus %s: tag %s: %w", name, t.Name, err)
		}
	}
	gap := opts.MaxGap
	table := opts.Pool.tables.get(opts.Tags, gap, opts.MaxRegisters, func() *tagTable {
		reqs := plan(opts.Tags, gap, opts.MaxRegisters)
		if gap < 0 {
			reqs = nil
			for _, r := range plan(opts.Tags, 0, opts.MaxRegisters) {
				reqs = append(reqs, split(r, opts.Tags)...)
			}
		}
		return &tagTable{tags: opts.Tags, reqs: reqs}
	})
	opts.Tags = table.tags
	return &Driver{opts: opts, reqs: table.reqs, table: table}, nil
}

// Name returns "modbus:<device>".
func (d *Driver) Name() string { return "modbus:" + d.opts.Name }

// Requests returns the number of requests one poll sends.
func (d *Driver) Requests() int { return len(d.reqs) }

// Polls returns the number of polls completed so far.
func (d *Driver) Polls() uint64 { return d.polls.Load() }

// Run polls the device every Interval until ctx is cancelled, passing
// each poll's samples to emit in one batch. The first poll comes within
// one interval (a second when longer) at the device's phase: devices are
// spread over their interval (over a second when longer) in 100ms slots
// chosen from their names and counted from whole periods of the clock, so
// that many devices do not all poll at the same instant, and a slot's
// devices poll together whenever each was started. Failed reads give
// samples of bad quality (none with DropOnError) and a call to OnError;
// polls of a demoted unit are skipped. When a poll overruns the interval,
// the polls missed are dropped. Run returns nil when ctx is cancelled; it
// waits for the poll in flight, which its cancellation cuts short. The
// polls run on goroutines of the Pool's schedule, not on Run's.
func (d *Driver) Run(ctx context.Context, emit drivers.Emit) error {
	stopped := make(chan error, 1)
	if err := d.Start(ctx, emit, func(err error) { stopped <- err }); err != nil {
		return err
	}
	return <-stopped
}

// Start does what Run does without a goroutine of its own (it implements
// drivers.Starter): it schedules the polls and returns. Once ctx is done,
// the request being exchanged, if any, is cut short, and ended is called
// with nil when the poll in flight has ended.
func (d *Driver) Start(ctx context.Context, emit drivers.Emit, ended func(error)) error {
	p, err := d.start(ctx, emit)
	if err != nil {
		return err
	}
	context.AfterFunc(ctx, func() {
		p.ep.interrupt(p)
		d.stop(p)
		ended(nil)
	})
	return nil
}

// start checks Run's arguments, takes the device's connection and
// schedules its polls.
func (d *Driver) start(ctx context.Context, emit drivers.Emit) (*poller, error) {
	if emit == nil {
		return nil, fmt.Errorf("%s: emit is nil", d.Name())
	}
	if !d.running.CompareAndSwap(false, true) {
		return nil, fmt.Errorf("%s: already running", d.Name())
	}
	ep, err := d.opts.Pool.acquire(d.opts.Endpoint)
	if err != nil {
		d.running.Store(false)
		return nil, fmt.Errorf("%s: %w", d.Name(), err)
	}
	p := &poller{d: d, ep: ep, reqs: append([]request(nil), d.reqs...), ctx: ctx, emit: emit, index: -1}
	d.opts.Pool.sched.add(p)
	return p, nil
}

// stop ends what start began, once the poll in flight has ended.
func (d *Driver) stop(p *poller) {
	d.opts.Pool.sched.remove(p)
	d.opts.Pool.release(p.ep)
	d.running.Store(false)
}

// pollOnce polls and emits the samples, if any.
func (p *poller) pollOnce() {
	if batch := p.poll(p.ctx, time.Now()); len(batch) > 0 && p.ctx.Err() == nil {
		p.emit(batch)
	}
	p.d.polls.Add(1)
}

// poller is the state of one Run. Its polls run one at a time, each on a
// goroutine of the schedule; the fields from next on belong to the
// schedule.
type poller struct {
	d    *Driver
	ep   *endpoint
	reqs []request
	buf  []byte
	// warned is set once a split of a coalesced request has been logged.
	warned bool
	// failing is set from a failed read, logged at warn, to the next poll
	// without one, logged at info; reads failing in between are logged at
	// debug only, so a dead device does not flood the log.
	failing bool
	// ctx and emit are Run's.
	ctx  context.Context
	emit drivers.Emit

	// next is when the next poll is due; index is p's place in the
	// schedule's heap (-1 when out of it); busy is set while a poll
	// runs, which inflight counts. Guarded by the schedule's mutex.
	next     time.Time
	index    int
	busy     bool
	inflight sync.WaitGroup
}

// busyRetryMin is the first wait before a request answered with Busy is
// sent again; it doubles while the poll interval lasts.
const busyRetryMin = 20 * time.Millisecond

// poll reads every request once and returns the samples. After a request
// the unit does not answer (a timeout, or a gateway's exception 0x0A or
// 0x0B) the rest of the poll is skipped: the unit would not answer those
// either. The poll, not each request, counts towards the unit's demotion.
func (p *poller) poll(ctx context.Context, start time.Time) []drivers.Sample {
	o := &p.d.opts
	ready, timeout := p.ep.unitReady(o.Unit, start, o.Timeout)
	if !ready {
		return nil
	}
	deadline := start.Add(o.Interval)
	out := drivers.NewBatch(len(o.Tags))
	pollFailed := false
	// answered: some request got an answer from the unit (data, an
	// exception of its own, or a broken answer); silent: the error that
	// ended the poll because the unit did not answer.
	answered := false
	var silent *ReadError
	for i := 0; i < len(p.reqs); i++ {
		if ctx.Err() != nil {
			return out
		}
		r := p.reqs[i]
		raw, kind, err := p.readRetrying(ctx, r, timeout, deadline)
		now := time.Now()
		if err != nil && kind == KindException && ExceptionCode(err) == ExceptionIllegalDataAddress && len(r.tags) > 1 {
			// The device refuses the gap between the tags: read them one
			// by one, now and from now on.
			parts := split(r, o.Tags)
			p.reqs = append(p.reqs[:i], append(parts, p.reqs[i+1:]...)...)
			if !p.warned {
				p.warned = true
				o.Logger.Warn("modbus device refuses a coalesced read; reading its tags one by one",
					"device", o.Name, "register", r.reg.String(), "address", r.addr, "quantity", r.qty)
			}
			i--
			continue
		}
		if err == nil {
			answered = true
			for _, ti := range r.tags {
				t := &o.Tags[ti]
				v, q := extract(raw, r, t)
				out = append(out, drivers.Sample{Device: o.Name, Tag: t.Name, Value: v, Quality: q, ReadTime: now})
			}
			continue
		}
		if ctx.Err() != nil {
			return out
		}
		rerr := &ReadError{Device: o.Name, Endpoint: o.Endpoint.String(), Unit: o.Unit, Register: r.reg, Address: r.addr, Quantity: r.qty, Kind: kind, Err: err}
		if o.OnError != nil {
			o.OnError(kind)
		}
		if o.OnReadError != nil {
			o.OnReadError(rerr)
		}
		if p.failing {
			o.Logger.Debug("modbus read failed", "err", rerr)
		} else {
			p.failing = true
			o.Logger.Warn("modbus read failed; further failures are logged at debug until the device recovers", "err", rerr)
		}
		pollFailed = true
		status := sampleStatus(kind, err)
		if !o.DropOnError {
			for _, ti := range r.tags {
				out = append(out, drivers.Sample{Device: o.Name, Tag: o.Tags[ti].Name, Quality: drivers.QualityBad, Status: status, ReadTime: now, Value: noValue(&o.Tags[ti])})
			}
		}
		if unitSilent(kind, err) {
			silent = rerr
			out = p.failRest(out, i+1, now, status)
			break
		}
		if kind == KindException || kind == KindMalformed || kind == KindIO {
			answered = true
		}
	}
	switch {
	case silent != nil:
		if p.ep.unitResult(o.Unit, true, o.Interval) {
			reason := "it did not answer"
			if silent.Kind == KindException {
				reason = "the gateway in front of it answered for it"
			}
			o.Logger.Warn("modbus unit demoted: "+reason+" in "+strconv.Itoa(demoteAfter)+" polls in a row; it is polled less often until it answers",
				"device", o.Name, "endpoint", o.Endpoint.String(), "unit", o.Unit, "err", silent)
		}
	case answered:
		p.ep.unitResult(o.Unit, false, o.Interval)
	}
	if p.failing && !pollFailed {
		p.failing = false
		o.Logger.Info("modbus device answers again", "device", o.Name, "endpoint", o.Endpoint.String(), "unit", o.Unit)
	}
	return out
}

// failRest adds bad samples, of a status, for the requests from index i
// on.
func (p *poller) failRest(out []drivers.Sample, i int, now time.Time, status string) []drivers.Sample {
	o := &p.d.opts
	if o.DropOnError {
		return out
	}
	for _, r := range p.reqs[i:] {
		for _, ti := range r.tags {
			out = append(out, drivers.Sample{Device: o.Name, Tag: o.Tags[ti].Name, Quality: drivers.QualityBad, Status: status, ReadTime: now, Value: noValue(&o.Tags[ti])})
		}
	}
	return out
}

// readRetrying reads r, sending it again after a Busy exception while the
// poll interval lasts.
func (p *poller) readRetrying(ctx context.Context, r request, timeout time.Duration, deadline time.Time) ([]byte, string, error) {
	o := &p.d.opts
	wait := busyRetryMin
	for {
		var kind string
		var err error
		p.buf, kind, err = p.ep.read(ctx, p, o.Unit, r.reg, r.addr, r.qty, timeout, p.buf[:0])
		if err == nil || kind != KindException || ExceptionCode(err) != ExceptionBusy || time.Now().Add(wait).After(deadline) {
			return p.buf, kind, err
		}
		if o.OnError != nil {
			o.OnError(KindBusy)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return p.buf, kind, err
		case <-t.C:
		}
		wait *= 2
	}
}

// extract decodes tag t from the raw answer of r.
func extract(raw []byte, r request, t *Tag) (drivers.Value, drivers.Quality) {
	off := int(t.Address) - int(r.addr)
	if r.reg.IsBit() {
		return drivers.Bool(raw[off/8]&(1<<(off%8)) != 0), drivers.QualityGood
	}
	b := raw[2*off : 2*(off+t.Type.Registers())]
	if t.Bit >= 0 {
		bit, err := DecodeBit(b, t.Order, t.Bit)
		if err != nil {
			return noValue(t), drivers.QualityBad
		}
		return drivers.Bool(bit), drivers.QualityGood
	}
	v, err := Decode(b, t.Type, t.Order)
	if err != nil {
		return noValue(t), drivers.QualityBad
	}
	return scale(v, t), drivers.QualityGood
}

// scale applies t's scale and offset to a number.
func scale(v drivers.Value, t *Tag) drivers.Value {
	if t.Scale == 1 && t.Offset == 0 {
		return v
	}
	switch v.Kind {
	case drivers.KindInt:
		return drivers.Float(float64(v.I)*t.Scale + t.Offset)
	case drivers.KindUint:
		return drivers.Float(float64(v.U)*t.Scale + t.Offset)
	case drivers.KindFloat:
		return drivers.Float(v.F*t.Scale + t.Offset)
	}
	return v
}

// noValue is the value of a bad sample: no reading, only the kind the tag's
// readings have.
func noValue(t *Tag) drivers.Value {
	switch {
	case t.Type.Base == Bool:
		return drivers.NoValue(drivers.KindBool)
	case t.Type.Base == String:
		return drivers.NoValue(drivers.KindString)
	case t.Type.Base == Float32 || t.Type.Base == Float64 || t.Scale != 1 || t.Offset != 0:
		return drivers.NoValue(drivers.KindFloat)
	case t.Type.Base == Int16 || t.Type.Base == Int32 || t.Type.Base == Int64:
		return drivers.NoValue(drivers.KindInt)
	}
	return drivers.NoValue(drivers.KindUint)
}
