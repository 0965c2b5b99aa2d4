package packcache

import (
	"bytes"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gitgate/gitgate/gitgate"
)

// startServer serves c on a socket in a temp dir until the test ends.
func startServer(t *testing.T, c *Cache, opts ...func(*Server)) *Server {
	t.Helper()
	dir, err := os.MkdirTemp("", "pc-sock-") // short: sun_path is 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	srv := NewServer(c, filepath.Join(dir, "s"), "unused", nil)
	for _, o := range opts {
		o(srv)
	}
	ln, err := srv.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return srv
}

func envValue(env []string, key string) string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, key+"="); ok {
			return v
		}
	}
	return ""
}

func hookRun(t *testing.T, env []string, args []string, stdin string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := RunHook(t.Context(), envValue(env, EnvSocket), envValue(env, EnvSecret), args, strings.NewReader(stdin), &out, &errb)
	return out.String(), errb.String(), code
}

func TestHookThroughSocket(t *testing.T) {
	f := repoFixture(t)
	c := newTestCache(t, t.Context(), Config{Limits: Limits{PerRepo: 1, Queue: -1}})
	srv := startServer(t, c)
	inv := gitgate.Invocation{Op: gitgate.Operation{Service: gitgate.UploadPack, Repo: "repo", User: &gitgate.User{Name: "alice"}},
		Repo: gitgate.Repo{Name: "repo", Path: f.repo}}
	env, done := srv.Start(inv)
	if envValue(env, "GIT_CONFIG_KEY_0") != "uploadpack.packObjectsHook" || envValue(env, "GIT_CONFIG_COUNT") != "1" {
		t.Fatalf("env %v does not set the hook", env)
	}
	args := []string{"git", "pack-objects", "--revs", "--thin", "--stdout", "--progress", "--delta-base-offset"}
	out, stderr, code := hookRun(t, env, args, f.head+"\n")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if err := verifyPack(t, f, []byte(out), f.head); err != nil {
		t.Fatal(err)
	}
	out2, _, code := hookRun(t, env, args, f.head+"\n")
	if code != 0 || out2 != out || c.Stats().Hits.Load() != 1 {
		t.Fatalf("second run: exit %d, same pack %v, hits %d", code, out2 == out, c.Stats().Hits.Load())
	}

	// No slot (the only one is taken, no queue): the client is told so.
	release := holdSlot(t, c, f.repo)
	_, stderr, code = hookRun(t, env, args, f.parent+"\n")
	release()
	if code == 0 || !strings.Contains(stderr, gitgate.BusyMessage) {
		t.Fatalf("busy: exit %d, stderr %q", code, stderr)
	}
	if c.Stats().RefusedFull.Load() != 1 {
		t.Fatal("refusal not counted")
	}

	// Anything but pack-objects is refused.
	for _, bad := range [][]string{
		{"git", "upload-pack", "."},
		{"git", "-c", "core.pager=sh", "pack-objects", "--stdout"},
		{"git", "pack-objects", "--stdout", "--index-version=1"},
		{"git", "pack-objects", "/tmp/out"},
	} {
		if _, stderr, code := hookRun(t, env, bad, ""); code != 128 || !strings.Contains(stderr, "unexpected arguments") {
			t.Errorf("%v: exit %d, %q", bad, code, stderr)
		}
	}

	// Once upload-pack is gone, its secret lets nothing in.
	done()
	if _, stderr, code := hookRun(t, env, args, f.head+"\n"); code != 128 || !strings.Contains(stderr, "not started by this gate") {
		t.Fatalf("stale secret: exit %d, %q", code, stderr)
	}
	if c.Stats().Generations.Load() != 1 {
		t.Fatalf("generations = %d", c.Stats().Generations.Load())
	}
}

func TestCheckArgs(t *testing.T) {
	ok := [][]string{
		{"pack-objects", "--revs", "--thin", "--stdout", "--progress", "--delta-base-offset"},
		{"--shallow-file", "", "pack-objects", "--revs", "--stdout", "--shallow", "--include-tag"},
		{"pack-objects", "--revs", "--stdout", "--filter=blob:none", "--missing=allow-any"},
	}
	for _, a := range ok {
		if err := CheckArgs(a); err != nil {
			t.Errorf("%v: %v", a, err)
		}
	}
	bad := [][]string{
		nil, {"upload-pack"}, {"--shallow-file", "/etc/x", "pack-objects"}, {"--exec-path=/tmp", "pack-objects"},
		{"pack-objects", "base-name"}, {"pack-objects", "--stdout", "--keep-pack=x"},
	}
	for _, a := range bad {
		if err := CheckArgs(a); err == nil {
			t.Errorf("%v accepted", a)
		}
	}
}

