package buffer

import (
	"bytes"
	"encoding/binary"
	"os"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TestReplayAfterLostMetaPage wipes the meta page of the newest commit, so
// that bbolt reads the commit before it: the salvage replays the newest
// commit from the envelopes the raw scan finds (a value set, a key
// deleted) and keeps the epoch, unless the damage also took the commit's
// summary or one of its values, in which case the state is declared lost.
func TestReplayAfterLostMetaPage(t *testing.T) {
	u64 := func(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
	cases := []struct {
		name string
		// spoil damages, besides the meta page, the envelopes of the
		// newest commit (txid) whose bytes match.
		spoil func(kind byte, key []byte) bool
		kept  bool
	}{
		{name: "meta page only", kept: true},
		{name: "and the commit summary", spoil: func(kind byte, _ []byte) bool { return kind == envCommit }},
		{name: "and a value", spoil: func(kind byte, key []byte) bool { return kind == envValue && string(key) == "mseq/a" }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := testPath(t)
			b := openT(t, path, testOptions("kafka"))
			for i := range 20 {
				mustAppend(t, b, payloads("r", 50), map[string][]byte{"seq/a": u64(uint64(i)), "seq/b": u64(uint64(i)), "seq/c": u64(7)})
			}
			mustAppend(t, b, payloads("last", 5), map[string][]byte{"seq/a": u64(100), "seq/b": nil})
			epoch := b.Epoch()
			var txid uint64
			if err := b.db.View(func(tx *bolt.Tx) error { txid = uint64(tx.ID()); return nil }); err != nil {
				t.Fatal(err)
			}
			gen := b.gen
			page := int64(txid%2) * b.pageSize
			size := b.pageSize
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			clear(data[page : page+size])
			spoiled := 0
			for i := 0; i+envHeaderLen <= len(data); i++ {
				l := envLength(data[i:])
				if l == 0 || i+l > len(data) {
					continue
				}
				e, ok := parseEnvelope(data[i : i+l])
				if ok && e.txid == gen && c.spoil != nil && c.spoil(e.kind, e.key) {
					data[i+l-1] ^= 0xFF
					spoiled++
				}
			}
			if c.spoil != nil && spoiled == 0 {
				t.Fatal("nothing to spoil found")
			}
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			o := testOptions("kafka")
			o.Isolate = testIsolate
			b = openT(t, path, o)
			r := b.Recovery()
			if r.Quarantined == "" {
				t.Fatalf("not quarantined: %+v", r)
			}
			if n := len(readAll(t, b.Queue("kafka"), 2000)); n != 1005 {
				t.Errorf("%d records after the salvage, want 1005", n)
			}
			if !c.kept {
				if len(r.StateLost) == 0 || b.Epoch() == epoch || r.MetaRecovered {
					t.Fatalf("state kept although the newest commit is incomplete: epoch %s (was %s), %+v", b.Epoch(), epoch, r)
				}
				return
			}
			if len(r.StateLost) != 0 || b.Epoch() != epoch || r.CommitsReplayed != 1 || !r.MetaRecovered {
				t.Fatalf("epoch %s (was %s), recovery %+v", b.Epoch(), epoch, r)
			}
			got := map[string]uint64{}
			if err := b.Meta(func(k, v []byte) error { got[string(k)] = binary.BigEndian.Uint64(v); return nil }); err != nil {
				t.Fatal(err)
			}
			if len(got) != 2 || got["seq/a"] != 100 || got["seq/c"] != 7 {
				t.Fatalf("metadata after the replay %v, want seq/a=100 seq/c=7 and seq/b deleted", got)
			}
		})
	}
}

// TestEnvelopeRoundTrip checks the envelope and summary encodings and that
// values of earlier builds read as they are.
func TestEnvelopeRoundTrip(t *testing.T) {
	v := appendEnvelope(nil, envValue, 42, []byte("mkey"), []byte("value"))
	e, ok := parseEnvelope(v)
	if !ok || e.txid != 42 || string(e.key) != "mkey" || string(e.value) != "value" || !bytes.Equal(unwrap(v), []byte("value")) {
		t.Fatalf("envelope %+v %v", e, ok)
	}
	v[len(v)-6] ^= 1
	if _, ok := parseEnvelope(v); ok || !bytes.Equal(unwrap(v), v) {
		t.Fatal("a damaged envelope parsed")
	}
	s := commitSummary{next: 9, puts: 3, sum: 77, epoch: "0123456789abcdef", deleted: [][]byte{[]byte("x"), []byte("yz")}, all: true}
	d, ok := decodeSummary(5, s.encode())
	if !ok || d.next != 9 || d.puts != 3 || d.sum != 77 || d.epoch != s.epoch || len(d.deleted) != 2 || string(d.deleted[1]) != "yz" {
		t.Fatalf("summary %+v %v", d, ok)
	}
	if n, ok := sysNext(binary.BigEndian.AppendUint64(nil, 12)); !ok || n != 12 {
		t.Fatal("next frame of an earlier build")
	}
}

// TestReplayAfterCompact compacts a file (bbolt numbers its transactions
// again from the start; the commit numbers in the summaries go on), commits
// to the compacted file, then wipes its newest meta page: the last commit
// is replayed and the state kept.
func TestReplayAfterCompact(t *testing.T) {
	u64 := func(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
	src := testPath(t)
	b := openT(t, src, testOptions("kafka"))
	for i := range 30 {
		mustAppend(t, b, payloads("r", 20), map[string][]byte{"seq": u64(uint64(i))})
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	dst := testPath(t)
	if err := Compact(src, dst); err != nil {
		t.Fatal(err)
	}
	b = openT(t, dst, testOptions("kafka"))
	epoch := b.Epoch()
	for i := 30; i < 33; i++ {
		mustAppend(t, b, payloads("s", 20), map[string][]byte{"seq": u64(uint64(i))})
	}
	var txid uint64
	if err := b.db.View(func(tx *bolt.Tx) error { txid = uint64(tx.ID()); return nil }); err != nil {
		t.Fatal(err)
	}
	page := int64(txid%2) * b.pageSize
	size := b.pageSize
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	clear(data[page : page+size])
	if err := os.WriteFile(dst, data, 0o600); err != nil {
		t.Fatal(err)
	}
	o := testOptions("kafka")
	o.Isolate = testIsolate
	b = openT(t, dst, o)
	r := b.Recovery()
	v, err := b.MetaValue("seq")
	if err != nil {
		t.Fatal(err)
	}
	if r.Quarantined == "" || len(r.StateLost) != 0 || r.CommitsReplayed != 1 || b.Epoch() != epoch || binary.BigEndian.Uint64(v) != 32 {
		t.Fatalf("seq %x, epoch %s (was %s), recovery %+v", v, b.Epoch(), epoch, r)
	}
	if n := len(readAll(t, b.Queue("kafka"), 1000)); n != 660 {
		t.Fatalf("%d records after the salvage, want 660", n)
	}
}
