package hooks_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/hooks"
)

func markers(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// The hook registers a push's transaction in "prepared" and releases it in
// "committed"/"aborted", one marker per run, so nested transactions (git
// deletes a packed ref inside a loose-ref transaction) stay covered until
// the outer one ends. In maintenance it refuses and leaves the marker to the
// "aborted" run that git makes next.
func TestReferenceTransactionRegistersAndReleases(t *testing.T) {
	ctx := context.Background()
	dataDir := t.TempDir()
	txnDir := filepath.Join(dataDir, gitgate.TxnDirName)
	pid := os.Getpid() // a live process stands in for git
	opts := hooks.TxnOptions{
		Source: hooks.DataDirSource{Dir: dataDir}, TxnDir: txnDir,
		GitPID: pid, Fenced: true, Info: "group/project.git",
	}
	run := func(state string) (int, string) {
		var stderr bytes.Buffer
		code := hooks.ReferenceTransaction(ctx, opts, state, strings.NewReader("0 1 refs/heads/main\n"), &bytes.Buffer{}, &stderr)
		return code, stderr.String()
	}
	steps := []struct {
		state       string
		wantCode    int
		wantMarkers int
	}{
		{hooks.TxnPrepared, 0, 1},
		{hooks.TxnPrepared, 0, 2}, // nested
		{hooks.TxnCommitted, 0, 1},
		{hooks.TxnCommitted, 0, 0},
		{hooks.TxnCommitted, 0, 0}, // nothing to release: fine
		{hooks.TxnPrepared, 0, 1},
		{hooks.TxnAborted, 0, 0},
	}
	for i, s := range steps {
		code, stderr := run(s.state)
		if code != s.wantCode || len(markers(t, txnDir)) != s.wantMarkers || stderr != "" {
			t.Fatalf("step %d (%s): exit %d, markers %v, stderr %q; want exit %d, %d markers",
				i, s.state, code, markers(t, txnDir), stderr, s.wantCode, s.wantMarkers)
		}
	}

	on := true
	if _, err := gitgate.NewFileStore(dataDir).Apply(ctx, gitgate.Change{Enabled: &on}); err != nil {
		t.Fatal(err)
	}
	code, stderr := run(hooks.TxnPrepared)
	if code != 1 || strings.TrimSpace(stderr) != gitgate.MaintenanceMessage {
		t.Fatalf("prepared in maintenance: exit %d, stderr %q", code, stderr)
	}
	if n := len(markers(t, txnDir)); n != 1 {
		t.Fatalf("after a refused prepare: %d markers, want 1 (released by aborted)", n)
	}
	if code, _ := run(hooks.TxnAborted); code != 0 || len(markers(t, txnDir)) != 0 {
		t.Fatalf("aborted: exit %d, markers %v", code, markers(t, txnDir))
	}

	// Not a push (git gc, pack-refs, replication): not checked, not registered.
	opts.Fenced = false
	if code, stderr := run(hooks.TxnPrepared); code != 0 || stderr != "" || len(markers(t, txnDir)) != 0 {
		t.Fatalf("unfenced prepared in maintenance: exit %d, stderr %q, markers %v", code, stderr, markers(t, txnDir))
	}
}

// A push whose transaction cannot be registered is refused (enable could
// not wait for it), unless the hook fails open.
func TestReferenceTransactionUnregisterable(t *testing.T) {
	dataDir := t.TempDir()
	txnDir := filepath.Join(dataDir, gitgate.TxnDirName)
	if err := os.WriteFile(txnDir, nil, 0o644); err != nil { // a file where the dir should be
		t.Fatal(err)
	}
	opts := hooks.TxnOptions{Source: hooks.DataDirSource{Dir: dataDir}, TxnDir: txnDir, GitPID: os.Getpid(), Fenced: true}
	var stderr bytes.Buffer
	if code := hooks.ReferenceTransaction(context.Background(), opts, hooks.TxnPrepared, strings.NewReader(""), &bytes.Buffer{}, &stderr); code != 1 ||
		strings.TrimSpace(stderr.String()) != hooks.TxnNotRegisteredMessage {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
	opts.FailOpen = true
	stderr.Reset()
	if code := hooks.ReferenceTransaction(context.Background(), opts, hooks.TxnPrepared, strings.NewReader(""), &bytes.Buffer{}, &stderr); code != 0 ||
		!strings.HasPrefix(stderr.String(), hooks.FailOpenWarning) {
		t.Fatalf("fail open: exit %d, stderr %q", code, stderr.String())
	}
}

func TestIsFenced(t *testing.T) {
	env := func(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }
	// This test binary is not git: taken for a push (fail closed).
	if !hooks.IsFenced(os.Getpid(), env(nil)) {
		t.Error("an unknown process is not fenced")
	}
	if hooks.IsFenced(os.Getpid(), env(map[string]string{gitgate.EnvReplication: "1"})) {
		t.Error("the replication escape is fenced")
	}
	if !hooks.IsFenced(1<<30, env(nil)) {
		t.Error("a process that cannot be inspected is not fenced")
	}
}

// The reference-transaction hook, end to end with real git:
//   - a push that passed pre-receive while maintenance was off, but reaches
//     its ref update after the switch, is aborted: no ref moves (the race
//     of issue 11, made deterministic by the repository's own pre-receive
//     hook, which runs after gitgate's check and enables maintenance);
//   - git pack-refs and git gc, which run ref transactions of their own,
//     work in maintenance;
//   - no marker is left behind.
func TestRefUpdateAbortedWhenMaintenanceStartsAfterPreReceive(t *testing.T) {
	f := newFixture(t)
	bin := gitgateBinary(t)
	own := fmt.Appendf(nil, "#!/bin/sh\ncat >/dev/null\nexec '%s' --data-dir '%s' maintenance enable >/dev/null\n", bin, f.dataDir)
	if err := os.WriteFile(f.hookPath(), own, 0o755); err != nil {
		t.Fatal(err)
	}
	if got := f.install(hooks.Script{}); got != hooks.InstalledChained {
		t.Fatalf("install: %q", got)
	}
	before := f.head()
	stderr, err := f.push(f.bare)
	if err == nil {
		t.Fatalf("push succeeded; stderr:\n%s", stderr)
	}
	if got := f.head(); got != before {
		t.Fatalf("main moved from %q to %q after maintenance was enabled", before, got)
	}
	if !strings.Contains(stderr, gitgate.MaintenanceMessage) {
		t.Errorf("stderr lacks the maintenance message:\n%s", stderr)
	}

	// Local maintenance work runs ref transactions too: not refused.
	f.git("", "-C", f.bare, "update-ref", "refs/heads/local", f.git(f.work, "rev-parse", "HEAD"))
	f.git("", "-C", f.bare, "pack-refs", "--all")
	f.git("", "-C", f.bare, "gc", "--quiet")
	// Fetches (a Geo secondary's replication) are not pushes: not refused,
	// with or without the gate's replication escape.
	_, fstderr, err := f.run(f.bare, []string{gitgate.EnvReplication + "=1"}, "fetch", "--quiet", f.work, "+refs/heads/main:refs/heads/replicated")
	if err != nil {
		t.Fatalf("replication fetch in maintenance: %v\n%s", err, fstderr)
	}
	if n := markers(t, filepath.Join(f.dataDir, gitgate.TxnDirName)); len(n) != 0 {
		t.Errorf("markers left behind: %v", n)
	}

	// Out of maintenance the push goes through (the own hook is removed).
	if err := os.Remove(f.hookPath() + hooks.ChainedSuffix); err != nil {
		t.Fatal(err)
	}
	f.setMaintenance(false)
	stderr, err = f.push(f.bare)
	f.assertAccepted(stderr, err)
	if n := markers(t, filepath.Join(f.dataDir, gitgate.TxnDirName)); len(n) != 0 {
		t.Errorf("markers left behind: %v", n)
	}
}

// The repository's own reference-transaction hook runs after the check,
// with git's argument and stdin, and decides in "prepared"; it does not run
// when the check refuses.
func TestReferenceTransactionChainsOwnHook(t *testing.T) {
	dataDir, dir := t.TempDir(), t.TempDir()
	seen := filepath.Join(dir, "seen")
	own := filepath.Join(dir, "reference-transaction"+hooks.ChainedSuffix)
	script := fmt.Sprintf("#!/bin/sh\necho \"$1\" >> '%s'\ncat >> '%s'\nexit 3\n", seen, seen)
	if err := os.WriteFile(own, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	opts := hooks.TxnOptions{
		Source: hooks.DataDirSource{Dir: dataDir}, TxnDir: filepath.Join(dataDir, gitgate.TxnDirName),
		GitPID: os.Getpid(), Fenced: true, Chained: own,
	}
	run := func(state string) int {
		return hooks.ReferenceTransaction(context.Background(), opts, state, strings.NewReader("a b refs/heads/main\n"), &bytes.Buffer{}, &bytes.Buffer{})
	}
	if code := run(hooks.TxnPrepared); code != 3 {
		t.Errorf("prepared: exit %d, want the own hook's 3", code)
	}
	run(hooks.TxnAborted)
	on := true
	if _, err := gitgate.NewFileStore(dataDir).Apply(context.Background(), gitgate.Change{Enabled: &on}); err != nil {
		t.Fatal(err)
	}
	if code := run(hooks.TxnPrepared); code != 1 {
		t.Errorf("prepared in maintenance: exit %d", code)
	}
	got, _ := os.ReadFile(seen)
	if want := "prepared\na b refs/heads/main\naborted\na b refs/heads/main\n"; string(got) != want {
		t.Errorf("own hook saw %q, want %q", got, want)
	}
}

// With a reference-transaction hook of the repository's own, the installed
// script does not take its shell shortcut for "committed": gitgate runs,
// drops the record and runs the own hook in every state; without one, the
// shortcut drops the record. Either way no marker is left.
func TestInstalledTxnScriptReleasesWithAndWithoutOwnHook(t *testing.T) {
	for _, own := range []bool{false, true} {
		t.Run(fmt.Sprint("own hook ", own), func(t *testing.T) {
			f := newFixture(t)
			seen := filepath.Join(t.TempDir(), "seen")
			if own {
				script := fmt.Sprintf("#!/bin/sh\necho \"$1\" >> '%s'\ncat >/dev/null\n", seen)
				if err := os.WriteFile(filepath.Join(f.bare, "hooks", hooks.TxnHookName), []byte(script), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			f.install(hooks.Script{})
			stderr, err := f.push(f.bare)
			f.assertAccepted(stderr, err)
			if n := markers(t, filepath.Join(f.dataDir, gitgate.TxnDirName)); len(n) != 0 {
				t.Errorf("markers left behind: %v", n)
			}
			got, _ := os.ReadFile(seen)
			if want := "prepared\ncommitted\n"; own && string(got) != want {
				t.Errorf("own hook saw %q, want %q", got, want)
			}
		})
	}
}
