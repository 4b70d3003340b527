package uplink

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iot-producer/iot-producer/buffer"
	"github.com/iot-producer/iot-producer/record"
)

// lane reads batches for one lane and keeps up to Workers of them in
// flight. After a failure it stops reading, waits for every batch in
// flight, and sends the failed records again in queue order after a
// backoff; records refused for good go to the dead-letter queue. A sink
// that is a Fencer fails what it was handed behind a failed record
// (ErrFenced), so that nothing overtakes the failed record; the lane
// reopens it when nothing is in flight any more.
type lane struct {
	l       *Loop
	kind    Lane
	sendCtx context.Context
	slots   chan struct{} // one token per batch in flight
	// freed is signalled when a batch in flight completes, so that a
	// partial live batch waiting for its flush goes out at once when the
	// lane has nothing else in flight.
	freed chan struct{}

	inflight sync.WaitGroup
	cursor   buffer.Pos // live lane: last record handed to the sink
	nextSeq  uint64     // order of batches, for retries
	epoch    string     // the last epoch read, kept to share its string
	failures atomic.Int64
	// readFails counts reads of the queue that failed in a row; owned by
	// run.
	readFails int
	// probeDown is set when a probe found the broker unreachable, so that
	// the next probe that succeeds ends the backoff; owned by run.
	probeDown bool

	mu     sync.Mutex
	failed []*batch
	failCh chan struct{}

	// spare holds batches whose every record the broker acknowledged,
	// for next to reuse their slices and arena; at most cap(slots)+1.
	spareMu sync.Mutex
	spare   []*batch
	// keys interns the records' device names (Message.Key), and lastKey
	// is the last one handed out (a device's records come in runs); owned
	// by run.
	keys    map[string]string
	lastKey string

	stateMu sync.Mutex
	state   State
}

// batch is a group of records sent together.
type batch struct {
	seq  uint64
	recs []buffer.Record
	msgs []Message
	// arena holds the bytes of recs (ReadAppend), and so of msgs' values:
	// reused only after the sink settled every message of the batch.
	arena []byte
	// pos and times are delivered's scratch.
	pos     []buffer.Pos
	times   []time.Time
	sentAt  time.Time
	lastErr error
	// refused is set when the broker refused records for a reason an
	// operator must fix (Refuser).
	refused bool
	// After a failure: the indexes to retry and those refused for good,
	// by reason.
	retry []int
	dead  map[string][]int
	// orig is each record's index in the batch as first read (nil: its
	// own index), which orders the pieces a failed batch is split into.
	orig []int
	// suspect marks the records the broker refused together with their
	// batch (ErrRefusedWithBatch), nil when none; sharedErr is the first
	// such error.
	suspect   []bool
	sharedErr error
	// isolate is set on a piece of suspects: it is sent with nothing else
	// of the lane in flight, alone when it holds one record.
	isolate bool
	// held is set on a batch queued for recovery without being sent.
	held bool
}

// origOf returns the index, in the batch as first read, of record i.
func (b *batch) origOf(i int) int {
	if b.orig == nil {
		return i
	}
	return b.orig[i]
}

func (b *batch) isSuspect(i int) bool { return b.suspect != nil && b.suspect[i] }

// pieces splits what b retries into batches to send again, in order: runs
// of records that failed on their own account as one batch each, and each
// run of suspects in two isolated halves, or alone when it is one record,
// so that a record the broker refuses is found in a few rounds and the
// others get through.
func (b *batch) pieces() []*batch {
	var out []*batch
	take := func(idx []int, isolate bool) {
		nb := &batch{seq: b.seq, isolate: isolate, recs: make([]buffer.Record, len(idx)), msgs: make([]Message, len(idx)), orig: make([]int, len(idx))}
		if isolate {
			nb.suspect = make([]bool, len(idx))
		}
		for j, i := range idx {
			nb.recs[j], nb.msgs[j], nb.orig[j] = b.recs[i], b.msgs[i], b.origOf(i)
			nb.msgs[j].Alone = isolate && len(idx) == 1
			if isolate {
				nb.suspect[j] = true
			}
		}
		out = append(out, nb)
	}
	for start := 0; start < len(b.retry); {
		s := b.isSuspect(b.retry[start])
		end := start + 1
		for end < len(b.retry) && b.isSuspect(b.retry[end]) == s {
			end++
		}
		idx := b.retry[start:end]
		switch {
		case !s:
			take(idx, false)
		case len(idx) == 1:
			take(idx, true)
		default:
			h := len(idx) / 2
			take(idx[:h], true)
			take(idx[h:], true)
		}
		start = end
	}
	return out
}

