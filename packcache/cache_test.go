package packcache

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gitgate/gitgate/internal/gittest"
)

// fixture is a bare repository with a few commits, shared by the tests of
// this file (they only read it).
type fixture struct {
	env          []string
	repo         string
	head, parent string
}

var (
	fixtureOnce sync.Once
	shared      fixture
	fixtureErr  error
)

func repoFixture(t *testing.T) fixture {
	t.Helper()
	fixtureOnce.Do(func() {
		dir, err := os.MkdirTemp("", "packcache-fixture-")
		if err != nil {
			fixtureErr = err
			return
		}
		env := gittest.Env(t)
		// gittest.Env's HOME is the first test's temp dir: keep our own.
		home := filepath.Join(dir, "home")
		os.MkdirAll(home, 0o755)
		os.WriteFile(filepath.Join(home, ".gitconfig"), []byte("[init]\n\tdefaultBranch = main\n[user]\n\tname = T\n\temail = t@example.com\n"), 0o644)
		for i, kv := range env {
			if strings.HasPrefix(kv, "HOME=") {
				env[i] = "HOME=" + home
			}
		}
		work := filepath.Join(dir, "work")
		run := func(dir string, args ...string) string {
			cmd := exec.Command("git", args...)
			cmd.Dir, cmd.Env = dir, env
			out, err := cmd.CombinedOutput()
			if err != nil && fixtureErr == nil {
				fixtureErr = fmt.Errorf("git %v: %v\n%s", args, err, out)
			}
			return strings.TrimSpace(string(out))
		}
		run(dir, "init", "-q", work)
		for i := range 3 {
			// Incompressible-ish content so that packs are a few KiB.
			var b bytes.Buffer
			for j := range 2000 {
				fmt.Fprintf(&b, "line %d of file %d: %x\n", j, i, j*7919+i)
			}
			os.WriteFile(filepath.Join(work, fmt.Sprintf("f%d.txt", i)), b.Bytes(), 0o644)
			run(work, "add", ".")
			run(work, "commit", "-q", "-m", fmt.Sprintf("commit %d", i))
		}
		shared = fixture{env: env, repo: filepath.Join(dir, "repo.git")}
		run(dir, "clone", "-q", "--bare", work, shared.repo)
		shared.head = run(shared.repo, "rev-parse", "HEAD")
		shared.parent = run(shared.repo, "rev-parse", "HEAD~1")
	})
	if fixtureErr != nil {
		t.Fatal(fixtureErr)
	}
	return shared
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.repo != "" {
		os.RemoveAll(filepath.Dir(shared.repo))
	}
	os.Exit(code)
}

func newTestCache(t *testing.T, ctx context.Context, cfg Config) *Cache {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = filepath.Join(t.TempDir(), "cache")
	}
	if cfg.Git == "" {
		cfg.Git = "git"
	}
	if cfg.Env == nil {
		cfg.Env = repoFixture(t).env
	}
	c, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Wait)
	return c
}

func fullRequest(f fixture) Request {
	return Request{
		RepoPath: f.repo, Repo: "repo", User: "user:alice",
		Args:  []string{"pack-objects", "--revs", "--thin", "--stdout", "--delta-base-offset"},
		Stdin: []byte(f.head + "\n"),
	}
}

// serve runs one request and returns its pack, stderr and status.
func serve(t *testing.T, c *Cache, req Request) ([]byte, string, int, error) {
	t.Helper()
	var out, errb bytes.Buffer
	code, err := c.Serve(context.Background(), req, &out, &errb)
	return out.Bytes(), errb.String(), code, err
}

// verifyPack indexes pack in a new repository and checks that it holds
// every object reachable from want.
func verifyPack(t *testing.T, f fixture, pack []byte, want string) error {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "check.git")
	if out, err := exec.Command("git", "init", "-q", "--bare", dir).CombinedOutput(); err != nil {
		t.Fatalf("init: %v %s", err, out)
	}
	cmd := exec.Command("git", "index-pack", "--stdin", "--strict")
	cmd.Dir, cmd.Env, cmd.Stdin = dir, f.env, bytes.NewReader(pack)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("index-pack: %v: %s", err, out)
	}
	cmd = exec.Command("git", "rev-list", "--objects", "--missing=error", want)
	cmd.Dir, cmd.Env = dir, f.env
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("rev-list: %v: %s", err, out)
	}
	return nil
}

