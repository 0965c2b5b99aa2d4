package main

import "syscall"

// dieWithParent asks the kernel to send this process SIGTERM when its parent
// (git, for a hook) exits, so that a hook never outlives the push it checks.
// It is best effort: an error leaves the process as it was.
func dieWithParent() {
	_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_PDEATHSIG, uintptr(syscall.SIGTERM), 0)
}