func newLane(l *Loop, kind Lane, sendCtx context.Context) *lane {
	return &lane{
		l:       l,
		kind:    kind,
		sendCtx: sendCtx,
		slots:   make(chan struct{}, l.opts.Workers),
		freed:   make(chan struct{}, 1),
		failCh:  make(chan struct{}, 1),
		state:   StateConnected,
		keys:    make(map[string]string),
	}
}

// maxKeys bounds the device names a lane interns; beyond it the map
// starts again (a gateway with more devices pays a copy per name again).
const maxKeys = 1 << 16

// key returns the device name of bytes k, made once per name.
func (ln *lane) key(k []byte) string {
	if string(k) == ln.lastKey {
		return ln.lastKey
	}
	s, ok := ln.keys[string(k)]
	if !ok {
		s = string(k)
		if len(ln.keys) >= maxKeys {
			clear(ln.keys)
		}
		ln.keys[s] = s
	}
	ln.lastKey = s
	return s
}

// getBatch returns a spare batch, or a new one.
func (ln *lane) getBatch() *batch {
	ln.spareMu.Lock()
	defer ln.spareMu.Unlock()
	if n := len(ln.spare); n > 0 {
		b := ln.spare[n-1]
		ln.spare[n-1] = nil
		ln.spare = ln.spare[:n-1]
		return b
	}
	return &batch{}
}

// putBatch keeps b for reuse. Only a batch whose every message the sink
// settled as delivered may come here: nothing holds its records, their
// bytes or its messages any more (the sink is done with them when it
// calls done, Sink's contract). A batch with a failure never does: its
// records are sent again, from its arena.
func (ln *lane) putBatch(b *batch) {
	clear(b.msgs) // the keys and values of past records
	*b = batch{recs: b.recs[:0], msgs: b.msgs[:0], arena: b.arena[:0], pos: b.pos[:0], times: b.times[:0]}
	ln.spareMu.Lock()
	defer ln.spareMu.Unlock()
	if len(ln.spare) <= cap(ln.slots) {
		ln.spare = append(ln.spare, b)
	}
}

// run sends batches until ctx is cancelled.
func (ln *lane) run(ctx context.Context) error {
	for ctx.Err() == nil {
		if ln.hasFailed() {
			ln.recover(ctx)
			continue
		}
		select {
		case ln.slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		case <-ln.failCh:
			continue
		}
		if ln.hasFailed() {
			// A failure came in while waiting for the slot: resend it
			// before anything later, so a device's records keep their
			// order within the lane.
			<-ln.slots
			continue
		}
		b, err := ln.next(ctx)
		if err != nil || b == nil {
			<-ln.slots
			if err != nil && ctx.Err() == nil {
				ln.readFailed(ctx, err)
			}
			continue
		}
		ln.readFails = 0
		if ln.hasFailed() {
			// A batch failed while this one was read: it goes after the
			// failed one, through recover.
			<-ln.slots
			ln.hold(b)
			continue
		}
		ln.produce(b)
	}
	return nil
}

