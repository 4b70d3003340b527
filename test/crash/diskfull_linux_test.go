package crash

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/iot-producer/iot-producer/agent/ingest"
	"github.com/iot-producer/iot-producer/buffer"
	"github.com/iot-producer/iot-producer/drivers"
	"github.com/iot-producer/iot-producer/internal/smallfs"
	"github.com/iot-producer/iot-producer/record"
)

// logSink collects log output.
type logSink struct {
	mu sync.Mutex
	sb strings.Builder
}

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sb.Write(p)
}

func (l *logSink) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sb.String()
}

// counts gathers the ingest stage's metrics.
type counts struct {
	committed, commitFailed atomic.Int64
	mu                      sync.Mutex
	dropped                 map[string]int
}

func (c *counts) metrics() ingest.Metrics {
	return ingest.Metrics{
		Committed:    func(n int) { c.committed.Add(int64(n)) },
		CommitFailed: func() { c.commitFailed.Add(1) },
		Dropped: func(reason string, n int) {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.dropped[reason] += n
		},
	}
}

func (c *counts) drops(reason string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dropped[reason]
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestDiskFull fills a small filesystem under the ingest stage and the
// buffer (fsync on) until writes fail with ENOSPC, then frees space: the
// process carries on, samples are held in memory or dropped and counted by
// reason, and once there is room again commits resume and what was held
// lands, with every series' sequence numbers in order.
func TestDiskFull(t *testing.T) {
	cases := []struct {
		policy buffer.DropPolicy
		// full says when the disk has been full long enough.
		full func(c *counts, in *ingest.Ingest, b *buffer.Buffer) bool
	}{
		{
			// Append fails with ErrFull: the ingest stage holds the
			// samples, retries, and past MaxPending drops the oldest.
			policy: buffer.DropNewest,
			full: func(c *counts, in *ingest.Ingest, b *buffer.Buffer) bool {
				return c.commitFailed.Load() > 0 && c.drops("pending_full") > 0 && in.Pending() > 0
			},
		},
		{
			// The buffer drops its oldest frames to make room.
			policy: buffer.DropOldest,
			full: func(c *counts, in *ingest.Ingest, b *buffer.Buffer) bool {
				return b.Stats().Queues["kafka"].Dropped[buffer.ReasonDiskFull] > 0
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.policy.String(), func(t *testing.T) {
			dir := smallfs.Mount(t)
			// Ballast leaves the buffer about 1.5 MiB.
			ballast := filepath.Join(dir, "ballast")
			var fs syscall.Statfs_t
			if err := syscall.Statfs(dir, &fs); err != nil {
				t.Fatal(err)
			}
			free := int64(fs.Bavail) * int64(fs.Bsize)
			if free < 3<<20 {
				t.Fatalf("%s has %d bytes free, want 8 MiB", dir, free)
			}
			if err := os.WriteFile(ballast, make([]byte, free-3<<19), 0o600); err != nil {
				t.Fatalf("ballast: %v", err)
			}
			logs := &logSink{}
			log := slog.New(slog.NewTextHandler(logs, nil))
			b, err := buffer.Open(filepath.Join(dir, "buffer.db"), buffer.Options{
				Queues: []string{"kafka"}, DropPolicy: tc.policy, FlushInterval: -1, Logger: log,
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { b.Close() })
			c := &counts{dropped: map[string]int{}}
			in, err := ingest.New(b, ingest.Options{
				GatewayID: "gw", CommitInterval: 2 * time.Millisecond, CommitSize: 500,
				MaxPending: 5000, RetryInterval: 5 * time.Millisecond, Logger: log, Metrics: c.metrics(),
				DropNewest: tc.policy == buffer.DropNewest,
			})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- in.Run(ctx) }()
			t.Cleanup(func() { cancel(); <-done })

			emitted := 0
			t0 := time.Now()
			emit := func(n int) {
				ss := make([]drivers.Sample, n)
				for i := range ss {
					ss[i] = drivers.Sample{
						Device: fmt.Sprintf("dev-%d", emitted%7), Tag: fmt.Sprintf("tag-%d", emitted%3),
						Value: drivers.Float(float64(emitted)), ReadTime: t0.Add(time.Duration(emitted) * time.Millisecond),
					}
					emitted++
				}
				in.Emit(ss)
			}
			deadline := time.Now().Add(20 * time.Second)
			for !tc.full(c, in, b) {
				if time.Now().After(deadline) {
					t.Fatalf("disk never filled: %d emitted, %d committed, %d commit failures, drops %v, stats %+v",
						emitted, c.committed.Load(), c.commitFailed.Load(), c.dropped, b.Stats().Queues["kafka"])
				}
				emit(100)
				time.Sleep(200 * time.Microsecond) // pace the producer like a poller
			}
			st := b.Stats()
			t.Logf("disk full: %d emitted, %d committed, %d pending, %d commit failures (buffer: %d of %d commits failed), ingest drops %v, buffer drops %v, file %d bytes",
				emitted, c.committed.Load(), in.Pending(), c.commitFailed.Load(), st.CommitErrors, st.Commits, c.dropped, st.Queues["kafka"].Dropped, st.FileSize)

			if tc.policy == buffer.DropNewest && !strings.Contains(logs.String(), "no space left on device") {
				t.Errorf("commit failures not caused by ENOSPC; log:\n%s", logs.String())
			}

			// Free space: commits resume and what is held lands.
			if err := os.Remove(ballast); err != nil {
				t.Fatal(err)
			}
			emit(1000)
			waitFor(t, "every sample committed or dropped", 20*time.Second, func() bool {
				return int(c.committed.Load())+c.drops("pending_full") == emitted && in.Pending() == 0
			})
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("ingest: %v", err)
			}
			done <- nil // for the cleanup
			checkQueue(t, b, in, c, tc.policy, emitted)
		})
	}
}

// checkQueue checks that the gaps in every series' sequence numbers match
// the counted drops exactly: every emitted sample took a number (the last
// numbers add up to the samples emitted), each is queued or counted as
// dropped by the ingest stage or the buffer, and the numbers missing from
// the queue (before its first record of a series, between two of them)
// are exactly as many as were dropped. The metadata agrees with the
// ingest stage's numbers.
func checkQueue(t *testing.T, b *buffer.Buffer, in *ingest.Ingest, c *counts, policy buffer.DropPolicy, emitted int) {
	t.Helper()
	q := b.Queue("kafka")
	first := map[ingest.Series]uint64{}
	last := map[ingest.Series]uint64{}
	gaps := uint64(0)
	n := 0
	after := buffer.Start()
	for {
		rs, err := q.Read(after, 5000)
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) == 0 {
			break
		}
		for _, r := range rs {
			env, err := record.DecodeEnvelope(r.Data)
			if err != nil {
				t.Fatal(err)
			}
			f, err := record.Decode(env.Value)
			if err != nil {
				t.Fatal(err)
			}
			s := ingest.Series{Device: f.Device, Tag: f.Tag}
			if l, ok := last[s]; ok {
				if f.Seq <= l {
					t.Fatalf("%v: seq %d after %d at %s", s, f.Seq, l, r.Pos)
				}
				gaps += f.Seq - l - 1
			} else {
				first[s] = f.Seq
				gaps += f.Seq - 1
			}
			last[s] = f.Seq
		}
		n += len(rs)
		after = rs[len(rs)-1].Pos
	}
	meta, err := ingest.LastSeqs(b)
	if err != nil {
		t.Fatal(err)
	}
	numbered := uint64(0)
	for s, m := range meta {
		if m != in.LastSeq(s.Device, s.Tag) {
			t.Errorf("%v: metadata %d, ingest %d", s, m, in.LastSeq(s.Device, s.Tag))
		}
		if l := last[s]; l < m {
			gaps += m - l // dropped after the last queued record
		}
		numbered += m
		if policy == buffer.DropNewest && first[s] != 1 {
			t.Errorf("%v: starts at seq %d, want 1 (drop_newest keeps the oldest samples)", s, first[s])
		}
	}
	if numbered != uint64(emitted) {
		t.Errorf("the last sequence numbers add up to %d, %d samples were emitted: a drop took no number", numbered, emitted)
	}
	qs := q.Stats()
	var bufDrops uint64
	for _, d := range qs.Dropped {
		bufDrops += d
	}
	if int64(n)+int64(bufDrops) != c.committed.Load() {
		t.Errorf("%d queued + %d dropped by the buffer %v != %d committed", n, bufDrops, qs.Dropped, c.committed.Load())
	}
	if want := bufDrops + uint64(c.drops("pending_full")); gaps != want {
		t.Errorf("%d sequence numbers missing downstream, %d drops counted (buffer %v, ingest %v)", gaps, want, qs.Dropped, c.dropped)
	}
	if got := in.Dropped()["pending_full"]; got != uint64(c.drops("pending_full")) {
		t.Errorf("ingest keeps %d pending_full drops, its metric says %d", got, c.drops("pending_full"))
	}
	if policy == buffer.DropNewest && (c.drops("pending_full") == 0 || bufDrops != 0) {
		t.Errorf("drop_newest: ingest dropped %v, buffer %v; want pending_full drops only", c.dropped, qs.Dropped)
	}
	if policy == buffer.DropOldest && qs.Dropped[buffer.ReasonDiskFull] == 0 {
		t.Errorf("drop_oldest: buffer drops %v, want disk_full", qs.Dropped)
	}
	t.Logf("after freeing space: %d queued, %d committed, ingest drops %v, buffer drops %v",
		n, c.committed.Load(), c.dropped, qs.Dropped)
	if err := b.Close(); err != nil && !errors.Is(err, buffer.ErrClosed) {
		t.Fatal(err)
	}
}

