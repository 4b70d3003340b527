package buffer

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestReadOnly(t *testing.T) {
	path := testPath(t)
	o := testOptions("kafka", "mqtt")
	o.DeadLetterQueues = []string{"kafka.dead"}
	b := openT(t, path, o)
	mustAppend(t, b, payloads("r", 10), map[string][]byte{"k": []byte("v")})
	if err := b.AppendTo("kafka.dead", payloads("d", 2)); err != nil {
		t.Fatal(err)
	}
	rs := readAll(t, b.Queue("kafka"), 100)
	mustAck(t, b.Queue("kafka"), rs[0].Pos, rs[3].Pos)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	ro := testOptions()
	ro.ReadOnly = true
	r := openT(t, path, ro)
	var names []string
	for _, q := range r.Queues() {
		names = append(names, q.Name())
	}
	if want := []string{"kafka", "kafka.dead", "mqtt"}; !slices.Equal(names, want) {
		t.Fatalf("queues = %q, want %q", names, want)
	}
	want := strs(payloads("r", 10))
	want = slices.Delete(want, 3, 4)
	want = slices.Delete(want, 0, 1)
	wantData(t, "kafka", readAll(t, r.Queue("kafka"), 3), want)
	wantData(t, "kafka.dead", readAll(t, r.Queue("kafka.dead"), 3), strs(payloads("d", 2)))
	wantData(t, "mqtt", readAll(t, r.Queue("mqtt"), 3), strs(payloads("r", 10)))
	if got := r.Stats().Queues["kafka"].Records; got != 8 {
		t.Fatalf("kafka records = %d, want 8", got)
	}
	var meta []string
	if err := r.Meta(func(k, v []byte) error { meta = append(meta, string(k)+"="+string(v)); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(meta, []string{"k=v"}) {
		t.Fatalf("meta = %q", meta)
	}
	writes := []struct {
		name string
		err  error
	}{
		{"Append", r.Append(payloads("x", 1), nil)},
		{"AppendTo", r.AppendTo("kafka", payloads("x", 1))},
		{"Flush", r.Flush()},
		{"Ack", r.Queue("kafka").Ack(Pos{Frame: 1})},
	}
	for _, w := range writes {
		if !errors.Is(w.err, ErrReadOnly) {
			t.Errorf("%s on a read-only buffer: %v, want ErrReadOnly", w.name, w.err)
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatal("a read-only open changed the file")
	}
}

func TestReadOnlyNamedQueues(t *testing.T) {
	path := testPath(t)
	b := openT(t, path, testOptions("kafka"))
	mustAppend(t, b, payloads("r", 3), nil)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	ro := testOptions("kafka", "absent")
	ro.ReadOnly = true
	r := openT(t, path, ro)
	wantData(t, "kafka", readAll(t, r.Queue("kafka"), 10), strs(payloads("r", 3)))
	if got := readAll(t, r.Queue("absent"), 10); len(got) != 0 {
		t.Fatalf("absent queue has %d records", len(got))
	}
}

func TestReadOnlyErrors(t *testing.T) {
	dir := t.TempDir()
	notBuffer := filepath.Join(dir, "other.db")
	db, err := bolt.Open(notBuffer, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(garbage, bytes.Repeat([]byte("x"), 64<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	locked := filepath.Join(dir, "locked.db")
	openT(t, locked, testOptions("kafka"))

	cases := []struct {
		name, path string
		wantIs     error
	}{
		{"missing file", filepath.Join(dir, "missing.db"), os.ErrNotExist},
		{"not a buffer", notBuffer, nil},
		{"garbage", garbage, ErrCorrupt},
		{"held by a writer", locked, ErrLocked},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := testOptions()
			o.ReadOnly = true
			o.LockTimeout = 50 * time.Millisecond
			b, err := Open(c.path, o)
			if err == nil {
				b.Close()
				t.Fatal("Open succeeded")
			}
			if c.wantIs != nil && !errors.Is(err, c.wantIs) {
				t.Fatalf("Open: %v, want %v", err, c.wantIs)
			}
			if _, serr := os.Stat(c.path); c.wantIs != os.ErrNotExist && serr != nil {
				t.Fatalf("file moved: %v", serr)
			}
		})
	}
}
