package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/iot-producer/iot-producer/agent"
	"github.com/iot-producer/iot-producer/agent/config"
	"github.com/iot-producer/iot-producer/agent/ingest"
	"github.com/iot-producer/iot-producer/buffer"
	"github.com/iot-producer/iot-producer/record"
)

// bufferLockTimeout is how long the buffer commands wait for the file
// lock: a running agent holds it for good, so waiting longer helps nobody.
var bufferLockTimeout = time.Second

// bufferReadBatch is the number of records read per call when walking a
// queue.
const bufferReadBatch = 10000

// cmdBuffer dispatches the offline buffer file commands.
func cmdBuffer(args []string, stdout, stderr io.Writer) int {
	usage := func(w io.Writer) {
		fmt.Fprintln(w, "Usage: iot-producer buffer <stats|inspect|export|check|purge|replay|compact> [-path FILE] [flags]")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "  stats     queue depths (records, bytes, frames), oldest and newest append times, file size")
		fmt.Fprintln(w, "  inspect   records per device, per-series sequence numbers, frames")
		fmt.Fprintln(w, "  export    records of one queue as JSON lines, for forensic recovery (-queue kafka, -limit N)")
		fmt.Fprintln(w, "  check     bbolt's consistency check and a scan for intact frames; exit 1 when the file is damaged")
		fmt.Fprintln(w, "  purge     delete every record of one queue (-queue NAME -yes)")
		fmt.Fprintln(w, "  replay    move dead letters back into their sink's queue (-queue kafka.dead [-reason R] -yes)")
		fmt.Fprintln(w, "  compact   rewrite the file at its live size and replace it")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "The agent must be stopped: it holds the file's lock while it runs (its /metrics endpoint has the live numbers).")
		fmt.Fprintf(w, "The default path is %s.\n", defaultBufferPath())
	}
	if len(args) == 3 && args[0] == isolatedChild {
		// The child of an isolated check (see bufferIsolate).
		if err := buffer.RunChild(args[1], args[2], stdout); err != nil {
			fmt.Fprintf(stderr, "buffer %s: %v\n", isolatedChild, err)
			return exitFailure
		}
		return exitOK
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	sub := map[string]func(*bufferCmd) error{
		"stats":   bufferStats,
		"inspect": bufferInspect,
		"export":  bufferExport,
		"check":   bufferCheck,
		"purge":   bufferPurge,
		"replay":  bufferReplay,
		"compact": bufferCompact,
	}
	fn, ok := sub[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "buffer: unknown command %q\n\n", args[0])
		usage(stderr)
		return exitUsage
	}
	c := &bufferCmd{name: args[0], stdout: stdout, stderr: stderr}
	fs := flag.NewFlagSet("buffer "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.path, "path", defaultBufferPath(), "buffer file (buffer.path of the configuration)")
	switch args[0] {
	case "export":
		fs.StringVar(&c.queue, "queue", "kafka", "queue to export (a sink name, or <sink>.dead for its dead letters)")
		fs.IntVar(&c.limit, "limit", 0, "export at most this many records (0: all)")
	case "purge":
		fs.StringVar(&c.queue, "queue", "", "queue to empty (required)")
		fs.BoolVar(&c.yes, "yes", false, "really delete the records")
	case "replay":
		fs.StringVar(&c.queue, "queue", "", "dead-letter queue to replay, <sink>.dead (required)")
		fs.StringVar(&c.reason, "reason", "", "replay only the dead letters of this reason (default: all)")
		fs.BoolVar(&c.yes, "yes", false, "really move the records")
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "buffer %s: unexpected arguments %q\n", args[0], fs.Args())
		return exitUsage
	}
	if c.limit < 0 {
		fmt.Fprintf(stderr, "buffer %s: -limit %d is negative\n", args[0], c.limit)
		return exitUsage
	}
	if err := fn(c); err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "buffer %s: %v\n", args[0], err)
			return exitUsage
		}
		fmt.Fprintf(stderr, "buffer %s: %v\n", args[0], err)
		return exitFailure
	}
	return exitOK
}

