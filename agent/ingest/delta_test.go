package ingest_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iot-producer/iot-producer/agent/ingest"
	"github.com/iot-producer/iot-producer/buffer"
)

// seqKeys counts the buffer's sequence metadata entries by kind: "seqd/"
// (deltas) and "seqv/" (page values).
func seqKeys(t *testing.T, b *buffer.Buffer) (deltas, pages int) {
	t.Helper()
	err := b.Meta(func(k, _ []byte) error {
		switch {
		case strings.HasPrefix(string(k), "seqd/"):
			deltas++
		case strings.HasPrefix(string(k), "seqv/"):
			pages++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return deltas, pages
}

// TestSequenceDeltas commits the same series again and again (each commit
// a delta, with a checkpoint now and then) and checks, after every few
// commits, a copy of the file taken between commits (as a crash leaves
// it) and, at the end, the file reopened: the numbers persisted are the
// numbers committed, and the deltas on disk stay bounded.
func TestSequenceDeltas(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "b.db")
	t0 := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	b := openBuffer(t, path)
	committed, onCommit := committedChan()
	const devices, tags = 7, 20
	in, err := ingest.New(b, ingest.Options{GatewayID: "gw", CommitSize: devices * tags, Logger: quiet,
		Metrics: ingest.Metrics{Committed: onCommit}})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, in)
	check := func(what string, b *buffer.Buffer, want uint64) {
		t.Helper()
		last, err := ingest.LastSeqs(b)
		if err != nil {
			t.Fatal(err)
		}
		if len(last) != devices*tags {
			t.Fatalf("%s: %d series persisted, want %d", what, len(last), devices*tags)
		}
		for s, n := range last {
			if n != want {
				t.Fatalf("%s: %v persisted %d, want %d", what, s, n, want)
			}
		}
	}
	rounds := 700 // beyond the deltas that make a checkpoint
	maxDeltas := 0
	for r := 1; r <= rounds; r++ {
		in.Emit(samples(devices, tags, t0.Add(time.Duration(r)*time.Second)))
		waitCommitted(t, committed, devices*tags)
		d, _ := seqKeys(t, b)
		maxDeltas = max(maxDeltas, d)
		if r%97 == 0 {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			cp := filepath.Join(dir, "copy.db")
			if err := os.WriteFile(cp, data, 0o600); err != nil {
				t.Fatal(err)
			}
			c := openBuffer(t, cp)
			check("copy", c, uint64(r))
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			_ = os.Remove(cp)
		}
	}
	if maxDeltas == 0 || maxDeltas > 256 {
		t.Errorf("at most %d deltas on disk, want some and at most 256", maxDeltas)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = openBuffer(t, path)
	check("reopened", b, uint64(rounds))
	in, err = ingest.New(b, ingest.Options{GatewayID: "gw", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if got := in.LastSeq("dev-3", "tag-7"); got != uint64(rounds) {
		t.Fatalf("last seq after reopen %d, want %d", got, rounds)
	}
	// A new series makes a checkpoint: the deltas are gone.
	stop = run(t, in)
	in.Emit(samples(devices+1, tags, t0.Add(time.Hour)))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if d, p := seqKeys(t, b); d != 0 || p == 0 {
		t.Fatalf("after a checkpoint: %d deltas and %d pages, want none and some", d, p)
	}
	last, err := ingest.LastSeqs(b)
	if err != nil {
		t.Fatal(err)
	}
	if got := last[ingest.Series{Device: "dev-3", Tag: "tag-7"}]; got != uint64(rounds+1) {
		t.Fatalf("after the checkpoint: %d, want %d", got, rounds+1)
	}
	if got := last[ingest.Series{Device: "dev-7", Tag: "tag-0"}]; got != 1 {
		t.Fatalf("new series after the checkpoint: %d, want 1", got)
	}
}
