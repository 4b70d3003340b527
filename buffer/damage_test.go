package buffer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Environment of a test binary run as the isolation child.
const (
	childOpEnv   = "IOT_PRODUCER_BUFFER_TEST_CHILD_OP"
	childPathEnv = "IOT_PRODUCER_BUFFER_TEST_CHILD_PATH"
)

func TestMain(m *testing.M) {
	if op := os.Getenv(childOpEnv); op != "" {
		if err := RunChild(op, os.Getenv(childPathEnv), os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// testExecEnv names the program that runs this test binary when it is not
// native (scripts/ci-qemu.sh sets it to the qemu it passes to go test
// -exec): the isolation child is the same binary, so it needs the same.
const testExecEnv = "IOT_PRODUCER_TEST_EXEC"

// testIsolate runs the isolation child in this test binary.
func testIsolate(op, path string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	if wrapper := os.Getenv(testExecEnv); wrapper != "" {
		cmd = exec.Command(wrapper, os.Args[0], "-test.run=^$")
	}
	cmd.Env = append(os.Environ(), childOpEnv+"="+op, childPathEnv+"="+path)
	return cmd
}

// backlogCommits writes a file holding n records of 200 bytes, record j
// being rec(j), in commits of perCommit, with the last number as metadata,
// and returns its bytes and its epoch.
func backlogCommits(t *testing.T, n, perCommit int, rec func(int) []byte) ([]byte, string) {
	t.Helper()
	path := testPath(t)
	b := openT(t, path, testOptions("kafka"))
	for i := 0; i < n; i += perCommit {
		recs := make([][]byte, 0, perCommit)
		for j := i; j < min(n, i+perCommit); j++ {
			recs = append(recs, rec(j))
		}
		mustAppend(t, b, recs, map[string][]byte{"last": binary.BigEndian.AppendUint64(nil, uint64(min(n, i+perCommit)))})
	}
	epoch := b.Epoch()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data, epoch
}

// backlogSeriesN is the number of series the backlog's records belong to:
// record j is number j/backlogSeriesN+1 of series "s<j%backlogSeriesN>".
const backlogSeriesN = 4

// backlogSeries returns Options.Series and Options.LastSeqs for the
// backlog's records and its "last" metadata entry.
func backlogSeries(t *testing.T) (func([]byte) (string, uint64, bool), LastSeqsFunc) {
	series := func(rec []byte) (string, uint64, bool) {
		f := strings.Fields(string(rec))
		if len(f) != 3 || f[0] != "rec" {
			return "", 0, false
		}
		j, err := strconv.Atoi(f[1])
		if err != nil {
			return "", 0, false
		}
		return fmt.Sprintf("s%d", j%backlogSeriesN), uint64(j/backlogSeriesN + 1), true
	}
	last := func(meta func(fn func(k, v []byte) error) error) (map[string]uint64, error) {
		var v []byte
		if err := meta(func(k, val []byte) error {
			if string(k) == "last" {
				v = val
			}
			return nil
		}); err != nil || len(v) != 8 {
			return nil, fmt.Errorf("metadata last: %x %v", v, err)
		}
		n := int(binary.BigEndian.Uint64(v))
		out := map[string]uint64{}
		for k := 0; k < backlogSeriesN && k < n; k++ {
			out[fmt.Sprintf("s%d", k)] = uint64((n-1-k)/backlogSeriesN + 1)
		}
		return out, nil
	}
	return series, last
}

func numbered(i int) []byte {
	r := fmt.Appendf(nil, "rec %d ", i)
	return append(r, bytes.Repeat([]byte{'x'}, 200-len(r))...)
}

// numberedVaried is numbered with 32 hex digits that differ from record
// to record after the number, as a sample's value does: a commit of 2,000
// of them stores about 40 bytes a record in shared frames.
func numberedVaried(i int) []byte {
	r := fmt.Appendf(nil, "rec %d %016x%016x", i, uint64(i)*0x9E3779B97F4A7C15, uint64(i)*0xC2B2AE3D27D4EB4F)
	return append(r, bytes.Repeat([]byte{'x'}, 200-len(r))...)
}

func recordNumber(t *testing.T, data []byte) int {
	t.Helper()
	f := strings.Fields(string(data))
	if len(f) != 3 || f[0] != "rec" {
		t.Fatalf("record %q is not one of the backlog's", data)
	}
	n, err := strconv.Atoi(f[1])
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestDamagedFileNeverCrashes applies each damage of the table to a
// real backlog and opens it with bbolt isolated in a child process: Open
// succeeds, every record it delivers is one of the backlog's (each once),
// what is missing is announced, and the sequence state is either carried
// over or declared lost.
func TestDamagedFileNeverCrashes(t *testing.T) {
	for _, layout := range []struct {
		name      string
		perCommit int
		rec       func(int) []byte
		shared    bool
	}{
		// 500 records of 200 bytes a commit make raw frames; 2,000 that
		// differ in a few dozen bytes fill frames of shared records.
		{"raw frames", 500, numbered, false},
		{"shared frames", 2000, numberedVaried, true},
	} {
		t.Run(layout.name, func(t *testing.T) {
			orig, epoch := backlogCommits(t, 20000, layout.perCommit, layout.rec)
			if got := sharedFrames(t, orig); (got > 0) != layout.shared {
				t.Fatalf("%d shared frames in the backlog, want shared %v", got, layout.shared)
			}
			damagedFileNeverCrashes(t, orig, epoch)
		})
	}
}

// sharedFrames counts the frames of queue kafka in the buffer file data
// that hold shared records.
func sharedFrames(t *testing.T, data []byte) int {
	t.Helper()
	path := testPath(t)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	n := 0
	err = db.View(func(tx *bolt.Tx) error {
		bkt := tx.Bucket([]byte(queuePrefix + "kafka"))
		if bkt == nil {
			return errors.New("no queue kafka")
		}
		return bkt.ForEach(func(k, _ []byte) error {
			if fb := bkt.Bucket(k); fb != nil {
				if v := fb.Get(dataKey); len(v) > 0 && isShared(v[0]) {
					n++
				}
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func damagedFileNeverCrashes(t *testing.T, orig []byte, epoch string) {
	const n = 20000
	rng := rand.New(rand.NewPCG(1, 2))
	random := func(k int) []byte {
		b := make([]byte, k)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	type damage struct {
		name string
		do   func(data []byte) []byte
		// all: every record must come back; meta: the metadata too.
		all, meta bool
	}
	var cases []damage
	for k := 1; k <= 9; k++ {
		off := len(orig) * k / 10
		cases = append(cases, damage{name: fmt.Sprintf("64KiB random at %d%%", 10*k), do: func(d []byte) []byte {
			copy(d[off:], random(64<<10))
			return d
		}})
	}
	cases = append(cases,
		damage{name: "200 bytes inside a page", do: func(d []byte) []byte {
			copy(d[len(d)/2+1000:], random(200))
			return d
		}},
		// bbolt falls back to the other meta page, one commit older: the
		// last commit is replayed from the envelopes the raw scan finds.
		damage{name: "first 4KiB", do: func(d []byte) []byte { copy(d, random(4096)); return d }, all: true, meta: true},
		damage{name: "second 4KiB", do: func(d []byte) []byte { copy(d[4096:], random(4096)); return d }, all: true, meta: true},
		damage{name: "both meta pages", do: func(d []byte) []byte { copy(d, random(8192)); return d }, all: true},
		damage{name: "whole file random", do: func(d []byte) []byte { return random(len(d)) }},
		damage{name: "zero-length", do: func([]byte) []byte { return nil }},
		damage{name: "truncated to half", do: func(d []byte) []byte { return d[:len(d)/2] }},
	)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := testPath(t)
			if err := os.WriteFile(path, c.do(bytes.Clone(orig)), 0o600); err != nil {
				t.Fatal(err)
			}
			var logs logSink
			o := testOptions("kafka")
			o.Isolate = testIsolate
			o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			o.Series, o.LastSeqs = backlogSeries(t)
			b := openT(t, path, o)
			r := b.Recovery()
			seen := map[int]bool{}
			for _, rec := range readAll(t, b.Queue("kafka"), 2*n) {
				k := recordNumber(t, rec.Data)
				if seen[k] {
					t.Fatalf("record %d delivered twice", k)
				}
				seen[k] = true
			}
			var meta []byte
			if err := b.Meta(func(k, v []byte) error { meta = v; return nil }); err != nil {
				t.Fatal(err)
			}
			metaOK := len(meta) == 8 && binary.BigEndian.Uint64(meta) == n
			// Every number of a lost range is missing; the ranges are
			// all listed here (4 series).
			inRanges := uint64(0)
			for _, l := range r.LostRanges {
				if l.To == 0 {
					t.Errorf("range %+v left open although the state was read", l)
					continue
				}
				k, _ := strconv.Atoi(strings.TrimPrefix(l.Series, "s"))
				for seq := l.From; seq <= l.To; seq++ {
					if j := int(seq-1)*backlogSeriesN + k; seen[j] || j >= n {
						t.Fatalf("range %+v holds record %d, which was recovered or never written", l, j)
					}
				}
				inRanges += l.Len()
			}
			if r.LostRangeCount != len(r.LostRanges) || inRanges != r.LostSeqs {
				t.Errorf("%d ranges listed of %d, %d numbers in them, LostSeqs %d", len(r.LostRanges), r.LostRangeCount, inRanges, r.LostSeqs)
			}
			if r.RecordsLost > 0 && r.MetaRecovered && r.LostSeqs < r.RecordsLost {
				t.Errorf("%d records known lost, only %d numbers in lost ranges %+v", r.RecordsLost, r.LostSeqs, r.LostRanges)
			}
			kept := "new"
			if b.Epoch() == epoch {
				kept = "kept"
			}
			// A row of the damage table (README): go test -run TestDamagedFileNeverCrashes -v ./buffer/ | grep '^ *damage_test.*|'
			t.Logf("| %s | %d of %d delivered | %d recovered by the scan | %d known lost in %d frames | %d missing | %d numbers in %d lost ranges of %d series | epoch %s | %d commits replayed | state lost: %q |",
				c.name, len(seen), n, r.RecordsRecovered, r.RecordsLost, r.FramesLost, n-len(seen), r.LostSeqs, r.LostRangeCount, r.LostSeries, kept, r.CommitsReplayed, r.StateLost)
			if c.all && len(seen) != n {
				t.Errorf("recovered %d records, want all %d", len(seen), n)
			}
			if c.meta && !metaOK {
				t.Errorf("metadata %x not carried over; recovery %+v", meta, r)
			}
			if metaOK == (len(r.StateLost) > 0) {
				t.Errorf("metadata kept %v but state lost %q", metaOK, r.StateLost)
			}
			if metaOK != (b.Epoch() == epoch) {
				t.Errorf("metadata kept %v, epoch %s (was %s): the epoch must change exactly when the state is lost", metaOK, b.Epoch(), epoch)
			}
			if r.Quarantined != "" && !strings.Contains(logs.String(), "records_recovered=") {
				t.Errorf("the log does not count what was recovered:\n%s", logs.String())
			}
			if len(r.StateLost) == 0 && len(seen) < n && r.RecordsLost == 0 && b.Queue("kafka").Stats().Dropped[ReasonCorrupt] == 0 {
				t.Errorf("%d records missing and no loss announced", n-len(seen))
			}
			// The buffer works on.
			mustAppend(t, b, payloads("after", 3), nil)
		})
	}
}

// TestMissingFileThatExisted deletes a buffer file: the next Open says the
// state is lost (the marker tells it from a first start).
func TestMissingFileThatExisted(t *testing.T) {
	path := testPath(t)
	b := openT(t, path, testOptions("q"))
	if r := b.Recovery(); !r.NewFile || len(r.StateLost) != 0 {
		t.Fatalf("first start: recovery %+v", r)
	}
	b = reopen(t, b, testOptions("q"))
	if r := b.Recovery(); r.NewFile || len(r.StateLost) != 0 {
		t.Fatalf("reopen: recovery %+v", r)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	b = openT(t, path, testOptions("q"))
	if r := b.Recovery(); !r.NewFile || len(r.StateLost) != 1 || !strings.Contains(r.StateLost[0], "missing") {
		t.Fatalf("after the file was deleted: recovery %+v", r)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(path), "buffer.db.created")); err != nil {
		t.Fatal(err)
	}
}

// TestDamageWhileRunning damages a queue bucket's root page under an open
// buffer: the read that meets it fails with ErrCorrupt, the next flush
// moves the file aside, salvages it and carries on; the queues read every
// record again and take new ones, the positions keep their frames.
func TestDamageWhileRunning(t *testing.T) {
	path := testPath(t)
	o := testOptions("kafka", "mqtt")
	o.Isolate = testIsolate
	var logs logSink
	o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	b := openT(t, path, o)
	recs := make([][]byte, 200)
	for i := range recs {
		recs[i] = append(bytes.Repeat([]byte("p"), 1000), byte(i))
	}
	for i := 0; i < 3; i++ {
		mustAppend(t, b, recs, map[string][]byte{"seq": {byte(i)}})
	}
	before := readAll(t, b.Queue("kafka"), 1000)
	var root uint64
	if err := b.db.View(func(tx *bolt.Tx) error {
		root = uint64(tx.Bucket([]byte(queuePrefix + "mqtt")).Root())
		return nil
	}); err != nil || root == 0 {
		t.Fatalf("mqtt bucket root %d: %v", root, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte{0xEE}, 64), int64(root)*b.pageSize); err != nil {
		t.Fatal(err)
	}
	f.Close()

	if _, err := b.Queue("mqtt").Read(Start(), 10); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("read of the damaged queue: %v, want ErrCorrupt", err)
	}
	// The failed read asked the background flush to recover the file
	// (tests turn its timer off, not its wake-up): wait for that one
	// recovery.
	deadline := time.Now().Add(30 * time.Second)
	for b.Recovery().Runtime == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no recovery 30s after the damaged read\n%s", logs.String())
		}
		time.Sleep(5 * time.Millisecond) // polling the recovery count
	}
	r := b.Recovery() // taken under the lock a recovery holds to its end
	if r.Runtime != 1 || r.RecordsRecovered != 1200 || !r.MetaRecovered || len(r.StateLost) != 0 {
		t.Fatalf("recovery %+v\n%s", r, logs.String())
	}
	after := readAll(t, b.Queue("kafka"), 1000)
	if len(after) != len(before) || after[0].Pos != before[0].Pos || after[599].Pos != before[599].Pos {
		t.Fatalf("kafka after recovery: %d records", len(after))
	}
	if n := len(readAll(t, b.Queue("mqtt"), 1000)); n != 600 {
		t.Fatalf("mqtt after recovery: %d records, want 600", n)
	}
	mustAppend(t, b, payloads("new", 2), nil)
	if err := b.Queue("kafka").Ack(before[0].Pos); err != nil {
		t.Fatal(err)
	}
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := b.Queue("kafka").Stats().Records; got != 601 {
		t.Fatalf("kafka holds %d records, want 601", got)
	}
	if moved, _ := filepath.Glob(path + ".corrupt-*"); len(moved) != 1 {
		t.Fatalf("quarantined files %v", moved)
	}
}

// TestAppendRecoversDamagedFile damages the queue bucket's root page under an open
// buffer: the next Append panics inside bbolt, recovers the file and
// commits.
func TestAppendRecoversDamagedFile(t *testing.T) {
	path := testPath(t)
	o := testOptions("kafka")
	o.Isolate = testIsolate
	b := openT(t, path, o)
	for i := 0; i < 50; i++ {
		mustAppend(t, b, [][]byte{bytes.Repeat([]byte("r"), 3000)}, map[string][]byte{fmt.Sprintf("seq/%03d", i): {byte(i)}})
	}
	var root uint64
	if err := b.db.View(func(tx *bolt.Tx) error {
		root = uint64(tx.Bucket(queuePrefixBytes("kafka")).Root())
		return nil
	}); err != nil || root == 0 {
		t.Fatalf("kafka bucket root %d: %v", root, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte{0xEE}, 64), int64(root)*b.pageSize); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := b.Append(payloads("after", 3), nil); err != nil {
		t.Fatalf("append on a damaged file: %v", err)
	}
	if r := b.Recovery(); r.Runtime != 1 || !r.MetaRecovered || len(r.StateLost) != 0 {
		t.Fatalf("recovery %+v", r)
	}
	var meta int
	if err := b.Meta(func(k, v []byte) error { meta++; return nil }); err != nil || meta != 50 {
		t.Fatalf("%d metadata entries after the recovery, want 50: %v", meta, err)
	}
	if n := len(readAll(t, b.Queue("kafka"), 100)); n != 53 {
		t.Fatalf("%d records after the recovery, want 53", n)
	}
}

func queuePrefixBytes(name string) []byte { return []byte(queuePrefix + name) }

// TestSalvageSkipsMergedCopies merges small frames, then wipes the meta
// pages: the raw scan finds the merged frame and the old copies of the
// frames merged into it (still in the freed pages), and the salvage brings
// every record back exactly once.
func TestSalvageSkipsMergedCopies(t *testing.T) {
	noCoalesce(t)
	path := testPath(t)
	o := testOptions("kafka")
	clock := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	o.Now = func() time.Time { return clock }
	b := openT(t, path, o)
	var want []string
	for i := range 40 {
		var batch [][]byte
		for j := range 5 {
			d := fmt.Sprintf("r-%03d-%d", i, j)
			batch = append(batch, []byte(d))
			want = append(want, d)
		}
		mustAppend(t, b, batch, nil)
		clock = clock.Add(time.Second)
	}
	b.wmu.Lock()
	err := b.mergeLocked()
	b.wmu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if n := b.Queue("kafka").Stats().Frames; n >= 40 {
		t.Fatalf("%d frames after the merge: nothing merged", n)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	clear(data[:8192])
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	o.Isolate = testIsolate
	b = openT(t, path, o)
	r := b.Recovery()
	wantData(t, "after the salvage", readAll(t, b.Queue("kafka"), 1000), want)
	if r.StaleFrames == 0 || r.RecordsRecovered != uint64(len(want)) {
		t.Fatalf("recovery %+v: want the merged copies skipped and %d records", r, len(want))
	}
}

// openCheckLoops opens a copy of testdata/check-loops.db, the file on
// which bbolt's check never ends, with the check isolated in a child, and
// returns the buffer and the options it was opened with.
func openCheckLoops(t *testing.T) (*Buffer, Options) {
	t.Helper()
	data, err := os.ReadFile("testdata/check-loops.db")
	if err != nil {
		t.Fatal(err)
	}
	path := testPath(t)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	o := testOptions("kafka", "mqtt")
	o.Isolate = testIsolate
	return openT(t, path, o), o
}

// TestCheckThatNeverEnds opens a file (found by FuzzOpenDamaged) on which
// bbolt's consistency check loops: the child is killed after its time and
// the file counts as damaged, so Open quarantines and salvages it instead
// of waiting forever.
func TestCheckThatNeverEnds(t *testing.T) {
	// The time bound is under test: a memory bound far above what the
	// check allocates in 2 s (about 100 MB) so that it does not end the
	// child first.
	oldT, oldM := childBaseTimeout, childMemoryBase
	childBaseTimeout, childMemoryBase = 2*time.Second, 2<<30
	t.Cleanup(func() { childBaseTimeout, childMemoryBase = oldT, oldM })
	b, _ := openCheckLoops(t)
	r := b.Recovery()
	if r.Quarantined == "" || !strings.Contains(r.Cause, "did not finish") {
		t.Fatalf("recovery %+v: want the file quarantined after the check's time ran out", r)
	}
	mustAppend(t, b, payloads("after", 2), nil)
}

// TestCheckThatEatsMemory opens the file on which bbolt's check loops,
// allocating as it goes, with a time bound too long to matter: the
// child's memory bound ends it (on Linux), the file counts as damaged and
// is salvaged, and the test's machine keeps its memory.
func TestCheckThatEatsMemory(t *testing.T) {
	if runtime.GOOS != "linux" || raceEnabled {
		t.Skip("the memory bound is Linux's RLIMIT_DATA, left out under the race detector")
	}
	oldT, oldM := childBaseTimeout, childMemoryBase
	childBaseTimeout, childMemoryBase = 10*time.Minute, 160<<20
	t.Cleanup(func() { childBaseTimeout, childMemoryBase = oldT, oldM })
	b, o := openCheckLoops(t)
	r := b.Recovery()
	if r.Quarantined == "" || !strings.Contains(r.Cause, "out of memory") {
		t.Fatalf("recovery %+v: want the file quarantined after the check ran out of memory", r)
	}
	t.Logf("cause: %s", r.Cause)
	// A sound file passes the check under the same bound.
	sound := testPath(t)
	sb := openT(t, sound, testOptions("kafka"))
	mustAppend(t, sb, payloads("x", 1000), nil)
	if err := sb.Close(); err != nil {
		t.Fatal(err)
	}
	sb = openT(t, sound, o)
	if r := sb.Recovery(); r.Quarantined != "" {
		t.Fatalf("a sound file failed the check under the memory bound: %+v", r)
	}
	mustAppend(t, b, payloads("after", 2), nil)
}
