package sitetest

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/internal/pgtest"
)

// runHook runs "gitgate hook pre-receive" as git would, with env added.
func runHook(t *testing.T, env ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(binary, "hook", "pre-receive")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader("")
	var errb bytes.Buffer
	cmd.Stderr = &errb
	_ = cmd.Run()
	return errb.String(), cmd.ProcessState.ExitCode()
}

// The hook reads the state from the database given in the environment (as
// the gate passes it to git), refuses in maintenance, and fails closed,
// without showing the password, when the database cannot be read.
func TestHookReadsTheDatabase(t *testing.T) {
	db := pgtest.Database(t, cluster)
	dir := t.TempDir()
	mustCLI(t, db, dir, "db", "migrate")
	env := []string{"GITGATE_DATA_DIR=" + dir, "GITGATE_DATABASE_URL=" + db}
	if out, code := runHook(t, env...); code != 0 {
		t.Fatalf("hook, not in maintenance: exit %d\n%s", code, out)
	}
	mustCLI(t, db, dir, "maintenance", "enable")
	if out, code := runHook(t, env...); code != 1 || !strings.Contains(out, gitgate.MaintenanceMessage) {
		t.Fatalf("hook in maintenance: exit %d\n%s", code, out)
	}
	// The data dir's own file says "not in maintenance": the database wins.
	if out, code := runHook(t, "GITGATE_DATA_DIR="+t.TempDir(), "GITGATE_DATABASE_URL="+db); code != 1 {
		t.Fatalf("hook with the database in maintenance and an empty data dir: exit %d\n%s", code, out)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "postgres://gitgate:pa55word@" + ln.Addr().String() + "/site?sslmode=disable"
	ln.Close()
	out, code := runHook(t, "GITGATE_DATA_DIR="+dir, "GITGATE_DATABASE_URL="+dead)
	if code != 1 || !strings.Contains(out, "the maintenance state database cannot be read") || strings.Contains(out, "pa55word") {
		t.Fatalf("hook with the database unreachable: exit %d\n%s", code, out)
	}
}
