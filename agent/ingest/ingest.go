// Package ingest owns the stage between the drivers and the buffer: it
// collects samples without ever blocking a driver, gives every sample its
// per-series sequence number, encodes it once, and commits groups of samples
// to the buffer together with the last sequence number of each series in
// the same transaction. It knows nothing of protocols or sinks.
package ingest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/iot-producer/iot-producer/drivers"
	"github.com/iot-producer/iot-producer/internal/lograte"
	"github.com/iot-producer/iot-producer/record"
)

// Store is the part of the buffer the ingest stage writes to.
type Store interface {
	// Append commits records to every queue and the metadata entries in one
	// transaction; on error nothing is committed.
	Append(records [][]byte, meta map[string][]byte) error
	// Meta calls fn for every metadata entry.
	Meta(fn func(key, value []byte) error) error
	// MetaValue returns the value of one metadata entry, nil when there is
	// none.
	MetaValue(key string) ([]byte, error)
	// Epoch is the stream epoch of the store: the sequence numbers in its
	// metadata count within it, and every record carries it.
	Epoch() string
}

// DropReasons lists every reason Metrics.Dropped is called with.
var DropReasons = []string{"pending_full", "stopped", "shutdown_commit_failed"}

// Metrics receives the ingest stage's counts. Any field may be nil.
type Metrics struct {
	Committed    func(n int)
	Dropped      func(reason string, n int)
	Pending      func(n int)
	CommitFailed func()
	CommitTime   func(d time.Duration)
}

