package buffer

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// smallFile returns the bytes of a small real buffer file: two queues,
// frames of several sizes (a grown one among them), some acknowledged, and
// metadata.
func smallFile(f *testing.F) []byte {
	dir := f.TempDir()
	path := filepath.Join(dir, "seed.db")
	b, err := Open(path, testOptions("kafka", "mqtt"))
	if err != nil {
		f.Fatal(err)
	}
	for i := 0; i < 6; i++ {
		if err := b.Append(payloads("s", 1+i*7), map[string][]byte{"seq/d\x00t": binary.BigEndian.AppendUint64(nil, uint64(i))}); err != nil {
			f.Fatal(err)
		}
	}
	if err := b.Append([][]byte{bytes.Repeat([]byte("big"), 3000)}, nil); err != nil {
		f.Fatal(err)
	}
	rs, err := b.Queue("kafka").Read(Start(), 5)
	if err != nil {
		f.Fatal(err)
	}
	if err := b.Queue("kafka").Ack(rs[0].Pos, rs[3].Pos); err != nil {
		f.Fatal(err)
	}
	if err := b.Close(); err != nil {
		f.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	return data
}

// FuzzOpenDamaged opens arbitrary bytes as a buffer file, with bbolt
// isolated in a child process as the agent runs it: Open must succeed
// (quarantining and salvaging what it cannot trust), every queue must read
// to its end, and the buffer must take new records. The process must not
// crash whatever the bytes.
func FuzzOpenDamaged(f *testing.F) {
	crashOutput(f)
	keepFuzzFDs()
	// A file on which bbolt's check loops costs the child's whole time:
	// a short one keeps the fuzzer busy with other inputs.
	old := childBaseTimeout
	childBaseTimeout = 3 * time.Second
	f.Cleanup(func() { childBaseTimeout = old })
	seed := smallFile(f)
	f.Add(seed)
	for _, off := range []int{0, 4096, 8192, len(seed) / 2, len(seed) - 4096} {
		d := bytes.Clone(seed)
		for i := off; i < min(len(d), off+512); i++ {
			d[i] ^= 0x5a
		}
		f.Add(d)
	}
	f.Add(seed[:len(seed)/2])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "buffer.db")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		o := testOptions("kafka", "mqtt")
		o.Isolate = testIsolate
		b, err := Open(path, o)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer b.Close()
		r := b.Recovery()
		for _, q := range b.Queues() {
			n := 0
			after := Start()
			for {
				rs, err := q.Read(after, 100)
				if err != nil {
					t.Fatalf("queue %s: read: %v", q.Name(), err)
				}
				if len(rs) == 0 {
					break
				}
				n += len(rs)
				after = rs[len(rs)-1].Pos
			}
			if st := q.Stats(); st.Records != int64(n) {
				t.Fatalf("queue %s: stats say %d records, read %d", q.Name(), st.Records, n)
			}
		}
		if r.Quarantined != "" && !r.MetaRecovered && len(r.StateLost) == 0 {
			t.Fatalf("quarantined without the metadata and no state lost: %+v", r)
		}
		if err := b.Append(payloads("after", 2), map[string][]byte{"k": {1}}); err != nil {
			t.Fatalf("append after open: %v", err)
		}
	})
}

// FuzzRawScan scans arbitrary bytes for frames: it never panics, and every
// frame it calls intact verifies and lies within the bytes.
func FuzzRawScan(f *testing.F) {
	seed := smallFile(f)
	f.Add(seed)
	f.Add(appendFrame(nil, payloads("x", 3), 1, testLoc))
	f.Add(legacyFrame(payloads("y", 2), 1))
	f.Fuzz(func(t *testing.T, data []byte) {
		frames, err := scanReader(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		for _, fr := range frames {
			if !fr.intact {
				continue
			}
			if fr.off < 0 || fr.off+int64(fr.length) > int64(len(data)) {
				t.Fatalf("frame at %d of %d bytes outside %d bytes", fr.off, fr.length, len(data))
			}
			v := data[fr.off : fr.off+int64(fr.length)]
			h, err := parseHeader(v)
			if err != nil || verifyFrame(v, h) != nil {
				t.Fatalf("frame at %d called intact does not verify: %v", fr.off, err)
			}
		}
	})
}

// fuzzCrashDirEnv names a directory where each fuzz worker writes what the
// runtime prints when it dies: go test gives its workers no stderr, so a
// worker killed by a fatal error (a panic on a goroutine of bbolt's, a
// fault outside the goroutine that expects it, a stack overflow) would
// leave nothing but "exit status 2".
const fuzzCrashDirEnv = "IOT_PRODUCER_FUZZ_CRASH_DIR"

func crashOutput(f *testing.F) {
	dir := os.Getenv(fuzzCrashDirEnv)
	if dir == "" {
		return
	}
	out, err := os.Create(filepath.Join(dir, fmt.Sprintf("worker-%d.txt", os.Getpid())))
	if err != nil {
		f.Fatal(err)
	}
	if err := debug.SetCrashOutput(out, debug.CrashOptions{}); err != nil {
		f.Fatal(err)
	}
	out.Close()
}

// keepFuzzFDs marks the descriptors a fuzz worker inherits from go test
// (its pipes to the coordinator and the shared input memory, fds 3 to 5,
// left open on exec) close-on-exec, so that the isolation children it
// starts do not hold them.
func keepFuzzFDs() {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return // not Linux: nothing to do
	}
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			syscall.CloseOnExec(fd)
		}
	}
}
