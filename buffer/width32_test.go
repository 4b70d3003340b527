//go:build 386 || arm || mips || mipsle

package buffer

import (
	"bytes"
	"testing"
)

// The 32-bit set (GOARCH=arm under qemu in CI, scripts/ci-qemu.sh): the
// file must fit the address space, so Open caps it and CheckBounds wants a
// bound. width64_test.go holds the 64-bit counterpart; exactly one of the
// two runs on any platform.

func TestPlatform32Limits(t *testing.T) {
	if !is32bit {
		t.Fatal("built for a 32-bit GOARCH but is32bit is false")
	}
	cases := []struct {
		name     string
		maxFile  int64
		wantFile int64
	}{
		{"default", 0, maxFile32},
		{"larger than the address space allows", 4 << 30, maxFile32},
		{"smaller kept", 64 << 20, 64 << 20},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := testOptions("kafka")
			o.MaxFileSize = c.maxFile
			got, err := o.withDefaults()
			if err != nil {
				t.Fatal(err)
			}
			if got.MaxFileSize != c.wantFile {
				t.Fatalf("MaxFileSize %d, want %d", got.MaxFileSize, c.wantFile)
			}
		})
	}
	if err := CheckBounds(0, 1); err == nil {
		t.Fatal("CheckBounds accepts an unbounded queue on a 32-bit platform")
	}
	if err := CheckBounds(MaxBytesLimit32, 1); err != nil {
		t.Fatalf("CheckBounds(MaxBytesLimit32, 1): %v", err)
	}
	if err := CheckBounds(MaxBytesLimit32, 2); err == nil {
		t.Fatal("CheckBounds accepts 2 × MaxBytesLimit32")
	}
}

// TestPlatform32FileGrowth grows a file past 90 MiB through the memory map
// (several remaps) and reads it back after a reopen.
func TestPlatform32FileGrowth(t *testing.T) {
	o := testOptions("kafka")
	b := openT(t, testPath(t), o)
	rec := bytes.Repeat([]byte("g"), 4000)
	batch := make([][]byte, 1000) // 4 MB
	for i := range batch {
		batch[i] = rec
	}
	for range 24 {
		mustAppend(t, b, batch, nil)
	}
	if fs := b.Stats().FileSize; fs < 90<<20 {
		t.Fatalf("file is %d bytes, want at least 90 MiB", fs)
	}
	b = reopen(t, b, o)
	q := b.Queue("kafka")
	if got := q.Stats().Records; got != 24000 {
		t.Fatalf("%d records after reopen, want 24000", got)
	}
	n := 0
	after := Start()
	for {
		rs, err := q.Read(after, 2000)
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) == 0 {
			break
		}
		for _, r := range rs {
			if !bytes.Equal(r.Data, rec) {
				t.Fatalf("record %s differs", r.Pos)
			}
		}
		n += len(rs)
		after = rs[len(rs)-1].Pos
	}
	if n != 24000 {
		t.Fatalf("read %d records, want 24000", n)
	}
}
