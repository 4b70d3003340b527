package buffer

import (
	"errors"
	"fmt"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// compactLockTimeout bounds Compact's wait for the source file's lock: a
// running agent holds it for good, so waiting long helps nobody.
var compactLockTimeout = time.Second

// Compact copies the buffer file src into a new file dst holding only live
// data, so that dst is as small as the data allows (a bbolt file never
// shrinks by itself). src must not be open by a running agent: Compact
// takes a shared lock on it and fails, naming the path, if another process
// holds it. dst must not exist. dst gets src's permissions and, where the
// system has owners, src's owner and group: compacting as root leaves a file
// the service user can still open. Replacing src by dst is left to the
// caller.
func Compact(src, dst string) (err error) {
	if _, err := os.Stat(dst); err == nil {
		return fmt.Errorf("compact %s: destination %s already exists", src, dst)
	}
	srcInfo, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("compact %s: %w", src, err)
	}
	s, err := bolt.Open(src, 0o600, &bolt.Options{ReadOnly: true, Timeout: compactLockTimeout})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return fmt.Errorf("compact %s: another process holds the file lock: %w", src, ErrLocked)
		}
		return fmt.Errorf("compact %s: open: %w", src, err)
	}
	defer s.Close()
	d, err := bolt.Open(dst, 0o600, &bolt.Options{Timeout: defaultLockTimeout, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return fmt.Errorf("compact %s: create %s: %w", src, dst, err)
	}
	defer func() {
		if cerr := d.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("compact %s: close %s: %w", src, dst, cerr)
		}
		if err != nil {
			_ = os.Remove(dst)
		}
	}()
	if err := bolt.Compact(d, s, compactTxMaxSize); err != nil {
		return fmt.Errorf("compact %s into %s: %w", src, dst, err)
	}
	if err := os.Chmod(dst, srcInfo.Mode().Perm()); err != nil {
		return fmt.Errorf("compact %s: %w", src, err)
	}
	if err := keepOwner(dst, srcInfo); err != nil {
		return fmt.Errorf("compact %s: keep the owner on %s: %w", src, dst, err)
	}
	return nil
}
