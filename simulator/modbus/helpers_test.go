package modbus

import (
	"os"

	"golang.org/x/sys/unix"
)

// openRaw opens a pty slave in raw mode with deadlines.
func openRaw(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	if err := MakeRaw(f); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
