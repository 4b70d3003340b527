package ingest_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/iot-producer/iot-producer/agent/ingest"
	"github.com/iot-producer/iot-producer/buffer"
	"github.com/iot-producer/iot-producer/drivers"
	"github.com/iot-producer/iot-producer/record"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func openBuffer(t *testing.T, path string) *buffer.Buffer {
	t.Helper()
	b, err := buffer.Open(path, buffer.Options{Queues: []string{"q"}, NoSync: true, FlushInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func samples(devices, tags int, at time.Time) []drivers.Sample {
	out := make([]drivers.Sample, 0, devices*tags)
	for d := range devices {
		for g := range tags {
			out = append(out, drivers.Sample{
				Device: fmt.Sprintf("dev-%d", d), Tag: fmt.Sprintf("tag-%d", g),
				Value: drivers.Float(float64(d*100 + g)), ReadTime: at,
			})
		}
	}
	return out
}

// failingStore is a failpoint around the real buffer: while fail is set,
// Append fails as a full disk would, before touching the file.
type failingStore struct {
	*buffer.Buffer
	fail     atomic.Bool
	failures atomic.Int64
}

func (f *failingStore) Append(records [][]byte, meta map[string][]byte) error {
	if f.fail.Load() {
		f.failures.Add(1)
		return fmt.Errorf("append: %w", syscall.ENOSPC)
	}
	return f.Buffer.Append(records, meta)
}

// run starts in.Run and returns a function that stops it and returns its
// error.
func run(t *testing.T, in *ingest.Ingest) func() error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	var once sync.Once
	var err error
	stop := func() error {
		once.Do(func() { cancel(); err = <-done })
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// readAll decodes every record of queue q.
func readAll(t *testing.T, b *buffer.Buffer) []record.Fields {
	t.Helper()
	recs, err := b.Queue("q").Read(buffer.Start(), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]record.Fields, len(recs))
	for i, r := range recs {
		env, err := record.DecodeEnvelope(r.Data)
		if err != nil {
			t.Fatal(err)
		}
		if out[i], err = record.Decode(env.Value); err != nil {
			t.Fatal(err)
		}
		if env.Key != out[i].Device {
			t.Fatalf("envelope key %q, record device %q", env.Key, out[i].Device)
		}
	}
	return out
}

func TestSequenceNumbersContinueAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.db")
	t0 := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	for round := 1; round <= 3; round++ {
		b, err := buffer.Open(path, buffer.Options{Queues: []string{"q"}, NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		in, err := ingest.New(b, ingest.Options{GatewayID: "gw", CommitSize: 7, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		stop := run(t, in)
		for range 5 {
			in.Emit(samples(3, 2, t0))
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		if got := in.LastSeq("dev-2", "tag-1"); got != uint64(5*round) {
			t.Fatalf("round %d: last seq %d, want %d", round, got, 5*round)
		}
		last, err := ingest.LastSeqs(b)
		if err != nil {
			t.Fatal(err)
		}
		for s, n := range last {
			if n != uint64(5*round) {
				t.Errorf("round %d: %v persisted %d, want %d", round, s, n, 5*round)
			}
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
	}
	b := openBuffer(t, path)
	got := readAll(t, b)
	if len(got) != 3*5*6 {
		t.Fatalf("%d records, want %d", len(got), 90)
	}
	// Per series, the numbers are 1..15 in queue order.
	next := map[string]uint64{}
	for _, f := range got {
		k := f.Device + "/" + f.Tag
		next[k]++
		if f.Seq != next[k] {
			t.Fatalf("%s: seq %d at position %d", k, f.Seq, next[k])
		}
		if f.Gateway != "gw" || f.Epoch != b.Epoch() {
			t.Fatalf("gateway %q epoch %q, want gw and the file's epoch %q", f.Gateway, f.Epoch, b.Epoch())
		}
	}
}

// TestFreshBufferFileStartsANewEpoch: the sequence numbers of a new buffer
// file (a re-imaged gateway, a new volume) start again at 1, under a new
// epoch, so that consumers never take them for numbers already seen.
func TestFreshBufferFileStartsANewEpoch(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	type seen struct {
		epoch string
		seq   uint64
	}
	runOn := func(path string) []seen {
		b := openBuffer(t, path)
		in, err := ingest.New(b, ingest.Options{GatewayID: "gw", Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		stop := run(t, in)
		in.Emit(samples(1, 1, t0))
		in.Emit(samples(1, 1, t0.Add(time.Second)))
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		var out []seen
		for _, f := range readAll(t, b) {
			out = append(out, seen{f.Epoch, f.Seq})
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	first := runOn(filepath.Join(dir, "a.db"))
	again := runOn(filepath.Join(dir, "a.db")) // a restart: same file
	fresh := runOn(filepath.Join(dir, "b.db")) // a restart on a fresh file
	if len(first) != 2 || len(again) != 4 || len(fresh) != 2 {
		t.Fatalf("records: %v, %v, %v", first, again, fresh)
	}
	e := first[0].epoch
	if first[0] != (seen{e, 1}) || first[1] != (seen{e, 2}) || again[3] != (seen{e, 4}) {
		t.Errorf("same file: %v then %v, want one epoch and seq 1 to 4", first, again)
	}
	f := fresh[0].epoch
	if f == e || len(f) != 16 || fresh[0] != (seen{f, 1}) || fresh[1] != (seen{f, 2}) {
		t.Errorf("fresh file: %v, want a new epoch (not %s) and seq 1, 2", fresh, e)
	}
}

func TestEncodesEveryKind(t *testing.T) {
	b := openBuffer(t, filepath.Join(t.TempDir(), "b.db"))
	in, err := ingest.New(b, ingest.Options{GatewayID: "gw", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, in)
	at := time.Date(2026, 11, 26, 8, 0, 0, 5, time.UTC)
	src := at.Add(-time.Millisecond)
	values := []drivers.Value{drivers.Float(-1.25), drivers.Int(-1 << 62), drivers.Uint(1<<64 - 1), drivers.Bool(true), drivers.String("run")}
	var in1 []drivers.Sample
	for i, v := range values {
		in1 = append(in1, drivers.Sample{Device: "d", Tag: fmt.Sprint("t", i), Value: v, Quality: drivers.Quality(i % 3), ReadTime: at, SourceTime: src})
	}
	in.Emit(slices.Clone(in1)) // Emit takes the slice: keep our own
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, b)
	if len(got) != len(values) {
		t.Fatalf("%d records", len(got))
	}
	for i, f := range got {
		want := in1[i]
		var v drivers.Value
		switch f.Type {
		case record.TypeFloat:
			v = drivers.Float(f.Float)
		case record.TypeInt:
			v = drivers.Int(f.Int)
		case record.TypeUint:
			v = drivers.Uint(f.Uint)
		case record.TypeBool:
			v = drivers.Bool(f.Bool)
		case record.TypeString:
			v = drivers.String(f.String)
		}
		if want.Quality == drivers.QualityBad {
			// A bad sample has no reading: its value is left out.
			v, want.Value = drivers.NoValue(v.Kind), drivers.NoValue(want.Value.Kind)
			if !f.NoValue {
				t.Errorf("record %d: bad sample with a value: %+v", i, f)
			}
		}
		if !v.Equal(want.Value) || f.Quality != want.Quality.String() || !f.ReadTime.Equal(at) || !f.SourceTime.Equal(src) || f.Seq != 1 || f.Epoch != b.Epoch() {
			t.Errorf("record %d: %+v, want %+v (epoch %s)", i, f, want, b.Epoch())
		}
	}
}

func TestFailedCommitsHoldSamplesUntilTheDiskRecovers(t *testing.T) {
	store := &failingStore{Buffer: openBuffer(t, filepath.Join(t.TempDir(), "b.db"))}
	failed := make(chan struct{}, 100)
	committed := make(chan int, 100)
	in, err := ingest.New(store, ingest.Options{
		GatewayID: "gw", CommitSize: 10, CommitInterval: time.Millisecond, RetryInterval: time.Millisecond, Logger: quiet,
		Metrics: ingest.Metrics{
			CommitFailed: func() {
				select {
				case failed <- struct{}{}:
				default:
				}
			},
			Committed: func(n int) { committed <- n },
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	store.fail.Store(true)
	stop := run(t, in)
	in.Emit(samples(5, 5, time.Now()))
	for range 3 {
		receive(t, "a failed commit", failed)
	}
	if d := store.Queue("q").Stats().Records; d != 0 {
		t.Fatalf("%d records in the queue while commits fail", d)
	}
	store.fail.Store(false)
	total := 0
	for total < 25 {
		total += receive(t, "a commit after recovery", committed)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, store.Buffer)
	if len(got) != 25 {
		t.Fatalf("%d records after recovery, want 25", len(got))
	}
	last, err := ingest.LastSeqs(store.Buffer)
	if err != nil {
		t.Fatal(err)
	}
	if len(last) != 25 {
		t.Fatalf("%d series persisted, want 25", len(last))
	}
	for s, n := range last {
		if n != 1 {
			t.Errorf("%v: last seq %d, want 1 (a failed commit must not burn numbers)", s, n)
		}
	}
}

func TestPendingBoundDropsOldestAndCounts(t *testing.T) {
	store := &failingStore{Buffer: openBuffer(t, filepath.Join(t.TempDir(), "b.db"))}
	store.fail.Store(true)
	var mu sync.Mutex
	dropped := map[string]int{}
	in, err := ingest.New(store, ingest.Options{
		GatewayID: "gw", CommitSize: 10, MaxPending: 40, RetryInterval: time.Hour, Logger: quiet,
		Metrics: ingest.Metrics{Dropped: func(reason string, n int) { mu.Lock(); dropped[reason] += n; mu.Unlock() }},
	})
	if err != nil {
		t.Fatal(err)
	}
	// Emit without Run: nothing is committed, so the bound must act, and
	// Emit must return at once however much arrives.
	for i := range 10 {
		in.Emit([]drivers.Sample{{Device: "d", Tag: "t", Value: drivers.Int(int64(i)), ReadTime: time.Now()}})
		in.Emit(samples(1, 9, time.Now()))
	}
	mu.Lock()
	got := dropped["pending_full"]
	mu.Unlock()
	if got != 100-40 {
		t.Fatalf("dropped %d, want 60", got)
	}
	store.fail.Store(false)
	stop := run(t, in)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	recs := readAll(t, store.Buffer)
	if len(recs) != 40 {
		t.Fatalf("%d records committed, want the newest 40", len(recs))
	}
	// The newest samples were kept: the last "d/t" value is 9.
	var lastDT record.Fields
	for _, r := range recs {
		if r.Device == "d" {
			lastDT = r
		}
	}
	if lastDT.Int != 9 {
		t.Fatalf("newest d/t sample not kept: %+v", lastDT)
	}
}

func TestEmitAfterStopIsCounted(t *testing.T) {
	b := openBuffer(t, filepath.Join(t.TempDir(), "b.db"))
	var dropped atomic.Int64
	in, err := ingest.New(b, ingest.Options{GatewayID: "gw", Logger: quiet,
		Metrics: ingest.Metrics{Dropped: func(_ string, n int) { dropped.Add(int64(n)) }}})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, in)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	in.Emit(samples(2, 2, time.Now()))
	if dropped.Load() != 4 {
		t.Fatalf("dropped %d after stop, want 4", dropped.Load())
	}
}

func TestFinalCommitFailureIsReported(t *testing.T) {
	store := &failingStore{Buffer: openBuffer(t, filepath.Join(t.TempDir(), "b.db"))}
	in, err := ingest.New(store, ingest.Options{GatewayID: "gw", CommitInterval: time.Hour, RetryInterval: time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, in)
	store.fail.Store(true)
	in.Emit(samples(2, 3, time.Now()))
	err = stop()
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Run returned %v, want the commit error", err)
	}
}

// receive waits for a value from ch, failing t after two minutes: a bound
// for a stuck stage, generous for a loaded machine, not a speed check.
func receive[T any](t *testing.T, what string, ch <-chan T) T {
	t.Helper()
	timer := time.NewTimer(2 * time.Minute)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
		t.Fatalf("no %s within two minutes", what)
		panic("unreachable")
	}
}

// TestRestartKeepsPending: a Run ended with ErrRestart (the agent
// restarting a stalled stage) commits nothing on its way out, Emit keeps
// taking samples, and the next Run commits them all with contiguous
// sequence numbers.
func TestRestartKeepsPending(t *testing.T) {
	b := openBuffer(t, filepath.Join(t.TempDir(), "b.db"))
	in, err := ingest.New(b, ingest.Options{GatewayID: "gw", CommitInterval: time.Hour, CommitSize: 1 << 20, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	ctx, cancel := context.WithCancelCause(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	in.Emit(samples(1, 2, t0))
	cancel(fmt.Errorf("stalled: %w", ingest.ErrRestart))
	if err := <-done; err != nil {
		t.Fatalf("Run after a restart cause: %v", err)
	}
	if got := len(readAll(t, b)); got != 0 {
		t.Fatalf("%d records committed by a restarted Run, want none", got)
	}
	in.Emit(samples(1, 2, t0.Add(time.Second)))
	if got := in.Pending(); got != 4 {
		t.Fatalf("%d samples pending, want 4", got)
	}
	stop := run(t, in)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	seqs := map[string][]uint64{}
	for _, f := range readAll(t, b) {
		seqs[f.Tag] = append(seqs[f.Tag], f.Seq)
	}
	for tag, s := range seqs {
		if len(s) != 2 || s[0] != 1 || s[1] != 2 {
			t.Errorf("%s: sequence numbers %v, want [1 2]", tag, s)
		}
	}
}
