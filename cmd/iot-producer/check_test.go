package main

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
	"time"
)

// TestMain runs this test binary as the buffer commands' isolation child
// when it is started as one (`<binary> buffer isolated-child OP PATH`), as
// the installed binary is.
func TestMain(m *testing.M) {
	if len(os.Args) == 5 && os.Args[1] == "buffer" && os.Args[2] == isolatedChild {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// TestBufferCheckAndDamage runs check, stats and export on a healthy file
// and on damaged copies of it: check says what is intact and exits 1 for a
// damaged file; none of them crashes, whatever the bytes.
func TestBufferCheckAndDamage(t *testing.T) {
	const rounds = 400
	path := makeBufferFile(t, rounds, 10)
	// Compacted, the file holds each frame once: no stale copy in a freed
	// page can stand in for the frame the damage below hits.
	if code, out, errOut := runBuffer(t, "compact", "-path", path); code != exitOK {
		t.Fatalf("compact: exit %d\n%s%s", code, out, errOut)
	}
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runBuffer(t, "check", "-path", path)
	if code != exitOK || !strings.Contains(out, "bbolt\tconsistent") || !strings.Contains(out, "metadata\treadable") || !strings.Contains(out, "kafka ") {
		t.Fatalf("check of a healthy file: exit %d\n%s%s", code, out, errOut)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	damage := map[string]func(d []byte) []byte{
		// The second half of the newest frame, a frame the queue still
		// holds, overwritten where its bytes are (where frames lie depends
		// on how the commits fell): its header still names it, its
		// checksum fails, so its records are known lost.
		"newest frame damaged": func(d []byte) []byte {
			v := newestFrame(t, path)
			at := bytes.Index(d, v)
			if at < 0 || bytes.Contains(d[at+1:], v) {
				t.Fatal("the newest frame is not in the compacted file exactly once")
			}
			for i := at + len(v)/2; i < at+len(v); i++ {
				d[i] = byte(rng.Uint32())
			}
			return d
		},
		"both meta pages": func(d []byte) []byte {
			for i := range 8192 {
				d[i] = byte(rng.Uint32())
			}
			return d
		},
		"whole file random": func(d []byte) []byte {
			for i := range d {
				d[i] = byte(rng.Uint32())
			}
			return d
		},
		"zero-length": func([]byte) []byte { return nil },
	}
	for name, do := range damage {
		t.Run(name, func(t *testing.T) {
			p := t.TempDir() + "/buffer.db"
			if err := os.WriteFile(p, do(append([]byte(nil), orig...)), 0o600); err != nil {
				t.Fatal(err)
			}
			code, out, errOut := runBuffer(t, "check", "-path", p)
			if code != exitFailure || !strings.Contains(errOut, "damaged") {
				t.Errorf("check: exit %d, want 1 naming the damage\n%s%s", code, out, errOut)
			}
			t.Logf("check:\n%s", out)
			if name == "newest frame damaged" && !strings.Contains(out, "sequence numbers known lost in") {
				t.Errorf("check does not name the sequence ranges lost in the damaged frame:\n%s", out)
			}
			for _, cmd := range []string{"stats", "export", "inspect"} {
				code, out, errOut := runBuffer(t, cmd, "-path", p)
				if code == exitOK && name != "newest frame damaged" {
					t.Errorf("%s of a damaged file succeeded:\n%s", cmd, out)
				}
				if code != exitOK && !strings.Contains(errOut, "damaged") && !strings.Contains(errOut, "corrupt") {
					t.Errorf("%s: exit %d without naming the damage: %s", cmd, code, errOut)
				}
			}
		})
	}
}

// newestFrame returns a copy of the last frame of the kafka queue in the
// buffer file at path, read with bbolt directly.
func newestFrame(t *testing.T, path string) []byte {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v []byte
	err = db.View(func(tx *bolt.Tx) error {
		bkt := tx.Bucket([]byte("q/kafka"))
		if bkt == nil {
			return errors.New("no bucket q/kafka")
		}
		// Each frame is a nested bucket holding the frame under "d".
		last, _ := bkt.Cursor().Last()
		if fb := bkt.Bucket(last); fb != nil {
			v = bytes.Clone(fb.Get([]byte("d")))
		}
		return nil
	})
	if err != nil || len(v) == 0 {
		t.Fatalf("newest frame of queue kafka: %v (%d bytes)", err, len(v))
	}
	return v
}