// readFailed reports a failed read of the queue and waits a backoff before
// the lane reads again: a read error never ends the lane silently.
func (ln *lane) readFailed(ctx context.Context, err error) {
	ln.readFails++
	wait := ln.l.backoff(ln.readFails - 1)
	ln.setState(StateBackingOff, err)
	ln.l.quiet.Log(ln.l.log, slog.LevelError, "read/"+ln.kind.String(), 1, "reading the queue failed; the lane reads again after a backoff",
		"lane", ln.kind.String(), "retry_in", wait.Round(time.Millisecond), "err", err)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// hold queues b, read but not sent, behind the failed batches, so that
// recover sends it in queue order after them.
func (ln *lane) hold(b *batch) {
	b.retry = make([]int, len(b.msgs))
	for i := range b.retry {
		b.retry[i] = i
	}
	b.held = true
	ln.mu.Lock()
	ln.failed = append(ln.failed, b)
	ln.mu.Unlock()
}

// next reads the lane's next batch. It returns nil without error when it
// was interrupted (ctx done or a failure to handle first).
func (ln *lane) next(ctx context.Context) (*batch, error) {
	b := ln.getBatch()
	var err error
	if ln.kind == Live {
		err = ln.nextLive(ctx, b)
	} else {
		err = ln.nextBacklog(ctx, b)
	}
	if err != nil || len(b.recs) == 0 {
		ln.putBatch(b)
		return nil, err
	}
	recs := b.recs
	b.seq = ln.nextSeq
	b.msgs = slices.Grow(b.msgs[:0], len(recs))
	ln.nextSeq++
	var malformed []buffer.Record
	kept := recs[:0]
	for _, r := range recs {
		env, err := record.DecodeEnvelopeKey(r.Data, ln.key)
		if err != nil {
			ln.l.quiet.Log(ln.l.log, slog.LevelError, "malformed", 1, "undecodable record moved to the dead-letter queue", "frame", r.Pos.Frame, "index", r.Pos.Index, "err", err)
			malformed = append(malformed, r)
			continue
		}
		kept = append(kept, r)
		if string(env.Epoch) != ln.epoch {
			ln.epoch = string(env.Epoch)
		}
		b.msgs = append(b.msgs, Message{Key: env.Key, Time: env.Time, Schema: env.Schema, Epoch: ln.epoch, Value: env.Value})
	}
	b.recs = kept
	if len(malformed) > 0 {
		if m := ln.l.opts.Metrics.Malformed; m != nil {
			m(len(malformed))
		}
		ln.deadLetter(malformed, ReasonMalformed)
	}
	if len(b.msgs) == 0 {
		ln.putBatch(b)
		return nil, nil
	}
	return b, nil
}

// nextLive reads into b the next batch after the live cursor: full, or
// partial once its oldest record is FlushInterval old, or partial at once
// when the lane has no other batch in flight (the sink is idle, so waiting
// would only add latency; while batches are in flight, records gather into
// fuller batches). When the record at the cursor is older than LiveWindow,
// it jumps to the tail first.
func (ln *lane) nextLive(ctx context.Context, b *batch) error {
	opts := &ln.l.opts
	recs := b.recs[:0]
	defer func() { b.recs = recs }()
	after := ln.cursor
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		n := len(recs)
		var err error
		recs, b.arena, err = ln.read(after, opts.BatchSize-n, recs, b.arena)
		if err != nil {
			recs = recs[:0]
			return fmt.Errorf("read queue of sink %s: %w", ln.l.sink.Name(), err)
		}
		if n == 0 && len(recs) > 0 && time.Since(recs[0].Appended) > opts.LiveWindow {
			if ln.jump() {
				recs, b.arena = recs[:0], b.arena[:0]
				after = ln.cursor
				continue
			}
		}
		if len(recs) > n {
			after = recs[len(recs)-1].Pos
		}
		if len(recs) >= opts.BatchSize {
			break
		}
		var wait <-chan time.Time
		if len(recs) > 0 {
			left := time.Until(recs[0].Appended.Add(opts.FlushInterval))
			if left <= 0 || ln.idle() {
				break
			}
			if timer == nil {
				timer = time.NewTimer(left)
			} else {
				timer.Reset(left)
			}
			wait = timer.C
		}
		select {
		case <-ctx.Done():
			recs = recs[:0]
			return nil
		case <-ln.failCh:
			recs = recs[:0]
			return nil
		case <-ln.l.queue.Notify():
			continue
		case <-ln.freed:
			continue
		case <-wait:
		}
		break
	}
	ln.cursor = recs[len(recs)-1].Pos
	return nil
}

// idle reports whether the lane has no batch in flight besides the one
// being read (which holds a slot).
func (ln *lane) idle() bool { return len(ln.slots) <= 1 }

// read reads up to n records after `after`, appended to recs, their bytes
// in arena when the queue can (buffer.Queue.ReadAppend).
func (ln *lane) read(after buffer.Pos, n int, recs []buffer.Record, arena []byte) ([]buffer.Record, []byte, error) {
	if q, ok := ln.l.queue.(appendReader); ok {
		return q.ReadAppend(after, n, recs, arena)
	}
	more, err := ln.l.queue.Read(after, n)
	return append(recs, more...), arena, err
}

// appendReader is a Queue that reads into the caller's memory
// (buffer.Queue).
type appendReader interface {
	ReadAppend(after buffer.Pos, n int, recs []buffer.Record, arena []byte) ([]buffer.Record, []byte, error)
}

