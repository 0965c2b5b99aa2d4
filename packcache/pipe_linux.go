package packcache

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// growPipe makes f's pipe buffer 1 MiB (the default limit for an
// unprivileged process), if f is a pipe.
func growPipe(f *os.File) {
	const fSetPipeSz = 1031 // F_SETPIPE_SZ
	syscall.Syscall(syscall.SYS_FCNTL, f.Fd(), fSetPipeSz, 1<<20)
}

// isWritablePipe reports whether fd is the write end of a pipe (or a FIFO
// open for writing).
func isWritablePipe(fd int) bool {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
		return false
	}
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	return err == nil && (fl&unix.O_ACCMODE == unix.O_WRONLY || fl&unix.O_ACCMODE == unix.O_RDWR)
}

// sendGreeting writes the protocol's greeting on conn, with stdout's file
// descriptor attached when stdout is a pipe: the gate then writes the pack
// straight into upload-pack's pipe. It reports whether stdout was passed.
func sendGreeting(conn net.Conn, stdout io.Writer) (passed bool, err error) {
	uc, ok := conn.(*net.UnixConn)
	f, isFile := stdout.(*os.File)
	if !ok || !isFile || !isWritablePipe(int(f.Fd())) {
		_, err := io.WriteString(conn, protoMagic)
		return false, err
	}
	_, _, err = uc.WriteMsgUnix([]byte(protoMagic), unix.UnixRights(int(f.Fd())), nil)
	return err == nil, err
}

// recvGreeting reads the protocol's greeting from conn and returns the
// bytes read and the pipe the hook passed, if any and if it is the write
// end of a pipe (anything else is closed and ignored).
func recvGreeting(conn net.Conn) ([]byte, *pipeSink, error) {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return nil, nil, nil
	}
	buf := make([]byte, len(protoMagic))
	oob := make([]byte, unix.CmsgSpace(4)) // one descriptor; the kernel closes any more (MSG_CTRUNC)
	n, oobn, _, _, err := uc.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, nil, err
	}
	var fds []int
	if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
		for _, m := range msgs {
			if rights, err := unix.ParseUnixRights(&m); err == nil {
				fds = append(fds, rights...)
			}
		}
	}
	var sink *pipeSink
	for _, fd := range fds {
		if sink == nil && isWritablePipe(fd) {
			if s, err := newPipeSink(fd); err == nil {
				sink = s
				continue
			}
		}
		unix.Close(fd)
	}
	return buf[:n], sink, nil
}

// pipeSink is upload-pack's end of the pack: the pipe its pack-objects hook
// passed. The gate writes the pack into it with splice(2), from the cache
// file's pages to the pipe, without a copy in user space, and without
// passing the bytes through the hook.
type pipeSink struct {
	f *os.File // non-blocking: waits go through Go's poller
}

func newPipeSink(fd int) (*pipeSink, error) {
	// The pipe's file description is shared with the hook, which writes
	// nothing to it once it has passed it.
	if err := unix.SetNonblock(fd, true); err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "upload-pack stdout")
	growPipe(f)
	return &pipeSink{f: f}, nil
}

// Write writes p, waiting at most writeIdle for upload-pack to read.
func (s *pipeSink) Write(p []byte) (int, error) {
	s.f.SetWriteDeadline(time.Now().Add(writeIdle))
	return s.f.Write(p)
}

// SendFile moves the next n bytes of file into the pipe with splice(2).
func (s *pipeSink) SendFile(file *os.File, n int64) (int64, error) {
	src, err := file.SyscallConn()
	if err != nil {
		return 0, err
	}
	dst, err := s.f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var sent int64
	for sent < n {
		s.f.SetWriteDeadline(time.Now().Add(writeIdle))
		var moved int64
		var serr, werr error
		cerr := src.Control(func(in uintptr) {
			// Wait in the poller while the pipe is full: never a busy loop.
			werr = dst.Write(func(out uintptr) bool {
				moved, serr = splice(int(in), int(out), int(min(n-sent, 1<<20)))
				return !errors.Is(serr, unix.EAGAIN)
			})
		})
		if cerr != nil {
			return sent, cerr
		}
		if werr != nil { // the deadline, or the pipe closed
			return sent, werr
		}
		if serr != nil {
			return sent, fmt.Errorf("splice into upload-pack's pipe: %w", serr)
		}
		if moved == 0 {
			return sent, io.ErrUnexpectedEOF
		}
		sent += moved
	}
	return sent, nil
}

// file is the pipe, for a child process's stdout.
func (s *pipeSink) file() *os.File { return s.f }

// cancel makes a blocked write return at once.
func (s *pipeSink) cancel() { s.f.SetWriteDeadline(time.Unix(1, 0)) }

func (s *pipeSink) Close() error { return s.f.Close() }

// errPipeRead marks a failed read of pack-objects' pipe (not the file).
var errPipeRead = errors.New("read pack-objects' output")

// spliceToFile moves everything from the pipe pr to the end of f with
// splice(2), calling advance after each move, until pr's end of file.
// Waits for pack-objects go through Go's poller (pr is an os.Pipe end).
// handled is false when the kernel cannot splice these files (nothing was
// moved then).
func spliceToFile(pr, f *os.File, advance func(int64)) (handled bool, err error) {
	src, err := pr.SyscallConn()
	if err != nil {
		return false, nil
	}
	dst, err := f.SyscallConn()
	if err != nil {
		return false, nil
	}
	first := true
	for {
		var moved int64
		var serr error
		rerr := src.Read(func(in uintptr) bool {
			cerr := dst.Control(func(out uintptr) {
				moved, serr = splice(int(in), int(out), 1<<20)
			})
			if cerr != nil {
				serr = cerr
			}
			return !errors.Is(serr, unix.EAGAIN)
		})
		if rerr != nil {
			return true, fmt.Errorf("%w: %w", errPipeRead, rerr)
		}
		if serr != nil {
			if first && (errors.Is(serr, unix.EINVAL) || errors.Is(serr, unix.ENOSYS)) {
				return false, nil
			}
			return true, serr
		}
		first = false
		if moved == 0 {
			return true, nil
		}
		advance(moved)
	}
}

// splice moves up to n bytes from in to out without blocking on a pipe,
// again when a signal interrupted it (Go's runtime sends them to preempt).
func splice(in, out, n int) (int64, error) {
	for {
		moved, err := unix.Splice(in, nil, out, nil, n, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK|unix.SPLICE_F_MORE)
		if !errors.Is(err, unix.EINTR) {
			return moved, err
		}
	}
}
