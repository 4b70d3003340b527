//go:build !(386 || arm || mips || mipsle)

package buffer

import "testing"

// The 64-bit counterpart of width32_test.go: no file cap by default and any
// non-negative bound accepted.
func TestPlatform64Limits(t *testing.T) {
	if is32bit {
		t.Fatal("built for a 64-bit GOARCH but is32bit is true")
	}
	o := testOptions("kafka")
	got, err := o.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if got.MaxFileSize != 0 {
		t.Fatalf("default MaxFileSize %d on a 64-bit platform, want 0 (no cap)", got.MaxFileSize)
	}
	for _, mb := range []int64{0, MaxBytesLimit32 * 8} {
		if err := CheckBounds(mb, 2); err != nil {
			t.Fatalf("CheckBounds(%d, 2): %v", mb, err)
		}
	}
	if err := CheckBounds(-1, 1); err == nil {
		t.Fatal("CheckBounds accepts a negative bound")
	}
}
