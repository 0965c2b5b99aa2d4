package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/hooks"
)

// clearHookEnv removes the hook's variables for the test, so that the
// machine's environment does not configure the hook.
func clearHookEnv(t *testing.T) {
	for _, k := range []string{gitgate.EnvDataDir, envHookStatusURL, envHookToken, envHookTokenFile, envHookTimeout, envHookFailOpen, "GITGATE_REPOS"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
}

func setMaintenance(t *testing.T, dataDir string, on bool) {
	t.Helper()
	if _, err := gitgate.NewFileStore(dataDir).Apply(context.Background(), gitgate.Change{Enabled: &on, By: "test"}); err != nil {
		t.Fatal(err)
	}
}

func TestHookPreReceiveCommand(t *testing.T) {
	clearHookEnv(t)
	on, off, corrupt := t.TempDir(), t.TempDir(), t.TempDir()
	setMaintenance(t, on, true)
	setMaintenance(t, off, false)
	if err := os.WriteFile(filepath.Join(corrupt, gitgate.StateFileName), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(hooks.TokenHeader) != "tok" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		io.WriteString(w, `{"maintenance_mode":true,"maintenance_mode_message":null}`)
	}))
	defer srv.Close()
	ownHook := filepath.Join(t.TempDir(), "own")
	if err := os.WriteFile(ownHook, []byte("#!/bin/sh\ncat >&2\nexit 5\n"), 0o755); err != nil {
		t.Fatal(err)
	}

	refused := gitgate.MaintenanceMessage + "\n"
	unreadable := func(reason string) string { return hooks.StateUnreadableMessage + ": " + reason + ".\n" }
	for _, tc := range []struct {
		name       string
		env        map[string]string
		args       []string
		wantCode   int
		wantStderr string
	}{
		{"global data dir", nil, []string{"--data-dir", on, "hook", "pre-receive"}, 1, refused},
		{"data dir after the command", nil, []string{"hook", "pre-receive", "--data-dir", on}, 1, refused},
		{"data dir from the environment", map[string]string{gitgate.EnvDataDir: on}, []string{"hook", "pre-receive"}, 1, refused},
		{"not in maintenance", nil, []string{"hook", "pre-receive", "--data-dir", off}, 0, ""},
		{"not configured", nil, []string{"hook", "pre-receive"}, 1, unreadable(hooks.ReasonNotConfigured)},
		{"corrupt state", nil, []string{"hook", "pre-receive", "--data-dir", corrupt}, 1, unreadable(hooks.ReasonStateFileInvalid)},
		{"fail open", map[string]string{envHookFailOpen: "true"}, []string{"hook", "pre-receive", "--data-dir", corrupt}, 0,
			hooks.FailOpenWarning + ": " + hooks.ReasonStateFileInvalid + ".\n"},
		{"status URL before data dir", map[string]string{envHookStatusURL: srv.URL, envHookToken: "tok"},
			[]string{"hook", "pre-receive", "--data-dir", off}, 1, refused},
		{"status URL, bad token", nil, []string{"hook", "pre-receive", "--status-url", srv.URL, "--token", "nope"}, 1,
			unreadable(fmt.Sprintf(hooks.ReasonStatusHTTPFormat, 401))},
		{"own hook runs with stdin", nil, []string{"hook", "pre-receive", "--data-dir", off, "--chained", ownHook}, 5, "ref update line\n"},
		{"arguments", nil, []string{"hook", "pre-receive", "--data-dir", off, "extra"}, 2, "gitgate: hook pre-receive takes no arguments\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			stdout, stderr, code := runCLI(t, "ref update line\n", tc.args...)
			if code != tc.wantCode || stderr != tc.wantStderr || stdout != "" {
				t.Errorf("exit %d, stderr %q, stdout %q; want %d, %q, nothing", code, stderr, stdout, tc.wantCode, tc.wantStderr)
			}
		})
	}
}