// isolatedChild is the hidden buffer command that runs bbolt on a file in
// a child process, so that bbolt cannot crash the agent or the command
// that asked (buffer.Options.Isolate).
const isolatedChild = "isolated-child"

// bufferIsolate returns the isolation of this binary's buffer checks: a
// child process running `iot-producer buffer isolated-child OP PATH`.
// Without its own executable it checks in this process.
func bufferIsolate() buffer.IsolateFunc {
	iso, err := buffer.SelfIsolate("buffer", isolatedChild)
	if err != nil {
		return nil
	}
	return iso
}

// usageError is an error in the command's arguments.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// bufferCmd is one buffer command's flags and output.
type bufferCmd struct {
	name           string
	path, queue    string
	reason         string
	limit          int
	yes            bool
	stdout, stderr io.Writer
}

func defaultBufferPath() string { return filepath.Join(config.DefaultStateDir, "buffer.db") }

// open opens the buffer file read-only (all queues in the file) or, with
// write set, read-write with the given queues.
func (c *bufferCmd) open(write bool, queues ...string) (*buffer.Buffer, error) {
	if _, err := os.Stat(c.path); err != nil {
		return nil, fmt.Errorf("buffer file: %w", err)
	}
	o := buffer.Options{
		Queues:        queues,
		ReadOnly:      !write,
		LockTimeout:   bufferLockTimeout,
		FlushInterval: -1,
		OnCorrupt:     buffer.Fail,
		Logger:        slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Isolate:       bufferIsolate(),
	}
	b, err := buffer.Open(c.path, o)
	if err != nil {
		return nil, openError(c.path, err)
	}
	return b, nil
}

// openError explains the errors of opening a buffer file.
func openError(path string, err error) error {
	switch {
	case errors.Is(err, buffer.ErrLocked):
		return fmt.Errorf("%s is locked: the agent is running (or another buffer command); stop it first, or read the live numbers from the agent's /metrics endpoint (%w)", path, err)
	case errors.Is(err, buffer.ErrCorrupt):
		return fmt.Errorf("%s is damaged (`iot-producer buffer check` says what it still holds); the agent moves such a file aside on start and copies every intact frame from it (buffer.on_corrupt: quarantine): %w", path, err)
	}
	return err
}

func closeBuffer(b *buffer.Buffer, err *error) {
	if cerr := b.Close(); cerr != nil && *err == nil {
		*err = cerr
	}
}

