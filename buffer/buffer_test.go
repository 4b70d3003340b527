package buffer

import (
	"bytes"
	"crypto/rand"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestAppendReadAck(t *testing.T) {
	noCoalesce(t)
	// Three appends of five records: frames 1..3 (one each).
	all := append(append(payloads("a", 5), payloads("b", 5)...), payloads("c", 5)...)
	tests := []struct {
		name string
		ack  []int // indexes into all
	}{
		{"none", nil},
		{"in order first frame", []int{0, 1, 2, 3, 4}},
		{"in order across frames", []int{0, 1, 2, 3, 4, 5, 6}},
		{"out of order", []int{14, 3, 9, 0, 7}},
		{"whole middle frame backwards", []int{9, 8, 7, 6, 5}},
		{"everything shuffled", []int{7, 2, 14, 0, 11, 5, 9, 1, 13, 3, 12, 4, 10, 6, 8}},
		{"duplicates", []int{1, 1, 1, 2, 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := openT(t, testPath(t), testOptions("kafka"))
			q := b.Queue("kafka")
			for i := 0; i < 3; i++ {
				mustAppend(t, b, all[5*i:5*i+5], nil)
			}
			got := readAll(t, q, 4)
			wantData(t, "before ack", got, strs(all))
			for i := 1; i < len(got); i++ {
				if !got[i-1].Pos.Less(got[i].Pos) {
					t.Fatalf("positions not increasing: %v then %v", got[i-1].Pos, got[i].Pos)
				}
			}
			var ps []Pos
			acked := map[int]bool{}
			for _, i := range tc.ack {
				ps = append(ps, got[i].Pos)
				acked[i] = true
			}
			mustAck(t, q, ps...)
			var want []string
			for i, r := range all {
				if !acked[i] {
					want = append(want, string(r))
				}
			}
			wantData(t, "after ack", readAll(t, q, 3), want)
			if s := q.Stats(); s.Records != int64(len(want)) {
				t.Fatalf("Stats.Records = %d, want %d", s.Records, len(want))
			}
			if err := b.Flush(); err != nil {
				t.Fatal(err)
			}
			wantData(t, "after flush", readAll(t, q, 100), want)
		})
	}
}

func TestReadAfterAndMax(t *testing.T) {
	noCoalesce(t)
	b := openT(t, testPath(t), testOptions("q"))
	q := b.Queue("q")
	mustAppend(t, b, payloads("x", 10), nil)
	mustAppend(t, b, payloads("y", 10), nil)
	all := readAll(t, q, 100)
	tests := []struct {
		name  string
		after Pos
		max   int
		want  []string
	}{
		{"start", Start(), 3, []string{"x-0", "x-1", "x-2"}},
		{"mid frame", all[4].Pos, 2, []string{"x-5", "x-6"}},
		{"across frames", all[8].Pos, 4, []string{"x-9", "y-0", "y-1", "y-2"}},
		{"last", all[19].Pos, 5, nil},
		{"beyond", Pos{Frame: all[19].Pos.Frame + 10}, 5, nil},
		{"zero max", Start(), 0, nil},
		{"frame start", Pos{Frame: all[10].Pos.Frame}, 1, []string{"y-1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := q.Read(tc.after, tc.max)
			if err != nil {
				t.Fatal(err)
			}
			wantData(t, "Read", got, tc.want)
		})
	}
	t.Run("data is a copy", func(t *testing.T) {
		rs, err := q.Read(Start(), 2)
		if err != nil {
			t.Fatal(err)
		}
		rs[0].Data[0] = 'Z'
		rs[0].Data = append(rs[0].Data, "more"...) // must not clobber rs[1]
		if string(rs[1].Data) != "x-1" {
			t.Fatalf("second record changed to %q", rs[1].Data)
		}
		again, _ := q.Read(Start(), 1)
		if string(again[0].Data) != "x-0" {
			t.Fatalf("stored record changed to %q", again[0].Data)
		}
	})
}

func TestEmptyAndLargeRecords(t *testing.T) {
	b := openT(t, testPath(t), testOptions("q"))
	big := bytes.Repeat([]byte("L"), 3*maxFrameBytes)
	recs := [][]byte{{}, []byte("a"), big, nil, []byte("b"), big}
	mustAppend(t, b, recs, nil)
	b = reopen(t, b, testOptions("q"))
	got := readAll(t, b.Queue("q"), 2)
	if len(got) != len(recs) {
		t.Fatalf("%d records, want %d", len(got), len(recs))
	}
	for i := range recs {
		if !bytes.Equal(got[i].Data, recs[i]) {
			t.Fatalf("record %d: %d bytes, want %d", i, len(got[i].Data), len(recs[i]))
		}
	}
	if f := b.Queue("q").Stats().Frames; f < 3 {
		t.Fatalf("%d frames; each large record should start its own", f)
	}
}

func TestAckErrors(t *testing.T) {
	b := openT(t, testPath(t), testOptions("q"))
	q := b.Queue("q")
	mustAppend(t, b, payloads("x", 3), nil)
	rs := readAll(t, q, 10)
	err := q.Ack(Pos{Frame: rs[0].Pos.Frame, Index: 3}, rs[1].Pos)
	if err == nil || !strings.Contains(err.Error(), "beyond") {
		t.Fatalf("Ack out of range: err = %v", err)
	}
	// The valid position was still acknowledged; unknown frames are no-ops.
	mustAck(t, q, Pos{Frame: 999}, Pos{})
	wantData(t, "after ack", readAll(t, q, 10), []string{"x-0", "x-2"})
}

func TestReopenRedeliversExactlyUnacked(t *testing.T) {
	tests := []struct {
		name string
		ack  func(i int) bool // which of 3*50 records to ack
	}{
		{"none", func(int) bool { return false }},
		{"all", func(int) bool { return true }},
		{"first frame", func(i int) bool { return i < 50 }},
		{"even", func(i int) bool { return i%2 == 0 }},
		{"partial frames", func(i int) bool { return i%50 < 20 || i%7 == 0 }},
		{"all but last", func(i int) bool { return i != 149 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := testOptions("kafka")
			b := openT(t, testPath(t), o)
			q := b.Queue("kafka")
			for i := 0; i < 3; i++ {
				mustAppend(t, b, payloads(string(rune('a'+i)), 50), nil)
			}
			got := readAll(t, q, 7)
			var ps []Pos
			var want []Record
			for i, r := range got {
				if tc.ack(i) {
					ps = append(ps, r.Pos)
				} else {
					want = append(want, r)
				}
			}
			mustAck(t, q, ps...)
			lastPos := got[len(got)-1].Pos

			b = reopen(t, b, o)
			q = b.Queue("kafka")
			after := readAll(t, q, 11)
			wantData(t, "after reopen", after, datas(want))
			if !slices.Equal(positions(after), positions(want)) {
				t.Fatalf("positions changed across reopen")
			}
			if s := q.Stats(); s.Records != int64(len(want)) {
				t.Fatalf("Stats.Records = %d after reopen, want %d", s.Records, len(want))
			}
			// Positions keep increasing even when every frame was deleted.
			mustAppend(t, b, payloads("new", 1), nil)
			rs := readAll(t, q, 1000)
			if last := rs[len(rs)-1].Pos; !lastPos.Less(last) {
				t.Fatalf("new record at %v, not after the old last record %v", last, lastPos)
			}
			// Ack the rest, reopen: nothing left, and the file holds no frames.
			mustAck(t, q, positions(rs)...)
			b = reopen(t, b, o)
			if rs := readAll(t, b.Queue("kafka"), 10); len(rs) != 0 {
				t.Fatalf("%d records after acking everything", len(rs))
			}
		})
	}
}

func TestMetaCommittedWithRecords(t *testing.T) {
	o := testOptions("kafka", "mqtt")
	b := openT(t, testPath(t), o)
	mustAppend(t, b, payloads("a", 3), map[string][]byte{"seq/dev1": []byte("3"), "seq/dev2": []byte("7")})

	// bbolt refuses a key over 32 KiB inside the transaction: nothing of
	// this Append may be committed.
	bad := map[string][]byte{"seq/dev1": []byte("6"), strings.Repeat("k", 40000): []byte("x")}
	if err := b.Append(payloads("b", 3), bad); err == nil {
		t.Fatal("Append with an oversized key succeeded")
	}
	check := func(b *Buffer, wantRecs []string, wantMeta map[string]string) {
		t.Helper()
		for _, name := range o.Queues {
			wantData(t, name, readAll(t, b.Queue(name), 100), wantRecs)
		}
		got := map[string]string{}
		if err := b.Meta(func(k, v []byte) error { got[string(k)] = string(v); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(got) != len(wantMeta) {
			t.Fatalf("meta = %v, want %v", got, wantMeta)
		}
		for k, v := range wantMeta {
			if got[k] != v {
				t.Fatalf("meta = %v, want %v", got, wantMeta)
			}
		}
	}
	check(b, []string{"a-0", "a-1", "a-2"}, map[string]string{"seq/dev1": "3", "seq/dev2": "7"})
	b = reopen(t, b, o)
	check(b, []string{"a-0", "a-1", "a-2"}, map[string]string{"seq/dev1": "3", "seq/dev2": "7"})

	// The retry (here without the bad key) commits both; nil deletes.
	mustAppend(t, b, payloads("b", 3), map[string][]byte{"seq/dev1": []byte("6"), "seq/dev2": nil})
	b = reopen(t, b, o)
	check(b, []string{"a-0", "a-1", "a-2", "b-0", "b-1", "b-2"}, map[string]string{"seq/dev1": "6"})

	if err := b.Append(nil, map[string][]byte{"": []byte("x")}); err == nil {
		t.Fatal("empty meta key accepted")
	}
	// Meta alone, no records.
	mustAppend(t, b, nil, map[string][]byte{"only": []byte("meta")})
	check(b, []string{"a-0", "a-1", "a-2", "b-0", "b-1", "b-2"}, map[string]string{"seq/dev1": "6", "only": "meta"})
}

func TestQueuesIndependent(t *testing.T) {
	noCoalesce(t)
	o := testOptions("kafka", "mqtt")
	b := openT(t, testPath(t), o)
	if b.Queue("nope") != nil {
		t.Fatal("unknown queue is not nil")
	}
	mustAppend(t, b, payloads("a", 4), nil)
	mustAppend(t, b, payloads("b", 4), nil)
	k, m := b.Queue("kafka"), b.Queue("mqtt")
	mustAck(t, k, positions(readAll(t, k, 100))...)
	mr := readAll(t, m, 100)
	mustAck(t, m, mr[0].Pos, mr[5].Pos)
	want := []string{"a-1", "a-2", "a-3", "b-0", "b-2", "b-3"}
	wantData(t, "mqtt", readAll(t, m, 100), want)
	wantData(t, "kafka", readAll(t, k, 100), nil)

	b = reopen(t, b, o)
	k, m = b.Queue("kafka"), b.Queue("mqtt")
	wantData(t, "kafka after reopen", readAll(t, k, 100), nil)
	wantData(t, "mqtt after reopen", readAll(t, m, 100), want)
	if s := k.Stats(); s.Records != 0 || s.Bytes != 0 || !s.Oldest.IsZero() {
		t.Fatalf("kafka stats = %+v, want empty", s)
	}
	if s := m.Stats(); s.Records != 6 || s.Frames != 2 {
		t.Fatalf("mqtt stats = %+v, want 6 records in 2 frames", s)
	}

	// A queue dropped from the options keeps its data for a later Open.
	o2 := testOptions("kafka")
	b = reopen(t, b, o2)
	if b.Queue("mqtt") != nil {
		t.Fatal("mqtt present though not configured")
	}
	mustAppend(t, b, payloads("c", 1), nil)
	b = reopen(t, b, o)
	wantData(t, "mqtt after skipping it", readAll(t, b.Queue("mqtt"), 100), want)
}

func TestNotify(t *testing.T) {
	b := openT(t, testPath(t), testOptions("kafka", "mqtt"))
	for _, name := range []string{"kafka", "mqtt"} {
		select {
		case <-b.Queue(name).Notify():
			t.Fatalf("%s notified before any append", name)
		default:
		}
	}
	mustAppend(t, b, payloads("a", 1), nil)
	mustAppend(t, b, payloads("b", 1), nil) // capacity 1: coalesced, never blocks
	for _, name := range []string{"kafka", "mqtt"} {
		select {
		case <-b.Queue(name).Notify():
		default:
			t.Fatalf("%s not notified after append", name)
		}
		select {
		case <-b.Queue(name).Notify():
			t.Fatalf("%s notified twice for coalesced appends", name)
		default:
		}
	}
	mustAppend(t, b, nil, map[string][]byte{"k": []byte("v")})
	select {
	case <-b.Queue("kafka").Notify():
		t.Fatal("notified for a metadata-only append")
	default:
	}
}

func TestLockTimeout(t *testing.T) {
	path := testPath(t)
	openT(t, path, testOptions("q"))
	o := testOptions("q")
	o.LockTimeout = 100 * time.Millisecond
	start := time.Now()
	b2, err := Open(path, o)
	if err == nil {
		b2.Close()
		t.Fatal("second Open of a locked file succeeded")
	}
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("error %q: want ErrLocked naming %s and another process", err, path)
	}
	// bbolt gives up one 50 ms retry step before the timeout.
	if d := time.Since(start); d < o.LockTimeout/2 {
		t.Fatalf("gave up after %s, long before the %s timeout", d, o.LockTimeout)
	}
	// Compact's read-only open of the locked file fails the same way.
	old := compactLockTimeout
	compactLockTimeout = 100 * time.Millisecond
	t.Cleanup(func() { compactLockTimeout = old })
	if err := Compact(path, filepath.Join(t.TempDir(), "c.db")); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Compact of a locked file: err = %v", err)
	}
}

func TestCorruptFile(t *testing.T) {
	garbage := make([]byte, 64<<10)
	rand.Read(garbage)
	// A real buffer file with its two meta pages wiped.
	wiped := func(t *testing.T) []byte {
		path := testPath(t)
		b := openT(t, path, testOptions("q"))
		mustAppend(t, b, payloads("x", 10), nil)
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		clear(data[:2*4096])
		return data
	}
	contents := []struct {
		name string
		data func(t *testing.T) []byte
		// salvaged is what the raw scan recovers.
		salvaged []string
	}{
		{"random 64KiB", func(*testing.T) []byte { return garbage }, nil},
		{"short garbage", func(*testing.T) []byte { return []byte("not a bbolt file") }, nil},
		{"text file", func(*testing.T) []byte { return bytes.Repeat([]byte("hello world\n"), 2000) }, nil},
		{"meta pages wiped", wiped, recordStrings(payloads("x", 10))},
	}
	for _, c := range contents {
		data := c.data(t)
		t.Run(c.name+"/quarantine", func(t *testing.T) {
			path := testPath(t)
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			var logs logSink
			o := testOptions("q")
			o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			b := openT(t, path, o)
			if s := b.Queue("q").Stats(); s.Records != int64(len(c.salvaged)) {
				t.Fatalf("fresh buffer holds %d records, want %d salvaged", s.Records, len(c.salvaged))
			}
			mustAppend(t, b, payloads("y", 2), nil)
			wantData(t, "fresh buffer", readAll(t, b.Queue("q"), 20), append(c.salvaged, "y-0", "y-1"))
			if r := b.Recovery(); len(r.StateLost) == 0 || r.RecordsRecovered != uint64(len(c.salvaged)) {
				t.Fatalf("recovery %+v: want the state lost and %d records recovered", r, len(c.salvaged))
			}
			moved, _ := filepath.Glob(path + ".corrupt-*")
			if len(moved) != 1 {
				t.Fatalf("quarantined files: %v", moved)
			}
			if got, _ := os.ReadFile(moved[0]); !bytes.Equal(got, data) {
				t.Fatal("quarantined file differs from the original")
			}
			if l := logs.String(); !strings.Contains(l, "corrupt") || !strings.Contains(l, moved[0]) {
				t.Fatalf("log does not name the quarantined file: %s", l)
			}
		})
		t.Run(c.name+"/fail", func(t *testing.T) {
			path := testPath(t)
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			o := testOptions("q")
			o.OnCorrupt = Fail
			b, err := Open(path, o)
			if err == nil {
				b.Close()
				t.Fatal("Open of a corrupt file succeeded with OnCorrupt=Fail")
			}
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) {
				t.Fatalf("error %q: want ErrCorrupt naming %s", err, path)
			}
			if got, _ := os.ReadFile(path); !bytes.Equal(got, data) {
				t.Fatal("file changed by a failed Open")
			}
			if moved, _ := filepath.Glob(path + ".corrupt-*"); len(moved) != 0 {
				t.Fatalf("file moved with OnCorrupt=Fail: %v", moved)
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		path string
		o    Options
		want string
	}{
		{"no queues", filepath.Join(dir, "a.db"), Options{}, "no queues"},
		{"empty queue name", filepath.Join(dir, "a.db"), Options{Queues: []string{""}}, "empty queue"},
		{"duplicate queue", filepath.Join(dir, "a.db"), Options{Queues: []string{"a", "a"}}, "twice"},
		{"negative max bytes", filepath.Join(dir, "a.db"), Options{Queues: []string{"a"}, MaxBytes: -1}, "negative"},
		{"missing directory", filepath.Join(dir, "nope", "a.db"), Options{Queues: []string{"a"}}, "no such file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := Open(tc.path, tc.o)
			if err == nil {
				b.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.path) {
				t.Fatalf("error %q: want %q and the path", err, tc.want)
			}
		})
	}
}

// corruptFrame rewrites one frame of queue q in a closed buffer file.
func corruptFrame(t *testing.T, path, q string, frame uint64, mutate func(v []byte) []byte) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		bkt := tx.Bucket([]byte(queuePrefix + q))
		v := getFrame(bkt, frame)
		if v == nil {
			t.Fatalf("frame %d not found", frame)
		}
		return putFrame(bkt, frame, mutate(bytes.Clone(v)))
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestCorruptFrameSkipped(t *testing.T) {
	noCoalesce(t)
	tests := []struct {
		name     string
		mutate   func(v []byte) []byte
		atOpen   bool // detected by the header scan at Open
		wantLost uint64
	}{
		{"payload byte", func(v []byte) []byte { v[frameHeaderLen+3] ^= 0x40; return v }, false, 5},
		{"trailer byte", func(v []byte) []byte { v[len(v)-1] ^= 1; return v }, false, 5},
		{"truncated", func(v []byte) []byte { return v[:len(v)-6] }, false, 5},
		{"header count", func(v []byte) []byte { v[4] ^= 2; return v }, true, 0},
		{"header version", func(v []byte) []byte { v[0] = 9; return v }, true, 0},
		{"empty value", func(v []byte) []byte { return []byte{} }, true, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := testOptions("kafka", "mqtt")
			var logs logSink
			o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			path := testPath(t)
			b := openT(t, path, o)
			for _, p := range []string{"a", "b", "c"} {
				mustAppend(t, b, payloads(p, 5), nil)
			}
			mid := readAll(t, b.Queue("kafka"), 100)[5].Pos.Frame
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			corruptFrame(t, path, "kafka", mid, tc.mutate)

			b = openT(t, path, o)
			q := b.Queue("kafka")
			if s := q.Stats(); tc.atOpen != (s.CorruptFrames == 1) {
				t.Fatalf("after open: CorruptFrames = %d, detected at open = %v", s.CorruptFrames, tc.atOpen)
			}
			want := []string{"a-0", "a-1", "a-2", "a-3", "a-4", "c-0", "c-1", "c-2", "c-3", "c-4"}
			wantData(t, "kafka", readAll(t, q, 3), want)
			s := q.Stats()
			if s.CorruptFrames != 1 || s.Dropped[ReasonCorrupt] != tc.wantLost || s.Records != 10 {
				t.Fatalf("stats = %+v, want 1 corrupt frame, %d lost, 10 records", s, tc.wantLost)
			}
			l := logs.String()
			if !strings.Contains(l, path) || !strings.Contains(l, "queue=kafka") || !strings.Contains(l, "frame=") {
				t.Fatalf("log does not name path, queue and frame: %s", l)
			}
			// The other queue is untouched.
			wantData(t, "mqtt", readAll(t, b.Queue("mqtt"), 100), append(append(strs(payloads("a", 5)), strs(payloads("b", 5))...), strs(payloads("c", 5))...))

			// The corrupt frame is deleted: the next Open finds none.
			b = reopen(t, b, o)
			if s := b.Queue("kafka").Stats(); s.CorruptFrames != 0 || s.Records != 10 {
				t.Fatalf("after reopen: stats = %+v", s)
			}
			wantData(t, "kafka after reopen", readAll(t, b.Queue("kafka"), 100), want)
		})
	}
}

func TestClosed(t *testing.T) {
	b := openT(t, testPath(t), testOptions("q"))
	mustAppend(t, b, payloads("x", 1), nil)
	q := b.Queue("q")
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Append(payloads("y", 1), nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
	if err := b.Flush(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Flush after Close: %v", err)
	}
	if _, err := q.Read(Start(), 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Read after Close: %v", err)
	}
	if err := q.Ack(Pos{Frame: 1}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Ack after Close: %v", err)
	}
	_ = b.Stats()
}

// TestFailedAppendKeepsState makes Append fail (an oversized metadata key,
// refused before the transaction): memory must be as before, and the
// pending acknowledgements must still reach the disk later. (A commit that
// fails inside bbolt, a full disk, is in full_test.go.)
func TestFailedAppendKeepsState(t *testing.T) {
	noCoalesce(t)
	o := testOptions("q")
	o.MaxBytes = 2 * frame10
	b := openT(t, testPath(t), o)
	q := b.Queue("q")
	mustAppend(t, b, fixed("a", 10), nil)
	mustAppend(t, b, fixed("b", 10), nil)
	rs := readAll(t, q, 100)
	mustAck(t, q, positions(rs[:5])...)   // frame a: bitmap pending; c would drop it
	mustAck(t, q, rs[12].Pos, rs[15].Pos) // frame b: bitmap pending
	before := q.Stats()

	bad := map[string][]byte{strings.Repeat("k", 40000): []byte("x")}
	for i := 0; i < 2; i++ { // a failure must not lose the pending work for the next try
		if err := b.Append(fixed("c", 10), bad); err == nil {
			t.Fatal("Append with an oversized key succeeded")
		}
	}
	after := q.Stats()
	if after.Records != before.Records || after.Bytes != before.Bytes || after.Dropped[ReasonMaxBytes] != 0 {
		t.Fatalf("stats changed by a failed Append: before %+v, after %+v", before, after)
	}
	want := append(names("a", 5, 10), "b-0", "b-1", "b-3", "b-4", "b-6", "b-7", "b-8", "b-9")
	if got := trimmed(readAll(t, q, 100)); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("records after failed Append: %v", got)
	}
	b = reopen(t, b, o)
	if got := trimmed(readAll(t, b.Queue("q"), 100)); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("records after reopen: %v", got)
	}
	// Now the retry without the bad key: c goes in, a's rest is dropped.
	mustAppend(t, b, fixed("c", 10), nil)
	if d := b.Queue("q").Stats().Dropped[ReasonMaxBytes]; d != 5 {
		t.Fatalf("dropped %d, want the 5 unacknowledged records of a", d)
	}
}

func recordStrings(recs [][]byte) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = string(r)
	}
	return out
}
