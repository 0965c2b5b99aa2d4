package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/gitgate/gitgate/gitgate"
)

// Enabling maintenance waits for the ref updates registered by the
// reference-transaction hook; when one outlives --fence-timeout, the CLI
// and the API say so, with maintenance enabled all the same.
func TestMaintenanceEnableReportsFenceTimeout(t *testing.T) {
	dir := t.TempDir()
	mustCLI(t, dir, "user", "add", "root", "--admin")
	token := strings.TrimSpace(mustCLI(t, dir, "token", "create", "root"))
	// This test process stands in for a git process committing refs.
	if _, err := gitgate.RegisterTxn(filepath.Join(dir, gitgate.TxnDirName), os.Getpid(), "group/project.git"); err != nil {
		t.Fatal(err)
	}

	stdout, stderr, code := gitgateCLI(t, dir, "maintenance", "enable", "--fence-timeout", "10ms")
	if code != 1 || !strings.Contains(stdout, "maintenance mode: enabled") ||
		!strings.Contains(stderr, "maintenance mode is enabled, but 1 ref update(s) that began before the switch were still running after 10ms") ||
		!strings.Contains(stderr, "git process "+strconv.Itoa(os.Getpid())+": group/project.git, since ") {
		t.Fatalf("enable: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	mustCLI(t, dir, "maintenance", "disable")
	// "maintenance reset --enable" waits the same way.
	stdout, stderr, code = gitgateCLI(t, dir, "maintenance", "reset", "--force", "--enable", "--fence-timeout", "10ms")
	if code != 1 || !strings.Contains(stdout, "maintenance mode: enabled") ||
		!strings.Contains(stderr, "still running after 10ms") {
		t.Fatalf("reset --enable: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	mustCLI(t, dir, "maintenance", "disable")

	// The same through the API of a running gate.
	url := serveInProcess(t, dir, "--fence-timeout", "10ms")
	req, _ := http.NewRequest(http.MethodPut, url+"/api/v4/application/settings?maintenance_mode=true", nil)
	req.Header.Set("PRIVATE-TOKEN", token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var answer struct{ Message string }
	if resp.StatusCode != http.StatusInternalServerError || json.Unmarshal(body, &answer) != nil ||
		answer.Message != "maintenance mode is enabled, but 1 ref update(s) that began before the switch were still running after 10ms" {
		t.Fatalf("PUT: %d %s", resp.StatusCode, body)
	}
	if out := mustCLI(t, dir, "maintenance", "status"); !strings.Contains(out, "maintenance mode: enabled") {
		t.Errorf("status after the timeout:\n%s", out)
	}

	// Once the update is done, enable returns at once.
	if err := gitgate.ReleaseTxn(filepath.Join(dir, gitgate.TxnDirName), os.Getpid()); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, dir, "maintenance", "disable")
	mustCLI(t, dir, "maintenance", "enable", "--fence-timeout", "1h")
}
