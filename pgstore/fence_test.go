package pgstore

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gitgate/gitgate/gitgate"
)

// Registrations are counted per git process and waited for by enable on
// any host; a stale one (dead git on this host) does not hold enable, and
// the wait is bounded, naming what still runs.
func TestRefTransactionRegistry(t *testing.T) {
	db, url := migrated(t)
	ctx := t.Context()
	host, _ := os.Hostname()
	other := TxnOwner{Host: "gate-c.example", PID: 4242, Repo: "/srv/git/proj.git"}

	// Nested: two registrations of one process, two releases.
	for range 2 {
		st, err := RegisterTxn(ctx, url, other, 0)
		if err != nil || st.Enabled {
			t.Fatalf("register: %+v, %v", st, err)
		}
	}
	if err := ReleaseTxn(ctx, url, other); err != nil {
		t.Fatal(err)
	}
	err := db.WaitTxns(ctx, 100*time.Millisecond)
	var fe *gitgate.FenceTimeoutError
	if !errors.As(err, &fe) || len(fe.Pending) != 1 || !strings.Contains(fe.Error(), "/srv/git/proj.git on host gate-c.example") {
		t.Fatalf("wait with one update left on another host: %v", err)
	}
	if err := ReleaseTxn(ctx, url, other); err != nil {
		t.Fatal(err)
	}
	if err := db.WaitTxns(ctx, time.Second); err != nil {
		t.Fatalf("wait after both releases: %v", err)
	}

	// A git process of this host that is gone: stale, not waited for.
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dead := TxnOwner{Host: host, PID: cmd.Process.Pid, Repo: "r"}
	if _, err := RegisterTxn(ctx, url, dead, 0); err != nil {
		t.Fatal(err)
	}
	if err := db.WaitTxns(ctx, 10*time.Second); err != nil {
		t.Fatalf("wait with a dead process's update: %v", err)
	}

	// An expired registration is not waited for.
	if _, err := RegisterTxn(ctx, url, other, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the registration to expire", func() bool { return db.WaitTxns(ctx, time.Millisecond) == nil })

	// The state read with the registration is the one committed.
	if _, err := db.Apply(ctx, gitgate.Change{Enabled: new(true), By: "test"}); err != nil {
		t.Fatal(err)
	}
	if st, err := RegisterTxn(ctx, url, other, 0); err != nil || !st.Enabled {
		t.Fatalf("register in maintenance: %+v, %v", st, err)
	}

	// Errors never show the password.
	if _, err := RegisterTxn(ctx, "postgres://u:pa55word@127.0.0.1:1/x?sslmode=disable&connect_timeout=1", other, 0); err == nil || strings.Contains(err.Error(), "pa55word") {
		t.Fatalf("register on a dead database: %v", err)
	}
}
