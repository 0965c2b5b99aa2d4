package hooks_test

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gitgate/gitgate/hooks"
)

// Pushes that never pass through the gate (git daemon serving the same
// root, a local push to the path) are refused by the hook while in
// maintenance mode and accepted after.
func TestPushRefusedInMaintenanceAcceptedAfter(t *testing.T) {
	for _, tc := range []struct {
		name string
		url  func(f *fixture) string
	}{
		{"git daemon", (*fixture).startDaemon},
		{"local path", func(f *fixture) string { return f.bare }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			if got := f.install(hooks.Script{}); got != hooks.Installed {
				t.Fatalf("install: %q, want %q", got, hooks.Installed)
			}
			url := tc.url(f)

			stderr, err := f.push(url)
			f.assertAccepted(stderr, err)
			before := f.head()
			f.commit("second")

			f.setMaintenance(true)
			stderr, err = f.push(url)
			f.assertRefused(stderr, err, remoteMaintenance, before)

			f.setMaintenance(false)
			stderr, err = f.push(url)
			f.assertAccepted(stderr, err)
		})
	}
}

func failClosedLine(reason string) string {
	return "remote: " + hooks.StateUnreadableMessage + ": " + reason + "."
}

func TestPushRefusedWhenStateUnreadable(t *testing.T) {
	for _, tc := range []struct {
		name   string
		breakf func(f *fixture)
		reason string
	}{
		{"corrupt state file", func(f *fixture) {
			if err := os.WriteFile(filepath.Join(f.dataDir, "maintenance.json"), []byte(`{"enabled":`), 0o644); err != nil {
				t.Fatal(err)
			}
		}, hooks.ReasonStateFileInvalid},
		{"missing data dir", func(f *fixture) {
			if err := os.RemoveAll(f.dataDir); err != nil {
				t.Fatal(err)
			}
		}, hooks.ReasonDataDirMissing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.install(hooks.Script{})
			tc.breakf(f)
			stderr, err := f.push(f.bare)
			f.assertRefused(stderr, err, failClosedLine(tc.reason), "")
		})
	}
}

func TestFailOpenAcceptsPushWhenStateUnreadable(t *testing.T) {
	f := newFixture(t)
	f.install(hooks.Script{FailOpen: true})
	if err := os.WriteFile(filepath.Join(f.dataDir, "maintenance.json"), []byte("not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	stderr, err := f.push(f.bare)
	f.assertAccepted(stderr, err)
	if want := "remote: " + hooks.FailOpenWarning + ": " + hooks.ReasonStateFileInvalid + "."; !hasLine(stderr, want) {
		t.Errorf("stderr lacks %q:\n%s", want, stderr)
	}

	// Fail open does not mean "ignore maintenance".
	if err := os.Remove(filepath.Join(f.dataDir, "maintenance.json")); err != nil {
		t.Fatal(err)
	}
	f.setMaintenance(true)
	before := f.head()
	f.commit("second")
	stderr, err = f.push(f.bare)
	f.assertRefused(stderr, err, remoteMaintenance, before)
}

// The hook asks a running gate's settings endpoint, with the token from a
// file, on a host that does not share the data dir.
func TestPushWithStatusURL(t *testing.T) {
	const token = "glpat-secret"
	// Both hooks ask (pre-receive, then reference-transaction when the refs
	// are committed): every request gets the current answer.
	var answer atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v4/application/settings" || r.Header.Get(hooks.TokenHeader) != token {
			http.Error(w, `{"message":"401 Unauthorized"}`, http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, answer.Load())
	}))
	defer srv.Close()
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	f := newFixture(t)
	f.install(hooks.Script{StatusURL: srv.URL + "/api/v4/application/settings", TokenFile: tokenFile})

	answer.Store(`{"maintenance_mode":true,"maintenance_mode_message":null,"signup_enabled":false}`)
	stderr, err := f.push(f.bare)
	f.assertRefused(stderr, err, remoteMaintenance, "")

	answer.Store(`{"maintenance_mode":false,"maintenance_mode_message":"back soon"}`)
	stderr, err = f.push(f.bare)
	f.assertAccepted(stderr, err)
	before := f.head()
	f.commit("second")

	answer.Store(`{"signup_enabled":false}`)
	stderr, err = f.push(f.bare)
	f.assertRefused(stderr, err, failClosedLine(hooks.ReasonStatusAnswer), before)

	srv.Close()
	stderr, err = f.push(f.bare)
	f.assertRefused(stderr, err, failClosedLine(hooks.ReasonStatusUnreachable), before)
}