// TestDiskFullAtShutdown stops the ingest stage while the disk is full and
// samples wait in memory: the final commit fails, the samples are counted
// as shutdown_commit_failed, and the buffer releases its space reserve so
// that their sequence numbers and the counters reach the file. After a
// restart (with room again) the numbers go on after the lost samples, the
// counters say how many were lost, and the gaps downstream match the
// counted drops exactly.
func TestDiskFullAtShutdown(t *testing.T) {
	dir := smallfs.Mount(t)
	ballast := filepath.Join(dir, "ballast")
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err != nil {
		t.Fatal(err)
	}
	free := int64(fs.Bavail) * int64(fs.Bsize)
	if err := os.WriteFile(ballast, make([]byte, free-5<<19), 0o600); err != nil {
		t.Fatalf("ballast: %v", err)
	}
	logs := &logSink{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	path := filepath.Join(dir, "buffer.db")
	opts := buffer.Options{Queues: []string{"kafka"}, DropPolicy: buffer.DropNewest, FlushInterval: -1, Logger: log}
	b, err := buffer.Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path + ".reserve"); err != nil || fi.Size() != 1<<20 {
		t.Fatalf("space reserve: %v", err)
	}
	c := &counts{dropped: map[string]int{}}
	in, err := ingest.New(b, ingest.Options{
		GatewayID: "gw", CommitInterval: 2 * time.Millisecond, CommitSize: 500,
		MaxPending: 5000, RetryInterval: 5 * time.Millisecond, Logger: log, Metrics: c.metrics(), DropNewest: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	emitted := 0
	t0 := time.Now()
	deadline := time.Now().Add(20 * time.Second)
	for c.commitFailed.Load() == 0 || in.Pending() == 0 {
		if time.Now().After(deadline) {
			cancel()
			<-done
			t.Fatalf("disk never filled: %d emitted, %d committed", emitted, c.committed.Load())
		}
		ss := make([]drivers.Sample, 100)
		for i := range ss {
			ss[i] = drivers.Sample{
				Device: fmt.Sprintf("dev-%d", emitted%7), Tag: fmt.Sprintf("tag-%d", emitted%3),
				Value: drivers.Float(float64(emitted)), ReadTime: t0.Add(time.Duration(emitted) * time.Millisecond),
			}
			emitted++
		}
		in.Emit(ss)
		time.Sleep(200 * time.Microsecond) // pace the producer like a poller
	}
	cancel()
	runErr := <-done
	lost := c.drops("shutdown_commit_failed")
	t.Logf("stopped on a full disk: %d emitted, %d committed, %d dropped pending_full, %d lost at shutdown: %v",
		emitted, c.committed.Load(), c.drops("pending_full"), lost, runErr)
	if runErr == nil || lost == 0 || !strings.Contains(runErr.Error(), "their loss is recorded") {
		t.Fatalf("final commit: %v, %d lost; want a failure whose loss is recorded\n%s", runErr, lost, logs.String())
	}
	_, rerr := os.Stat(path + ".reserve")
	t.Logf("space reserve released for the loss record: %v (a metadata commit fits the file's free pages when it has some)", os.IsNotExist(rerr))
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	// A restart with room again.
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	b, err = buffer.Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := os.Stat(path + ".reserve"); err != nil {
		t.Errorf("the space reserve was not written again: %v", err)
	}
	in2, err := ingest.New(b, ingest.Options{GatewayID: "gw", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if got := in2.Dropped()["shutdown_commit_failed"]; got != uint64(lost) {
		t.Errorf("after the restart the buffer counts %d lost at shutdown, %d were", got, lost)
	}
	meta, err := ingest.LastSeqs(b)
	if err != nil {
		t.Fatal(err)
	}
	numbered := uint64(0)
	for _, m := range meta {
		numbered += m
	}
	if numbered != uint64(emitted) {
		t.Errorf("the last sequence numbers on disk add up to %d, %d samples were emitted: the lost ones would be numbered again", numbered, emitted)
	}
	gaps := uint64(0)
	last := map[ingest.Series]uint64{}
	n := 0
	after := buffer.Start()
	for {
		rs, err := b.Queue("kafka").Read(after, 5000)
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) == 0 {
			break
		}
		for _, r := range rs {
			env, err := record.DecodeEnvelope(r.Data)
			if err != nil {
				t.Fatal(err)
			}
			f, err := record.Decode(env.Value)
			if err != nil {
				t.Fatal(err)
			}
			s := ingest.Series{Device: f.Device, Tag: f.Tag}
			gaps += f.Seq - last[s] - 1
			last[s] = f.Seq
		}
		n += len(rs)
		after = rs[len(rs)-1].Pos
	}
	for s, m := range meta {
		gaps += m - last[s]
	}
	if want := uint64(c.drops("pending_full") + lost); gaps != want {
		t.Errorf("%d sequence numbers missing downstream, %d drops counted (%v)", gaps, want, c.dropped)
	}
	t.Logf("after the restart: %d queued, %d numbers missing downstream = %d pending_full + %d shutdown_commit_failed", n, gaps, c.drops("pending_full"), lost)
}

// TestReserveMakesRoom fills the buffer file and the filesystem to the
// last byte: a metadata commit larger than what is free fails without a
// space reserve and succeeds with one, which it releases; the reserve is
// written again at the next Open once there is room.
func TestReserveMakesRoom(t *testing.T) {
	for _, reserve := range []int64{-1, 1 << 20} {
		t.Run(fmt.Sprintf("reserve %d", reserve), func(t *testing.T) {
			dir := smallfs.Mount(t)
			path := filepath.Join(dir, "buffer.db")
			opts := buffer.Options{Queues: []string{"kafka"}, DropPolicy: buffer.DropNewest, FlushInterval: -1, ReserveBytes: reserve,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
			b, err := buffer.Open(path, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			smallfs.Fill(t, filepath.Join(dir, "ballast"))
			rec := make([]byte, 60<<10)
			for {
				if err := b.Append([][]byte{rec}, nil); err != nil {
					if !errors.Is(err, buffer.ErrFull) {
						t.Fatal(err)
					}
					break
				}
			}
			meta := map[string][]byte{"loss": make([]byte, 256<<10)}
			err = b.CommitMeta(meta)
			if reserve < 0 {
				if !errors.Is(err, buffer.ErrFull) {
					t.Fatalf("metadata commit on a full disk without a reserve: %v, want ErrFull", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("metadata commit with the reserve: %v", err)
			}
			if _, err := os.Stat(path + ".reserve"); !os.IsNotExist(err) {
				t.Fatalf("reserve not released: %v", err)
			}
			if v, err := b.MetaValue("loss"); err != nil || len(v) != 256<<10 {
				t.Fatalf("metadata after the commit: %d bytes, %v", len(v), err)
			}
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(filepath.Join(dir, "ballast")); err != nil {
				t.Fatal(err)
			}
			b, err = buffer.Open(path, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			if fi, err := os.Stat(path + ".reserve"); err != nil || fi.Size() != reserve {
				t.Fatalf("reserve after reopening with room: %v", err)
			}
		})
	}
}
