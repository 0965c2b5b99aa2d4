//go:build linux

package packcache

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/gitgate/gitgate/gitgate"
)

// writeHead writes a request up to its stdin.
func writeHead(w io.Writer, secret string, args []string) {
	bw := bufio.NewWriter(w)
	writeField(bw, []byte(secret))
	bw.WriteByte(byte(len(args)))
	for _, a := range args {
		writeField(bw, []byte(a))
	}
	bw.Flush()
}

// announceStdin announces n bytes of stdin without sending them.
func announceStdin(w io.Writer, n uint32) {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], n)
	w.Write(b[:])
}

var packArgs = []string{"pack-objects", "--revs", "--thin", "--stdout", "--delta-base-offset"}

func startSession(t *testing.T, srv *Server, repo string) (socket, secret string) {
	t.Helper()
	inv := gitgate.Invocation{Op: gitgate.Operation{Service: gitgate.UploadPack, Repo: "repo", User: &gitgate.User{Name: "alice"}},
		Repo: gitgate.Repo{Name: "repo", Path: repo}}
	env, done := srv.Start(inv)
	t.Cleanup(done)
	return envValue(env, EnvSocket), envValue(env, EnvSecret)
}

// TestStdinIsNotReadBeforeTheSecret: a request with a wrong secret that
// announces the largest stdin and sends none is refused at once: the gate
// checks who asks before it reserves or reads a byte of stdin (it used to
// allocate the announced size, then wait for it until the read timeout).
func TestStdinIsNotReadBeforeTheSecret(t *testing.T) {
	f := repoFixture(t)
	srv := startServer(t, newTestCache(t, t.Context(), Config{}))
	socket, _ := startSession(t, srv, f.repo)
	a := rawHook(t, socket, []byte(protoMagic), nil, func(w io.Writer) {
		writeHead(w, "not the secret", packArgs)
		announceStdin(w, MaxStdin)
	}, false)
	if want := "fatal: pack-objects hook: not started by this gate\n"; a.code != 128 || a.stderr != want {
		t.Fatalf("exit %d, stderr %q; want 128, %q", a.code, a.stderr, want)
	}
	if !srv.stdin.TryAcquire(stdinBudget) {
		t.Fatal("the refused request holds stdin budget")
	}
	srv.stdin.Release(stdinBudget)
}

// TestStdinBudgetBoundsTheStdinHeldAtOnce: while requests hold the whole
// stdin budget, another request waits for room until its read deadline and
// is then refused with the busy message (never a hang); once the holder is
// gone, its room is back and a request gets its pack.
func TestStdinBudgetBoundsTheStdinHeldAtOnce(t *testing.T) {
	f := repoFixture(t)
	stdin := []byte(f.head + "\n")
	budget := int64(2 * len(stdin))
	srv := startServer(t, newTestCache(t, t.Context(), Config{}), func(s *Server) {
		s.stdin = semaphore.NewWeighted(budget)
		s.readTimeout = 2 * time.Second
	})
	socket, holderSecret := startSession(t, srv, f.repo)
	_, secret := startSession(t, srv, f.repo)

	// The request starts first, so that its read deadline comes before the
	// holder's; the holder then announces the whole budget and sends
	// nothing more, and the request sends its stdin.
	var holder net.Conn
	defer func() {
		if holder != nil {
			holder.Close()
		}
	}()
	held := false
	request := func(w io.Writer) {
		writeHead(w, secret, packArgs)
		var err error
		if holder, err = net.Dial("unix", socket); err != nil {
			t.Error(err)
			return
		}
		io.WriteString(holder, protoMagic)
		writeHead(holder, holderSecret, packArgs)
		announceStdin(holder, uint32(budget))
		for range 1000 {
			if !srv.stdin.TryAcquire(1) {
				held = true
				break
			}
			srv.stdin.Release(1)
			time.Sleep(5 * time.Millisecond)
		}
		writeField(w, stdin)
	}
	a := rawHook(t, socket, []byte(protoMagic), nil, request, false)
	if !held {
		t.Fatal("the holder's announced stdin was never reserved")
	}
	if want := gitgate.BusyMessage + "\n"; a.code != 128 || a.stderr != want {
		t.Fatalf("while the budget is held: exit %d, stderr %q; want 128, %q", a.code, a.stderr, want)
	}

	// The holder's read deadline ends its request and frees its room.
	free := false
	for range 1000 {
		if srv.stdin.TryAcquire(budget) {
			srv.stdin.Release(budget)
			free = true
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !free {
		t.Fatal("the holder's room was never given back")
	}
	a = rawHook(t, socket, []byte(protoMagic), nil, func(w io.Writer) { writeRequestBody(w, secret, packArgs, stdin) }, false)
	if a.code != 0 {
		t.Fatalf("after the holder: exit %d, %q", a.code, a.stderr)
	}
	if err := verifyPack(t, f, a.stdout, f.head); err != nil {
		t.Fatalf("after the holder: %v", err)
	}
	if !srv.stdin.TryAcquire(budget) {
		t.Fatal("a served request kept its stdin budget")
	}
}
