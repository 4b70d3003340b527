package main

import (
	"bytes"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
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
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runBuffer(t, "check", "-path", path)
	if code != exitOK || !strings.Contains(out, "bbolt\tconsistent") || !strings.Contains(out, "metadata\treadable") || !strings.Contains(out, "kafka ") {
		t.Fatalf("check of a healthy file: exit %d\n%s%s", code, out, errOut)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	// newest is the read time of the last round's records.
	newest := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC).Add((rounds - 1) * time.Second).Format(time.RFC3339)
	damage := map[string]func(d []byte) []byte{
		// Where the frames lie depends on how the commits fell, so the
		// 64 KiB end just past the newest record's last copy: a frame the
		// queue still holds, so something is known lost.
		"64KiB random in the middle": func(d []byte) []byte {
			end := bytes.LastIndex(d, []byte(newest)) + len(newest)
			if end < len(newest) {
				t.Fatalf("the newest record %s is not in the file", newest)
			}
			for i := max(0, end-64<<10); i < end; i++ {
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
			if name == "64KiB random in the middle" && !strings.Contains(out, "sequence numbers known lost in") {
				t.Errorf("check does not name the sequence ranges lost in the damaged frame:\n%s", out)
			}
			for _, cmd := range []string{"stats", "export", "inspect"} {
				code, out, errOut := runBuffer(t, cmd, "-path", p)
				if code == exitOK && name != "64KiB random in the middle" {
					t.Errorf("%s of a damaged file succeeded:\n%s", cmd, out)
				}
				if code != exitOK && !strings.Contains(errOut, "damaged") && !strings.Contains(errOut, "corrupt") {
					t.Errorf("%s: exit %d without naming the damage: %s", cmd, code, errOut)
				}
			}
		})
	}
}