func TestIdenticalRequestsShareOnePack(t *testing.T) {
	f := repoFixture(t)
	c := newTestCache(t, t.Context(), Config{})
	req := fullRequest(f)
	first, _, code, err := serve(t, c, req)
	if err != nil || code != 0 {
		t.Fatalf("first: %d %v", code, err)
	}
	second, stderr, code, err := serve(t, c, req)
	if err != nil || code != 0 {
		t.Fatalf("second: %d %v %s", code, err, stderr)
	}
	if !bytes.Equal(first, second) {
		t.Fatal("the hit differs from the generated pack")
	}
	if err := verifyPack(t, f, second, f.head); err != nil {
		t.Fatal(err)
	}
	s := c.Stats()
	if g, h, m := s.Generations.Load(), s.Hits.Load(), s.Misses.Load(); g != 1 || h != 1 || m != 1 {
		t.Fatalf("generations=%d hits=%d misses=%d, want 1 1 1", g, h, m)
	}
	if s.BytesServed.Load() != int64(len(second)) || s.CacheBytes.Load() != int64(len(second)) {
		t.Fatalf("bytes served %d, cached %d, want %d", s.BytesServed.Load(), s.CacheBytes.Load(), len(second))
	}
	names, _ := filepath.Glob(filepath.Join(c.cfg.Dir, "*"))
	if len(names) != 1 || !strings.HasSuffix(names[0], ".pack") {
		t.Fatalf("cache dir holds %v, want one .pack", names)
	}
}

func TestDifferentRequestsNeverShare(t *testing.T) {
	f := repoFixture(t)
	c := newTestCache(t, t.Context(), Config{})
	base := fullRequest(f)
	variants := map[string]func(r *Request){
		"full":        func(r *Request) {},
		"other want":  func(r *Request) { r.Stdin = []byte(f.parent + "\n") },
		"with haves":  func(r *Request) { r.Stdin = []byte(f.head + "\n--not\n" + f.parent + "\n") },
		"blob filter": func(r *Request) { r.Args = append(r.Args, "--filter=blob:none") },
		"depth 1": func(r *Request) {
			r.Args = append([]string{"--shallow-file", ""}, append(r.Args, "--shallow")...)
			r.Stdin = []byte("--shallow " + f.head + "\n" + f.head + "\n")
		},
		"no thin":      func(r *Request) { r.Args = []string{"pack-objects", "--revs", "--stdout", "--delta-base-offset"} },
		"other repo":   func(r *Request) { r.RepoPath = r.RepoPath + "/." },
		"include tags": func(r *Request) { r.Args = append(r.Args, "--include-tag") },
	}
	keys := map[string]string{}
	packs := map[string][]byte{}
	for name, change := range variants {
		req := base
		req.Args = append([]string(nil), base.Args...)
		change(&req)
		k := c.Key(req)
		if other, ok := keys[k]; ok {
			t.Fatalf("%s and %s share the key %s", name, other, k)
		}
		keys[k] = name
		pack, stderr, code, err := serve(t, c, req)
		if err != nil || code != 0 {
			t.Fatalf("%s: %d %v %s", name, code, err, stderr)
		}
		packs[name] = pack
	}
	if g := c.Stats().Generations.Load(); g != int64(len(variants)) {
		t.Fatalf("%d generations for %d different requests", g, len(variants))
	}
	if c.Stats().Hits.Load() != 0 || c.Stats().Joins.Load() != 0 {
		t.Fatal("a different request was served from another one's pack")
	}
	if bytes.Equal(packs["full"], packs["blob filter"]) || bytes.Equal(packs["full"], packs["with haves"]) {
		t.Fatal("filtered or incremental pack equals the full one")
	}
}

// holdSlot takes the only generation slot of repo so that the requests that
// follow queue up behind it; the returned func lets them go.
func holdSlot(t *testing.T, c *Cache, repo string) func() {
	t.Helper()
	release, err := c.Limiter().Acquire(t.Context(), repo, "user:holder")
	if err != nil {
		t.Fatal(err)
	}
	return release
}

