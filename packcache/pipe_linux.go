package packcache

import (
	"os"
	"syscall"
)

// growPipe makes f's pipe buffer 1 MiB (the default limit for an
// unprivileged process), if f is a pipe.
func growPipe(f *os.File) {
	const fSetPipeSz = 1031 // F_SETPIPE_SZ
	syscall.Syscall(syscall.SYS_FCNTL, f.Fd(), fSetPipeSz, 1<<20)
}
