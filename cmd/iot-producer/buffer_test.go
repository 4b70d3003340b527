package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iot-producer/iot-producer/agent/ingest"
	"github.com/iot-producer/iot-producer/buffer"
	"github.com/iot-producer/iot-producer/drivers"
	"github.com/iot-producer/iot-producer/record"
)

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// bufferOptions are the options the agent opens the buffer with, for one
// Kafka sink.
func bufferOptions() buffer.Options {
	return buffer.Options{
		Queues:           []string{"kafka"},
		DeadLetterQueues: []string{"kafka.dead"},
		NoSync:           true,
		FlushInterval:    -1,
		Logger:           quietLog,
	}
}

// commitDay, in a case's stdout, stands for the day (UTC, RFC 3339 up to
// the T) on which makeBufferFile committed the file's records.
const commitDay = "<commit day>"

// makeBufferFile writes a buffer file the way the agent does: the ingest
// stage commits 3 devices × 2 tags × rounds samples (sequence numbers
// 1..rounds per series), then the first acked records of the kafka queue
// are acknowledged and two dead letters are added.
func makeBufferFile(t *testing.T, rounds, acked int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "buffer.db")
	b, err := buffer.Open(path, bufferOptions())
	if err != nil {
		t.Fatal(err)
	}
	in, err := ingest.New(b, ingest.Options{GatewayID: "gw", CommitSize: 4, Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	t0 := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	for r := range rounds {
		var ss []drivers.Sample
		for d := 1; d <= 3; d++ {
			for tag := 1; tag <= 2; tag++ {
				ss = append(ss, drivers.Sample{
					Device: fmt.Sprintf("dev-%d", d), Tag: fmt.Sprintf("tag-%d", tag),
					Value: drivers.Float(float64(r)), ReadTime: t0.Add(time.Duration(r) * time.Second),
				})
			}
		}
		in.Emit(ss)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	q := b.Queue("kafka")
	rs, err := q.Read(buffer.Start(), acked)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if err := q.Ack(r.Pos); err != nil {
			t.Fatal(err)
		}
	}
	big := record.Fields{Gateway: "gw", Epoch: "0123456789abcdef", Device: "dev-9", Tag: "blob", Seq: 1, Type: "string", String: "x", Quality: "good", ReadTime: t0}
	env := record.AppendEnvelope(nil, "dev-9", t0, big.Epoch, record.AppendJSON(nil, &big))
	dead := [][]byte{
		record.AppendDeadLetter(nil, "MESSAGE_TOO_LARGE", t0.Add(time.Hour), env),
		record.AppendDeadLetter(nil, "malformed", t0.Add(2*time.Hour), []byte("not an envelope")),
	}
	if err := b.AppendTo("kafka.dead", dead); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func runBuffer(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(append([]string{"buffer"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// lockBuffer holds the file open read-write, as a running agent does.
func lockBuffer(t *testing.T, path string) {
	t.Helper()
	b, err := buffer.Open(path, bufferOptions())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
}

func TestBufferCommands(t *testing.T) {
	old := bufferLockTimeout
	bufferLockTimeout = 50 * time.Millisecond
	t.Cleanup(func() { bufferLockTimeout = old })

	cases := []struct {
		name   string
		args   []string
		locked bool
		code   int
		stdout []string
		stderr []string
	}{
		{name: "stats", args: []string{"stats"}, code: exitOK, stdout: []string{
			"kafka  ", " 55 ", "kafka.dead", commitDay, "iot_buffer_dropped_records_total",
		}},
		{name: "inspect", args: []string{"inspect"}, code: exitOK, stdout: []string{
			"queue kafka: 55 records", "3 devices, 6 series",
			"dev-1", "dev-3",
			"queue kafka.dead: 2 records", "MESSAGE_TOO_LARGE=1", "malformed=1", "1 record(s) do not decode",
			"sequence metadata: 6 series, last seq min 10 (dev-1/tag-1), max 10 (dev-1/tag-1)",
		}},
		{name: "export dead letters", args: []string{"export", "-queue", "kafka.dead"}, code: exitOK,
			stdout: []string{`"reason":"MESSAGE_TOO_LARGE"`, `"value":{"schema":`, `"device":"dev-9"`, `"raw":`}, stderr: []string{"exported 2 records"}},
		{name: "export unknown queue", args: []string{"export", "-queue", "mqtt"}, code: exitUsage,
			stderr: []string{`no queue "mqtt"`, "kafka, kafka.dead"}},
		{name: "purge needs yes", args: []string{"purge", "-queue", "kafka"}, code: exitUsage,
			stderr: []string{"would delete 55 records", "-yes"}},
		{name: "purge needs a queue", args: []string{"purge", "-yes"}, code: exitUsage, stderr: []string{"-queue is required"}},
		{name: "missing file", args: []string{"stats", "-path", "/nonexistent/buffer.db"}, code: exitFailure,
			stderr: []string{"/nonexistent/buffer.db", "no such file"}},
		{name: "unknown subcommand", args: []string{"shrink"}, code: exitUsage, stderr: []string{`unknown command "shrink"`}},
		{name: "help", args: []string{"-h"}, code: exitOK, stdout: []string{"stats", "compact"}},
	}
	for _, sub := range []string{"stats", "inspect", "export", "compact"} {
		cases = append(cases, struct {
			name   string
			args   []string
			locked bool
			code   int
			stdout []string
			stderr []string
		}{name: sub + " while the agent runs", args: []string{sub}, locked: true, code: exitFailure,
			stderr: []string{"is locked: the agent is running", "/metrics"}})
	}
	cases = append(cases, struct {
		name   string
		args   []string
		locked bool
		code   int
		stdout []string
		stderr []string
	}{name: "purge while the agent runs", args: []string{"purge", "-queue", "kafka", "-yes"}, locked: true, code: exitFailure,
		stderr: []string{"is locked: the agent is running"}})

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := time.Now().UTC()
			path := makeBufferFile(t, 10, 5)
			after := time.Now().UTC()
			if c.locked {
				lockBuffer(t, path)
			}
			args := c.args
			if len(args) > 0 && args[0] != "-h" && !strings.Contains(strings.Join(args, " "), "-path") {
				args = append(args, "-path", path)
			}
			code, stdout, stderr := runBuffer(t, args...)
			if code != c.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, c.code, stdout, stderr)
			}
			for _, w := range c.stdout {
				if w == commitDay {
					// The records' commit times, the day the file was written.
					if !strings.Contains(stdout, before.Format("2006-01-02T")) && !strings.Contains(stdout, after.Format("2006-01-02T")) {
						t.Errorf("stdout lacks the commit day %s:\n%s", before.Format("2006-01-02"), stdout)
					}
					continue
				}
				if !strings.Contains(stdout, w) {
					t.Errorf("stdout lacks %q:\n%s", w, stdout)
				}
			}
			for _, w := range c.stderr {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			if c.locked {
				if _, err := os.Stat(path + ".compact"); err == nil {
					t.Error("compact left its temporary file")
				}
			}
		})
	}
}

func TestBufferExport(t *testing.T) {
	path := makeBufferFile(t, 10, 5)
	cases := []struct {
		name  string
		args  []string
		lines int
	}{
		{"all", nil, 55},
		{"limit", []string{"-limit", "7"}, 7},
		{"limit beyond", []string{"-limit", "1000"}, 55},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, stdout, stderr := runBuffer(t, append([]string{"export", "-path", path}, c.args...)...)
			if code != exitOK {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			sc := bufio.NewScanner(strings.NewReader(stdout))
			n := 0
			seen := map[string]bool{}
			last := map[string]uint64{}
			for sc.Scan() {
				n++
				var l struct {
					Queue    string          `json:"queue"`
					Pos      string          `json:"pos"`
					Appended time.Time       `json:"appended"`
					Key      string          `json:"key"`
					Time     time.Time       `json:"time"`
					Value    json.RawMessage `json:"value"`
					Reason   string          `json:"reason"`
				}
				if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
					t.Fatalf("line %d: %v: %s", n, err, sc.Text())
				}
				if l.Queue != "kafka" || l.Appended.IsZero() || l.Time.IsZero() || l.Reason != "" {
					t.Fatalf("line %d: %s", n, sc.Text())
				}
				if seen[l.Pos] {
					t.Fatalf("position %s twice", l.Pos)
				}
				seen[l.Pos] = true
				if l.Value[0] != '{' {
					t.Fatalf("line %d: value not embedded as an object: %s", n, sc.Text())
				}
				f, err := record.Decode(l.Value)
				if err != nil {
					t.Fatalf("line %d: %v", n, err)
				}
				if f.Device != l.Key {
					t.Fatalf("line %d: key %q, device %q", n, l.Key, f.Device)
				}
				k := f.Device + "/" + f.Tag
				if f.Seq <= last[k] {
					t.Fatalf("line %d: %s seq %d after %d", n, k, f.Seq, last[k])
				}
				last[k] = f.Seq
			}
			if n != c.lines {
				t.Fatalf("%d lines, want %d", n, c.lines)
			}
		})
	}
}