// waitFor polls cond for at most 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 1000 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestConcurrentIdenticalRequestsRunOneGeneration(t *testing.T) {
	f := repoFixture(t)
	c := newTestCache(t, t.Context(), Config{Limits: Limits{PerRepo: 1}})
	req := fullRequest(f)
	release := holdSlot(t, c, req.RepoPath)
	const n = 16
	packs := make([][]byte, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out bytes.Buffer
			code, err := c.Serve(context.Background(), req, &out, io.Discard)
			if err == nil && code != 0 {
				err = fmt.Errorf("exit %d", code)
			}
			packs[i], errs[i] = out.Bytes(), err
		}()
	}
	s := c.Stats()
	waitFor(t, "16 requests to arrive", func() bool { return s.Misses.Load()+s.Joins.Load() == n })
	release()
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("request %d: %v", i, errs[i])
		}
		if !bytes.Equal(packs[i], packs[0]) {
			t.Fatalf("request %d got another pack", i)
		}
	}
	if err := verifyPack(t, f, packs[0], f.head); err != nil {
		t.Fatal(err)
	}
	if g, j := s.Generations.Load(), s.Joins.Load(); g != 1 || j != n-1 {
		t.Fatalf("generations=%d joins=%d, want 1 and %d", g, j, n-1)
	}
}

// killingGit is a git that runs the real pack-objects, passes on the first
// 1000 bytes of the pack and then is killed.
func killingGit(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "git")
	script := "#!/bin/sh\ncase \"$*\" in *pack-objects*) git \"$@\" | head -c 1000; kill -KILL $$ ;; esac\nexec git \"$@\"\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestKilledGenerationIsNeverServedComplete(t *testing.T) {
	f := repoFixture(t)
	c := newTestCache(t, t.Context(), Config{Git: killingGit(t), Limits: Limits{PerRepo: 1}})
	req := fullRequest(f)
	release := holdSlot(t, c, req.RepoPath)
	const n = 4
	type result struct {
		pack   []byte
		stderr string
		code   int
		err    error
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out, errb bytes.Buffer
			code, err := c.Serve(context.Background(), req, &out, &errb)
			results[i] = result{out.Bytes(), errb.String(), code, err}
		}()
	}
	s := c.Stats()
	waitFor(t, "the requests to arrive", func() bool { return s.Misses.Load()+s.Joins.Load() == n })
	release()
	wg.Wait()
	for i, r := range results {
		if r.code == 0 || r.err == nil {
			t.Fatalf("request %d succeeded (exit %d) on a killed generation", i, r.code)
		}
		if len(r.pack) > 1000 {
			t.Fatalf("request %d got %d bytes of a 1000-byte pack", i, len(r.pack))
		}
		if err := verifyPack(t, f, r.pack, f.head); err == nil {
			t.Fatalf("request %d: git accepts the truncated pack", i)
		}
	}
	if c.Len() != 0 || s.Failures.Load() != 1 {
		t.Fatalf("entries=%d failures=%d after a killed generation", c.Len(), s.Failures.Load())
	}
	if names, _ := filepath.Glob(filepath.Join(c.cfg.Dir, "*")); len(names) != 0 {
		t.Fatalf("cache dir keeps %v", names)
	}
	// The next request generates afresh (here: is killed again, not served
	// from the remains).
	if _, _, code, _ := serve(t, c, req); code == 0 || s.Generations.Load() != 2 || s.Hits.Load() != 0 {
		t.Fatalf("after the failure: exit %d, generations %d, hits %d (fallbacks %d, failures %d)", code, s.Generations.Load(), s.Hits.Load(), s.Fallbacks.Load(), s.Failures.Load())
	}
}

func TestExpiredEntryIsRemoved(t *testing.T) {
	f := repoFixture(t)
	c := newTestCache(t, t.Context(), Config{MaxAge: time.Hour})
	req := fullRequest(f)
	if _, _, code, err := serve(t, c, req); code != 0 || err != nil {
		t.Fatal(code, err)
	}
	c.Wait()            // until the entry is on disk for good
	c.Clean(time.Now()) // not expired yet
	if c.Len() != 1 {
		t.Fatal("entry removed before its time")
	}
	c.Clean(time.Now().Add(time.Hour + time.Second))
	if c.Len() != 0 || c.Stats().CacheBytes.Load() != 0 || c.Stats().Evictions.Load() != 1 {
		t.Fatalf("after expiry: entries=%d bytes=%d", c.Len(), c.Stats().CacheBytes.Load())
	}
	if names, _ := filepath.Glob(filepath.Join(c.cfg.Dir, "*")); len(names) != 0 {
		t.Fatalf("cache dir keeps %v", names)
	}
	if _, _, code, err := serve(t, c, req); code != 0 || err != nil || c.Stats().Generations.Load() != 2 {
		t.Fatalf("after expiry: exit %d, %v, generations %d", code, err, c.Stats().Generations.Load())
	}
}

