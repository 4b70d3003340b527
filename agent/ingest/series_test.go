package ingest_test

import (
	"encoding/binary"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iot-producer/iot-producer/agent/ingest"
	"github.com/iot-producer/iot-producer/drivers"
)

// clock is a settable clock for Options.Now.
type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *clock) add(d time.Duration) { c.ns.Add(int64(d)) }
func newClock(t0 time.Time) *clock   { c := &clock{}; c.ns.Store(t0.UnixNano()); return c }
func committedChan() (chan int, func(int)) {
	ch := make(chan int, 1000)
	return ch, func(n int) { ch <- n }
}

// waitCommitted waits until commits have reported n samples.
func waitCommitted(t *testing.T, ch chan int, n int) {
	t.Helper()
	for got := 0; got < n; {
		select {
		case k := <-ch:
			got += k
		case <-time.After(30 * time.Second):
			t.Fatalf("%d of %d samples committed after 30s", got, n)
		}
	}
}

// TestIdleSeriesArePrunedAndResumed: a series idle for longer than
// SeriesIdle leaves memory with its last sequence number kept in the
// buffer, and numbering resumes from it when the series comes back.
// Series that come and go do not pile up in memory.
func TestIdleSeriesArePrunedAndResumed(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	clk := newClock(t0)
	b := openBuffer(t, filepath.Join(t.TempDir(), "b.db"))
	committed, onCommit := committedChan()
	in, err := ingest.New(b, ingest.Options{GatewayID: "gw", Logger: quiet, Now: clk.now, SeriesIdle: 10 * time.Second,
		Metrics: ingest.Metrics{Committed: onCommit}})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, in)
	emit := func(device string, tags int) {
		var batch []drivers.Sample
		for g := range tags {
			batch = append(batch, drivers.Sample{Device: device, Tag: "t" + string(rune('a'+g)), Value: drivers.Int(1), ReadTime: clk.now()})
		}
		in.Emit(batch)
		waitCommitted(t, committed, tags)
	}
	cold := func(device, tag string) uint64 {
		t.Helper()
		v, err := b.MetaValue(ingest.SeqKey(device, tag))
		if err != nil {
			t.Fatal(err)
		}
		if v == nil {
			return 0
		}
		return binary.BigEndian.Uint64(v)
	}
	emit("old", 2)
	emit("old", 2)
	clk.add(20 * time.Second)
	emit("kept", 2) // this commit forgets "old"
	if got := cold("old", "ta"); got != 2 {
		t.Fatalf("pruned series old/ta: seq entry %d, want 2", got)
	}
	emit("old", 1) // back: numbering resumes
	if got := cold("old", "ta"); got != 0 {
		t.Fatalf("resumed series old/ta: its own seq entry %d is still there", got)
	}
	// Series that come and go: 50 rounds of 20 new ones.
	for r := range 50 {
		clk.add(20 * time.Second)
		emit("gone-"+string(rune('A'+r)), 20)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := in.SeriesInMemory(); n > 40 {
		t.Errorf("%d series in memory after 50 rounds of 20 series idle for 20s, want at most 40", n)
	}
	var oldTa []uint64
	for _, f := range readAll(t, b) {
		if f.Device == "old" && f.Tag == "ta" {
			oldTa = append(oldTa, f.Seq)
		}
	}
	if len(oldTa) != 3 || oldTa[0] != 1 || oldTa[1] != 2 || oldTa[2] != 3 {
		t.Fatalf("old/ta numbered %v, want [1 2 3]", oldTa)
	}
	last, err := ingest.LastSeqs(b)
	if err != nil {
		t.Fatal(err)
	}
	want := map[ingest.Series]uint64{{Device: "old", Tag: "ta"}: 3, {Device: "old", Tag: "tb"}: 2, {Device: "kept", Tag: "ta"}: 1, {Device: "gone-A", Tag: "ta"}: 1}
	for s, n := range want {
		if last[s] != n {
			t.Errorf("LastSeqs[%v] = %d, want %d", s, last[s], n)
		}
	}
	if len(last) != 4+50*20 {
		t.Errorf("LastSeqs holds %d series, want %d", len(last), 4+50*20)
	}
}