func TestBufferPurgeAndCompact(t *testing.T) {
	path := makeBufferFile(t, 2000, 0)
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := runBuffer(t, "stats", "-path", path); code != exitOK {
		t.Fatal(stderr)
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatal("stats changed the file")
	}

	code, stdout, stderr := runBuffer(t, "purge", "-queue", "kafka", "-yes", "-path", path)
	if code != exitOK || !strings.Contains(stdout, "purged 12000 records") {
		t.Fatalf("purge: exit %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, stderr = runBuffer(t, "compact", "-path", path)
	if code != exitOK || !strings.Contains(stdout, "compacted") {
		t.Fatalf("compact: exit %d\n%s%s", code, stdout, stderr)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() >= int64(len(before)) {
		t.Fatalf("compacted file is %d bytes, was %d", fi.Size(), len(before))
	}
	if _, err := os.Stat(path + ".compact"); err == nil {
		t.Fatal("temporary file left behind")
	}
	b, err := buffer.Open(path, bufferOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	st := b.Stats()
	if got := st.Queues["kafka"].Records; got != 0 {
		t.Fatalf("kafka holds %d records after purge", got)
	}
	if got := st.Queues["kafka.dead"].Records; got != 2 {
		t.Fatalf("kafka.dead holds %d records, want 2 (purge of kafka must not touch it)", got)
	}
	seqs, err := ingest.LastSeqs(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(seqs) != 6 || seqs[ingest.Series{Device: "dev-2", Tag: "tag-2"}] != 2000 {
		t.Fatalf("sequence metadata after purge and compact: %v", seqs)
	}
}

// TestBufferReplay moves dead letters back into their sink's queue, first
// those of one reason, then the rest, and checks both queues after each.
func TestBufferReplay(t *testing.T) {
	path := makeBufferFile(t, 10, 0) // 60 records in kafka, 2 dead letters
	depths := func() (kafka, dead int64, last []byte) {
		t.Helper()
		b, err := buffer.Open(path, bufferOptions())
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		rs, err := b.Queue("kafka").Read(buffer.Start(), 1000)
		if err != nil {
			t.Fatal(err)
		}
		return b.Queue("kafka").Stats().Records, b.Queue("kafka.dead").Stats().Records, rs[len(rs)-1].Data
	}
	steps := []struct {
		name       string
		args       []string
		code       int
		out        string
		kafka, dlq int64
		lastDevice string // the device of the last record of kafka, "" to skip
	}{
		{"not a dead-letter queue", []string{"-queue", "kafka", "-yes"}, exitUsage, "not a dead-letter queue", 60, 2, ""},
		{"no such queue", []string{"-queue", "mqtt.dead", "-yes"}, exitUsage, "no queues mqtt and mqtt.dead", 60, 2, ""},
		{"dry run", []string{"-queue", "kafka.dead", "-reason", "MESSAGE_TOO_LARGE"}, exitUsage, "would move 1 dead letters (MESSAGE_TOO_LARGE: 1) from kafka.dead back to kafka, keeping 1; add -yes", 60, 2, ""},
		{"one reason", []string{"-queue", "kafka.dead", "-reason", "MESSAGE_TOO_LARGE", "-yes"}, exitOK, "moved 1 dead letters (MESSAGE_TOO_LARGE: 1) from kafka.dead back to kafka; 1 kept", 61, 1, "dev-9"},
		{"the rest", []string{"-queue", "kafka.dead", "-yes"}, exitOK, "moved 1 dead letters (malformed: 1) from kafka.dead back to kafka; 0 kept", 62, 0, ""},
		{"nothing left", []string{"-queue", "kafka.dead", "-yes"}, exitOK, "moved 0 dead letters (none)", 62, 0, ""},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			code, stdout, stderr := runBuffer(t, append([]string{"replay", "-path", path}, st.args...)...)
			if code != st.code || !strings.Contains(stdout+stderr, st.out) {
				t.Fatalf("exit %d, want %d; output %q, want it to contain %q", code, st.code, stdout+stderr, st.out)
			}
			kafka, dead, last := depths()
			if kafka != st.kafka || dead != st.dlq {
				t.Fatalf("kafka %d, kafka.dead %d; want %d and %d", kafka, dead, st.kafka, st.dlq)
			}
			if st.lastDevice != "" {
				env, err := record.DecodeEnvelope(last)
				if err != nil {
					t.Fatal(err)
				}
				if env.Key != st.lastDevice {
					t.Fatalf("last record of kafka is %s's, want the replayed %s's", env.Key, st.lastDevice)
				}
			}
		})
	}
}
