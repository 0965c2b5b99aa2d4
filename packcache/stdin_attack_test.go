//go:build linux

package packcache

import (
	"bufio"
	"encoding/binary"
	"io"
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

// TestStdinBudgetBoundsTheStdinHeldAtOnce: while the whole stdin budget is
// held, a request waits for room until its read deadline and is then
// refused with the busy message (never a hang); once the room is back, a
// request gets its pack and gives its room back.
func TestStdinBudgetBoundsTheStdinHeldAtOnce(t *testing.T) {
	f := repoFixture(t)
	stdin := []byte(f.head + "\n")
	budget := int64(2 * len(stdin))
	srv := startServer(t, newTestCache(t, t.Context(), Config{}), func(s *Server) {
		s.stdin = semaphore.NewWeighted(budget)
		s.readTimeout = 2 * time.Second
	})
	socket, secret := startSession(t, srv, f.repo)
	request := func(w io.Writer) { writeRequestBody(w, secret, packArgs, stdin) }

	// Other requests hold the whole budget (the test takes it itself, so
	// that it is held for as long as the test says).
	if !srv.stdin.TryAcquire(budget) {
		t.Fatal("the budget is not free at start")
	}
	a := rawHook(t, socket, []byte(protoMagic), nil, request, false)
	srv.stdin.Release(budget)
	if want := gitgate.BusyMessage + "\n"; a.code != 128 || a.stderr != want {
		t.Fatalf("while the budget is held: exit %d, stderr %q; want 128, %q", a.code, a.stderr, want)
	}

	a = rawHook(t, socket, []byte(protoMagic), nil, request, false)
	if a.code != 0 {
		t.Fatalf("with room: exit %d, %q", a.code, a.stderr)
	}
	if err := verifyPack(t, f, a.stdout, f.head); err != nil {
		t.Fatalf("with room: %v", err)
	}
	if !srv.stdin.TryAcquire(budget) {
		t.Fatal("a served request kept its stdin budget")
	}
}
