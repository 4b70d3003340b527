package buffer

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the child killed when the process that started it
// dies (say the agent killed by its watchdog), so that no check outlives
// it holding the file's lock.
func dieWithParent(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
