//go:build !unix

package buffer

import "os"

// keepOwner does nothing where files have no Unix owner.
func keepOwner(string, os.FileInfo) error { return nil }
