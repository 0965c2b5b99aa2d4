package packcache

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"golang.org/x/sync/semaphore"
)

// The hook's request on the socket is: protoMagic, then length-prefixed
// fields (uint32, big endian): the secret, the number of arguments (one
// byte), each argument, and stdin. The gate answers with frames: a type
// byte, a uint32 length, the data. On Linux the hook attaches its stdout
// (upload-pack's pipe) to the greeting (SCM_RIGHTS); the gate then writes
// the pack into that pipe itself and sends only the stderr and exit frames.
const (
	protoMagic  = "gitgate-pack-objects/1\n"
	frameStdout = 'o'
	frameStderr = 'e'
	frameExit   = 'x' // data: one byte, the exit status
	maxArgs     = 32
	maxArgLen   = 4096
	maxSecret   = 128
	maxFrame    = 1 << 20
)

// Environment of the hook, set by [Server.Start] for upload-pack.
const (
	EnvSocket = "GITGATE_PACK_OBJECTS_SOCKET"
	EnvSecret = "GITGATE_PACK_OBJECTS_SECRET"
)

var errProto = errors.New("pack-objects hook protocol error")

func writeField(w io.Writer, b []byte) error {
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(b)))
	if _, err := w.Write(n[:]); err != nil {
		return err
	}
	_, err := w.Write(b)
	return err
}

func readField(r io.Reader, limit int) ([]byte, error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, err
	}
	size := binary.BigEndian.Uint32(n[:])
	if int64(size) > int64(limit) {
		return nil, fmt.Errorf("%w: field of %d bytes (limit %d)", errProto, size, limit)
	}
	b := make([]byte, size)
	_, err := io.ReadFull(r, b)
	return b, err
}

func writeRequest(w io.Writer, secret string, args []string, stdin []byte) error {
	if _, err := io.WriteString(w, protoMagic); err != nil {
		return err
	}
	return writeRequestBody(w, secret, args, stdin)
}

// writeRequestBody writes the request after its greeting.
func writeRequestBody(w io.Writer, secret string, args []string, stdin []byte) error {
	bw := bufio.NewWriter(w)
	writeField(bw, []byte(secret))
	bw.WriteByte(byte(len(args)))
	for _, a := range args {
		writeField(bw, []byte(a))
	}
	writeField(bw, stdin)
	return bw.Flush()
}

// readRequestHead reads a hook's request up to its stdin, bounded in every
// part: the greeting, the secret and the arguments.
func readRequestHead(r *bufio.Reader) (secret string, args []string, err error) {
	magic := make([]byte, len(protoMagic))
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != protoMagic {
		return "", nil, fmt.Errorf("%w: bad greeting", errProto)
	}
	s, err := readField(r, maxSecret)
	if err != nil {
		return "", nil, err
	}
	n, err := r.ReadByte()
	if err != nil {
		return "", nil, err
	}
	if n > maxArgs {
		return "", nil, fmt.Errorf("%w: %d arguments", errProto, n)
	}
	for range int(n) {
		a, err := readField(r, maxArgLen)
		if err != nil {
			return "", nil, err
		}
		args = append(args, string(a))
	}
	return string(s), args, nil
}

// errStdinBudget refuses a request whose stdin would take the in-flight
// stdin of all requests over the server's budget until its deadline.
var errStdinBudget = errors.New("too many large fetch requests at once")

// readStdin reads the request's last field, pack-objects' stdin (at most
// MaxStdin bytes), once budget has room for it: the room is reserved before
// a byte is allocated, and waited for until ctx ends. release gives it
// back; it is nil when err is not.
func readStdin(ctx context.Context, r io.Reader, budget *semaphore.Weighted) (stdin []byte, release func(), err error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, nil, err
	}
	size := int64(binary.BigEndian.Uint32(n[:]))
	if size > MaxStdin {
		return nil, nil, fmt.Errorf("%w: stdin of %d bytes (limit %d)", errProto, size, MaxStdin)
	}
	if err := budget.Acquire(ctx, size); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", errStdinBudget, err)
	}
	release = sync.OnceFunc(func() { budget.Release(size) })
	stdin = make([]byte, size)
	if _, err := io.ReadFull(r, stdin); err != nil {
		release()
		return nil, nil, err
	}
	return stdin, release, nil
}

// frameWriter writes frames of one type; writes from several goroutines
// (a generation's stderr, the pack) are serialized. With whole, SendFile
// writes the pack from the cache file in whole frames.
type frameWriter struct {
	mu    *sync.Mutex
	w     io.Writer
	whole bool
	t     byte
}

// frameBufs holds the buffers of whole frames.
var frameBufs = sync.Pool{New: func() any { b := make([]byte, 5+maxFrame); return &b }}

// SendFile writes the next n bytes of f as frames.
func (f frameWriter) SendFile(file *os.File, n int64) (int64, error) {
	if !f.whole {
		return io.CopyN(f, file, n)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	// Whole frames in one write each: the hook wakes once per frame, not
	// once per 32 KiB (the cost of a hit is in those wake-ups).
	buf := frameBufs.Get().(*[]byte)
	defer frameBufs.Put(buf)
	var sent int64
	for sent < n {
		chunk := min(n-sent, maxFrame)
		b := (*buf)[:5+chunk]
		b[0] = f.t
		binary.BigEndian.PutUint32(b[1:5], uint32(chunk))
		if _, err := io.ReadFull(file, b[5:]); err != nil {
			return sent, err
		}
		if _, err := f.w.Write(b); err != nil {
			return sent, err
		}
		sent += chunk
	}
	return sent, nil
}

func (f frameWriter) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	written := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), maxFrame)]
		var hdr [5]byte
		hdr[0] = f.t
		binary.BigEndian.PutUint32(hdr[1:], uint32(len(chunk)))
		if _, err := f.w.Write(hdr[:]); err != nil {
			return written, err
		}
		if _, err := f.w.Write(chunk); err != nil {
			return written, err
		}
		written += len(chunk)
		p = p[len(chunk):]
	}
	return written, nil
}

// CheckArgs checks git's arguments for the hook against what upload-pack
// passes: an optional --shallow-file "" and then pack-objects with its
// options. Anything else is refused, so that the socket runs nothing but
// pack-objects.
func CheckArgs(args []string) error {
	rest := args
	if len(rest) >= 2 && rest[0] == "--shallow-file" && rest[1] == "" {
		rest = rest[2:]
	}
	if len(rest) == 0 || rest[0] != "pack-objects" {
		return fmt.Errorf("%w: not a pack-objects command", errProto)
	}
	for _, a := range rest[1:] {
		switch {
		case a == "--revs", a == "--thin", a == "--stdout", a == "--shallow", a == "--progress",
			a == "--delta-base-offset", a == "--include-tag", a == "--missing=allow-any", a == "-q",
			a == "--quiet", a == "--all-progress", a == "--all-progress-implied":
		case strings.HasPrefix(a, "--filter="), strings.HasPrefix(a, "--uri-protocol="):
		default:
			return fmt.Errorf("%w: pack-objects option %q not allowed", errProto, a)
		}
	}
	return nil
}
