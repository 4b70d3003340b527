//go:build unix

package buffer

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// unlockAbandoned releases this process's lock on the file at path, held
// by a bbolt handle that cannot be closed (an abandoned transaction), so
// that the salvage's child can read it. It looks the descriptor up in
// /proc/self/fd; where there is none it does nothing.
func unlockAbandoned(path string) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if t, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && t == abs {
			_ = syscall.Flock(fd, syscall.LOCK_UN)
		}
	}
}
