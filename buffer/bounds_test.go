package buffer

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// fixed returns n records of exactly 10 bytes: "<p>-<i>" padded.
func fixed(p string, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = fmt.Appendf(nil, "%-10s", fmt.Sprintf("%s-%d", p, i))
	}
	return out
}

func trimmed(rs []Record) []string {
	out := datas(rs)
	for i := range out {
		out[i] = strings.TrimSpace(out[i])
	}
	return out
}

func names(p string, from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("%s-%d", p, i))
	}
	return out
}

// frame10 is the framed size of 10 records of 10 bytes.
const frame10 = 10*11 + frameOverhead + keyLen

// fakeClock is a settable clock for ages.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestMaxBytes(t *testing.T) {
	noCoalesce(t)
	type step struct {
		prefix string
		n      int
	}
	tests := []struct {
		name     string
		policy   DropPolicy
		maxBytes int64
		ackFirst int // ack this many records of the first append before the last step
		steps    []step
		want     []string
		dropped  uint64
	}{
		{"oldest drops first frame", DropOldest, 2 * frame10, 0,
			[]step{{"a", 10}, {"b", 10}, {"c", 10}}, append(names("b", 0, 10), names("c", 0, 10)...), 10},
		{"oldest counts only unacked", DropOldest, 2 * frame10, 4,
			[]step{{"a", 10}, {"b", 10}, {"c", 10}}, append(names("b", 0, 10), names("c", 0, 10)...), 6},
		{"oldest drops several frames", DropOldest, 3 * frame10, 0,
			[]step{{"a", 10}, {"b", 10}, {"c", 10}, {"d", 20}}, append(names("c", 0, 10), names("d", 0, 20)...), 20},
		{"oldest keeps newest of a too-large append", DropOldest, frame10, 0,
			[]step{{"a", 10}, {"b", 25}}, names("b", 15, 25), 25},
		{"newest refuses what does not fit", DropNewest, 2*frame10 + 5*11 + frameOverhead + keyLen, 0,
			[]step{{"a", 10}, {"b", 10}, {"c", 10}}, append(append(names("a", 0, 10), names("b", 0, 10)...), names("c", 0, 5)...), 5},
		{"newest refuses everything when full", DropNewest, 2 * frame10, 0,
			[]step{{"a", 10}, {"b", 10}, {"c", 10}}, append(names("a", 0, 10), names("b", 0, 10)...), 10},
		{"newest room after ack", DropNewest, 2 * frame10, 10,
			[]step{{"a", 10}, {"b", 10}, {"c", 10}}, append(names("b", 0, 10), names("c", 0, 10)...), 0},
		{"unbounded", DropOldest, 0, 0,
			[]step{{"a", 10}, {"b", 10}}, append(names("a", 0, 10), names("b", 0, 10)...), 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := testOptions("q", "other")
			o.MaxBytes, o.DropPolicy = tc.maxBytes, tc.policy
			b := openT(t, testPath(t), o)
			q := b.Queue("q")
			for i, s := range tc.steps {
				if i == len(tc.steps)-1 && tc.ackFirst > 0 {
					rs, err := q.Read(Start(), tc.ackFirst)
					if err != nil {
						t.Fatal(err)
					}
					mustAck(t, q, positions(rs)...)
				}
				mustAppend(t, b, fixed(s.prefix, s.n), nil)
				if st := q.Stats(); tc.maxBytes > 0 && st.Bytes > tc.maxBytes {
					t.Fatalf("after step %d: %d bytes exceed the bound %d", i, st.Bytes, tc.maxBytes)
				}
			}
			got := readAll(t, q, 7)
			if g := trimmed(got); strings.Join(g, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("records = %v, want %v", g, tc.want)
			}
			st := q.Stats()
			if st.Dropped[ReasonMaxBytes] != tc.dropped || st.Records != int64(len(tc.want)) {
				t.Fatalf("stats = %+v, want %d dropped, %d records", st, tc.dropped, len(tc.want))
			}
			// Bytes is exactly the framed size of what is left.
			b = reopen(t, b, o)
			if st2 := b.Queue("q").Stats(); st2.Bytes != st.Bytes || st2.Records != st.Records {
				t.Fatalf("after reopen stats = %+v, before %+v", st2, st)
			}
		})
	}
}

func TestMaxBytesShrunkAcrossReopen(t *testing.T) {
	noCoalesce(t)
	o := testOptions("q")
	b := openT(t, testPath(t), o)
	for _, p := range []string{"a", "b", "c"} {
		mustAppend(t, b, fixed(p, 10), nil)
	}
	o.MaxBytes = frame10
	b = reopen(t, b, o)
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	q := b.Queue("q")
	if got := trimmed(readAll(t, q, 100)); strings.Join(got, ",") != strings.Join(names("c", 0, 10), ",") {
		t.Fatalf("records = %v", got)
	}
	if d := q.Stats().Dropped[ReasonMaxBytes]; d != 20 {
		t.Fatalf("dropped = %d, want 20", d)
	}
}

