//go:build unix

package buffer

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestCompactKeepsOwnerAndMode compacts, as root, a file owned by another
// user (as the service user owns the buffer): the copy keeps its owner,
// group and mode, so that user can still open it.
func TestCompactKeepsOwnerAndMode(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the file another owner")
	}
	const uid, gid = 65534, 65534 // nobody, nogroup
	path := testPath(t)
	b := openT(t, path, testOptions("kafka"))
	mustAppend(t, b, payloads("x", 3), nil)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "compact.db")
	if err := Compact(path, dst); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dst)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != uid || st.Gid != gid {
		t.Errorf("compacted file owned by %d:%d, want %d:%d", st.Uid, st.Gid, uid, gid)
	}
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("compacted file mode %v, want 0640", fi.Mode().Perm())
	}
}
