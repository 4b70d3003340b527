package buffer

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestQuarantineSalvagesIntactQueues damages the root page of one queue's
// bucket: Open's structural check fails, the file is quarantined, and every
// frame of both queues (found in the raw file), the acknowledgements bbolt
// can still read and the metadata are copied into the fresh file.
func TestQuarantineSalvagesIntactQueues(t *testing.T) {
	path := testPath(t)
	o := testOptions("kafka", "mqtt")
	var logs logSink
	o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	b := openT(t, path, o)
	recs := make([][]byte, 200)
	for i := range recs {
		recs[i] = append(bytes.Repeat([]byte("p"), 1000), byte(i))
	}
	for i := 0; i < 3; i++ {
		mustAppend(t, b, recs, map[string][]byte{"seq": {byte(i)}})
	}
	k := b.Queue("kafka")
	all := readAll(t, k, 1000)
	mustAck(t, k, all[0].Pos, all[1].Pos, all[599].Pos)
	lastFrame := all[599].Pos.Frame
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var root uint64
	db.View(func(tx *bolt.Tx) error {
		root = uint64(tx.Bucket([]byte(queuePrefix + "mqtt")).Root())
		return nil
	})
	pageSize := db.Info().PageSize
	db.Close()
	if root == 0 {
		t.Fatal("mqtt bucket is inline; the test needs a bucket with its own pages")
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte{0xEE}, 64), int64(root)*int64(pageSize)); err != nil {
		t.Fatal(err)
	}
	f.Close()

	b = openT(t, path, o)
	moved, _ := filepath.Glob(path + ".corrupt-*")
	if len(moved) != 1 {
		t.Fatalf("quarantined files: %v; log: %s", moved, logs.String())
	}
	got := readAll(t, b.Queue("kafka"), 1000)
	if len(got) != 597 || got[0].Pos != all[2].Pos || got[596].Pos != all[598].Pos {
		t.Fatalf("kafka after salvage: %d records from %v; log: %s", len(got), got[0].Pos, logs.String())
	}
	if n := b.Queue("mqtt").Stats().Records; n != 600 {
		t.Fatalf("mqtt holds %d records after salvage, want 600", n)
	}
	if r := b.Recovery(); !r.MetaRecovered || len(r.StateLost) != 0 || r.RecordsRecovered != 1200 || r.RecordsLost != 0 {
		t.Fatalf("recovery %+v", r)
	}
	var seq []byte
	b.Meta(func(k, v []byte) error { seq = v; return nil })
	if !bytes.Equal(seq, []byte{2}) {
		t.Fatalf("meta seq = %v", seq)
	}
	t.Log(logs.String())
	if l := logs.String(); !strings.Contains(l, "salvaged") || !strings.Contains(l, "records_recovered=1200") {
		t.Fatalf("log does not report the salvage: %s", l)
	}
	mustAppend(t, b, payloads("new", 1), nil)
	got = readAll(t, b.Queue("mqtt"), 1000)
	if last := got[len(got)-1]; len(got) != 601 || last.Pos.Frame <= lastFrame || string(last.Data) != "new-0" {
		t.Fatalf("new record after salvage: %d records, last %v %q, want 601 ending in a frame after %d", len(got), last.Pos, last.Data, lastFrame)
	}
}