func TestHooksInstallStatusUninstall(t *testing.T) {
	clearHookEnv(t)
	ctx := context.Background()
	dataDir, root := t.TempDir(), t.TempDir()
	bin := filepath.Join(t.TempDir(), "gitgate")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	res, err := gitgate.NewResolver(root)
	if err != nil {
		t.Fatal(err)
	}
	var b gitgate.Repo
	for _, name := range []string{"group/a", "group/b"} {
		if b, err = res.Create(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	own := []byte("#!/bin/sh\nexit 0\n")
	ownPath := filepath.Join(b.Path, "hooks", hooks.HookName)
	if err := os.MkdirAll(filepath.Dir(ownPath), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ownPath, own, 0o755); err != nil {
		t.Fatal(err)
	}

	gg := func(args ...string) (string, string, int) {
		return runCLI(t, "", append([]string{"--data-dir", dataDir}, args...)...)
	}
	steps := []struct {
		args       []string
		wantOut    string
		wantStderr string
		wantCode   int
	}{
		{[]string{"hooks", "status", "--root", root, "--binary", bin}, "" +
			"REPOSITORY  HOOK     OWN HOOK\n" +
			"group/a     missing  -\n" +
			"group/b     foreign  -\n", "", 0},
		{[]string{"hooks", "install", "--root", root, "--binary", bin}, "" +
			"group/a: " + string(hooks.Installed) + "\n" +
			"group/b: " + string(hooks.InstalledChained) + "\n", "", 0},
		{[]string{"hooks", "install", "--root", root, "--binary", bin}, "" +
			"group/a: already installed\n" +
			"group/b: already installed\n", "", 0},
		{[]string{"hooks", "status", "--check", "--root", root, "--binary", bin}, "" +
			"REPOSITORY  HOOK       OWN HOOK\n" +
			"group/a     installed  -\n" +
			"group/b     installed  chained\n", "", 0},
		{[]string{"hooks", "uninstall", "group/a", "--repos", root}, "group/a: removed\n", "", 0},
		{[]string{"hooks", "status", "--check", "--repos", root, "--binary", bin, "--fail-open"}, "" +
			"REPOSITORY  HOOK      OWN HOOK\n" +
			"group/a     missing   -\n" +
			"group/b     outdated  chained\n",
			"gitgate: 2 of 2 repositories do not have the hook as install would write it\n", 1},
		{[]string{"hooks", "uninstall", "--root", root}, "" +
			"group/a: not installed\n" +
			"group/b: " + string(hooks.Restored) + "\n", "", 0},
	}
	for _, s := range steps {
		stdout, stderr, code := gg(s.args...)
		if stdout != s.wantOut || stderr != s.wantStderr || code != s.wantCode {
			t.Fatalf("gitgate %s:\nexit %d, stdout:\n%s\nstderr:\n%s\nwant exit %d, stdout:\n%s\nstderr:\n%s",
				strings.Join(s.args, " "), code, stdout, stderr, s.wantCode, s.wantOut, s.wantStderr)
		}
	}
	if got, err := os.ReadFile(ownPath); err != nil || !bytes.Equal(got, own) {
		t.Errorf("own hook after uninstall: %q, %v; want %q", got, err, own)
	}
}

func TestHooksInstallErrors(t *testing.T) {
	clearHookEnv(t)
	dataDir, root := t.TempDir(), t.TempDir()
	bin := filepath.Join(t.TempDir(), "gitgate")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dataDir, "missing")
	for _, tc := range []struct {
		name       string
		args       []string
		wantCode   int
		wantStderr string
	}{
		{"missing data dir", []string{"--data-dir", missing, "hooks", "install", "--root", root, "--binary", bin}, 1,
			"data dir " + missing + " does not exist"},
		{"missing binary", []string{"--data-dir", dataDir, "hooks", "install", "--root", root, "--binary", missing}, 1,
			"gitgate binary " + missing + " is not an executable file"},
		{"token file without status URL", []string{"--data-dir", dataDir, "hooks", "install", "--root", root, "--binary", bin, "--token-file", bin}, 2,
			"--token-file needs --status-url"},
		{"bad status URL", []string{"--data-dir", dataDir, "hooks", "install", "--root", root, "--binary", bin, "--status-url", "gate:8080"}, 2,
			"status URL"},
		{"unknown repository", []string{"--data-dir", dataDir, "hooks", "install", "--root", root, "--binary", bin, "group/none"}, 1,
			`repository "group/none"`},
		{"missing root", []string{"--data-dir", dataDir, "hooks", "uninstall", "--root", missing}, 1,
			"repository root " + missing + " does not exist"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, code := runCLI(t, "", tc.args...)
			if code != tc.wantCode || !strings.Contains(stderr, tc.wantStderr) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, stderr, tc.wantCode, tc.wantStderr)
			}
		})
	}
}
