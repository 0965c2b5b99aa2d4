package hooks_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/hooks"
)

// bareDir makes a directory that stands for a bare repository: the
// installer only touches its hooks/ directory.
func bareDir(t *testing.T) (gitDir, hook string) {
	t.Helper()
	gitDir = filepath.Join(t.TempDir(), "project.git")
	if err := os.MkdirAll(gitDir, 0o755); err != nil {
		t.Fatal(err)
	}
	return gitDir, filepath.Join(gitDir, "hooks", hooks.HookName)
}

func newInstaller(t *testing.T, s hooks.Script) *hooks.Installer {
	t.Helper()
	in, err := hooks.NewInstaller(s)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func TestScriptRender(t *testing.T) {
	got, err := hooks.Script{Binary: "/usr/local/bin/gitgate", DataDir: "/var/lib/gitgate"}.Render()
	if err != nil {
		t.Fatal(err)
	}
	want := "#!/bin/sh\n" +
		hooks.Marker + "\n" +
		"# \"gitgate hooks uninstall\" removes it and puts back the repository's own\n" +
		"# hook, which runs after the check from pre-receive.gitgate-chained.\n" +
		"exec '/usr/local/bin/gitgate' hook pre-receive --data-dir '/var/lib/gitgate' --chained \"$0.gitgate-chained\"\n"
	if string(got) != want {
		t.Errorf("script:\n%s\nwant:\n%s", got, want)
	}

	got, err = hooks.Script{
		Binary: "/opt/git'gate", StatusURL: "https://gate.example.com/api/v4/application/settings",
		TokenFile: "/etc/gitgate/token", FailOpen: true,
	}.Render()
	if err != nil {
		t.Fatal(err)
	}
	if want := `exec '/opt/git'\''gate' hook pre-receive --status-url 'https://gate.example.com/api/v4/application/settings' --token-file '/etc/gitgate/token' --fail-open --chained "$0.gitgate-chained"`; !strings.Contains(string(got), want+"\n") {
		t.Errorf("script:\n%s\nlacks:\n%s", got, want)
	}
}

func TestScriptRenderRejects(t *testing.T) {
	for name, s := range map[string]hooks.Script{
		"relative binary":         {Binary: "gitgate", DataDir: "/data"},
		"relative data dir":       {Binary: "/bin/gitgate", DataDir: "data"},
		"newline in path":         {Binary: "/bin/git\ngate", DataDir: "/data"},
		"no state source":         {Binary: "/bin/gitgate"},
		"status URL not http":     {Binary: "/bin/gitgate", StatusURL: "ftp://gate/settings"},
		"relative token file":     {Binary: "/bin/gitgate", StatusURL: "http://gate/settings", TokenFile: "token"},
		"control char in the URL": {Binary: "/bin/gitgate", StatusURL: "http://gate/\rsettings"},
	} {
		if script, err := s.Render(); err == nil {
			t.Errorf("%s: Render succeeded:\n%s", name, script)
		}
	}
}

func TestInstallIsIdempotent(t *testing.T) {
	gitDir, hook := bareDir(t)
	in := newInstaller(t, hooks.Script{Binary: "/bin/gitgate", DataDir: "/data"})
	for i, want := range []hooks.Outcome{hooks.Installed, hooks.Unchanged, hooks.Unchanged} {
		if got, err := in.Install(gitDir); err != nil || got != want {
			t.Fatalf("install #%d: %q, %v; want %q", i+1, got, err, want)
		}
	}
	got, err := os.ReadFile(hook)
	if err != nil || !bytes.Equal(got, in.Script()) {
		t.Fatalf("hook is %q (%v), want the script", got, err)
	}
	if fi, err := os.Stat(hook); err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("hook mode: %v, %v; want 0755", fi.Mode(), err)
	}
	txn := filepath.Join(filepath.Dir(hook), hooks.TxnHookName)
	if got, err := os.ReadFile(txn); err != nil || !bytes.Equal(got, in.HookScript(hooks.TxnHookName)) {
		t.Fatalf("%s is %q (%v), want the script", hooks.TxnHookName, got, err)
	}
	entries, _ := os.ReadDir(filepath.Dir(hook))
	if len(entries) != 2 {
		t.Errorf("hooks dir holds %d entries, want only %s and %s", len(entries), hooks.HookName, hooks.TxnHookName)
	}

	// Another binary or data dir: the script is rewritten, never chained.
	in2 := newInstaller(t, hooks.Script{Binary: "/usr/bin/gitgate", DataDir: "/data"})
	if st, _ := in2.Inspect(gitDir); st.State != hooks.HookOutdated {
		t.Errorf("state before update: %v, want outdated", st.State)
	}
	if got, err := in2.Install(gitDir); err != nil || got != hooks.Updated {
		t.Fatalf("install with another binary: %q, %v; want %q", got, err, hooks.Updated)
	}
	if _, err := os.Lstat(hook + hooks.ChainedSuffix); !os.IsNotExist(err) {
		t.Errorf("our own old script was kept as a chained hook (lstat: %v)", err)
	}

	// Not executable any more: rewritten.
	if err := os.Chmod(hook, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := in2.Install(gitDir); err != nil || got != hooks.Updated {
		t.Fatalf("install over a non-executable hook: %q, %v; want %q", got, err, hooks.Updated)
	}

	if got, err := hooks.Uninstall(gitDir); err != nil || got != hooks.Removed {
		t.Fatalf("uninstall: %q, %v; want %q", got, err, hooks.Removed)
	}
	if got, err := hooks.Uninstall(gitDir); err != nil || got != hooks.NotInstalled {
		t.Fatalf("second uninstall: %q, %v; want %q", got, err, hooks.NotInstalled)
	}
	if _, err := os.Lstat(hook); !os.IsNotExist(err) {
		t.Errorf("hook still there after uninstall (lstat: %v)", err)
	}
}

func TestInstallKeepsOwnHook(t *testing.T) {
	gitDir, hook := bareDir(t)
	own := []byte("#!/usr/bin/env python3\nprint('policy check')\n")
	if err := os.MkdirAll(filepath.Dir(hook), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hook, own, 0o750); err != nil {
		t.Fatal(err)
	}
	in := newInstaller(t, hooks.Script{Binary: "/bin/gitgate", DataDir: "/data"})
	if st, err := in.Inspect(gitDir); err != nil || st != (hooks.Status{State: hooks.HookForeign}) {
		t.Fatalf("Inspect before install: %+v, %v", st, err)
	}
	for i, want := range []hooks.Outcome{hooks.InstalledChained, hooks.Unchanged} {
		if got, err := in.Install(gitDir); err != nil || got != want {
			t.Fatalf("install #%d: %q, %v; want %q", i+1, got, err, want)
		}
	}
	kept, err := os.ReadFile(hook + hooks.ChainedSuffix)
	if err != nil || !bytes.Equal(kept, own) {
		t.Fatalf("kept hook is %q (%v), want the original", kept, err)
	}
	if st, err := in.Inspect(gitDir); err != nil || st != (hooks.Status{State: hooks.HookInstalled, Chained: true}) {
		t.Fatalf("Inspect after install: %+v, %v", st, err)
	}

	if got, err := hooks.Uninstall(gitDir); err != nil || got != hooks.Restored {
		t.Fatalf("uninstall: %q, %v; want %q", got, err, hooks.Restored)
	}
	restored, err := os.ReadFile(hook)
	if err != nil || !bytes.Equal(restored, own) {
		t.Fatalf("restored hook is %q (%v), want the original", restored, err)
	}
	if fi, err := os.Stat(hook); err != nil || fi.Mode().Perm() != 0o750 {
		t.Errorf("restored hook mode %v (%v), want 0750", fi.Mode(), err)
	}
}

// A foreign hook next to a kept one is a state install does not guess
// about: it fails and changes nothing.
func TestInstallRefusesToOverwriteKeptHook(t *testing.T) {
	gitDir, hook := bareDir(t)
	if err := os.MkdirAll(filepath.Dir(hook), 0o755); err != nil {
		t.Fatal(err)
	}
	for path, body := range map[string]string{hook: "#!/bin/sh\necho new\n", hook + hooks.ChainedSuffix: "#!/bin/sh\necho kept\n"} {
		if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	in := newInstaller(t, hooks.Script{Binary: "/bin/gitgate", DataDir: "/data"})
	if got, err := in.Install(gitDir); err == nil {
		t.Fatalf("install succeeded (%q), want an error", got)
	}
	for path, want := range map[string]string{hook: "#!/bin/sh\necho new\n", hook + hooks.ChainedSuffix: "#!/bin/sh\necho kept\n"} {
		if got, _ := os.ReadFile(path); string(got) != want {
			t.Errorf("%s changed to %q", filepath.Base(path), got)
		}
	}
}

// An install interrupted after the own hook was kept, or an uninstall done by
// hand, is repaired by running install or uninstall again.
func TestKeptHookWithoutOurs(t *testing.T) {
	gitDir, hook := bareDir(t)
	if err := os.MkdirAll(filepath.Dir(hook), 0o755); err != nil {
		t.Fatal(err)
	}
	own := []byte("#!/bin/sh\nexit 0\n")
	if err := os.WriteFile(hook+hooks.ChainedSuffix, own, 0o755); err != nil {
		t.Fatal(err)
	}
	in := newInstaller(t, hooks.Script{Binary: "/bin/gitgate", DataDir: "/data"})
	if st, err := in.Inspect(gitDir); err != nil || st != (hooks.Status{State: hooks.HookMissing, Chained: true}) {
		t.Fatalf("Inspect: %+v, %v", st, err)
	}
	if got, err := hooks.Uninstall(gitDir); err != nil || got != hooks.Restored {
		t.Fatalf("uninstall: %q, %v; want %q", got, err, hooks.Restored)
	}
	if got, _ := os.ReadFile(hook); !bytes.Equal(got, own) {
		t.Fatalf("hook is %q, want the kept one", got)
	}
	if err := os.Rename(hook, hook+hooks.ChainedSuffix); err != nil {
		t.Fatal(err)
	}
	if got, err := in.Install(gitDir); err != nil || got != hooks.InstalledChained {
		t.Fatalf("install: %q, %v; want %q", got, err, hooks.InstalledChained)
	}
}

// The gitgate binary linked in by hand as the hook is ours: install
// replaces it with the script instead of chaining it.
func TestInstallReplacesLinkedBinary(t *testing.T) {
	gitDir, hook := bareDir(t)
	bin := filepath.Join(t.TempDir(), "gitgate")
	if err := os.WriteFile(bin, []byte("\x7fELF..."), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(hook), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(bin, hook); err != nil {
		t.Fatal(err)
	}
	in := newInstaller(t, hooks.Script{Binary: bin, DataDir: "/data"})
	if got, err := in.Install(gitDir); err != nil || got != hooks.Updated {
		t.Fatalf("install: %q, %v; want %q", got, err, hooks.Updated)
	}
	if _, err := os.Lstat(hook + hooks.ChainedSuffix); !os.IsNotExist(err) {
		t.Errorf("the binary was kept as a chained hook (lstat: %v)", err)
	}
}

func TestUninstallLeavesForeignHook(t *testing.T) {
	gitDir, hook := bareDir(t)
	if err := os.MkdirAll(filepath.Dir(hook), 0o755); err != nil {
		t.Fatal(err)
	}
	own := []byte("#!/bin/sh\n# not gitgate\n")
	if err := os.WriteFile(hook, own, 0o755); err != nil {
		t.Fatal(err)
	}
	if got, err := hooks.Uninstall(gitDir); err != nil || got != hooks.NotInstalled {
		t.Fatalf("uninstall: %q, %v; want %q", got, err, hooks.NotInstalled)
	}
	if got, _ := os.ReadFile(hook); !bytes.Equal(got, own) {
		t.Errorf("foreign hook changed to %q", got)
	}
}

func TestInstallAll(t *testing.T) {
	good, _ := bareDir(t)
	bad, badHook := bareDir(t)
	if err := os.MkdirAll(filepath.Dir(badHook), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{badHook, badHook + hooks.ChainedSuffix} {
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	in := newInstaller(t, hooks.Script{Binary: "/bin/gitgate", DataDir: "/data"})
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	repos := []gitgate.Repo{{Name: "group/bad", Path: bad}, {Name: "group/good", Path: good}}
	err := in.InstallAll(context.Background(), repos, log)
	if err == nil || !strings.Contains(err.Error(), "group/bad") {
		t.Fatalf("InstallAll error %v, want one naming group/bad", err)
	}
	if st, _ := in.Inspect(good); st.State != hooks.HookInstalled {
		t.Errorf("group/good: %v after InstallAll, want installed", st.State)
	}
	for _, want := range []string{"level=ERROR", "repo=group/bad", "level=INFO msg=\"pre-receive hook installed\" repo=group/good"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
}
