package pgstore

import (
	"bufio"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gitgate/gitgate/gitgate"
)

// TestHookGateAttacks (held): a push's secret reaches only its own rows (a
// hook of repository A cannot release B's); an empty secret is refused; a
// request over the size bound gets no answer and its connection ends at
// once; idle connections (a slowloris) do not hold up a real hook; a
// secret replayed after its git exited is refused and registers nothing.
func TestHookGateAttacks(t *testing.T) {
	db, _ := migrated(t)
	ctx := t.Context()
	hg := startHookGate(t, db, func() (gitgate.State, error) { return gitgate.State{}, nil })
	envA, doneA := hg.Start(gitgate.Invocation{Repo: gitgate.Repo{Name: "a", Path: "/srv/git/a.git"}})
	envB, doneB := hg.Start(gitgate.Invocation{Repo: gitgate.Repo{Name: "b", Path: "/srv/git/b.git"}})
	socket := strings.TrimPrefix(envA[0], EnvHookSocket+"=")
	secretA, secretB := secretOf(t, envA), secretOf(t, envB)
	pid := os.Getpid()

	// Idle connections first: they must not hold up what follows.
	var idle []net.Conn
	for range 50 {
		c, err := net.Dial("unix", socket)
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()

	if _, err := GateRegister(ctx, socket, secretB, pid); err != nil {
		t.Fatal(err)
	}
	for range 2 { // A has no row: its releases touch nothing of B's
		if err := GateRelease(ctx, socket, secretA); err != nil {
			t.Fatal(err)
		}
	}
	if n := rowCount(t, db); n != 1 {
		t.Fatalf("%d rows after A's releases, want B's 1", n)
	}
	if _, err := GateState(ctx, socket, ""); err == nil || errors.Is(err, ErrNoGate) {
		t.Fatalf("empty secret: %v, want a refusal", err)
	}

	// A request over the bound: no answer, the connection ends without
	// waiting for its deadline.
	c, err := net.Dial("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(hookConnTime / 2)) // the gate's own deadline is hookConnTime
	big := `{"secret":"` + secretB + `","op":"release","pad":"` + strings.Repeat("x", 2*maxHookRequest) + "\"}\n"
	c.Write([]byte(big))
	if line, err := bufio.NewReader(c).ReadString('\n'); line != "" || err == nil || isTimeout(err) {
		t.Fatalf("oversized request: answer %q, %v; want none and the connection closed", line, err)
	}
	if n := rowCount(t, db); n != 1 {
		t.Fatalf("the oversized release was carried out: %d rows", n)
	}

	// Replay after git exited.
	doneB()
	waitFor(t, "B's rows to go with its git", func() bool { return rowCount(t, db) == 0 })
	if _, err := GateRegister(ctx, socket, secretB, pid); err == nil || errors.Is(err, ErrNoGate) {
		t.Fatalf("replayed secret: %v, want a refusal", err)
	}
	doneA()
	if n := rowCount(t, db); n != 0 {
		t.Fatalf("%d rows registered by a replayed secret", n)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
