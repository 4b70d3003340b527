//go:build !linux

package buffer

import "os/exec"

// dieWithParent does nothing where the child cannot be tied to its parent.
func dieWithParent(*exec.Cmd) {}
