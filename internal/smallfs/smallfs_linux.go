// Package smallfs gives tests a small filesystem they can fill: the
// full-disk tests of the buffer, the ingest stage and the metrics scrape.
package smallfs

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// Mount mounts a filesystem of 8 MiB on a new directory for the test and
// returns the directory: a tmpfs, or if that cannot be mounted a
// loop-mounted ext4 image. Both need root; the test fails when neither
// works (a full disk is its point). The filesystem is unmounted when the
// test ends.
func Mount(t testing.TB) string {
	t.Helper()
	base := t.TempDir()
	dir := filepath.Join(base, "mnt")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	terr := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=8m,mode=0700")
	if terr != nil {
		img := filepath.Join(base, "fs.img")
		out, err := exec.Command("sh", "-c", fmt.Sprintf(
			"truncate -s 8M %[1]s && mkfs.ext4 -q -F -m 0 %[1]s && mount -o loop %[1]s %[2]s", img, dir)).CombinedOutput()
		if err != nil {
			t.Fatalf("cannot mount a small filesystem (needs root): tmpfs: %v; loop ext4: %v: %s", terr, err, out)
		}
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v; detaching", dir, err)
			_ = syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
	return dir
}

// Fill writes the file path until its filesystem is full.
func Fill(t testing.TB, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling %s: %v", path, err)
			}
			return
		}
	}
}