// slowGit is a git whose pack-objects thinks for a long while before it
// writes anything (a huge repository's "Counting objects").
func slowGit(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "git")
	script := "#!/bin/sh\ncase \"$*\" in *pack-objects*) sleep 60 ;; esac\nexec git \"$@\"\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// A hook that goes away (its upload-pack was killed with the client) ends
// the pack-objects run it asked for, and frees its slot, even while
// pack-objects has written nothing yet: without the cache, nobody else
// would ever read that pack.
func TestHookGoneEndsItsPackObjects(t *testing.T) {
	f := repoFixture(t)
	c := newTestCache(t, t.Context(), Config{Git: slowGit(t), Disabled: true, Limits: Limits{PerRepo: 1, Queue: -1}})
	srv := startServer(t, c)
	inv := gitgate.Invocation{Op: gitgate.Operation{Service: gitgate.UploadPack, Repo: "repo", User: &gitgate.User{Name: "alice"}},
		Repo: gitgate.Repo{Name: "repo", Path: f.repo}}
	env, done := srv.Start(inv)
	defer done()
	conn, err := net.Dial("unix", envValue(env, EnvSocket))
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"pack-objects", "--revs", "--stdout"}
	if err := writeRequest(conn, envValue(env, EnvSecret), args, []byte(f.head+"\n")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "pack-objects to start", func() bool { return c.Stats().Running.Load() == 1 })
	conn.Close()
	waitFor(t, "pack-objects to end with its hook", func() bool { return c.Stats().Running.Load() == 0 })
	if running, _ := c.Limiter().InUse(f.repo); running != 0 {
		t.Fatalf("%d slots still taken", running)
	}
}

// hookRunPipe runs the hook with a pipe as its stdout, as upload-pack
// does, and returns what came out of the pipe.
func hookRunPipe(t *testing.T, env []string, args []string, stdin string) (string, string, int) {
	t.Helper()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(pr)
		pr.Close()
		got <- b
	}()
	var errb bytes.Buffer
	code := RunHook(t.Context(), envValue(env, EnvSocket), envValue(env, EnvSecret), args, strings.NewReader(stdin), pw, &errb)
	pw.Close()
	return string(<-got), errb.String(), code
}

// The hook passes upload-pack's pipe to the gate, which writes the pack
// into it (a miss, a hit, and without the cache): the same pack as through
// the frames, and the hook copies none of it.
func TestHookPassesItsPipe(t *testing.T) {
	f := repoFixture(t)
	for _, disabled := range []bool{false, true} {
		c := newTestCache(t, t.Context(), Config{Disabled: disabled})
		srv := startServer(t, c)
		inv := gitgate.Invocation{Op: gitgate.Operation{Service: gitgate.UploadPack, Repo: "repo", User: &gitgate.User{Name: "alice"}},
			Repo: gitgate.Repo{Name: "repo", Path: f.repo}}
		env, done := srv.Start(inv)
		args := []string{"git", "pack-objects", "--revs", "--thin", "--stdout", "--delta-base-offset"}
		framed, _, code := hookRun(t, env, args, f.head+"\n")
		if code != 0 {
			t.Fatalf("framed run: exit %d", code)
		}
		for i := range 2 {
			out, stderr, code := hookRunPipe(t, env, args, f.head+"\n")
			if code != 0 {
				t.Fatalf("disabled=%v run %d: exit %d: %s", disabled, i, code, stderr)
			}
			if err := verifyPack(t, f, []byte(out), f.head); err != nil {
				t.Fatal(err)
			}
			if !disabled && out != framed {
				t.Fatalf("run %d: the piped pack differs from the framed one", i)
			}
		}
		if got := c.Stats().Spliced.Load(); got != 2 {
			t.Fatalf("disabled=%v: %d requests written into the pipe, want 2", disabled, got)
		}
		done()
	}
}