// jump moves the live cursor to the tail of the queue and hands what lies
// between to the backlog lane. It reports whether the cursor moved.
func (ln *lane) jump() bool {
	last, ok := ln.l.queue.Last()
	if !ok || !ln.cursor.Less(last) {
		return false
	}
	ln.l.pushBacklog(span{from: ln.cursor, to: last})
	ln.l.log.Info("live lane behind; sending newest data first and the backlog beside it", "backlog_from", ln.cursor.String(), "backlog_to", last.String())
	ln.cursor = last
	return true
}

// nextBacklog reads into b the next batch of the oldest backlog span.
func (ln *lane) nextBacklog(ctx context.Context, b *batch) error {
	for {
		b.recs, b.arena = b.recs[:0], b.arena[:0]
		sp, ok := ln.l.backlog()
		if !ok {
			select {
			case <-ctx.Done():
				return nil
			case <-ln.failCh:
				return nil
			case <-ln.l.rangeCh:
				continue
			}
		}
		recs, arena, err := ln.read(sp.from, ln.l.opts.BatchSize, b.recs, b.arena)
		b.arena = arena
		if err != nil {
			return fmt.Errorf("read queue of sink %s: %w", ln.l.sink.Name(), err)
		}
		n := len(recs)
		for n > 0 && sp.to.Less(recs[n-1].Pos) {
			n--
		}
		b.recs = recs[:n]
		if n == 0 {
			ln.l.advanceBacklog(sp.to)
			continue
		}
		ln.l.advanceBacklog(recs[n-1].Pos)
		return nil
	}
}

// produce hands b to the sink; its slot is released when it completes.
func (ln *lane) produce(b *batch) {
	b.sentAt = time.Now()
	ln.inflight.Add(1)
	ln.l.sink.Produce(ln.sendCtx, ln.kind, b.msgs, func(errs []error) { ln.done(b, errs) })
}

// done handles the outcome of one batch: acknowledges what was delivered
// and queues the rest for recovery.
func (ln *lane) done(b *batch, errs []error) {
	defer ln.inflight.Done()
	defer func() {
		<-ln.slots
		select {
		case ln.freed <- struct{}{}:
		default:
		}
	}()
	m := &ln.l.opts.Metrics
	refuser, _ := ln.l.sink.(Refuser)
	var ok []int
	fenced := 0
	if errs == nil {
		ok = allIndexes(len(b.msgs))
	}
	for i, err := range errs {
		if err == nil {
			ok = append(ok, i)
			continue
		}
		if errors.Is(err, ErrFenced) {
			// Not sent: it goes again behind the failure that fenced it.
			fenced++
			b.retry = append(b.retry, i)
			continue
		}
		if errors.Is(err, ErrRefusedWithBatch) {
			// Maybe not its fault: found out by sending it again in
			// smaller batches.
			if b.suspect == nil {
				b.suspect = make([]bool, len(b.msgs))
			}
			b.suspect[i] = true
			if b.sharedErr == nil {
				b.sharedErr = err
			}
			b.retry = append(b.retry, i)
			continue
		}
		if b.lastErr == nil {
			b.lastErr = err
		}
		if refuser != nil && refuser.Refused(err) {
			b.refused = true
			b.retry = append(b.retry, i)
			continue
		}
		if ln.l.opts.DeadLetters != nil && ln.l.sink.Permanent(err) {
			if b.dead == nil {
				b.dead = map[string][]int{}
			}
			reason := reasonOf(err)
			b.dead[reason] = append(b.dead[reason], i)
			continue
		}
		b.retry = append(b.retry, i)
	}
	if errs == nil {
		ln.delivered(b, ok)
		ln.failures.Store(0)
		ln.setState(StateConnected, nil)
		ln.putBatch(b)
		return
	}
	if len(ok) > 0 {
		ln.delivered(b, ok)
	}
	if n := len(errs) - len(ok) - fenced; n > 0 && m.Failed != nil {
		m.Failed(n)
	}
	ln.mu.Lock()
	ln.failed = append(ln.failed, b)
	ln.mu.Unlock()
	select {
	case ln.failCh <- struct{}{}:
	default:
	}
}

// delivered acknowledges the records at idx in b and reports them sent.
func (ln *lane) delivered(b *batch, idx []int) {
	pos, times := b.pos[:0], b.times[:0]
	for _, i := range idx {
		pos = append(pos, b.recs[i].Pos)
		times = append(times, b.msgs[i].Time)
	}
	b.pos, b.times = pos, times
	ln.l.ack(pos)
	if f := ln.l.opts.Metrics.Sent; f != nil {
		f(ln.kind, len(idx), time.Since(b.sentAt), times)
	}
}

