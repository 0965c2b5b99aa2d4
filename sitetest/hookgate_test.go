package sitetest

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/gitgate/gitgate/internal/gittest"
)

// hookRequests reads gate g's count of hook requests answered for op.
func hookRequests(t *testing.T, g *gate, op string) int {
	t.Helper()
	_, body := get(t, g.http+"/metrics")
	m := regexp.MustCompile(`gitgate_database_hook_requests_total\{op="` + op + `"\} (\d+)`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("gate %s's metrics have no gitgate_database_hook_requests_total for %s", g.name, op)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// The hooks of a push through a gate ask that gate (its hook socket and
// the push's secret) instead of connecting to the database: the gate
// counts their requests. A hook with a forged secret is refused (fail
// closed). A push held in its ref transaction, past the check, whose git
// process is killed, leaves no row that would hold "enable" on any gate.
func TestSiteHooksGoThroughTheGate(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	a, b := s.gates[0], s.gates[1]
	if r := s.push(t, s.httpURL(a)); r.Err != nil {
		t.Fatalf("push through A: %v\n%s", r.Err, r.Stderr)
	}
	for _, op := range []string{"state", "register", "release"} {
		if n := hookRequests(t, a, op); n == 0 {
			t.Errorf("gate A answered no %s request of its push's hooks", op)
		}
	}

	// A hook with the gate's socket and a secret it never gave: refused.
	out, code := runHook(t, "GITGATE_DATA_DIR="+a.dataDir, "GITGATE_DATABASE_URL="+s.db,
		"GITGATE_TXN_SOCKET="+filepath.Join(a.dataDir, "hooks.sock"), "GITGATE_TXN_SECRET=forged")
	if code != 1 || !strings.Contains(out, "the maintenance state database cannot be read") {
		t.Errorf("hook with a forged secret: exit %d\n%s", code, out)
	}

	// Held past the check through B, then git is killed.
	conn, err := pgx.Connect(t.Context(), s.db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows := func() (n, pid int) {
		if err := conn.QueryRow(t.Context(), `SELECT count(*), coalesce(max(pid), 0) FROM ref_transactions`).Scan(&n, &pid); err != nil {
			t.Fatal(err)
		}
		return n, pid
	}
	bare := filepath.Join(s.repos, "proj.git")
	inside, _ := holdRefUpdates(t, bare)
	gittest.MustGit(t, s.env, s.work, "commit", "-q", "--allow-empty", "-m", "held")
	pushed := make(chan gittest.Result, 1)
	go func() { pushed <- gittest.Git(t, s.env, s.work, "push", "-q", s.sshURL(b), "HEAD:refs/heads/main") }()
	bounded(t, "the push through B to be past its check", func() bool { _, err := os.Stat(inside); return err == nil })
	n, pid := rows()
	if n != 1 || pid <= 1 {
		t.Fatalf("%d ref transaction rows (git pid %d) while a push is held, want 1", n, pid)
	}
	before := hookRequests(t, b, "register")
	if before == 0 {
		t.Error("gate B did not register the held push's update")
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill git %d: %v", pid, err)
	}
	bounded(t, "the killed push's row to go", func() bool { n, _ := rows(); return n == 0 })
	if r := <-pushed; r.Err == nil {
		t.Error("the push whose git was killed succeeded")
	}
	if _, errs, code := cli(t, s.db, a.dataDir, "maintenance", "enable", "--fence-timeout", "5s"); code != 0 {
		t.Errorf("enable after the killed push: exit %d\n%s", code, errs)
	}
}