// Options configures an Ingest.
type Options struct {
	// GatewayID is written into every record.
	GatewayID string
	// CommitInterval is the longest a sample waits for its group commit.
	// Default 10ms.
	CommitInterval time.Duration
	// CommitSize is the number of samples that triggers a commit at once.
	// Default 10000.
	CommitSize int
	// MaxPending bounds the samples held in memory while commits fail (a
	// full disk, say), and MaxPendingBytes their estimated memory. Beyond
	// either, samples are dropped (the oldest pending ones, or with
	// DropNewest the ones arriving) and counted; they are still numbered,
	// so their sequence numbers are skipped and the loss shows downstream
	// as a gap. Defaults 200000 samples and 16 MiB.
	MaxPending      int
	MaxPendingBytes int64
	// DropNewest drops the samples arriving when pending is full instead
	// of the oldest pending ones (buffer.drop_policy: drop_newest).
	DropNewest bool
	// RetryInterval is the wait between attempts of a failed commit.
	// Default 1s.
	RetryInterval time.Duration
	// SeriesIdle is how long a series may go without a sample before the
	// ingest stage forgets it: its last sequence number stays on disk, in
	// an entry of its own, and is read back when the series comes again.
	// It bounds the memory of series that come and go. 0: never.
	SeriesIdle time.Duration
	Logger     *slog.Logger
	Metrics    Metrics
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// seqKeyPrefix starts every metadata key holding a series' last sequence
// number: "seq/" + device + "\x00" + tag.
const seqKeyPrefix = "seq/"

// Series names one series: a device's tag.
type Series struct{ Device, Tag string }

// LastSeqs reads the last committed sequence number of every series from
// store's metadata.
func LastSeqs(store Store) (map[Series]uint64, error) {
	pages, err := loadSeqPages(store)
	if err != nil {
		return nil, err
	}
	out := pages.cold
	err = pages.each(func(_ uint32, k Series, seq uint64) { out[k] = seq })
	if err != nil {
		return nil, fmt.Errorf("load sequence numbers: %w", err)
	}
	return out, nil
}

// Ingest is the ingest stage. Emit may be called from any goroutine; Run
// must be running for samples to be committed.
type Ingest struct {
	store Store
	opts  Options
	log   *slog.Logger
	// quiet holds back repeats of the drop and commit-failure lines.
	quiet lograte.Limiter
	// failing is set while commits fail; owned by Run.
	failing bool

	mu       sync.Mutex
	pending  sampleQueue
	wake     chan struct{}
	stopping bool
	// dropped counts the samples dropped, by reason, since the buffer file
	// was created (drops.go); guarded by mu.
	dropped map[string]uint64

	// epoch is the store's stream epoch, written into every record.
	epoch string

	// Owned by Run.
	series *seriesTable
	start  time.Time // of the series table's ticks
	// lastPrune is the tick of the last pruning of idle series.
	lastPrune uint32
	// taken are samples taken from pending whose series could not all be
	// resolved yet (a failed read of the buffer); they go first.
	taken *takenItems
	held  *commit // a commit that failed and is retried before anything else
	// The commit being built and its buffers, reused from one commit to
	// the next: the buffer copies what it is given, so once a commit has
	// succeeded its memory is free again. A held commit keeps them until
	// it succeeds; nothing new is encoded meanwhile.
	next    commit
	arena   []byte
	handles []uint32 // the handle of each sample of the commit being built
	offsets []int    // where each record of the commit being built starts in arena
	// enc encodes the records, reusing what it encoded for the record
	// before (a batch shares its device and read time).
	enc record.Encoder
	// persisted is dropped as the last commit wrote it.
	persisted map[string]uint64
}

// takenItems are items taken from pending, with the drop counters to
// commit with them.
type takenItems struct {
	items []pendingItem
	drops map[string]uint64
}

// commit is one group of encoded samples with the sequence numbers they
// advance.
type commit struct {
	records [][]byte
	meta    map[string][]byte
	values  []byte // backing of meta's values
	samples int
	// drops are the drop counters it persists (nil: unchanged).
	drops map[string]uint64
}

// New loads the stream epoch and the last sequence number of every series
// from store.
func New(store Store, opts Options) (*Ingest, error) {
	if opts.CommitInterval <= 0 {
		opts.CommitInterval = 10 * time.Millisecond
	}
	if opts.CommitSize <= 0 {
		opts.CommitSize = 10000
	}
	if opts.MaxPending <= 0 {
		opts.MaxPending = 200000
	}
	if opts.MaxPending < opts.CommitSize {
		opts.MaxPending = opts.CommitSize
	}
	if opts.MaxPendingBytes <= 0 {
		opts.MaxPendingBytes = 16 << 20
	}
	if opts.RetryInterval <= 0 {
		opts.RetryInterval = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	in := &Ingest{
		store:  store,
		opts:   opts,
		log:    opts.Logger.With("component", "ingest"),
		wake:   make(chan struct{}, 1),
		series: newSeriesTable(),
		start:  opts.Now(),
		epoch:  store.Epoch(),
	}
	if in.epoch == "" {
		return nil, fmt.Errorf("ingest: the store has no stream epoch")
	}
	pages, err := loadSeqPages(store)
	if err != nil {
		return nil, err
	}
	t := in.series
	if err := pages.each(t.set); err != nil {
		return nil, fmt.Errorf("load sequence numbers: %w", err)
	}
	for h, live := range t.live {
		if !live {
			t.free = append(t.free, uint32(h))
		}
	}
	// Entries of series in no page are read when the series is seen.
	t.cold = len(pages.cold) > 0
	// The deltas on disk stay until the next checkpoint writes the pages
	// they changed.
	for n := range pages.deltas {
		t.nextDelta = max(t.nextDelta, n+1)
	}
	t.deltaKeys, t.deltaBytes = pages.deltaKeys, pages.deltaBytes
	for p := range pages.touched {
		if int(p) < len(t.pages) {
			t.pages[p].stale = true
			t.stale = append(t.stale, p)
		}
	}
	if in.dropped, err = loadDrops(store); err != nil {
		return nil, err
	}
	in.persisted = maps.Clone(in.dropped)
	return in, nil
}

// LastSeq returns the last sequence number committed or being committed
// for a series; 0 when it has none. It must not run beside Run.
func (in *Ingest) LastSeq(device, tag string) uint64 {
	if h, ok := in.series.ids.get(Series{device, tag}, in.series.names); ok {
		return in.series.seqs[h]
	}
	v, err := in.store.MetaValue(SeqKey(device, tag))
	if err != nil || len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

// SeriesInMemory returns the number of series the ingest stage holds in memory.
// It must not run beside Run.
func (in *Ingest) SeriesInMemory() int { return in.series.ids.len() }

// Emit queues samples for the next group commit. It never blocks on the
// disk: when more than MaxPending samples (or MaxPendingBytes) wait, the
// oldest are dropped, or with DropNewest these samples, and counted; the
// dropped samples still take their sequence numbers (see sampleQueue).
// Emit after Run has returned drops and counts the samples.
func (in *Ingest) Emit(samples []drivers.Sample) {
	if len(samples) == 0 {
		return
	}
	in.mu.Lock()
	if in.stopping {
		in.mu.Unlock()
		in.drop("stopped", len(samples))
		drivers.ReleaseBatch(samples)
		return
	}
	var over int
	size := samplesBytes(samples)
	full := in.pending.n+len(samples) > in.opts.MaxPending || in.pending.bytes+size > in.opts.MaxPendingBytes
	switch {
	case !full:
		in.pending.push(samples, size)
	case in.opts.DropNewest:
		in.pending.pushDropped(samples)
		over = len(samples)
	default:
		in.pending.push(samples, size)
		over = in.pending.dropOldest(in.opts.MaxPending, in.opts.MaxPendingBytes)
	}
	if over > 0 {
		in.dropped["pending_full"] += uint64(over)
	}
	n := in.pending.n
	in.mu.Unlock()
	if over > 0 {
		in.drop("pending_full", over)
	}
	if m := in.opts.Metrics.Pending; m != nil {
		m(n)
	}
	if n >= in.opts.CommitSize {
		in.signal()
	}
}

func (in *Ingest) signal() {
	select {
	case in.wake <- struct{}{}:
	default:
	}
}

func (in *Ingest) drop(reason string, n int) {
	if m := in.opts.Metrics.Dropped; m != nil {
		m(reason, n)
	}
	in.quiet.Log(in.log, slog.LevelWarn, dropLogKey(reason), int64(n), "samples dropped before commit", "reason", reason, "samples", n)
}

// dropLogKey is the key of reason's drop lines for the rate limiter, so
// that each reason is logged at most once per interval, with the counts
// held back.
func dropLogKey(reason string) string {
	switch reason {
	case "pending_full":
		return "dropped/pending_full"
	case "stopped":
		return "dropped/stopped"
	}
	return "dropped/" + reason
}

// ErrRestart, as the cause of Run's context (context.WithCancelCause), ends
// Run without the final commit: what is pending stays in memory for the
// next Run, and Emit goes on taking samples meanwhile. The agent restarts a
// stalled stage so.
var ErrRestart = errors.New("ingest restarted")

// Run commits pending samples until ctx is cancelled, then commits what is
// still pending (retrying a failed commit for at most one RetryInterval)
// and returns. Samples emitted after that are dropped and counted. A
// context cancelled with ErrRestart ends Run at once, without that final
// commit; Run may then be called again.
func (in *Ingest) Run(ctx context.Context) error {
	timer := time.NewTimer(in.opts.CommitInterval)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			if errors.Is(context.Cause(ctx), ErrRestart) {
				return nil
			}
			return in.final()
		case <-in.wake:
		case <-timer.C:
		}
		if err := in.commitPending(); err != nil {
			in.failing = true
			in.quiet.Log(in.log, slog.LevelError, "commit", 1, "buffer commit failed; samples held in memory and retried", "err", err)
			timer.Reset(in.opts.RetryInterval)
			continue
		}
		if in.failing {
			in.failing = false
			in.log.Info("buffer commits succeed again")
		}
		timer.Reset(in.opts.CommitInterval)
	}
}

// final commits what is pending at shutdown.
func (in *Ingest) final() error {
	in.mu.Lock()
	in.stopping = true
	in.mu.Unlock()
	err := in.commitPending()
	if err != nil {
		in.log.Error("final buffer commit failed; retrying once", "err", err)
		time.Sleep(in.opts.RetryInterval)
		err = in.commitPending()
	}
	if err != nil {
		n := in.pendingCount()
		if in.held != nil {
			n += in.held.samples
		}
		if in.taken != nil {
			for _, it := range in.taken.items {
				n += len(it.samples)
			}
		}
		in.mu.Lock()
		in.dropped["shutdown_commit_failed"] += uint64(n)
		in.mu.Unlock()
		in.drop("shutdown_commit_failed", n)
		// Their numbers and the counters must reach the file (shutdown.go).
		if lerr := in.commitLoss(); lerr != nil {
			in.log.Error("the loss at shutdown could not be recorded in the buffer: a restart numbers these samples again", "samples", n, "err", lerr)
			return fmt.Errorf("final commit: %d samples not committed, nor their loss (%w): %w", n, lerr, err)
		}
		in.log.Warn("the loss at shutdown is recorded in the buffer: its sequence numbers stay a gap downstream", "samples", n)
		return fmt.Errorf("final commit: %d samples not committed (their loss is recorded): %w", n, err)
	}
	return nil
}

// Pending returns the number of samples emitted and not yet committed.
func (in *Ingest) Pending() int { return in.pendingCount() }

func (in *Ingest) pendingCount() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.pending.n
}