// bufferStats prints the file size and each queue's depth.
func bufferStats(c *bufferCmd) (err error) {
	b, err := c.open(false)
	if err != nil {
		return err
	}
	defer closeBuffer(b, &err)
	st := b.Stats()
	fmt.Fprintf(c.stdout, "file\t%s\n", c.path)
	fmt.Fprintf(c.stdout, "size\t%s (free for reuse: %s)\n", byteSize(st.FileSize), byteSize(st.FreeBytes))
	fmt.Fprintln(c.stdout)
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "QUEUE\tRECORDS\tBYTES\tFRAMES\tOLDEST\tNEWEST\tCORRUPT_FRAMES\tDROPPED")
	for _, q := range b.Queues() {
		qs := st.Queues[q.Name()]
		newest, err := newestAppend(q)
		if err != nil {
			return err
		}
		var drops []string
		for _, r := range buffer.Reasons {
			if n := qs.Dropped[r]; n > 0 {
				drops = append(drops, fmt.Sprintf("%s=%d", r, n))
			}
		}
		if len(drops) == 0 {
			drops = []string{"0"}
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\t%s\t%d\t%s\n", q.Name(), qs.Records, byteSize(qs.Bytes), qs.Frames,
			stamp(qs.Oldest), stamp(newest), qs.CorruptFrames, strings.Join(drops, " "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(c.stdout)
	fmt.Fprintf(c.stdout, "epoch\t%s\n", b.Epoch())
	fmt.Fprintln(c.stdout, "DROPPED counts the records each queue dropped since the file was created, by reason (iot_buffer_dropped_records_total).")
	return nil
}

// bufferCheck runs bbolt's consistency check of the file in a child
// process and scans the raw file for intact frames, and says what the
// agent would recover from it. It exits 1 when the file is damaged: bbolt
// finds a problem, or frames its queues still hold are damaged.
func bufferCheck(c *bufferCmd) error {
	rep, err := buffer.CheckFile(c.path, buffer.CheckOptions{Isolate: bufferIsolate(), LockTimeout: bufferLockTimeout,
		Series: agent.RecordSeries, LastSeqs: agent.LastSeqs})
	if err != nil {
		return openError(c.path, err)
	}
	fmt.Fprintf(c.stdout, "file\t%s (%s)\n", c.path, byteSize(rep.Size))
	if len(rep.Problems) == 0 {
		fmt.Fprintln(c.stdout, "bbolt\tconsistent")
	} else {
		fmt.Fprintf(c.stdout, "bbolt\tdamaged: %d problem(s)\n", len(rep.Problems))
		for _, p := range rep.Problems {
			fmt.Fprintf(c.stdout, "  %s\n", p)
		}
	}
	switch {
	case rep.MetaReadable:
		fmt.Fprintf(c.stdout, "metadata\treadable (%d entries), epoch %s\n", rep.MetaEntries, orDash(rep.Epoch))
	default:
		fmt.Fprintln(c.stdout, "metadata\tunreadable: the sequence state would be lost and a new epoch started")
	}
	fmt.Fprintln(c.stdout)
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "QUEUE\tINTACT_FRAMES\tINTACT_RECORDS\tDAMAGED_FRAMES\tDAMAGED_RECORDS")
	for _, q := range rep.Queues {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\n", q.Queue, q.Intact.Frames, q.Intact.Records, q.Damaged.Frames, q.Damaged.Records)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if rep.LostRangeCount > 0 {
		fmt.Fprintf(c.stdout, "\n%d sequence numbers known lost in %d ranges of %d series", rep.LostSeqs, rep.LostRangeCount, rep.LostSeries)
		if len(rep.LostRanges) < rep.LostRangeCount {
			fmt.Fprintf(c.stdout, " (the %d longest below)", len(rep.LostRanges))
		}
		fmt.Fprintln(c.stdout)
		tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "QUEUE\tSERIES\tFROM\tTO")
		for _, l := range rep.LostRanges {
			to := "its last number"
			if l.To > 0 {
				to = strconv.FormatUint(l.To, 10)
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", l.Queue, l.Series, l.From, to)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	fmt.Fprintln(c.stdout)
	fmt.Fprintln(c.stdout, "Frames are found by their own checksums in the raw file, stale copies of delivered frames included; the agent keeps only those its queues still hold.")
	if len(rep.Problems) > 0 {
		return fmt.Errorf("%s is damaged: the agent will move it aside on start and copy every intact frame from it", c.path)
	}
	if rep.LostRangeCount > 0 {
		return fmt.Errorf("%s has damaged frames its queues still hold: the agent drops them when it reads them, counted as reason=\"corrupt\" (%d sequence numbers lost)", c.path, rep.LostSeqs)
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// newestAppend returns the append time of the newest unacknowledged record
// of q, or the zero time.
func newestAppend(q *buffer.Queue) (time.Time, error) {
	last, ok := q.Last()
	if !ok || last.Frame == 0 {
		return time.Time{}, nil
	}
	// Read the last frame: start after every record of the frame before it.
	rs, err := q.Read(buffer.Pos{Frame: last.Frame - 1, Index: math.MaxUint32}, math.MaxUint16+1)
	if err != nil {
		return time.Time{}, err
	}
	if len(rs) == 0 {
		return time.Time{}, nil
	}
	return rs[len(rs)-1].Appended, nil
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func byteSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

// walk calls fn for every unacknowledged record of q in queue order, and
// stops after limit records when limit > 0.
func walk(q *buffer.Queue, limit int, fn func(buffer.Record) error) error {
	after, n := buffer.Start(), 0
	for {
		want := bufferReadBatch
		if limit > 0 {
			want = min(want, limit-n)
			if want == 0 {
				return nil
			}
		}
		rs, err := q.Read(after, want)
		if err != nil {
			return err
		}
		if len(rs) == 0 {
			return nil
		}
		for _, r := range rs {
			if err := fn(r); err != nil {
				return err
			}
		}
		n += len(rs)
		after = rs[len(rs)-1].Pos
	}
}

// sample is what the buffer commands decode of one record.
type sample struct {
	deadLetter *record.DeadLetter
	env        record.Envelope
	fields     record.Fields
	// err says why the record or its JSON value did not decode.
	err error
	// valueOK: env.Value is valid JSON (even if not a sample).
	valueOK bool
}

// decodeSample decodes a record of a sink queue or, with dead set, of a
// dead-letter queue.
func decodeSample(data []byte, dead bool) sample {
	var s sample
	env := data
	if dead {
		dl, err := record.DecodeDeadLetter(data)
		if err != nil {
			s.err = err
			return s
		}
		s.deadLetter = &dl
		env = dl.Envelope
	}
	e, err := record.DecodeEnvelope(env)
	if err != nil {
		s.err = err
		return s
	}
	s.env = e
	s.valueOK = json.Valid(e.Value)
	s.fields, s.err = record.Decode(e.Value)
	return s
}

func isDeadQueue(name string) bool { return strings.HasSuffix(name, ".dead") }

// seriesRange is what inspect gathers per series of one queue.
type seriesRange struct {
	first, last uint64
	count       int
	outOfOrder  int
}

// bufferInspect prints, per queue, the frames, the records per device and
// the sequence numbers per series, then the sequence metadata.
func bufferInspect(c *bufferCmd) (err error) {
	b, err := c.open(false)
	if err != nil {
		return err
	}
	defer closeBuffer(b, &err)
	seqs, err := ingest.LastSeqs(b)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "file %s (%s)\n", c.path, byteSize(b.Stats().FileSize))
	for _, q := range b.Queues() {
		qs := q.Stats()
		dead := isDeadQueue(q.Name())
		devices := map[string]int{}
		series := map[ingest.Series]*seriesRange{}
		reasons := map[string]int{}
		var firstFrame, lastFrame uint64
		var malformed, records int
		var firstErr error
		err := walk(q, 0, func(r buffer.Record) error {
			records++
			if firstFrame == 0 {
				firstFrame = r.Pos.Frame
			}
			lastFrame = r.Pos.Frame
			s := decodeSample(r.Data, dead)
			if s.deadLetter != nil {
				reasons[s.deadLetter.Reason]++
			}
			if s.err != nil {
				malformed++
				if firstErr == nil {
					firstErr = fmt.Errorf("record %s: %w", r.Pos, s.err)
				}
				if s.env.Key != "" {
					devices[s.env.Key]++
				}
				return nil
			}
			devices[s.env.Key]++
			k := ingest.Series{Device: s.fields.Device, Tag: s.fields.Tag}
			sr := series[k]
			if sr == nil {
				sr = &seriesRange{first: s.fields.Seq}
				series[k] = sr
			} else if s.fields.Seq <= sr.last {
				sr.outOfOrder++
			}
			sr.last = s.fields.Seq
			sr.count++
			return nil
		})
		if err != nil {
			return fmt.Errorf("queue %s: %w", q.Name(), err)
		}
		fmt.Fprintf(c.stdout, "\nqueue %s: %d records in %d frames", q.Name(), records, qs.Frames)
		if records > 0 {
			fmt.Fprintf(c.stdout, " (frames %d..%d)", firstFrame, lastFrame)
		}
		fmt.Fprintf(c.stdout, ", %s, %d devices, %d series\n", byteSize(qs.Bytes), len(devices), len(series))
		if malformed > 0 {
			fmt.Fprintf(c.stdout, "  %d record(s) do not decode as samples; first: %v\n", malformed, firstErr)
		}
		if len(reasons) > 0 {
			fmt.Fprintf(c.stdout, "  dead-letter reasons:")
			for _, r := range sortedKeys(reasons) {
				fmt.Fprintf(c.stdout, " %s=%d", r, reasons[r])
			}
			fmt.Fprintln(c.stdout)
		}
		if len(devices) == 0 {
			continue
		}
		tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  DEVICE\tRECORDS\tSERIES\tSEQ_MIN\tSEQ_MAX\tOUT_OF_ORDER")
		for _, d := range sortedKeys(devices) {
			var n, ooo int
			lo, hi := uint64(math.MaxUint64), uint64(0)
			for k, sr := range series {
				if k.Device != d {
					continue
				}
				n++
				ooo += sr.outOfOrder
				lo, hi = min(lo, sr.first), max(hi, sr.last)
			}
			if n == 0 {
				lo = 0
			}
			fmt.Fprintf(tw, "  %s\t%d\t%d\t%d\t%d\t%d\n", d, devices[d], n, lo, hi, ooo)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	fmt.Fprintf(c.stdout, "\nsequence metadata: %d series", len(seqs))
	if len(seqs) > 0 {
		lo, hi := uint64(math.MaxUint64), uint64(0)
		var loS, hiS ingest.Series
		for k, v := range seqs {
			if v < lo || (v == lo && seriesLess(k, loS)) {
				lo, loS = v, k
			}
			if v > hi || (v == hi && seriesLess(k, hiS)) {
				hi, hiS = v, k
			}
		}
		fmt.Fprintf(c.stdout, ", last seq min %d (%s/%s), max %d (%s/%s)", lo, loS.Device, loS.Tag, hi, hiS.Device, hiS.Tag)
	}
	fmt.Fprintln(c.stdout)
	return nil
}

func seriesLess(a, b ingest.Series) bool {
	return a.Device < b.Device || (a.Device == b.Device && a.Tag < b.Tag)
}

func sortedKeys(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// exportLine is one line of export.
type exportLine struct {
	Queue    string    `json:"queue"`
	Pos      string    `json:"pos"`
	Appended time.Time `json:"appended"`
	// Reason and DeadAt are set for a dead letter.
	Reason string     `json:"reason,omitempty"`
	DeadAt *time.Time `json:"dead_at,omitempty"`
	Key    string     `json:"key,omitempty"`
	Time   *time.Time `json:"time,omitempty"`
	// Value is the record's JSON value as it would be sent.
	Value json.RawMessage `json:"value,omitempty"`
	// Raw holds the whole record (base64) when it does not decode.
	Raw   []byte `json:"raw,omitempty"`
	Error string `json:"error,omitempty"`
}

// bufferExport writes the records of one queue as JSON lines.
func bufferExport(c *bufferCmd) (err error) {
	b, err := c.open(false)
	if err != nil {
		return err
	}
	defer closeBuffer(b, &err)
	q := b.Queue(c.queue)
	if q == nil {
		return usageError{fmt.Sprintf("no queue %q in %s (queues: %s)", c.queue, c.path, queueNames(b))}
	}
	dead := isDeadQueue(c.queue)
	w := bufio.NewWriterSize(c.stdout, 1<<16)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	n := 0
	err = walk(q, c.limit, func(r buffer.Record) error {
		n++
		l := exportLine{Queue: c.queue, Pos: r.Pos.String(), Appended: r.Appended.UTC()}
		s := decodeSample(r.Data, dead)
		if s.deadLetter != nil {
			l.Reason = s.deadLetter.Reason
			at := s.deadLetter.At.UTC()
			l.DeadAt = &at
		}
		if s.env.Value != nil || s.env.Key != "" {
			l.Key = s.env.Key
			t := s.env.Time.UTC()
			l.Time = &t
		}
		switch {
		case s.valueOK:
			l.Value = json.RawMessage(s.env.Value)
			if s.err != nil {
				l.Error = s.err.Error()
			}
		default:
			l.Raw = r.Data
			l.Error = "value is not JSON"
			if s.err != nil {
				l.Error = s.err.Error()
			}
		}
		return enc.Encode(&l)
	})
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		return fmt.Errorf("queue %s: %w", c.queue, err)
	}
	fmt.Fprintf(c.stderr, "exported %d records of queue %s\n", n, c.queue)
	return nil
}

func queueNames(b *buffer.Buffer) string {
	var names []string
	for _, q := range b.Queues() {
		names = append(names, q.Name())
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// bufferPurge acknowledges every record of one queue and commits their
// deletion.
func bufferPurge(c *bufferCmd) (err error) {
	if c.queue == "" {
		return usageError{"-queue is required"}
	}
	ro, err := c.open(false)
	if err != nil {
		return err
	}
	q := ro.Queue(c.queue)
	var before buffer.QueueStats
	if q != nil {
		before = q.Stats()
	}
	names := queueNames(ro)
	if err := ro.Close(); err != nil {
		return err
	}
	if q == nil {
		return usageError{fmt.Sprintf("no queue %q in %s (queues: %s)", c.queue, c.path, names)}
	}
	if !c.yes {
		return usageError{fmt.Sprintf("would delete %d records (%s) of queue %s; add -yes to do it", before.Records, byteSize(before.Bytes), c.queue)}
	}
	b, err := c.open(true, c.queue)
	if err != nil {
		return err
	}
	defer closeBuffer(b, &err)
	q = b.Queue(c.queue)
	n := 0
	pos := make([]buffer.Pos, 0, bufferReadBatch)
	after := buffer.Start()
	for {
		rs, err := q.Read(after, bufferReadBatch)
		if err != nil {
			return fmt.Errorf("queue %s: %w", c.queue, err)
		}
		if len(rs) == 0 {
			break
		}
		pos = pos[:0]
		for _, r := range rs {
			pos = append(pos, r.Pos)
		}
		if err := q.Ack(pos...); err != nil {
			return fmt.Errorf("queue %s: %w", c.queue, err)
		}
		n += len(rs)
		after = rs[len(rs)-1].Pos
	}
	if err := b.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "purged %d records (%s) of queue %s\n", n, byteSize(before.Bytes), c.queue)
	return nil
}

// bufferCompact rewrites the file at its live size into a new file next to
// it and renames that over the original.
func bufferCompact(c *bufferCmd) error {
	fi, err := os.Stat(c.path)
	if err != nil {
		return fmt.Errorf("buffer file: %w", err)
	}
	tmp := c.path + ".compact"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove a leftover %s: %w", tmp, err)
	}
	if err := buffer.Compact(c.path, tmp); err != nil {
		return openError(c.path, err)
	}
	fail := func(err error) error {
		_ = os.Remove(tmp)
		return err
	}
	// The agent must not have written the file meanwhile (it may have been
	// started and stopped during the copy).
	if now, err := os.Stat(c.path); err != nil || !now.ModTime().Equal(fi.ModTime()) || now.Size() != fi.Size() {
		return fail(fmt.Errorf("%s changed during the compaction (is the agent starting?); nothing replaced", c.path))
	}
	if err := os.Chmod(tmp, fi.Mode().Perm()); err != nil {
		return fail(err)
	}
	if err := syncFile(tmp); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, c.path); err != nil {
		return fail(fmt.Errorf("replace %s: %w", c.path, err))
	}
	if err := syncFile(filepath.Dir(c.path)); err != nil {
		return err
	}
	after, err := os.Stat(c.path)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "compacted %s: %s -> %s\n", c.path, byteSize(fi.Size()), byteSize(after.Size()))
	return nil
}

// syncFile fsyncs a file or directory.
func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	serr := f.Sync()
	cerr := f.Close()
	if serr != nil {
		return fmt.Errorf("fsync %s: %w", path, serr)
	}
	return cerr
}

// bufferReplay moves the dead letters of one sink (all, or those of one
// reason) back into the sink's queue, for the agent to send again once the
// cause is fixed. Each chunk's acknowledgements in the dead-letter queue
// and its append to the sink's queue commit in one transaction: a crash
// leaves every record in exactly one of the two queues.
func bufferReplay(c *bufferCmd) (err error) {
	if c.queue == "" {
		return usageError{"-queue is required: the dead-letter queue to replay, <sink>.dead"}
	}
	sink, ok := strings.CutSuffix(c.queue, ".dead")
	if !ok || sink == "" {
		return usageError{fmt.Sprintf("-queue %q is not a dead-letter queue (<sink>.dead, for example kafka.dead)", c.queue)}
	}
	ro, err := c.open(false)
	if err != nil {
		return err
	}
	dq, sq, names := ro.Queue(c.queue), ro.Queue(sink), queueNames(ro)
	if err := ro.Close(); err != nil {
		return err
	}
	if dq == nil || sq == nil {
		return usageError{fmt.Sprintf("no queues %s and %s in %s (queues: %s)", sink, c.queue, c.path, names)}
	}
	b, err := buffer.Open(c.path, buffer.Options{
		Queues:           []string{sink},
		DeadLetterQueues: []string{c.queue},
		LockTimeout:      bufferLockTimeout,
		FlushInterval:    -1,
		OnCorrupt:        buffer.Fail,
		Logger:           slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Isolate:          bufferIsolate(),
	})
	if err != nil {
		return openError(c.path, err)
	}
	defer closeBuffer(b, &err)
	dead := b.Queue(c.queue)
	byReason := map[string]int{}
	moved, kept := 0, 0
	after := buffer.Start()
	for {
		rs, err := dead.Read(after, bufferReadBatch)
		if err != nil {
			return fmt.Errorf("queue %s: %w", c.queue, err)
		}
		if len(rs) == 0 {
			break
		}
		after = rs[len(rs)-1].Pos
		var envs [][]byte
		var pos []buffer.Pos
		for _, r := range rs {
			dl, err := record.DecodeDeadLetter(r.Data)
			if err != nil {
				return fmt.Errorf("queue %s: record %s: %w", c.queue, r.Pos, err)
			}
			if c.reason != "" && dl.Reason != c.reason {
				kept++
				continue
			}
			byReason[dl.Reason]++
			envs = append(envs, dl.Envelope)
			pos = append(pos, r.Pos)
		}
		if len(envs) == 0 || !c.yes {
			moved += len(envs)
			continue
		}
		if err := dead.Ack(pos...); err != nil {
			return fmt.Errorf("queue %s: %w", c.queue, err)
		}
		if err := b.AppendTo(sink, envs); err != nil {
			return fmt.Errorf("append to queue %s: %w", sink, err)
		}
		moved += len(envs)
	}
	reasons := make([]string, 0, len(byReason))
	for _, r := range sortedKeys(byReason) {
		reasons = append(reasons, fmt.Sprintf("%s: %d", r, byReason[r]))
	}
	detail := strings.Join(reasons, ", ")
	if detail == "" {
		detail = "none"
	}
	if !c.yes {
		return usageError{fmt.Sprintf("would move %d dead letters (%s) from %s back to %s, keeping %d; add -yes to do it", moved, detail, c.queue, sink, kept)}
	}
	fmt.Fprintf(c.stdout, "moved %d dead letters (%s) from %s back to %s; %d kept\n", moved, detail, c.queue, sink, kept)
	return nil
}