// A pre-receive hook that was there before is kept, runs after a successful
// check with every ref update on its stdin, decides with its exit status,
// does not run when the check refuses, and comes back on uninstall.
func TestOwnHookIsChainedAndRestored(t *testing.T) {
	f := newFixture(t)
	own, stdinCopy, exitFile := f.writeOwnHook()
	if got := f.install(hooks.Script{}); got != hooks.InstalledChained {
		t.Fatalf("install: %q, want %q", got, hooks.InstalledChained)
	}

	// Many refs, so that the ref update lines do not fit in a pipe buffer.
	const nrefs = 1000
	commit := f.git(f.work, "rev-parse", "HEAD")
	var refs strings.Builder
	for i := range nrefs {
		fmt.Fprintf(&refs, "create refs/tags/t%04d %s\n", i, commit)
	}
	f.gitStdin(f.work, refs.String(), "update-ref", "--stdin")
	// Atomic: one ref transaction, so the reference-transaction hook runs
	// twice, not twice per ref.
	_, stderr, err := f.run(f.work, nil, "push", "--atomic", f.bare, "main", "refs/tags/*")
	f.assertAccepted(stderr, err)
	if !hasLine(stderr, "remote: own hook ran") {
		t.Errorf("own hook did not run:\n%s", stderr)
	}
	got, err := os.ReadFile(stdinCopy)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(got), "\n"), "\n")
	zero := strings.Repeat("0", len(commit))
	if len(lines) != nrefs+1 || !strings.Contains(string(got), zero+" "+commit+" refs/heads/main\n") ||
		!strings.Contains(string(got), zero+" "+commit+" refs/tags/t0999\n") {
		t.Errorf("own hook read %d lines, want %d ref updates:\n%.300s", len(lines), nrefs+1, got)
	}

	// The own hook's refusal stands.
	before := f.head()
	f.commit("second")
	if err := os.WriteFile(exitFile, []byte("3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stderr, err = f.push(f.bare)
	f.assertRefused(stderr, err, "remote: own hook ran", before)

	// In maintenance the own hook does not run at all.
	os.Remove(stdinCopy)
	os.Remove(exitFile)
	f.setMaintenance(true)
	stderr, err = f.push(f.bare)
	f.assertRefused(stderr, err, remoteMaintenance, before)
	if _, err := os.Stat(stdinCopy); !os.IsNotExist(err) {
		t.Errorf("own hook ran in maintenance mode (stat: %v)", err)
	}

	if got, err := hooks.Uninstall(f.bare); err != nil || got != hooks.Restored {
		t.Fatalf("uninstall: %q, %v; want %q", got, err, hooks.Restored)
	}
	if got, err := os.ReadFile(f.hookPath()); err != nil || !bytes.Equal(got, own) {
		t.Errorf("restored hook is %q (%v), want %q", got, err, own)
	}
	if _, err := os.Lstat(f.hookPath() + hooks.ChainedSuffix); !os.IsNotExist(err) {
		t.Errorf("kept hook still there after uninstall (lstat: %v)", err)
	}
	// Without our hook, the push goes through in maintenance mode.
	stderr, err = f.push(f.bare)
	f.assertAccepted(stderr, err)
}

func (f *fixture) gitStdin(dir, stdin string, args ...string) {
	f.t.Helper()
	cmd := f.command(dir, args...)
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		f.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// The binary linked in as hooks/pre-receive is the hook too, configured by
// the environment; it runs the kept hook next to it.
func TestBinaryLinkedAsHook(t *testing.T) {
	f := newFixture(t)
	_, stdinCopy, _ := f.writeOwnHook()
	if err := os.Rename(f.hookPath(), f.hookPath()+hooks.ChainedSuffix); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(gitgateBinary(t), f.hookPath()); err != nil {
		t.Fatal(err)
	}
	env := "GITGATE_DATA_DIR=" + f.dataDir

	f.setMaintenance(true)
	stderr, err := f.push(f.bare, env)
	f.assertRefused(stderr, err, remoteMaintenance, "")

	f.setMaintenance(false)
	stderr, err = f.push(f.bare, env)
	f.assertAccepted(stderr, err)
	if _, err := os.Stat(stdinCopy); err != nil {
		t.Errorf("kept hook did not run: %v", err)
	}

	// Without configuration, it fails closed.
	f.commit("second")
	before := f.head()
	stderr, err = f.push(f.bare)
	f.assertRefused(stderr, err, failClosedLine(hooks.ReasonNotConfigured), before)
}

// Paths with spaces and quotes survive the trip through sh.
func TestScriptQuotesPaths(t *testing.T) {
	f := newFixture(t)
	dir := filepath.Join(t.TempDir(), `it's a "dir" $HOME`)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "gitgate")
	if err := os.Symlink(gitgateBinary(t), bin); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	if err := os.Rename(f.dataDir, data); err != nil {
		t.Fatal(err)
	}
	f.dataDir = data
	f.install(hooks.Script{Binary: bin, DataDir: data})

	f.setMaintenance(true)
	stderr, err := f.push(f.bare)
	f.assertRefused(stderr, err, remoteMaintenance, "")
}
