package buffer

import (
	"fmt"
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

// limitMemory bounds the data (heap) of this process, a child, to n bytes:
// bbolt's check of some damaged files allocates without end (a fuzzed
// file took 20 GB in minutes, and the machine's other processes died of
// it). The child then dies of "out of memory" and the file counts as
// damaged. The file's memory map does not count.
func limitMemory(n uint64) error {
	if err := syscall.Setrlimit(syscall.RLIMIT_DATA, &syscall.Rlimit{Cur: n, Max: n}); err != nil {
		return fmt.Errorf("limit the isolated check's memory to %d bytes: %w", n, err)
	}
	return nil
}
