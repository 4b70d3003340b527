package buffer

import (
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// logSink collects log output for assertions.
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

// testOptions returns options for fast tests: no fsync, no background
// flush, logs discarded.
func testOptions(queues ...string) Options {
	return Options{
		Queues:        queues,
		NoSync:        true,
		FlushInterval: -1,
		ReserveBytes:  -1,
		Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

func testPath(t *testing.T) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "buffer.db")
}

// openT opens a buffer and closes it when the test ends.
func openT(t *testing.T, path string, o Options) *Buffer {
	t.Helper()
	b, err := Open(path, o)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

// reopen closes b and opens the same file again.
func reopen(t *testing.T, b *Buffer, o Options) *Buffer {
	t.Helper()
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return openT(t, b.Path(), o)
}

// payloads returns n records "<prefix>-<i>".
func payloads(prefix string, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = fmt.Appendf(nil, "%s-%d", prefix, i)
	}
	return out
}

func mustAppend(t *testing.T, b *Buffer, records [][]byte, meta map[string][]byte) {
	t.Helper()
	if err := b.Append(records, meta); err != nil {
		t.Fatalf("Append: %v", err)
	}
}

// readAll reads the whole queue from the head in batches of batch.
func readAll(t *testing.T, q *Queue, batch int) []Record {
	t.Helper()
	var out []Record
	after := Start()
	for {
		rs, err := q.Read(after, batch)
		if err != nil {
			t.Fatalf("Read(%v, %d): %v", after, batch, err)
		}
		if len(rs) == 0 {
			return out
		}
		if len(rs) > batch {
			t.Fatalf("Read returned %d records, asked for %d", len(rs), batch)
		}
		out = append(out, rs...)
		after = rs[len(rs)-1].Pos
	}
}

func datas(rs []Record) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = string(r.Data)
	}
	return out
}

func positions(rs []Record) []Pos {
	out := make([]Pos, len(rs))
	for i, r := range rs {
		out[i] = r.Pos
	}
	return out
}

func strs(b [][]byte) []string {
	out := make([]string, len(b))
	for i, x := range b {
		out[i] = string(x)
	}
	return out
}

func mustAck(t *testing.T, q *Queue, ps ...Pos) {
	t.Helper()
	if err := q.Ack(ps...); err != nil {
		t.Fatalf("Ack: %v", err)
	}
}

func wantData(t *testing.T, what string, got []Record, want []string) {
	t.Helper()
	if g := datas(got); !slices.Equal(g, want) {
		short := func(ss []string) []string {
			out := make([]string, len(ss))
			for i, s := range ss {
				if len(s) > 40 {
					s = s[:40] + "..."
				}
				out[i] = s
			}
			return out
		}
		t.Fatalf("%s: got %d records %q, want %d %q", what, len(g), short(g), len(want), short(want))
	}
}

// noCoalesce makes every Append start its own frames for the rest of the
// test, for tests about frame boundaries (bounds, corruption, stats).
func noCoalesce(t *testing.T) {
	t.Helper()
	old := coalesceMaxPayload
	coalesceMaxPayload = 0
	t.Cleanup(func() { coalesceMaxPayload = old })
}