func TestMaxAge(t *testing.T) {
	noCoalesce(t)
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	var logs logSink
	o := testOptions("q")
	o.MaxAge, o.Now = time.Hour, clock.Now
	o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	b := openT(t, testPath(t), o)
	q := b.Queue("q")
	mustAppend(t, b, fixed("a", 10), nil)
	clock.Add(30 * time.Minute)
	mustAppend(t, b, fixed("b", 10), nil)
	rs, _ := q.Read(Start(), 3)
	mustAck(t, q, positions(rs)...)
	if st := q.Stats(); !st.Oldest.Equal(clock.Now().Add(-30 * time.Minute)) {
		t.Fatalf("Oldest = %v, want the first append's time", st.Oldest)
	}

	clock.Add(31 * time.Minute) // a is 61 minutes old, b 31
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := trimmed(readAll(t, q, 100)); strings.Join(got, ",") != strings.Join(names("b", 0, 10), ",") {
		t.Fatalf("records = %v", got)
	}
	if st := q.Stats(); st.Dropped[ReasonMaxAge] != 7 || !st.Oldest.Equal(clock.Now().Add(-31*time.Minute)) {
		t.Fatalf("stats = %+v, want 7 dropped for age and b as oldest", st)
	}
	if n := strings.Count(logs.String(), "buffer dropped records"); n != 1 {
		t.Fatalf("%d drop messages, want 1: %s", n, logs.String())
	}

	// An Append applies the age bound too.
	clock.Add(30 * time.Minute)
	mustAppend(t, b, fixed("c", 10), nil)
	if got := trimmed(readAll(t, q, 100)); strings.Join(got, ",") != strings.Join(names("c", 0, 10), ",") {
		t.Fatalf("records = %v", got)
	}
	// A message at most once a minute: the second drop came 30 minutes later.
	if n := strings.Count(logs.String(), "buffer dropped records"); n != 2 {
		t.Fatalf("%d drop messages, want 2: %s", n, logs.String())
	}
}

func TestDropLogRateLimited(t *testing.T) {
	noCoalesce(t)
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	var logs logSink
	o := testOptions("q")
	o.MaxBytes, o.Now = frame10, clock.Now
	o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	b := openT(t, testPath(t), o)
	count := func() int { return strings.Count(logs.String(), "buffer dropped records") }
	for i := 0; i < 20; i++ { // a drop every second
		mustAppend(t, b, fixed("x", 10), nil)
		clock.Add(time.Second)
	}
	if n := count(); n != 1 {
		t.Fatalf("%d messages in 20 s, want 1", n)
	}
	clock.Add(time.Minute)
	if err := b.Flush(); err != nil { // the background flush does this every FlushInterval
		t.Fatal(err)
	}
	b.wmu.Lock()
	b.logDrops(false)
	b.wmu.Unlock()
	if n := count(); n != 2 {
		t.Fatalf("%d messages after a minute, want 2: %s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "dropped_total.max_bytes=190") || !strings.Contains(logs.String(), "dropped.max_bytes=180") {
		t.Fatalf("totals missing: %s", logs.String())
	}
}

func TestCheckBounds(t *testing.T) {
	tests := []struct {
		maxBytes int64
		queues   int
		bits32   bool
		ok       bool
	}{
		{0, 2, false, true},
		{1 << 40, 2, false, true},
		{-1, 1, false, false},
		{0, 1, true, false},
		{MaxBytesLimit32, 1, true, true},
		{MaxBytesLimit32 / 2, 2, true, true},
		{MaxBytesLimit32/2 + 1, 2, true, false},
		{1 << 30, 1, true, false},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%d/%d/%v", tc.maxBytes, tc.queues, tc.bits32), func(t *testing.T) {
			err := checkBounds(tc.maxBytes, tc.queues, tc.bits32)
			if (err == nil) != tc.ok {
				t.Fatalf("checkBounds = %v, want ok %v", err, tc.ok)
			}
		})
	}
}

func TestStats(t *testing.T) {
	noCoalesce(t)
	o := testOptions("q")
	b := openT(t, testPath(t), o)
	q := b.Queue("q")
	mustAppend(t, b, fixed("a", 10), nil)
	mustAppend(t, b, fixed("b", 10), nil)
	st := b.Stats()
	qs := st.Queues["q"]
	if qs.Records != 20 || qs.Bytes != 2*frame10 || qs.Frames != 2 || qs.Oldest.IsZero() {
		t.Fatalf("queue stats = %+v", qs)
	}
	if st.FileSize <= 0 {
		t.Fatalf("file size = %d", st.FileSize)
	}
	if st.Commits != 2 || st.CommitErrors != 0 || st.CommitTime <= 0 {
		t.Fatalf("commit stats = %d commits, %d errors, %s", st.Commits, st.CommitErrors, st.CommitTime)
	}
	for _, r := range Reasons {
		if _, ok := qs.Dropped[r]; !ok {
			t.Fatalf("reason %s missing from Dropped", r)
		}
	}
	rs := readAll(t, q, 100)
	mustAck(t, q, positions(rs[:15])...)
	if qs := q.Stats(); qs.Records != 5 || qs.Bytes != frame10 || qs.Frames != 1 {
		t.Fatalf("after acks: %+v", qs)
	}
}