// indexes is 0, 1, 2, ... shared read-only by allIndexes.
var indexes = func() []int {
	s := make([]int, 1<<14)
	for i := range s {
		s[i] = i
	}
	return s
}()

// allIndexes returns 0..n-1; the slice must not be modified.
func allIndexes(n int) []int {
	if n <= len(indexes) {
		return indexes[:n:n]
	}
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

func (ln *lane) hasFailed() bool {
	ln.mu.Lock()
	defer ln.mu.Unlock()
	return len(ln.failed) > 0
}

// recover waits for every batch in flight, dead-letters what was refused
// for good, and after a backoff sends the rest again in queue order. It
// returns early when ctx is done: what was not sent stays in the buffer.
func (ln *lane) recover(ctx context.Context) {
	held := 0
	defer func() {
		for ; held > 0; held-- {
			<-ln.slots
		}
	}()
	for held < cap(ln.slots) {
		select {
		case ln.slots <- struct{}{}:
			held++
		case <-ctx.Done():
			return
		}
	}
	ln.mu.Lock()
	failed := ln.failed
	ln.failed = nil
	ln.mu.Unlock()
	// Nothing of the lane is in flight: the sink may take its messages
	// again, and the first it gets are the failed ones, in queue order.
	if f, ok := ln.l.sink.(Fencer); ok {
		f.Reopen(ln.kind)
	}
	slices.SortFunc(failed, func(a, b *batch) int {
		return cmp.Or(cmp.Compare(a.seq, b.seq), cmp.Compare(a.origOf(0), b.origOf(0)))
	})

	var retry []*batch
	var lastErr, sharedErr error
	suspects := 0
	refused := false
	for _, b := range failed {
		for reason, idx := range b.dead {
			recs := make([]buffer.Record, len(idx))
			for j, i := range idx {
				recs[j] = b.recs[i]
			}
			if !ln.deadLetter(recs, reason) {
				b.retry = append(b.retry, idx...)
			}
		}
		if len(b.retry) == 0 {
			continue
		}
		if b.held && len(b.retry) == len(b.msgs) {
			// Never sent: it goes again as it was.
			b.retry, b.held = nil, false
			retry = append(retry, b)
			continue
		}
		slices.Sort(b.retry)
		for _, i := range b.retry {
			if b.isSuspect(i) {
				suspects++
			}
		}
		retry = append(retry, b.pieces()...)
		if lastErr == nil {
			lastErr = b.lastErr
		}
		if sharedErr == nil {
			sharedErr = b.sharedErr
		}
		refused = refused || b.refused
	}
	if len(retry) == 0 {
		return
	}
	if sharedErr != nil {
		ln.l.quiet.Log(ln.l.log, slog.LevelWarn, "refused-with-batch/"+ln.kind.String(), int64(suspects),
			"the broker refused whole batches for a reason that may be one record's; sending their records again in smaller batches, one record alone at last, so that only a record refused on its own is dead-lettered",
			"lane", ln.kind.String(), "records", suspects, "err", sharedErr)
	}
	if lastErr == nil {
		// Only fenced batches, nothing that failed at the broker (the
		// failure behind the fence was a refusal for good, now
		// dead-lettered, or came as its batch succeeded): send them again
		// at once.
		ln.resend(ctx, retry, held)
		held = 0
		return
	}
	wait := ln.l.backoff(int(ln.failures.Add(1) - 1))
	n := 0
	for _, b := range retry {
		n += len(b.msgs)
	}
	lane := ln.kind.String()
	if refused {
		ln.setState(StateRefused, lastErr)
		ln.l.quiet.Log(ln.l.log, slog.LevelError, "refused/"+lane, int64(n),
			"the broker refuses the records: fix the gateway's credentials or the broker's ACL or topic policy; they stay in the buffer and are retried, nothing is dead-lettered",
			"lane", lane, "records", n, "retry_in", wait.Round(time.Millisecond), "err", lastErr)
	} else {
		ln.setState(StateBackingOff, lastErr)
		ln.l.quiet.Log(ln.l.log, slog.LevelWarn, "retry/"+lane, int64(n), "send failed; retrying",
			"lane", lane, "records", n, "retry_in", wait.Round(time.Millisecond), "err", lastErr)
	}
	if !ln.wait(ctx, wait, !refused) {
		return
	}
	ln.resend(ctx, retry, held)
	held = 0
}

// resend releases the held slots and sends retry again in order, each
// batch as a slot frees; an isolated piece goes with nothing else in
// flight. Once one fails, the rest is queued behind it unsent.
func (ln *lane) resend(ctx context.Context, retry []*batch, held int) {
	for ; held > 0; held-- {
		<-ln.slots
	}
	for k, b := range retry {
		if ln.hasFailed() {
			for _, rest := range retry[k:] {
				ln.hold(rest)
			}
			return
		}
		if b.isolate {
			if !ln.produceIsolated(ctx, b) {
				return
			}
			continue
		}
		select {
		case ln.slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		if f := ln.l.opts.Metrics.Retried; f != nil {
			f()
		}
		ln.produce(b)
	}
}

// produceIsolated sends b with nothing else of the lane in flight and
// waits until it has settled. It reports false when ctx ended first.
func (ln *lane) produceIsolated(ctx context.Context, b *batch) bool {
	held := 0
	defer func() {
		for ; held > 0; held-- {
			<-ln.slots
		}
	}()
	for held < cap(ln.slots) {
		select {
		case ln.slots <- struct{}{}:
			held++
		case <-ctx.Done():
			return false
		}
	}
	if f := ln.l.opts.Metrics.Retried; f != nil {
		f()
	}
	held-- // b's slot: its done releases it
	ln.produce(b)
	select {
	case ln.slots <- struct{}{}:
		held++
	case <-ctx.Done():
		return false
	}
	return true
}

// wait waits d, or less when probe is set, the sink is a Prober and a
// probe finds the broker answering again after one found it unreachable.
// It reports false when ctx ended first.
func (ln *lane) wait(ctx context.Context, d time.Duration, probe bool) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	prober, ok := ln.l.sink.(Prober)
	var tick <-chan time.Time
	if probe && ok {
		tk := time.NewTicker(ln.l.opts.ProbeInterval)
		defer tk.Stop()
		tick = tk.C
	}
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		case <-tick:
			pctx, cancel := context.WithTimeout(ctx, 2*ln.l.opts.ProbeInterval)
			err := prober.Probe(pctx)
			cancel()
			if err != nil {
				ln.probeDown = true
				continue
			}
			if ln.probeDown {
				ln.probeDown = false
				ln.l.log.Info("broker answers again; retrying now", "lane", ln.kind.String())
				return true
			}
		}
	}
}