// commitPending commits the held commit, if any, then everything pending in
// groups of at most CommitSize.
func (in *Ingest) commitPending() error {
	for {
		if in.held == nil {
			if in.taken == nil {
				items, drops := in.take()
				if len(items) == 0 && drops == nil {
					return nil
				}
				in.taken = &takenItems{items: items, drops: drops}
			}
			if err := in.resolve(in.taken.items); err != nil {
				return err
			}
			in.held = in.encode(in.taken.items, in.taken.drops)
			// The samples are encoded: their batches go back to the
			// drivers.
			for _, it := range in.taken.items {
				drivers.ReleaseBatch(it.samples)
			}
			in.taken = nil
		}
		start := in.opts.Now()
		if err := in.store.Append(in.held.records, in.held.meta); err != nil {
			if m := in.opts.Metrics.CommitFailed; m != nil {
				m()
			}
			return err
		}
		if m := in.opts.Metrics.CommitTime; m != nil {
			m(in.opts.Now().Sub(start))
		}
		if m := in.opts.Metrics.Committed; m != nil {
			m(in.held.samples)
		}
		if in.held.drops != nil {
			in.persisted = in.held.drops
		}
		in.held = nil
	}
}

// take removes up to CommitSize samples from the head of pending, as the
// batches the drivers emitted and the drop markers between them, and
// returns the drop counters when they changed since the last commit.
func (in *Ingest) take() ([]pendingItem, map[string]uint64) {
	in.mu.Lock()
	defer in.mu.Unlock()
	items := in.pending.popBatches(in.opts.CommitSize)
	if m := in.opts.Metrics.Pending; m != nil {
		m(in.pending.n)
	}
	var drops map[string]uint64
	if !maps.Equal(in.dropped, in.persisted) {
		drops = maps.Clone(in.dropped)
	}
	return items, drops
}

