package packcache

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"time"
)

// dialTimeout bounds the hook's connection to the gate.
const dialTimeout = 10 * time.Second

// RunHook is the pack-objects hook: git runs it with args "git pack-objects
// ..." (see the package doc). It sends its arguments and stdin to the gate
// on socket with secret and copies the answer to stdout and stderr; it
// returns the exit status. Without a socket (git run by someone else than
// the gate) it runs git itself, unchanged.
func RunHook(ctx context.Context, socket, secret string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "git" {
		fmt.Fprintln(stderr, "fatal: pack-objects hook: git runs it as: <hook> git pack-objects ...")
		return 128
	}
	if socket == "" || secret == "" {
		cmd := exec.CommandContext(ctx, "git", args[1:]...)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
		err := cmd.Run()
		var exit *exec.ExitError
		if errors.As(err, &exit) && exit.Exited() {
			return exit.ExitCode()
		}
		if err != nil {
			fmt.Fprintln(stderr, "fatal: pack-objects hook:", err)
			return 128
		}
		return 0
	}
	in, err := io.ReadAll(io.LimitReader(stdin, MaxStdin+1))
	if err != nil {
		fmt.Fprintln(stderr, "fatal: pack-objects hook: read request:", err)
		return 128
	}
	if len(in) > MaxStdin {
		fmt.Fprintf(stderr, "fatal: the fetch request is too large (over %d MiB)\n", MaxStdin>>20)
		return 128
	}
	d := net.Dialer{Timeout: dialTimeout}
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		fmt.Fprintln(stderr, "fatal: the server cannot generate the pack now; try again")
		return 128
	}
	defer conn.Close()
	if uc, ok := conn.(*net.UnixConn); ok {
		uc.SetReadBuffer(socketBuffer)
	}
	if f, ok := stdout.(*os.File); ok {
		growPipe(f) // upload-pack's pipe: fewer wake-ups per pack
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	// stdout goes to the gate with the greeting when it is a pipe: the pack
	// then goes from the cache file into upload-pack's pipe without passing
	// through this process.
	if _, err := sendGreeting(conn, stdout); err != nil {
		fmt.Fprintln(stderr, "fatal: the server cannot generate the pack now; try again")
		return 128
	}
	if err := writeRequestBody(conn, secret, args[1:], in); err != nil {
		fmt.Fprintln(stderr, "fatal: the server cannot generate the pack now; try again")
		return 128
	}
	// Plain reads and blocking writes through one large buffer. (Not
	// os.File.ReadFrom: Go's splice into a blocking pipe retries EAGAIN in
	// a busy loop while upload-pack drains the pipe, which cost more CPU
	// than the copy it saves.)
	r := conn
	buf := make([]byte, maxFrame)
	out := struct{ io.Writer }{stdout}
	for {
		var hdr [5]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			fmt.Fprintln(stderr, "fatal: the server stopped generating the pack; try again")
			return 128
		}
		n := int64(binary.BigEndian.Uint32(hdr[1:]))
		if n > maxFrame {
			fmt.Fprintln(stderr, "fatal: pack-objects hook: bad answer from the server")
			return 128
		}
		switch hdr[0] {
		case frameStdout:
			if _, err := io.CopyBuffer(out, io.LimitReader(r, n), buf); err != nil {
				return 128 // upload-pack has gone
			}
		case frameStderr:
			msg := make([]byte, n)
			if _, err := io.ReadFull(r, msg); err != nil {
				return 128
			}
			stderr.Write(msg)
		case frameExit:
			code := make([]byte, n)
			if _, err := io.ReadFull(r, code); err != nil || n != 1 {
				return 128
			}
			return int(code[0])
		default:
			fmt.Fprintln(stderr, "fatal: pack-objects hook: bad answer from the server")
			return 128
		}
	}
}

// HookEnv returns the socket and secret from the environment of the hook.
func HookEnv() (socket, secret string) { return os.Getenv(EnvSocket), os.Getenv(EnvSecret) }
