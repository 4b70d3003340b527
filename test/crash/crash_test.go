package crash

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/iot-producer/iot-producer/agent/ingest"
	"github.com/iot-producer/iot-producer/buffer"
	"github.com/iot-producer/iot-producer/record"
)

// childEnv, when set, makes the test binary run the crash child on the
// buffer file it names instead of the tests.
const childEnv = "IOT_PRODUCER_CRASH_CHILD"

// Series of the child: devices × tags.
const (
	devices = 4
	tags    = 3
)

func TestMain(m *testing.M) {
	if runIsolationChild() {
		os.Exit(0)
	}
	if path := os.Getenv(childEnv); path != "" {
		if err := child(path, os.NewFile(3, "report")); err != nil {
			fmt.Fprintln(os.Stderr, "crash child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func seriesName(i int) ingest.Series {
	return ingest.Series{Device: fmt.Sprintf("dev-%d", i/tags), Tag: fmt.Sprintf("tag-%d", i%tags)}
}

func openOptions() buffer.Options {
	return buffer.Options{
		Queues:        []string{"kafka"},
		FlushInterval: 5 * time.Millisecond, // acknowledgements reach the disk lazily, often
		LockTimeout:   10 * time.Second,
		Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

// reporter writes whole lines to the parent, one write(2) each.
type reporter struct {
	mu sync.Mutex
	w  io.Writer
}

func (r *reporter) line(s string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, err := io.WriteString(r.w, s+"\n")
	return err
}

// child appends batches of samples (fsync on) with their series' last
// sequence numbers as metadata, as the ingest stage does, and acknowledges
// records from the head of the queue, in and out of order, until killed.
// It reports "C <series>=<seq> ..." after each Append returned and
// "A <series>=<seq> ..." before each Ack.
func child(path string, report *os.File) error {
	rep := &reporter{w: report}
	b, err := buffer.Open(path, openOptions())
	if err != nil {
		return err
	}
	last, err := ingest.LastSeqs(b)
	if err != nil {
		return err
	}
	q := b.Queue("kafka")
	errc := make(chan error, 2)
	go func() { errc <- appendLoop(b, last, rep) }()
	go func() { errc <- ackLoop(q, rep) }()
	return <-errc
}

func appendLoop(b *buffer.Buffer, last map[ingest.Series]uint64, rep *reporter) error {
	rng := rand.New(rand.NewPCG(uint64(os.Getpid()), uint64(time.Now().UnixNano())))
	for {
		// Keep the backlog at a size the parent can check quickly.
		for b.Queue("kafka").Stats().Records > maxBacklog {
			time.Sleep(time.Millisecond)
		}
		n := 1 + rng.IntN(400)
		recs := make([][]byte, n)
		touched := map[ingest.Series]uint64{}
		now := time.Now()
		for i := range recs {
			s := seriesName(rng.IntN(devices * tags))
			last[s]++
			touched[s] = last[s]
			recs[i] = encode(s, last[s], now)
		}
		meta := make(map[string][]byte, len(touched))
		var sb strings.Builder
		sb.WriteString("C")
		for s, seq := range touched {
			meta[ingest.SeqKey(s.Device, s.Tag)] = binary.BigEndian.AppendUint64(nil, seq)
			fmt.Fprintf(&sb, " %s/%s=%d", s.Device, s.Tag, seq)
		}
		if err := b.Append(recs, meta); err != nil {
			return err
		}
		if err := rep.line(sb.String()); err != nil {
			return err
		}
	}
}

func ackLoop(q *buffer.Queue, rep *reporter) error {
	rng := rand.New(rand.NewPCG(uint64(os.Getpid())+1, uint64(time.Now().UnixNano())))
	after := buffer.Start()
	for {
		if rng.IntN(4) == 0 {
			after = buffer.Start() // go back for what was skipped
		}
		if rng.IntN(20) == 0 {
			// A short outage of the sink: frames appended meanwhile are
			// not read, so the background flush merges the small ones.
			time.Sleep(time.Duration(5+rng.IntN(25)) * time.Millisecond)
		}
		rs, err := q.Read(after, 1+rng.IntN(800))
		if err != nil {
			return err
		}
		if len(rs) == 0 {
			after = buffer.Start()
			select {
			case <-q.Notify():
			case <-time.After(5 * time.Millisecond):
			}
			continue
		}
		after = rs[len(rs)-1].Pos
		// Acknowledge in order, or a random subset in random order.
		pick := rs
		if rng.IntN(4) == 0 {
			pick = nil
			for _, r := range rs {
				if rng.IntN(3) != 0 {
					pick = append(pick, r)
				}
			}
			rng.Shuffle(len(pick), func(i, j int) { pick[i], pick[j] = pick[j], pick[i] })
		}
		if len(pick) == 0 {
			continue
		}
		var sb strings.Builder
		sb.WriteString("A")
		pos := make([]buffer.Pos, len(pick))
		for i, r := range pick {
			f, err := decode(r.Data)
			if err != nil {
				return fmt.Errorf("record %s: %w", r.Pos, err)
			}
			fmt.Fprintf(&sb, " %s/%s=%d", f.Device, f.Tag, f.Seq)
			pos[i] = r.Pos
		}
		// Report before acknowledging: once Ack returns, a background
		// flush may persist it at any moment.
		if err := rep.line(sb.String()); err != nil {
			return err
		}
		if err := q.Ack(pos...); err != nil {
			return err
		}
	}
}

// maxBacklog bounds the child's queue so that the parent's check after each
// kill stays quick.
const maxBacklog = 20000

// sample is the part of a record the test checks.
type sample struct {
	Device, Tag string
	Seq         uint64
}

// encode makes a record of about 200 bytes: an envelope (the device as key)
// whose value is "<tag> <seq> " and padding.
func encode(s ingest.Series, seq uint64, now time.Time) []byte {
	r := record.AppendEnvelope(make([]byte, 0, 200), s.Device, now, "0123456789abcdef", nil)
	r = fmt.Appendf(r, "%s %d ", s.Tag, seq)
	for len(r) < 200 {
		r = append(r, 'x')
	}
	return r
}

func decode(data []byte) (sample, error) {
	env, err := record.DecodeEnvelope(data)
	if err != nil {
		return sample{}, err
	}
	f := strings.Fields(string(env.Value))
	if len(f) != 3 {
		return sample{}, fmt.Errorf("value %q: want tag, seq and padding", env.Value)
	}
	seq, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return sample{}, fmt.Errorf("value %q: %w", env.Value, err)
	}
	return sample{Device: env.Key, Tag: f[0], Seq: seq}, nil
}

// ledger is what the parent learned from every child so far.
type ledger struct {
	// committed is the highest sequence number reported committed per series.
	committed map[ingest.Series]uint64
	// acked holds every (series, seq) reported acknowledged.
	acked map[ingest.Series]map[uint64]bool
	// commits counts commit reports; records the records they cover.
	commits int
}

func newLedger() *ledger {
	return &ledger{committed: map[ingest.Series]uint64{}, acked: map[ingest.Series]map[uint64]bool{}}
}

// parse applies one complete report line.
func (l *ledger) parse(line string) error {
	kind, rest, _ := strings.Cut(line, " ")
	for _, f := range strings.Fields(rest) {
		name, seqS, ok := strings.Cut(f, "=")
		dev, tag, ok2 := strings.Cut(name, "/")
		seq, err := strconv.ParseUint(seqS, 10, 64)
		if !ok || !ok2 || err != nil {
			return fmt.Errorf("bad report field %q", f)
		}
		s := ingest.Series{Device: dev, Tag: tag}
		switch kind {
		case "C":
			if seq <= l.committed[s] {
				return fmt.Errorf("%v: commit of seq %d reported after %d", s, seq, l.committed[s])
			}
			l.committed[s] = seq
		case "A":
			if l.acked[s] == nil {
				l.acked[s] = map[uint64]bool{}
			}
			l.acked[s][seq] = true
		default:
			return fmt.Errorf("bad report line %q", line)
		}
	}
	if kind == "C" {
		l.commits++
	}
	return nil
}

func TestCrashKill9(t *testing.T) {
	kills := 200
	if v := os.Getenv("CRASH_KILLS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("CRASH_KILLS=%q: %v", v, err)
		}
		kills = n
	}
	path := filepath.Join(t.TempDir(), "buffer.db")
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	l := newLedger()
	var verified, present int
	start := time.Now()
	for k := range kills {
		lines, err := runChild(t, path, rng)
		if err != nil {
			t.Fatalf("kill %d: %v", k+1, err)
		}
		for _, line := range lines {
			if err := l.parse(line); err != nil {
				t.Fatalf("kill %d: %v", k+1, err)
			}
		}
		n, err := verify(path, l)
		if err != nil {
			t.Fatalf("after kill %d: %v", k+1, err)
		}
		present = n
		verified++
	}
	var total uint64
	for _, seq := range l.committed {
		total += seq
	}
	t.Logf("%d SIGKILLs in %s: %d commits reported, %d records reported committed over %d series, state verified after every kill (%d records queued at the end)",
		kills, time.Since(start).Round(time.Millisecond), l.commits, total, len(l.committed), present)
	if verified != kills || l.commits == 0 {
		t.Fatalf("verified %d of %d kills, %d commits", verified, kills, l.commits)
	}
}

// runChild starts a child on path, kills it at a random moment, and returns
// the complete report lines it wrote.
func runChild(t *testing.T, path string, rng *rand.Rand) ([]string, error) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+path)
	cmd.ExtraFiles = []*os.File{w}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		w.Close()
		return nil, err
	}
	w.Close()

	var lines []string
	first := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		br := bufio.NewReader(r)
		once := sync.OnceFunc(func() { close(first) })
		for {
			s, err := br.ReadString('\n')
			if err != nil {
				once()
				if err == io.EOF {
					err = nil // a last partial line is a report cut by the kill
				}
				done <- err
				return
			}
			lines = append(lines, strings.TrimSuffix(s, "\n"))
			if strings.HasPrefix(s, "C") {
				once()
			}
		}
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	if rng.IntN(8) == 0 {
		// Sometimes kill it early: while it opens, scans or first commits.
		time.Sleep(time.Duration(rng.IntN(20_000)) * time.Microsecond)
	} else {
		select {
		case <-first:
		case err := <-exited:
			return nil, fmt.Errorf("child exited by itself: %v: %s", err, stderr.String())
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			return nil, fmt.Errorf("child reported no commit in 30s: %s", stderr.String())
		}
		time.Sleep(time.Duration(rng.IntN(40_000)) * time.Microsecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return nil, fmt.Errorf("kill: %w", err)
	}
	var werr error
	select {
	case werr = <-exited:
	case <-time.After(30 * time.Second):
		return nil, fmt.Errorf("child did not die")
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
		return nil, fmt.Errorf("child ended before the kill: %v: %s", werr, stderr.String())
	}
	if err := <-done; err != nil {
		return nil, err
	}
	return lines, nil
}

// verify reopens the file and checks it against the ledger: every record
// reported committed is present or was reported acknowledged, each
// series' sequence numbers increase along the queue, the sequence
// metadata covers the records and the reported commits, and bbolt finds
// the file consistent. It returns the records queued.
func verify(path string, l *ledger) (int, error) {
	b, err := buffer.Open(path, openOptions())
	if err != nil {
		return 0, err
	}
	defer b.Close()
	q := b.Queue("kafka")
	inQueue := map[ingest.Series][]uint64{}
	after, n := buffer.Start(), 0
	for {
		rs, err := q.Read(after, 10000)
		if err != nil {
			return 0, err
		}
		if len(rs) == 0 {
			break
		}
		for _, r := range rs {
			f, err := decode(r.Data)
			if err != nil {
				return 0, fmt.Errorf("record %s: %w", r.Pos, err)
			}
			s := ingest.Series{Device: f.Device, Tag: f.Tag}
			if prev := inQueue[s]; len(prev) > 0 && f.Seq <= prev[len(prev)-1] {
				return 0, fmt.Errorf("%v: seq %d at %s after %d: order broken", s, f.Seq, r.Pos, prev[len(prev)-1])
			}
			inQueue[s] = append(inQueue[s], f.Seq)
		}
		n += len(rs)
		after = rs[len(rs)-1].Pos
	}
	if got := q.Stats().Records; got != int64(n) {
		return 0, fmt.Errorf("stats say %d records, read %d", got, n)
	}
	meta, err := ingest.LastSeqs(b)
	if err != nil {
		return 0, err
	}
	for s, seqs := range inQueue {
		if m := meta[s]; seqs[len(seqs)-1] > m {
			return 0, fmt.Errorf("%v: seq %d queued, metadata says %d", s, seqs[len(seqs)-1], m)
		}
	}
	for s, c := range l.committed {
		if meta[s] < c {
			return 0, fmt.Errorf("%v: seq %d reported committed, metadata says %d", s, c, meta[s])
		}
		seqs := inQueue[s]
		for seq := uint64(1); seq <= c; seq++ {
			if l.acked[s][seq] {
				continue
			}
			if _, found := slices.BinarySearch(seqs, seq); !found {
				return 0, fmt.Errorf("%v: seq %d reported committed, never acknowledged, missing", s, seq)
			}
		}
	}
	if err := b.Close(); err != nil {
		return 0, err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return 0, err
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		for cerr := range tx.Check() {
			return fmt.Errorf("bbolt check: %w", cerr)
		}
		return nil
	})
	return n, err
}