// deadLetter stores recs in the dead-letter queue and acknowledges them.
// It reports whether they were stored.
func (ln *lane) deadLetter(recs []buffer.Record, reason string) bool {
	dl := ln.l.opts.DeadLetters
	if dl == nil {
		ln.l.log.Error("records refused for good but no dead-letter queue; they stay in the buffer", "records", len(recs), "reason", reason)
		return false
	}
	data := make([][]byte, len(recs))
	pos := make([]buffer.Pos, len(recs))
	for i, r := range recs {
		data[i], pos[i] = r.Data, r.Pos
	}
	if err := dl.Put(data, reason); err != nil {
		ln.l.log.Error("dead-letter queue write failed; records stay in the buffer and are retried", "records", len(recs), "reason", reason, "err", err)
		return false
	}
	ln.l.ack(pos)
	if f := ln.l.opts.Metrics.DeadLettered; f != nil {
		f(reason, len(recs))
	}
	ln.l.log.Error("records refused by the broker for good, moved to the dead-letter queue", "records", len(recs), "reason", reason)
	return true
}

// reasonOf is the dead-letter reason of a sink error: its text up to the
// first colon, so that a Kafka error gives its code name
// (MESSAGE_TOO_LARGE).
func reasonOf(err error) string {
	s := err.Error()
	for i := 0; i < len(s); i++ {
		if s[i] == ':' {
			return s[:i]
		}
	}
	return s
}

// backoff returns the wait before retry number attempt+1: exponential from
// BackoffMin, capped at BackoffMax, with jitter over its upper half.
func (l *Loop) backoff(attempt int) time.Duration {
	d := l.opts.BackoffMin
	for i := 0; i < attempt && d < l.opts.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, l.opts.BackoffMax)
	half := d / 2
	return half + rand.N(half+1)
}

func (ln *lane) setState(s State, err error) {
	ln.stateMu.Lock()
	changed := ln.state != s
	ln.state = s
	ln.stateMu.Unlock()
	if changed && s == StateConnected {
		ln.l.log.Info("sink sending again", "lane", ln.kind.String())
	}
	if cb := ln.l.opts.OnState; cb != nil && (changed || err != nil) {
		cb(ln.kind, s, err)
	}
}
