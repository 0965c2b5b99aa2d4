//go:build !linux

package main

// dieWithParent does nothing where the kernel cannot signal a process when
// its parent exits; the hook's reads are still bounded in time.
func dieWithParent() {}
