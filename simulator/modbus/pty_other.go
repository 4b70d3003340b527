//go:build !linux

package modbus

import (
	"errors"
	"os"
)

var errNoPty = errors.New("pseudo-terminals are supported on Linux only")

// OpenPty is supported on Linux only.
func OpenPty() (*os.File, string, error) { return nil, "", errNoPty }

// MakeRaw is supported on Linux only.
func MakeRaw(*os.File) error { return errNoPty }
