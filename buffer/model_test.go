package buffer

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
	"time"
)

// modelRec is one record the model expects in a queue.
type modelRec struct {
	pos      Pos
	data     string
	appended time.Time
}

// model is the in-memory reference the buffer is checked against.
type model struct {
	queues map[string][]modelRec // unacknowledged, in order
	// unflushed holds records acknowledged since the last commit: a crash
	// may bring them back.
	unflushed map[string][]modelRec
	last      map[string]Pos // position of the last appended record
	acked     map[string][]Pos
	meta      map[string]string
}

// TestModel runs thousands of random operation sequences (append, read,
// ack, flush, close/reopen, crash) against an in-memory model. A crash is
// simulated by copying the file between commits and opening the copy: it
// must hold exactly the committed state.
func TestModel(t *testing.T) {
	seeds := 3000
	switch {
	case testing.Short():
		seeds = 120
	case raceEnabled: // about ten times slower: still a thousand sequences
		seeds = 1050
	}
	configs := []struct{ frameBytes, coalesce int }{
		{maxFrameBytes, coalesceMaxPayload},
		{1 << 10, coalesceMaxPayload},
		{1 << 10, 0},
	}
	for _, c := range configs {
		t.Run(fmt.Sprintf("frame=%d/coalesce=%d", c.frameBytes, c.coalesce), func(t *testing.T) {
			oldF, oldC := maxFrameBytes, coalesceMaxPayload
			maxFrameBytes, coalesceMaxPayload = c.frameBytes, c.coalesce
			t.Cleanup(func() { maxFrameBytes, coalesceMaxPayload = oldF, oldC })
			// Sequences share one file (each starts from an empty buffer
			// but with frame numbers continuing): creating a bbolt file
			// costs an fsync.
			path := t.TempDir() + "/model.db"
			for seed := 0; seed < seeds/len(configs); seed++ {
				runModel(t, path, uint64(seed), 40)
			}
		})
	}
}

