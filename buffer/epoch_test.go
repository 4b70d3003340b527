package buffer

import (
	"os"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// setEpoch writes v (nil deletes) as the stored epoch of the closed file at path.
func setEpoch(t *testing.T, path string, v []byte) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error {
		if v == nil {
			return tx.Bucket(sysBucket).Delete(keyEpoch)
		}
		return tx.Bucket(sysBucket).Put(keyEpoch, v)
	}); err != nil {
		t.Fatal(err)
	}
}

func TestEpoch(t *testing.T) {
	path := testPath(t)
	b := openT(t, path, testOptions("q"))
	first := b.Epoch()
	if !validEpoch([]byte(first)) {
		t.Fatalf("epoch %q: want 16 lowercase hex characters", first)
	}
	mustAppend(t, b, payloads("x", 3), map[string][]byte{"k": []byte("v")})
	b = reopen(t, b, testOptions("q"))
	if got := b.Epoch(); got != first {
		t.Fatalf("epoch after reopen %q, want %q", got, first)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	ro := testOptions()
	ro.ReadOnly = true
	if got := openT(t, path, ro).Epoch(); got != first {
		t.Fatalf("read-only epoch %q, want %q", got, first)
	}

	other := openT(t, testPath(t), testOptions("q")).Epoch()
	if other == first || !validEpoch([]byte(other)) {
		t.Fatalf("a second new file has epoch %q (first %q): want a different valid one", other, first)
	}
}

func TestEpochMissingOrDamaged(t *testing.T) {
	for _, c := range []struct {
		name   string
		stored []byte
	}{
		{"missing (older file)", nil},
		{"too short", []byte("abc")},
		{"upper case", []byte("0123456789ABCDEF")},
		{"not hex", []byte("0123456789abcdeg")},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := testPath(t)
			b := openT(t, path, testOptions("q"))
			old := b.Epoch()
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			setEpoch(t, path, c.stored)
			b = openT(t, path, testOptions("q"))
			got := b.Epoch()
			if got == old || !validEpoch([]byte(got)) {
				t.Fatalf("epoch %q (stored %q, before %q): want a new valid one", got, c.stored, old)
			}
			if got2 := reopen(t, b, testOptions("q")).Epoch(); got2 != got {
				t.Fatalf("new epoch not kept: %q then %q", got, got2)
			}
		})
	}
}

func TestEpochAfterQuarantine(t *testing.T) {
	path := testPath(t)
	if err := os.WriteFile(path, []byte("not a bbolt file"), 0o600); err != nil {
		t.Fatal(err)
	}
	if e := openT(t, path, testOptions("q")).Epoch(); !validEpoch([]byte(e)) {
		t.Fatalf("fresh file after quarantine has epoch %q", e)
	}
}