// resolve gives every series of items a handle and leaves the handle of
// each sample, in order, in in.handles. A series new to the table may have
// its last sequence number on disk (pruned earlier): reading it may fail,
// and resolve can be called again with the same items.
func (in *Ingest) resolve(items []pendingItem) error {
	t := in.series
	tick := in.tick()
	in.handles = in.handles[:0]
	for _, item := range items {
		if m := item.dropped; m != nil {
			// A shape's handles are looked up once and kept until a
			// pruning frees handles: under overload every commit numbers
			// the drops of every device.
			for sh := range m.shapes {
				if sh.gen != t.gen || len(sh.handles) != len(sh.names) {
					hs := sh.handles[:0]
					for _, k := range sh.names {
						h, err := in.handle(k)
						if err != nil {
							return err
						}
						hs = append(hs, h)
					}
					sh.handles, sh.gen = hs, t.gen
				}
				for _, h := range sh.handles {
					t.seen[h] = tick
				}
			}
			for k := range m.series {
				h, err := in.handle(k)
				if err != nil {
					return err
				}
				t.seen[h] = tick
			}
		}
		batch := item.samples
		if len(batch) == 0 {
			continue
		}
		// A driver emits the same names in the same order poll after
		// poll: the batch's shape last time gives the handles without
		// hashing a name, as long as each name is the very same string.
		sh := t.shapes[batch[0].Device]
		if sh == nil {
			// A driver's batches keep their size: no room to grow.
			sh = &shape{names: make([]shapeEntry, 0, len(batch))}
			t.shapes[batch[0].Device] = sh
		}
		for i := range batch {
			s := &batch[i]
			if i < len(sh.names) && sh.names[i].is(s) {
				h := sh.names[i].h
				t.seen[h] = tick
				in.handles = append(in.handles, h)
				continue
			}
			k := Series{s.Device, s.Tag}
			h, ok := t.ids.get(k, t.names)
			if !ok {
				var err error
				if h, err = t.add(k, in.store.MetaValue); err != nil {
					return err
				}
			}
			t.seen[h] = tick
			in.handles = append(in.handles, h)
			if i < len(sh.names) {
				sh.names[i] = shapeName(s, h)
			} else if i == len(sh.names) {
				sh.names = append(sh.names, shapeName(s, h))
			}
		}
	}
	return nil
}

