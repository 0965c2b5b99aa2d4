package hooks_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/hooks"
)

// fakeSource is a StateLoader with a fixed answer.
type fakeSource struct {
	st  gitgate.State
	err error
}

func (s fakeSource) Load(context.Context) (gitgate.State, error) { return s.st, s.err }

// ownHook writes an executable script to a temp dir and returns its path.
func ownHook(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pre-receive"+hooks.ChainedSuffix)
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestPreReceive(t *testing.T) {
	on := gitgate.State{Enabled: true, Version: 1}
	unreadable := &hooks.StateError{Reason: hooks.ReasonStateFileInvalid, Err: errors.New("parse: unexpected EOF")}
	for _, tc := range []struct {
		name       string
		opts       hooks.Options
		wantCode   int
		wantStderr string
	}{
		{"not in maintenance", hooks.Options{Source: fakeSource{}}, 0, ""},
		{"maintenance", hooks.Options{Source: fakeSource{st: on}}, 1, gitgate.MaintenanceMessage + "\n"},
		{"maintenance, fail open", hooks.Options{Source: fakeSource{st: on}, FailOpen: true}, 1, gitgate.MaintenanceMessage + "\n"},
		{"no source", hooks.Options{}, 1,
			hooks.StateUnreadableMessage + ": " + hooks.ReasonNotConfigured + ".\n"},
		{"unreadable", hooks.Options{Source: fakeSource{err: unreadable}}, 1,
			hooks.StateUnreadableMessage + ": " + hooks.ReasonStateFileInvalid + ".\n"},
		{"unreadable, wrapped", hooks.Options{Source: fakeSource{err: fmt.Errorf("load: %w", unreadable)}}, 1,
			hooks.StateUnreadableMessage + ": " + hooks.ReasonStateFileInvalid + ".\n"},
		{"error without a reason", hooks.Options{Source: fakeSource{err: errors.New("/secret/path: boom")}}, 1,
			hooks.StateUnreadableMessage + ": " + hooks.ReasonUnknown + ".\n"},
		{"unreadable, fail open", hooks.Options{Source: fakeSource{err: unreadable}, FailOpen: true}, 0,
			hooks.FailOpenWarning + ": " + hooks.ReasonStateFileInvalid + ".\n"},
		{"missing own hook is ignored", hooks.Options{Source: fakeSource{}, Chained: filepath.Join(t.TempDir(), "none")}, 0, ""},
		{"own hook's status is kept", hooks.Options{Source: fakeSource{}, Chained: ownHook(t, "echo no >&2; exit 7\n")}, 7, "no\n"},
		{"own hook does not run in maintenance", hooks.Options{Source: fakeSource{st: on}, Chained: ownHook(t, "echo ran >&2\n")}, 1,
			gitgate.MaintenanceMessage + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := hooks.PreReceive(context.Background(), tc.opts, strings.NewReader(""), &stdout, &stderr)
			if code != tc.wantCode || stderr.String() != tc.wantStderr {
				t.Errorf("PreReceive = %d, stderr %q; want %d, %q", code, stderr.String(), tc.wantCode, tc.wantStderr)
			}
		})
	}
}

