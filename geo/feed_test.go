package geo_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gitgate/gitgate/geo"
	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/internal/gittest"
)

// Both sites compute the same checksum for the same refs and HEAD; any
// ref (branch, tag, note, custom) or HEAD that differs changes it.
func TestChecksumSameRefsSameSum(t *testing.T) {
	env := gittest.Env(t)
	root := t.TempDir()
	path, _ := gittest.BareRepoWithCommit(t, env, root, "a")
	gittest.MustGit(t, env, "", "--git-dir", path, "tag", "v1", "main")
	gittest.MustGit(t, env, "", "--git-dir", path, "update-ref", "refs/custom/x", "main")
	mirror := filepath.Join(root, "b.git")
	gittest.MustGit(t, env, root, "clone", "-q", "--mirror", path, mirror)
	ctx := context.Background()
	sum := func(p string) geo.RefState {
		st, err := geo.Checksum(ctx, "git", p)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	a := sum(path)
	if b := sum(mirror); a != b {
		t.Fatalf("mirror differs: %+v vs %+v", a, b)
	}
	if a.Head != "refs/heads/main" || len(a.Checksum) != 64 {
		t.Fatalf("state %+v", a)
	}
	changes := [][]string{
		{"update-ref", "refs/custom/x", "v1^{}"}, // same object: no change expected, checked below
		{"update-ref", "refs/notes/commits", "main"},
		{"symbolic-ref", "HEAD", "refs/heads/other"},
		{"update-ref", "-d", "refs/tags/v1"},
	}
	prev := a
	for i, c := range changes {
		gittest.MustGit(t, env, "", append([]string{"--git-dir", mirror}, c...)...)
		got := sum(mirror)
		if i == 0 {
			if got != prev {
				t.Errorf("%v: same refs, different sum", c)
			}
			continue
		}
		if got == prev {
			t.Errorf("%v: sum unchanged", c)
		}
		prev = got
	}
	// An empty repository has a sum too.
	empty := filepath.Join(root, "empty.git")
	gittest.MustGit(t, env, root, "init", "-q", "--bare", empty)
	if st := sum(empty); st.Checksum == "" || st.Head != "refs/heads/main" {
		t.Errorf("empty: %+v", st)
	}
}

// The feed turns journal lines and vanished repositories into events that a
// long-poll gets at once; a poll from another epoch or too far behind is
// told to reconcile; a line naming something outside the root is ignored;
// the access data version is an event too.
func TestFeedEvents(t *testing.T) {
	env := gittest.Env(t)
	dataDir, root := t.TempDir(), t.TempDir()
	path, _ := gittest.BareRepoWithCommit(t, env, root, "group/p")
	resolver, err := gitgate.NewResolver(root)
	if err != nil {
		t.Fatal(err)
	}
	acc := &geo.FileAccess{DataDir: dataDir}
	feed := geo.NewFeed(resolver, "git", dataDir, acc, testLog())
	feed.ScanInterval = 50 * time.Millisecond
	s := newSite(t)
	p := geo.NewPrimary(s.live, geo.NewVerifier(map[string][]byte{"eu": secretEU}), testLog())
	srv := httptest.NewServer(p.EventsHandler(feed))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); feed.Run(ctx) }()
	defer wg.Wait()
	defer cancel()

	poll := func(epoch string, after uint64) geo.EventsResponse {
		t.Helper()
		u := srv.URL + "?wait=10s&epoch=" + epoch + "&after=" + strconv.FormatUint(after, 10)
		code, body := get(t, u, statusToken(t, secretEU, "eu"))
		if code != http.StatusOK {
			t.Fatalf("poll: %d %s", code, body)
		}
		var r geo.EventsResponse
		if err := json.Unmarshal([]byte(body), &r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	first := poll("", 0)
	if !first.Reconcile || first.Epoch == "" {
		t.Fatalf("first poll: %+v", first)
	}
	if r := poll("another", first.Seq); !r.Reconcile {
		t.Errorf("another epoch: %+v", r)
	}

	// A ref update recorded in the journal, and a line outside the root.
	gittest.MustGit(t, env, "", "--git-dir", path, "update-ref", "refs/heads/b", "main")
	if err := gitgate.RecordChange(dataDir, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if err := gitgate.RecordChange(dataDir, path); err != nil {
		t.Fatal(err)
	}
	r := poll(first.Epoch, first.Seq)
	want, _ := geo.Checksum(context.Background(), "git", path)
	if len(r.Events) != 1 || r.Events[0].Repo != "group/p" || r.Events[0].State != want || r.Events[0].Seq != first.Seq+1 {
		t.Fatalf("after a change: %+v", r)
	}

	// Access data changed.
	if err := os.WriteFile(filepath.Join(dataDir, "access.yaml"), []byte("users: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r2 := poll(first.Epoch, r.Seq)
	if len(r2.Events) != 1 || r2.Events[0].Access == "" || r2.Access != r2.Events[0].Access {
		t.Fatalf("after an access change: %+v", r2)
	}

	// The repository vanishes: a deletion, found by the scan.
	if err := os.RemoveAll(path); err != nil {
		t.Fatal(err)
	}
	r3 := poll(first.Epoch, r2.Seq)
	if len(r3.Events) != 1 || !r3.Events[0].Deleted || r3.Events[0].Repo != "group/p" {
		t.Fatalf("after a removal: %+v", r3)
	}
}

// A replicate token opens exactly its repository's upload-pack, and
// nothing else; other scopes cannot fetch.
func TestReplicateTokenScope(t *testing.T) {
	v := geo.NewVerifier(map[string][]byte{"eu": secretEU})
	auth := v.Authenticator(denyAll{})
	sign := func(c geo.Claims) string {
		h, err := geo.Sign(secretEU, "eu", c, 0)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	repl := sign(geo.Claims{Scope: geo.ScopeReplicate, Repo: "group/p"})
	tests := []struct {
		name, method, target, auth string
		ok                         bool
	}{
		{"refs", "GET", "/group/p.git/info/refs?service=git-upload-pack", repl, true},
		{"pack", "POST", "/group/p.git/git-upload-pack", repl, true},
		{"other repo", "GET", "/group/q.git/info/refs?service=git-upload-pack", repl, false},
		{"other spelling", "GET", "/group/./p.git/info/refs?service=git-upload-pack", repl, false},
		{"receive-pack", "GET", "/group/p.git/info/refs?service=git-receive-pack", repl, false},
		{"receive-pack POST", "POST", "/group/p.git/git-receive-pack", repl, false},
		{"status scope", "GET", "/group/p.git/info/refs?service=git-upload-pack", sign(geo.Claims{Scope: geo.ScopeStatus}), false},
		{"push scope", "GET", "/group/p.git/info/refs?service=git-upload-pack", sign(geo.Claims{Scope: geo.ScopePush, Repo: "group/p"}), false},
		{"no repo", "GET", "/group/p.git/info/refs?service=git-upload-pack", sign(geo.Claims{Scope: geo.ScopeReplicate}), false},
	}
	for _, tc := range tests {
		r := httptest.NewRequest(tc.method, tc.target, nil)
		r.Header.Set("Authorization", tc.auth)
		u, err := auth.Authenticate(r)
		if tc.ok != (err == nil) {
			t.Errorf("%s: user %v, err %v", tc.name, u, err)
			continue
		}
		if tc.ok && (u == nil || u.SiteRepo != "group/p") {
			t.Errorf("%s: user %+v", tc.name, u)
		}
	}
}

type denyAll struct{}

func (denyAll) Authenticate(*http.Request) (*gitgate.User, error) { return nil, nil }

// A journal that grows past its rotation size is renamed and a new one
// begun; changes on both sides of the rotation become events.
func TestFeedJournalRotation(t *testing.T) {
	env := gittest.Env(t)
	dataDir, root := t.TempDir(), t.TempDir()
	path, _ := gittest.BareRepoWithCommit(t, env, root, "p")
	resolver, err := gitgate.NewResolver(root)
	if err != nil {
		t.Fatal(err)
	}
	feed := geo.NewFeed(resolver, "git", dataDir, nil, testLog())
	s := newSite(t)
	p := geo.NewPrimary(s.live, geo.NewVerifier(map[string][]byte{"eu": secretEU}), testLog())
	srv := httptest.NewServer(p.EventsHandler(feed))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); feed.Run(ctx) }()
	defer wg.Wait()
	defer cancel()
	poll := func(epoch string, after uint64) geo.EventsResponse {
		t.Helper()
		code, body := get(t, srv.URL+"?wait=10s&epoch="+epoch+"&after="+strconv.FormatUint(after, 10), statusToken(t, secretEU, "eu"))
		if code != http.StatusOK {
			t.Fatalf("poll: %d %s", code, body)
		}
		var r geo.EventsResponse
		if err := json.Unmarshal([]byte(body), &r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	r := poll("", 0)
	junk := filepath.Join(t.TempDir(), "not-a-repository")
	for round := range 2 {
		// Over a MiB of lines naming no repository, then a real change.
		for range (1 << 20) / len(junk) {
			if err := gitgate.RecordChange(dataDir, junk); err != nil {
				t.Fatal(err)
			}
		}
		gittest.MustGit(t, env, "", "--git-dir", path, "update-ref", "refs/heads/r"+strconv.Itoa(round), "main")
		if err := gitgate.RecordChange(dataDir, path); err != nil {
			t.Fatal(err)
		}
		next := poll(r.Epoch, r.Seq)
		if len(next.Events) != 1 || next.Events[0].Repo != "p" {
			t.Fatalf("round %d: %+v", round, next)
		}
		r = next
	}
	if _, err := os.Stat(filepath.Join(dataDir, gitgate.ChangeJournalName+".1")); err != nil {
		t.Errorf("the journal was not rotated: %v", err)
	}
}
