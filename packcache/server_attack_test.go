//go:build linux

package packcache

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gitgate/gitgate/gitgate"
)

// openFDs counts this process's open descriptors (the gate's server runs
// in the test process).
func openFDs(t *testing.T) int {
	t.Helper()
	names, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("SKIPPED LOUDLY: cannot count descriptors: %v", err)
	}
	return len(names)
}

// rawAnswer is what the gate sent a hand-made hook: the frames' stdout
// and stderr, and the exit status (-1: none came).
type rawAnswer struct {
	stdout []byte
	stderr string
	code   int
}

// rawHook speaks the hook's side of the protocol by hand: the greeting
// with fds attached (SCM_RIGHTS), then the request, then it reads frames
// until the exit frame or the end of the connection. With hangUp it
// closes its side of the connection after the request (a hook that dies).
func rawHook(t *testing.T, socket string, greeting []byte, fds []int, body func(io.Writer), hangUp bool) rawAnswer {
	t.Helper()
	c, err := net.Dial("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second)) // a hang fails the test
	uc := c.(*net.UnixConn)
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	if _, _, err := uc.WriteMsgUnix(greeting, oob, nil); err != nil {
		t.Fatal(err)
	}
	if body != nil {
		body(c)
	}
	if hangUp {
		uc.CloseWrite()
	}
	a := rawAnswer{code: -1}
	r := bufio.NewReader(c)
	for {
		var hdr [5]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return a
		}
		data := make([]byte, binary.BigEndian.Uint32(hdr[1:]))
		if _, err := io.ReadFull(r, data); err != nil {
			return a
		}
		switch hdr[0] {
		case frameStdout:
			a.stdout = append(a.stdout, data...)
		case frameStderr:
			a.stderr += string(data)
		case frameExit:
			a.code = int(data[0])
			return a
		}
	}
}

// TestHookCannotMakeTheGateWriteElsewhere: whatever descriptors a hook
// attaches, the gate writes a pack only into the write end of a pipe; a
// regular file (even opened for appending), a socket, /dev/null, a pipe's
// read end get nothing and the pack comes in frames; a second pipe is
// closed, never written; and after many requests, good and bad (garbage,
// no request, a hook that hangs up mid-request, 0, 1 or 2 descriptors),
// the gate holds no descriptor more than before.
func TestHookCannotMakeTheGateWriteElsewhere(t *testing.T) {
	f := repoFixture(t)
	c := newTestCache(t, t.Context(), Config{})
	srv := startServer(t, c)
	inv := gitgate.Invocation{Op: gitgate.Operation{Service: gitgate.UploadPack, Repo: "repo", User: &gitgate.User{Name: "alice"}},
		Repo: gitgate.Repo{Name: "repo", Path: f.repo}}
	env, done := srv.Start(inv)
	defer done()
	socket, secret := envValue(env, EnvSocket), envValue(env, EnvSecret)
	args := []string{"pack-objects", "--revs", "--thin", "--stdout", "--delta-base-offset"}
	request := func(w io.Writer) { writeRequestBody(w, secret, args, []byte(f.head+"\n")) }
	greeting := []byte(protoMagic)

	dir := t.TempDir()

	// Descriptors that are not a pipe's write end: nothing is written
	// into them, the pack comes in frames.
	file, err := os.OpenFile(filepath.Join(dir, "victim"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	unix.SetNonblock(sp[1], true) // so that its read deadline works
	peer := os.NewFile(uintptr(sp[1]), "peer")
	defer peer.Close()
	mine := os.NewFile(uintptr(sp[0]), "mine")
	defer mine.Close()
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pw.Close()
	defer pr.Close()
	before := openFDs(t) // the test's own are open until it ends
	for name, fd := range map[string]*os.File{"regular file": file, "socket": mine, "/dev/null": devnull, "pipe read end": pr} {
		a := rawHook(t, socket, greeting, []int{int(fd.Fd())}, request, false)
		if a.code != 0 {
			t.Fatalf("%s: exit %d, %q", name, a.code, a.stderr)
		}
		if err := verifyPack(t, f, a.stdout, f.head); err != nil {
			t.Fatalf("%s: the pack in frames: %v", name, err)
		}
	}
	if fi, _ := file.Stat(); fi.Size() != 0 {
		t.Fatalf("the gate wrote %d bytes into a regular file", fi.Size())
	}
	peer.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, _ := peer.Read(make([]byte, 1)); n != 0 {
		t.Fatal("the gate wrote into a socket")
	}

	// Two pipes: the pack goes into the first; the second is closed by the
	// gate (its reader sees the end once the test's own write end goes).
	p1r, p1w, _ := os.Pipe()
	p2r, p2w, _ := os.Pipe()
	got := make(chan []byte, 1)
	go func() { b, _ := io.ReadAll(p1r); got <- b }()
	a := rawHook(t, socket, greeting, []int{int(p1w.Fd()), int(p2w.Fd())}, request, false)
	p1w.Close()
	p2w.Close()
	pack := <-got
	p1r.Close()
	if a.code != 0 || len(a.stdout) != 0 {
		t.Fatalf("two pipes: exit %d, %d bytes in frames, %q", a.code, len(a.stdout), a.stderr)
	}
	if err := verifyPack(t, f, pack, f.head); err != nil {
		t.Fatalf("two pipes: the pack in the first: %v", err)
	}
	p2r.SetReadDeadline(time.Now().Add(10 * time.Second))
	if b, err := io.ReadAll(p2r); len(b) != 0 || err != nil {
		t.Fatalf("second pipe: %d bytes written, %v (want none and its end)", len(b), err)
	}
	p2r.Close()

	// Bad requests of every kind, many times: each ends, and leaves no
	// descriptor behind in the gate.
	for range 20 {
		pr, pw, _ := os.Pipe()
		rawHook(t, socket, []byte("GET / HTTP/1.0\r\n\r\n"), []int{int(pw.Fd())}, nil, true)
		rawHook(t, socket, greeting, []int{int(pw.Fd()), int(pw.Fd())}, func(w io.Writer) {
			writeRequestBody(w, "not the secret", args, []byte(f.head+"\n"))
		}, false)
		rawHook(t, socket, greeting, []int{int(pw.Fd())}, func(w io.Writer) {
			w.Write([]byte{0, 0, 0, 48}) // a secret's length, then the hook hangs up
		}, true)
		rawHook(t, socket, greeting, nil, func(w io.Writer) {
			writeRequestBody(w, secret, []string{"upload-pack", "."}, nil)
		}, false)
		pw.Close()
		pr.Close()
	}
	var after int
	for range 1000 { // the handlers close their copies as they end
		if after = openFDs(t); after <= before {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if after > before {
		t.Fatalf("the gate holds %d descriptors more than before", after-before)
	}
}