// The own hook reads the same stdin, however long, and its stdout reaches
// the caller's stdout.
func TestPreReceiveStreamsStdinToOwnHook(t *testing.T) {
	copyPath := filepath.Join(t.TempDir(), "copy")
	hook := ownHook(t, fmt.Sprintf("cat > '%s'\necho done\n", copyPath))
	in := bytes.Repeat([]byte("0000000000000000000000000000000000000000 1111111111111111111111111111111111111111 refs/heads/x\n"), 20000)
	var stdout, stderr bytes.Buffer
	code := hooks.PreReceive(context.Background(), hooks.Options{Source: fakeSource{}, Chained: hook}, bytes.NewReader(in), &stdout, &stderr)
	if code != 0 || stdout.String() != "done\n" || stderr.Len() != 0 {
		t.Fatalf("PreReceive = %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
	got, err := os.ReadFile(copyPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, in) {
		t.Errorf("own hook read %d bytes, want the %d given", len(got), len(in))
	}
}

func TestPreReceiveOwnHookThatCannotRun(t *testing.T) {
	dir := t.TempDir()
	notExecutable := filepath.Join(dir, "plain")
	noInterpreter := filepath.Join(dir, "broken")
	if err := os.WriteFile(notExecutable, []byte("#!/bin/sh\nexit 9\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(noInterpreter, []byte("#!/nonexistent/interpreter\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path       string
		wantCode   int
		wantStderr string
	}{
		// git ignores a hook that is not executable; so do we.
		{notExecutable, 0, ""},
		{noInterpreter, 1, hooks.ChainedHookFailedMessage + "\n"},
	} {
		var stderr bytes.Buffer
		code := hooks.PreReceive(context.Background(), hooks.Options{Source: fakeSource{}, Chained: tc.path}, strings.NewReader(""), io.Discard, &stderr)
		if code != tc.wantCode || stderr.String() != tc.wantStderr {
			t.Errorf("%s: PreReceive = %d, %q; want %d, %q", filepath.Base(tc.path), code, stderr.String(), tc.wantCode, tc.wantStderr)
		}
	}
}

func TestDataDirSource(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	notDir := filepath.Join(dir, "file")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, dir, reason string
	}{
		{"missing", filepath.Join(dir, "missing"), hooks.ReasonDataDirMissing},
		{"not a directory", notDir, hooks.ReasonDataDirMissing},
	} {
		_, err := hooks.DataDirSource{Dir: tc.dir}.Load(ctx)
		if got := hooks.Reason(err); err == nil || got != tc.reason {
			t.Errorf("%s: Load error %v (reason %q), want reason %q", tc.name, err, got, tc.reason)
		}
	}

	// No state file: never in maintenance.
	st, err := hooks.DataDirSource{Dir: dir}.Load(ctx)
	if err != nil || st.Enabled {
		t.Fatalf("Load without a state file = %+v, %v; want not enabled", st, err)
	}
	on := true
	if _, err := gitgate.NewFileStore(dir).Apply(ctx, gitgate.Change{Enabled: &on, By: "test"}); err != nil {
		t.Fatal(err)
	}
	if st, err := (hooks.DataDirSource{Dir: dir}).Load(ctx); err != nil || !st.Enabled {
		t.Fatalf("Load = %+v, %v; want enabled", st, err)
	}
	if err := os.WriteFile(filepath.Join(dir, gitgate.StateFileName), []byte(`{"enabled":true,"bogus":1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := (hooks.DataDirSource{Dir: dir}).Load(ctx); hooks.Reason(err) != hooks.ReasonStateFileInvalid {
		t.Fatalf("Load of a corrupt file: %v, want reason %q", err, hooks.ReasonStateFileInvalid)
	}
}

// Once the data dir has had a state, a removed state file refuses the push;
// a FIFO in its place is refused at once instead of hanging the hook (and
// git with it); a cancelled check (a signal) refuses too.
func TestDataDirSourceFailsClosed(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	state := filepath.Join(dir, gitgate.StateFileName)
	on := true
	if _, err := gitgate.NewFileStore(dir).Apply(ctx, gitgate.Change{Enabled: &on, By: "test"}); err != nil {
		t.Fatal(err)
	}
	src := hooks.DataDirSource{Dir: dir}
	os.Remove(state)
	if _, err := src.Load(ctx); hooks.Reason(err) != hooks.ReasonStateFileMissing {
		t.Fatalf("Load of a removed file: %v, want reason %q", err, hooks.ReasonStateFileMissing)
	}
	if err := syscall.Mkfifo(state, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Load(ctx); hooks.Reason(err) != hooks.ReasonStateFileInvalid {
		t.Fatalf("Load of a FIFO: %v, want reason %q", err, hooks.ReasonStateFileInvalid)
	}
	var stderr bytes.Buffer
	if code := hooks.PreReceive(ctx, hooks.Options{Source: src}, strings.NewReader(""), io.Discard, &stderr); code != 1 ||
		stderr.String() != hooks.StateUnreadableMessage+": "+hooks.ReasonStateFileInvalid+".\n" {
		t.Fatalf("PreReceive with a FIFO = %d, %q", code, stderr.String())
	}
	os.Remove(state)
	if _, err := gitgate.NewFileStore(dir).Reset(ctx, gitgate.Change{By: "test"}); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := src.Load(cctx); hooks.Reason(err) != hooks.ReasonInterrupted {
		t.Fatalf("Load with a cancelled context: %v, want reason %q", err, hooks.ReasonInterrupted)
	}
	if st, err := src.Load(ctx); err != nil || st.Enabled {
		t.Fatalf("Load after reset = %+v, %v", st, err)
	}
}

func TestStatusSource(t *testing.T) {
	ctx := context.Background()
	const token = "admin-token"
	mux := http.NewServeMux()
	reply := func(status int, body string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get(hooks.TokenHeader) != token {
				w.WriteHeader(http.StatusUnauthorized)
				io.WriteString(w, `{"message":"401 Unauthorized"}`)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			io.WriteString(w, body)
		}
	}
	mux.Handle("/on", reply(200, `{"maintenance_mode":true,"maintenance_mode_message":"Upgrade","gitaly_timeout_default":55}`))
	mux.Handle("/off", reply(200, `{"maintenance_mode":false,"maintenance_mode_message":null}`))
	mux.Handle("/missing", reply(200, `{"maintenance_mode_message":null}`))
	mux.Handle("/null", reply(200, `{"maintenance_mode":null}`))
	mux.Handle("/string", reply(200, `{"maintenance_mode":"true"}`))
	mux.Handle("/html", reply(200, `<html>sign in</html>`))
	mux.Handle("/error", reply(500, `{"message":"500 Internal Server Error"}`))
	mux.Handle("/redirect", http.RedirectHandler("/on", http.StatusFound))
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(" "+token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()

	for _, tc := range []struct {
		name   string
		src    hooks.StatusSource
		want   gitgate.State
		reason string
	}{
		{"on", hooks.StatusSource{URL: srv.URL + "/on", Token: token}, gitgate.State{Enabled: true, Message: "Upgrade"}, ""},
		{"off", hooks.StatusSource{URL: srv.URL + "/off", Token: token}, gitgate.State{}, ""},
		{"token file", hooks.StatusSource{URL: srv.URL + "/on", TokenFile: tokenFile}, gitgate.State{Enabled: true, Message: "Upgrade"}, ""},
		{"missing token file", hooks.StatusSource{URL: srv.URL + "/on", TokenFile: tokenFile + ".missing"}, gitgate.State{}, hooks.ReasonTokenUnreadable},
		{"no token", hooks.StatusSource{URL: srv.URL + "/on"}, gitgate.State{}, fmt.Sprintf(hooks.ReasonStatusHTTPFormat, 401)},
		{"field missing", hooks.StatusSource{URL: srv.URL + "/missing", Token: token}, gitgate.State{}, hooks.ReasonStatusAnswer},
		{"field null", hooks.StatusSource{URL: srv.URL + "/null", Token: token}, gitgate.State{}, hooks.ReasonStatusAnswer},
		{"field not a boolean", hooks.StatusSource{URL: srv.URL + "/string", Token: token}, gitgate.State{}, hooks.ReasonStatusAnswer},
		{"not JSON", hooks.StatusSource{URL: srv.URL + "/html", Token: token}, gitgate.State{}, hooks.ReasonStatusAnswer},
		{"server error", hooks.StatusSource{URL: srv.URL + "/error", Token: token}, gitgate.State{}, fmt.Sprintf(hooks.ReasonStatusHTTPFormat, 500)},
		{"redirect not followed", hooks.StatusSource{URL: srv.URL + "/redirect", Token: token}, gitgate.State{}, fmt.Sprintf(hooks.ReasonStatusHTTPFormat, 302)},
		{"too slow", hooks.StatusSource{URL: srv.URL + "/slow", Token: token, Timeout: 50 * time.Millisecond}, gitgate.State{}, hooks.ReasonStatusTimeout},
		{"unreachable", hooks.StatusSource{URL: closed.URL + "/on", Token: token}, gitgate.State{}, hooks.ReasonStatusUnreachable},
		{"not http", hooks.StatusSource{URL: "file:///etc/passwd"}, gitgate.State{}, hooks.ReasonStatusURLInvalid},
		{"relative", hooks.StatusSource{URL: "/api/v4/application/settings"}, gitgate.State{}, hooks.ReasonStatusURLInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := tc.src.Load(ctx)
			if tc.reason == "" {
				if err != nil || st != tc.want {
					t.Fatalf("Load = %+v, %v; want %+v", st, err, tc.want)
				}
				return
			}
			if err == nil || hooks.Reason(err) != tc.reason {
				t.Fatalf("Load = %+v, %v; want reason %q", st, err, tc.reason)
			}
		})
	}
}