func TestSizeCapEvictsOldest(t *testing.T) {
	f := repoFixture(t)
	c := newTestCache(t, t.Context(), Config{MaxBytes: 1})
	pack, _, code, err := serve(t, c, fullRequest(f))
	if code != 0 || err != nil || verifyPack(t, f, pack, f.head) != nil {
		t.Fatal("a pack over the cap must still be served", code, err)
	}
	c.Wait()
	if c.Len() != 0 || c.Stats().CacheBytes.Load() != 0 {
		t.Fatalf("a pack over the cap is kept: %d entries", c.Len())
	}
}

func TestUnwritableCacheStillServes(t *testing.T) {
	f := repoFixture(t)
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o644)
	// A directory under a regular file can be neither created nor written
	// (even by root).
	c := newTestCache(t, t.Context(), Config{Dir: filepath.Join(file, "cache")})
	for range 2 {
		pack, stderr, code, err := serve(t, c, fullRequest(f))
		if code != 0 || err != nil {
			t.Fatalf("exit %d: %v %s", code, err, stderr)
		}
		if err := verifyPack(t, f, pack, f.head); err != nil {
			t.Fatal(err)
		}
	}
	if fb := c.Stats().Fallbacks.Load(); fb != 2 {
		t.Fatalf("fallbacks = %d, want 2", fb)
	}
}

func TestGenerationOutlivesItsFirstClient(t *testing.T) {
	f := repoFixture(t)
	c := newTestCache(t, t.Context(), Config{})
	// The first client goes away at once: its writes fail.
	code, err := c.Serve(context.Background(), fullRequest(f), failingWriter{}, io.Discard)
	if code == 0 || err == nil {
		t.Fatal("a failed write to the client must end the request")
	}
	c.Wait()
	pack, _, code, err := serve(t, c, fullRequest(f))
	if code != 0 || err != nil || verifyPack(t, f, pack, f.head) != nil {
		t.Fatalf("exit %d: %v", code, err)
	}
	if c.Stats().Generations.Load() != 1 || c.Stats().Hits.Load() != 1 {
		t.Fatalf("generations=%d hits=%d", c.Stats().Generations.Load(), c.Stats().Hits.Load())
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }

func TestDisabledCacheGeneratesEveryPack(t *testing.T) {
	f := repoFixture(t)
	c := newTestCache(t, t.Context(), Config{Disabled: true})
	for range 2 {
		if _, _, code, err := serve(t, c, fullRequest(f)); code != 0 || err != nil {
			t.Fatal(code, err)
		}
	}
	if s := c.Stats(); s.Generations.Load() != 2 || s.Fallbacks.Load() != 0 || s.Hits.Load() != 0 {
		t.Fatalf("generations=%d fallbacks=%d hits=%d", s.Generations.Load(), s.Fallbacks.Load(), s.Hits.Load())
	}
}

// Only the cache's own files go at start: a cache dir pointed by mistake at
// a directory holding other packs (a repository's objects/pack) loses
// nothing, while what an earlier gate left is never served.
func TestStartRemovesOnlyTheCachesOwnFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	key := strings.Repeat("ab", 32)
	own := []string{key + ".pack", key + ".tmp", "probe-123.tmp"}
	foreign := []string{"pack-" + strings.Repeat("0", 40) + ".pack", "pack-1.idx", "notes.tmp",
		strings.ToUpper(key) + ".pack", key[:63] + ".pack"}
	for _, n := range append(own, foreign...) {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	newTestCache(t, ctx, Config{Dir: dir})
	for _, n := range own {
		if _, err := os.Stat(filepath.Join(dir, n)); !os.IsNotExist(err) {
			t.Errorf("%s: left at start (err %v)", n, err)
		}
	}
	for _, n := range foreign {
		if _, err := os.Stat(filepath.Join(dir, n)); err != nil {
			t.Errorf("%s: removed at start: %v", n, err)
		}
	}
}
