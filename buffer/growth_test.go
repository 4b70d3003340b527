package buffer

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestFileReusesFreedPages fills and drains the queue in cycles: once the
// first cycles have sized the file, pages freed by deletions are reused and
// the file stops growing.
func TestFileReusesFreedPages(t *testing.T) {
	o := testOptions("kafka", "mqtt")
	b := openT(t, testPath(t), o)
	rec := bytes.Repeat([]byte("r"), 1000)
	batch := make([][]byte, 1500)
	for i := range batch {
		batch[i] = rec
	}
	var sizes []int64
	for cycle := 0; cycle < 6; cycle++ {
		for i := 0; i < 8; i++ { // 12 MB per queue
			mustAppend(t, b, batch, nil)
		}
		for _, q := range b.Queues() {
			after := Start()
			for {
				rs, err := q.Read(after, 700)
				if err != nil {
					t.Fatal(err)
				}
				if len(rs) == 0 {
					break
				}
				mustAck(t, q, positions(rs)...)
				after = rs[len(rs)-1].Pos
			}
		}
		if err := b.Flush(); err != nil {
			t.Fatal(err)
		}
		st := b.Stats()
		sizes = append(sizes, st.FileSize)
		if st.Queues["kafka"].Records != 0 {
			t.Fatalf("cycle %d: %d records left", cycle, st.Queues["kafka"].Records)
		}
	}
	t.Logf("file sizes per cycle: %v", sizes)
	if sizes[len(sizes)-1] != sizes[2] {
		t.Fatalf("file kept growing across cycles: %v", sizes)
	}
	if sizes[2] > 64<<20 {
		t.Fatalf("file is %d bytes for 24 MB of live data at most", sizes[2])
	}
	if free := b.Stats().FreeBytes; free <= 0 {
		t.Fatalf("FreeBytes = %d after draining everything", free)
	}
}

func TestCompact(t *testing.T) {
	o := testOptions("kafka")
	path := testPath(t)
	b := openT(t, path, o)
	big := bytes.Repeat([]byte("z"), 1000)
	batch := make([][]byte, 1000)
	for i := range batch {
		batch[i] = big
	}
	for i := 0; i < 10; i++ {
		mustAppend(t, b, batch, map[string][]byte{"seq": {byte(i)}})
	}
	mustAppend(t, b, payloads("keep", 5), nil)
	q := b.Queue("kafka")
	rs, err := q.Read(Start(), 20000)
	if err != nil {
		t.Fatal(err)
	}
	mustAck(t, q, positions(rs[:10000])...)
	mustAck(t, q, rs[10001].Pos)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "compact.db")
	if err := Compact(path, dst); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(path)
	after, _ := os.Stat(dst)
	if after.Size() >= before.Size()/4 {
		t.Fatalf("compacted file %d bytes, original %d", after.Size(), before.Size())
	}
	if err := Compact(path, dst); err == nil {
		t.Fatal("Compact over an existing file succeeded")
	}
	c := openT(t, dst, o)
	wantData(t, "compacted", readAll(t, c.Queue("kafka"), 100), []string{"keep-0", "keep-2", "keep-3", "keep-4"})
	var seq []byte
	if err := c.Meta(func(k, v []byte) error { seq = v; return nil }); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(seq, []byte{9}) {
		t.Fatalf("meta seq = %v", seq)
	}
	// Frame numbers continue after the compacted file's last frame.
	mustAppend(t, c, payloads("new", 1), nil)
	got := readAll(t, c.Queue("kafka"), 100)
	if last := got[len(got)-1].Pos.Frame; last <= rs[len(rs)-1].Pos.Frame {
		t.Fatalf("new frame %d not after %d", last, rs[len(rs)-1].Pos.Frame)
	}
}
