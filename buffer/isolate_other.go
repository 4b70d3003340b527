//go:build !linux

package buffer

import "os/exec"

// dieWithParent does nothing where the child cannot be tied to its parent.
func dieWithParent(*exec.Cmd) {}

// limitMemory is a no-op where RLIMIT_DATA is not used: the time bound
// (childTimeout) still ends a check that never finishes.
func limitMemory(uint64) error { return nil }