// TestSequenceEntriesOfEarlierVersions: a buffer whose series have an
// entry each (as earlier versions wrote them) numbers on from them, and
// the entry of a series goes once its number lives in a page.
func TestSequenceEntriesOfEarlierVersions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.db")
	b := openBuffer(t, path)
	meta := map[string][]byte{
		ingest.SeqKey("dev-0", "tag-0"): binary.BigEndian.AppendUint64(nil, 41),
		ingest.SeqKey("dev-9", "tag-9"): binary.BigEndian.AppendUint64(nil, 7),
	}
	if err := b.Append(nil, meta); err != nil {
		t.Fatal(err)
	}
	in, err := ingest.New(b, ingest.Options{GatewayID: "gw", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, in)
	in.Emit(samples(1, 2, time.Now()))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	got := map[string]uint64{}
	for _, f := range readAll(t, b) {
		got[f.Device+"/"+f.Tag] = f.Seq
	}
	if got["dev-0/tag-0"] != 42 || got["dev-0/tag-1"] != 1 {
		t.Fatalf("numbered %v, want dev-0/tag-0 42 and dev-0/tag-1 1", got)
	}
	if v, err := b.MetaValue(ingest.SeqKey("dev-0", "tag-0")); err != nil || v != nil {
		t.Fatalf("the entry of dev-0/tag-0 is still there (%v, %v)", v, err)
	}
	last, err := ingest.LastSeqs(b)
	if err != nil {
		t.Fatal(err)
	}
	want := map[ingest.Series]uint64{{Device: "dev-0", Tag: "tag-0"}: 42, {Device: "dev-0", Tag: "tag-1"}: 1, {Device: "dev-9", Tag: "tag-9"}: 7}
	if len(last) != len(want) {
		t.Fatalf("LastSeqs %v, want %v", last, want)
	}
	for s, n := range want {
		if last[s] != n {
			t.Errorf("LastSeqs[%v] = %d, want %d", s, last[s], n)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopened: the pages and the remaining entry give the same numbers.
	b = openBuffer(t, path)
	in, err = ingest.New(b, ingest.Options{GatewayID: "gw", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	for s, n := range want {
		if got := in.LastSeq(s.Device, s.Tag); got != n {
			t.Errorf("reopened: LastSeq(%v) = %d, want %d", s, got, n)
		}
	}
}

// TestManySeriesInPages: more series than fit a page, over several
// commits and a reopen, keep their numbers.
func TestManySeriesInPages(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.db")
	t0 := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	for round := 1; round <= 2; round++ {
		b := openBuffer(t, path)
		in, err := ingest.New(b, ingest.Options{GatewayID: "gw", CommitSize: 333, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		stop := run(t, in)
		for range 3 {
			in.Emit(samples(30, 70, t0))
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		last, err := ingest.LastSeqs(b)
		if err != nil {
			t.Fatal(err)
		}
		if len(last) != 30*70 {
			t.Fatalf("round %d: %d series persisted, want %d", round, len(last), 30*70)
		}
		for s, n := range last {
			if n != uint64(3*round) {
				t.Fatalf("round %d: %v persisted %d, want %d", round, s, n, 3*round)
			}
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSameNamesEveryPoll: batches that reuse the very same name strings
// poll after poll (as drivers emit them), in changing subsets and orders,
// across the pruning of idle series whose handles go to new ones, are
// numbered per series without gaps.
func TestSameNamesEveryPoll(t *testing.T) {
	clk := newClock(time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC))
	b := openBuffer(t, filepath.Join(t.TempDir(), "b.db"))
	committed, onCommit := committedChan()
	in, err := ingest.New(b, ingest.Options{GatewayID: "gw", Logger: quiet, Now: clk.now, SeriesIdle: 10 * time.Second,
		Metrics: ingest.Metrics{Committed: onCommit}})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, in)
	devA, devB := "dev-a", "dev-b"
	tags := []string{"t0", "t1", "t2", "t3"}
	emit := func(device string, order ...int) {
		batch := drivers.NewBatch(len(order))
		for _, i := range order {
			batch = append(batch, drivers.Sample{Device: device, Tag: tags[i], Value: drivers.Int(1), ReadTime: clk.now()})
		}
		in.Emit(batch)
		waitCommitted(t, committed, len(order))
	}
	want := map[string][]uint64{}
	note := func(device string, seqs map[int]uint64, order ...int) {
		for _, i := range order {
			seqs[i]++
			want[device+"/"+tags[i]] = append(want[device+"/"+tags[i]], seqs[i])
		}
	}
	seqA, seqB := map[int]uint64{}, map[int]uint64{}
	steps := []struct {
		device  string
		seqs    map[int]uint64
		order   []int
		advance time.Duration
	}{
		{devA, seqA, []int{0, 1, 2, 3}, 0},
		{devA, seqA, []int{0, 1, 2, 3}, 0},
		{devA, seqA, []int{0, 2}, 0},          // a subset
		{devA, seqA, []int{3, 2, 1, 0}, 0},    // another order
		{devA, seqA, []int{0, 1, 2, 3, 1}, 0}, // a series twice
		{devB, seqB, []int{0, 1}, 20 * time.Second},
		{devB, seqB, []int{0, 1, 2, 3}, 0}, // this commit forgets dev-a
		{devB, seqB, []int{0, 1, 2, 3}, 0}, // dev-b on dev-a's handles
		{devA, seqA, []int{0, 1, 2, 3}, 0}, // dev-a back, same strings
		{devB, seqB, []int{0, 1, 2, 3}, 0},
	}
	for _, st := range steps {
		clk.add(st.advance)
		emit(st.device, st.order...)
		note(st.device, st.seqs, st.order...)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	got := map[string][]uint64{}
	for _, f := range readAll(t, b) {
		got[f.Device+"/"+f.Tag] = append(got[f.Device+"/"+f.Tag], f.Seq)
	}
	for k, w := range want {
		if !slices.Equal(got[k], w) {
			t.Errorf("%s numbered %v, want %v", k, got[k], w)
		}
	}
}
