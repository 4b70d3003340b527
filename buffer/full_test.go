package buffer

import (
	"bytes"
	"errors"
	"testing"
)

// TestFileFull caps the file size (as a stand-in for a full disk): with
// DropOldest Append keeps succeeding by dropping the oldest frames, counted
// as disk_full; with DropNewest it fails with ErrFull, commits nothing, and
// succeeds again once the queue is drained.
func TestFileFull(t *testing.T) {
	noCoalesce(t)
	const maxFile = 2 << 20
	rec := bytes.Repeat([]byte("f"), 1000)
	batch := make([][]byte, 100) // about 100 KB
	for i := range batch {
		batch[i] = rec
	}
	t.Run("drop oldest", func(t *testing.T) {
		o := testOptions("kafka", "mqtt")
		o.MaxFileSize = maxFile
		b := openT(t, testPath(t), o)
		for i := 0; i < 60; i++ { // 12 MB over two queues into a 2 MB file
			mustAppend(t, b, batch, nil)
		}
		st := b.Stats()
		if st.FileSize > maxFile {
			t.Fatalf("file grew to %d bytes, cap %d", st.FileSize, maxFile)
		}
		k := st.Queues["kafka"]
		if k.Dropped[ReasonDiskFull] == 0 || k.Records == 0 {
			t.Fatalf("kafka stats %+v: want drops for disk_full and records kept", k)
		}
		if k.Records+int64(k.Dropped[ReasonDiskFull]) != 6000 {
			t.Fatalf("kafka: %d kept + %d dropped != 6000 appended", k.Records, k.Dropped[ReasonDiskFull])
		}
		// What is kept is the newest, in order.
		got := readAll(t, b.Queue("kafka"), 1000)
		if int64(len(got)) != k.Records {
			t.Fatalf("read %d records, stats say %d", len(got), k.Records)
		}
	})
	t.Run("drop newest", func(t *testing.T) {
		o := testOptions("kafka")
		o.MaxFileSize = maxFile
		o.DropPolicy = DropNewest
		b := openT(t, testPath(t), o)
		var err error
		n := 0
		for ; n < 60; n++ {
			if err = b.Append(batch, map[string][]byte{"n": {byte(n)}}); err != nil {
				break
			}
		}
		if !errors.Is(err, ErrFull) {
			t.Fatalf("after %d appends: err = %v, want ErrFull", n, err)
		}
		q := b.Queue("kafka")
		if r := q.Stats().Records; r != int64(n*len(batch)) {
			t.Fatalf("%d records after %d successful appends", r, n)
		}
		var meta []byte
		b.Meta(func(k, v []byte) error { meta = v; return nil })
		if !bytes.Equal(meta, []byte{byte(n - 1)}) {
			t.Fatalf("meta %v after the failed append, want %d", meta, n-1)
		}
		mustAck(t, q, positions(readAll(t, q, 1000))...)
		if err := b.Flush(); err != nil {
			t.Fatal(err)
		}
		mustAppend(t, b, batch, nil) // freed pages are reused
	})
}