// runModel runs one random sequence of ops on the buffer file at path,
// which must hold no records, and leaves it holding none.
func runModel(t *testing.T, path string, seed uint64, ops int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 42))
	names := []string{"kafka", "mqtt"}
	o := testOptions(names...)
	clock := &fakeClock{t: time.Unix(int64(seed)*1000, 0)}
	o.Now = clock.Now
	b, err := Open(path, o)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { b.Close() }()
	m := &model{
		queues: map[string][]modelRec{}, unflushed: map[string][]modelRec{},
		last: map[string]Pos{}, acked: map[string][]Pos{}, meta: map[string]string{},
	}
	counter := 0
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("seed %d: "+format, append([]any{seed}, args...)...)
	}
	committed := func() {
		for _, n := range names {
			m.unflushed[n] = nil
		}
	}
	for op := 0; op < ops; op++ {
		clock.Add(time.Duration(rng.IntN(400)) * time.Millisecond)
		name := names[rng.IntN(len(names))]
		q := b.Queue(name)
		switch r := rng.IntN(100); {
		case r < 30: // append
			n := rng.IntN(30)
			if rng.IntN(10) == 0 {
				n = 0
			}
			recs := make([][]byte, n)
			for i := range recs {
				counter++
				pad := rng.IntN(300)
				if rng.IntN(50) == 0 {
					pad = 3000
				}
				recs[i] = append(fmt.Appendf(nil, "%d-%d-", seed, counter), bytes.Repeat([]byte{'x'}, pad)...)
			}
			meta := map[string][]byte{}
			for i := rng.IntN(3); i > 0; i-- {
				k := fmt.Sprintf("k%d", rng.IntN(5))
				if rng.IntN(4) == 0 {
					meta[k] = nil
				} else {
					meta[k] = fmt.Appendf(nil, "v%d", counter+i)
				}
			}
			if err := b.Append(recs, meta); err != nil {
				fail("op %d: Append: %v", op, err)
			}
			committed()
			for k, v := range meta {
				if v == nil {
					delete(m.meta, k)
				} else {
					m.meta[k] = string(v)
				}
			}
			// Learn the new positions: they follow the last appended record.
			for _, qn := range names {
				got, err := b.Queue(qn).Read(m.last[qn], n+1)
				if err != nil {
					fail("op %d: Read tail: %v", op, err)
				}
				if len(got) != n {
					fail("op %d: %s: %d new records, want %d", op, qn, len(got), n)
				}
				for i, rec := range got {
					if string(rec.Data) != string(recs[i]) {
						fail("op %d: %s: new record %d = %.20q, want %.20q", op, qn, i, rec.Data, recs[i])
					}
					if !rec.Appended.Equal(clock.Now()) {
						fail("op %d: %s: new record %d appended at %v, want %v", op, qn, i, rec.Appended, clock.Now())
					}
					m.queues[qn] = append(m.queues[qn], modelRec{rec.Pos, string(rec.Data), rec.Appended})
				}
				if n > 0 {
					m.last[qn] = got[n-1].Pos
				}
			}
		case r < 55: // read
			after := Start()
			switch k := rng.IntN(3); {
			case k == 1 && len(m.queues[name]) > 0:
				after = m.queues[name][rng.IntN(len(m.queues[name]))].pos
			case k == 2 && len(m.acked[name]) > 0:
				after = m.acked[name][rng.IntN(len(m.acked[name]))]
			}
			max := 1 + rng.IntN(50)
			got, err := q.Read(after, max)
			if err != nil {
				fail("op %d: Read: %v", op, err)
			}
			var want []modelRec
			for _, mr := range m.queues[name] {
				if after.Less(mr.pos) && len(want) < max {
					want = append(want, mr)
				}
			}
			checkRecs(t, fmt.Sprintf("seed %d op %d: %s Read(%v, %d)", seed, op, name, after, max), got, want)
		case r < 80: // ack a random subset, plus already-acked and unknown positions
			live := m.queues[name]
			var ps []Pos
			keep := live[:0:0]
			for _, mr := range live {
				if rng.IntN(3) == 0 {
					ps = append(ps, mr.pos)
					m.acked[name] = append(m.acked[name], mr.pos)
					m.unflushed[name] = append(m.unflushed[name], mr)
				} else {
					keep = append(keep, mr)
				}
			}
			if len(m.acked[name]) > 0 && rng.IntN(2) == 0 {
				ps = append(ps, m.acked[name][rng.IntN(len(m.acked[name]))])
			}
			ps = append(ps, Pos{Frame: 1 << 40})
			rng.Shuffle(len(ps), func(i, j int) { ps[i], ps[j] = ps[j], ps[i] })
			if err := q.Ack(ps...); err != nil {
				fail("op %d: Ack: %v", op, err)
			}
			m.queues[name] = keep
		case r < 85:
			if err := b.Flush(); err != nil {
				fail("op %d: Flush: %v", op, err)
			}
			committed()
		case r < 96: // close and reopen
			if err := b.Close(); err != nil {
				fail("op %d: Close: %v", op, err)
			}
			committed()
			if b, err = Open(path, o); err != nil {
				fail("op %d: reopen: %v", op, err)
			}
		default: // crash: the file as it is between commits
			crashCheck(t, seed, op, b, m, names)
		}
		for _, n := range names {
			if s := b.Queue(n).Stats(); s.Records != int64(len(m.queues[n])) {
				fail("op %d: %s: Stats.Records = %d, model %d", op, n, s.Records, len(m.queues[n]))
			}
		}
	}
	// Finally everything left must come back after a reopen.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if b, err = Open(path, o); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		got := readAll(t, b.Queue(n), 1000)
		checkRecs(t, fmt.Sprintf("seed %d: final %s", seed, n), got, m.queues[n])
		if err := b.Queue(n).Ack(positions(got)...); err != nil {
			t.Fatal(err)
		}
	}
	// Leave the metadata empty too, for the next sequence.
	clearMeta := map[string][]byte{}
	for k := range m.meta {
		clearMeta[k] = nil
	}
	if err := b.Append(nil, clearMeta); err != nil {
		t.Fatal(err)
	}
}

func crashCheck(t *testing.T, seed uint64, op int, b *Buffer, m *model, names []string) {
	t.Helper()
	data, err := os.ReadFile(b.Path())
	if err != nil {
		t.Fatal(err)
	}
	crashed := b.Path() + ".crash"
	if err := os.WriteFile(crashed, data, 0o600); err != nil {
		t.Fatal(err)
	}
	o := testOptions(names...)
	o.OnCorrupt = Fail
	c, err := Open(crashed, o)
	if err != nil {
		t.Fatalf("seed %d op %d: open after crash: %v", seed, op, err)
	}
	defer c.Close()
	for _, n := range names {
		want := slices.Clone(m.queues[n])
		want = append(want, m.unflushed[n]...)
		slices.SortFunc(want, func(a, b modelRec) int {
			if a.pos.Less(b.pos) {
				return -1
			}
			return 1
		})
		checkRecs(t, fmt.Sprintf("seed %d op %d: %s after crash", seed, op, n), readAll(t, c.Queue(n), 1000), want)
	}
	got := map[string]string{}
	if err := c.Meta(func(k, v []byte) error { got[string(k)] = string(v); return nil }); err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(got, m.meta) {
		t.Fatalf("seed %d op %d: meta after crash %v, want %v", seed, op, got, m.meta)
	}
}

func checkRecs(t *testing.T, what string, got []Record, want []modelRec) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d records, want %d", what, len(got), len(want))
	}
	for i := range got {
		if got[i].Pos != want[i].pos || string(got[i].Data) != want[i].data || !got[i].Appended.Equal(want[i].appended) {
			t.Fatalf("%s: record %d = %v %.20q at %v, want %v %.20q at %v", what, i,
				got[i].Pos, got[i].Data, got[i].Appended, want[i].pos, want[i].data, want[i].appended)
		}
	}
}