// handle returns the handle of series k, giving it one when it has none.
func (in *Ingest) handle(k Series) (uint32, error) {
	if h, ok := in.series.ids.get(k, in.series.names); ok {
		return h, nil
	}
	return in.series.add(k, in.store.MetaValue)
}

// tick is the time since the ingest stage started, in whole seconds.
func (in *Ingest) tick() uint32 { return uint32(in.opts.Now().Sub(in.start) / time.Second) }

// encode numbers and encodes the samples of items, whose handles resolve
// left in in.handles, into the reused commit. The sequence numbers advance
// in memory now; they reach the disk with the records or, if the process
// dies first, were never seen by anyone.
func (in *Ingest) encode(items []pendingItem, drops map[string]uint64) *commit {
	c := &in.next
	c.records = c.records[:0]
	c.samples = 0
	c.drops = drops
	t := in.series
	arena := in.arena[:0]
	var fields record.Fields
	fields.Gateway = in.opts.GatewayID
	fields.Epoch = in.epoch
	offsets := in.offsets[:0] // record starts; the arena may move while it grows
	handles := in.handles
	for _, item := range items {
		// Dropped samples take their numbers, which nothing will carry:
		// a gap downstream shows the loss.
		if m := item.dropped; m != nil {
			for sh, n := range m.shapes {
				for _, h := range sh.handles {
					t.seqs[h] += n
					t.markValue(h)
				}
			}
			for k, n := range m.series {
				h, _ := t.ids.get(k, t.names)
				t.seqs[h] += n
				t.markValue(h)
			}
		}
		batch := item.samples
		for i := range batch {
			s := &batch[i]
			h := handles[0]
			handles = handles[1:]
			t.seqs[h]++
			t.markValue(h)
			fillFields(&fields, s, t.seqs[h])
			offsets = append(offsets, len(arena))
			// The envelope around the JSON value, with the epoch of both.
			arena = in.enc.Append(arena, &fields)
		}
		c.samples += len(batch)
	}
	offsets = append(offsets, len(arena))
	for i := 0; i+1 < len(offsets); i++ {
		c.records = append(c.records, arena[offsets[i]:offsets[i+1]:offsets[i+1]])
	}
	in.arena, in.offsets = arena, offsets
	if idle := in.opts.SeriesIdle; idle > 0 {
		// Forget the series idle for longer than SeriesIdle, looking at
		// most every SeriesIdle/4.
		tick, every := in.tick(), uint32(max(idle/4, time.Second)/time.Second)
		if tick-in.lastPrune >= every {
			in.lastPrune = tick
			if secs := uint32(idle / time.Second); tick > secs {
				if n := t.prune(tick - secs); n > 0 {
					in.log.Info("idle series forgotten; their last sequence numbers stay in the buffer", "series", n, "idle", idle)
				}
			}
		}
	}
	if c.meta == nil {
		c.meta = make(map[string][]byte)
	}
	clear(c.meta)
	c.values = slices.Grow(c.values[:0], t.metaBytes())
	c.values = t.appendMeta(c.meta, c.values)
	for reason, n := range drops {
		c.meta[dropKeyPrefix+reason] = binary.BigEndian.AppendUint64(nil, n)
	}
	return c
}

// SeqKey is the metadata key under which the last sequence number of a
// series is kept.
func SeqKey(device, tag string) string { return seqKeyPrefix + device + "\x00" + tag }

func fillFields(f *record.Fields, s *drivers.Sample, seq uint64) {
	f.Device = s.Device
	f.Tag = s.Tag
	f.Seq = seq
	f.Quality = s.Quality.String()
	f.Status = s.Status
	f.ReadTime = s.ReadTime
	f.SourceTime = s.SourceTime
	f.Type = s.Value.Kind.String()
	// A bad sample has no reading: whatever its Value holds is left out.
	f.NoValue = !s.HasValue()
	switch s.Value.Kind {
	case drivers.KindFloat:
		f.Float = s.Value.F
	case drivers.KindInt:
		f.Int = s.Value.I
	case drivers.KindUint:
		f.Uint = s.Value.U
	case drivers.KindBool:
		f.Bool = s.Value.B
	case drivers.KindString:
		f.String = s.Value.S
	}
}
