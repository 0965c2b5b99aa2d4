package geo_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/gitgate/gitgate/geo"
	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/internal/leakcheck"
)

// testDeadline bounds every wait in the tests. Nothing is timed: waits are
// for conditions, and this only keeps a broken test from hanging.
const testDeadline = 20 * time.Second

func TestMain(m *testing.M) {
	if os.Getenv(envSSHHelper) != "" {
		os.Exit(sshHelper()) // the test binary as an SSH session: see e2e_test.go
	}
	code := m.Run()
	// Every test stopped what it started: no goroutine of package geo may
	// be left (followers, long-polls, push pumps).
	if code == 0 {
		if err := leakcheck.Check("gitgate/gitgate/geo."); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

// waitFor polls cond until it holds or testDeadline passes.
func waitFor(cond func() bool) bool {
	deadline := time.Now().Add(testDeadline)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

func mustWaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	if !waitFor(cond) {
		t.Fatalf("timed out waiting for %s", what)
	}
}

// testLog is a logger for the code under test: warnings and errors only,
// on stderr, so that a failing test shows them.
func testLog() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// site is one site's maintenance state: store, live state, data dir.
type site struct {
	dataDir string
	store   *gitgate.FileStore
	live    *gitgate.LiveState
}

func newSite(t testing.TB) *site {
	t.Helper()
	dir := t.TempDir()
	store := gitgate.NewFileStore(dir)
	live := gitgate.NewLiveState(store, testLog())
	live.Reload()
	return &site{dataDir: dir, store: store, live: live}
}

// set changes the state as the settings API does: write, then reload, so
// that the change is in force when the call returns.
func (s *site) set(t testing.TB, on bool) gitgate.State {
	t.Helper()
	st, err := s.store.Apply(context.Background(), gitgate.Change{Enabled: &on, By: "admin"})
	if err != nil {
		t.Fatal(err)
	}
	s.live.Reload()
	return st
}

// corrupt makes the state file unreadable.
func (s *site) corrupt(t testing.TB) {
	t.Helper()
	if err := os.WriteFile(s.store.Path(), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.live.Reload()
}

// waitVersion waits until the site's live state has version v.
func (s *site) waitVersion(t testing.TB, v uint64) gitgate.State {
	t.Helper()
	timeout := time.After(testDeadline)
	for {
		changed := s.live.Changed()
		snap := s.live.Current()
		if snap.State.Version == v && snap.Err == nil {
			return snap.State
		}
		select {
		case <-changed:
		case <-timeout:
			t.Fatalf("timed out waiting for state version %d; have %+v", v, snap)
		}
	}
}

// Shared secrets of the test nodes.
var (
	secretEU   = []byte("eu-" + testSecret)
	secretAsia = []byte("asia-" + testSecret)
)

// primaryAPI is a primary serving only the Geo API on a loopback port
// that can be stopped and started again on the same port.
type primaryAPI struct {
	*site
	primary *geo.Primary
	handler http.Handler
	addr    string
	url     string

	mu   sync.Mutex
	srv  *http.Server
	done chan struct{}
}

func startPrimaryAPI(t testing.TB) *primaryAPI {
	t.Helper()
	s := newSite(t)
	v := geo.NewVerifier(map[string][]byte{"eu": secretEU, "asia": secretAsia})
	p := &primaryAPI{site: s, primary: geo.NewPrimary(s.live, v, testLog())}
	mux := http.NewServeMux()
	mux.Handle("GET "+geo.StatusPath, p.primary.StatusHandler())
	mux.Handle("GET "+geo.NodesPath, p.primary.NodesHandler())
	p.handler = mux
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.url = "http://" + p.addr
	p.serve(ln)
	t.Cleanup(p.stop)
	return p
}

func (p *primaryAPI) serve(ln net.Listener) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.srv = &http.Server{Handler: p.handler, ReadHeaderTimeout: 10 * time.Second}
	p.done = make(chan struct{})
	go func(srv *http.Server, done chan struct{}) {
		defer close(done)
		srv.Serve(ln)
	}(p.srv, p.done)
}

// stop closes the listener and every connection, open long-polls included,
// as a primary that goes down does.
func (p *primaryAPI) stop() {
	p.mu.Lock()
	srv, done := p.srv, p.done
	p.srv = nil
	p.mu.Unlock()
	if srv != nil {
		srv.Close()
		<-done
	}
}

// restart serves again on the same port.
func (p *primaryAPI) restart(t testing.TB) {
	t.Helper()
	var ln net.Listener
	mustWaitFor(t, "the port to be free again", func() bool {
		var err error
		ln, err = net.Listen("tcp", p.addr)
		return err == nil
	})
	p.serve(ln)
}

func (p *primaryAPI) node(t testing.TB, name string) geo.NodeStatus {
	t.Helper()
	for _, n := range p.primary.Nodes() {
		if n.Name == name {
			return n
		}
	}
	t.Fatalf("node %s not listed", name)
	return geo.NodeStatus{}
}

// followerOptions are a secondary's options for node eu of primaryURL,
// with fast retries.
func followerOptions(t testing.TB, primaryURL string, secret []byte) geo.SecondaryOptions {
	t.Helper()
	return geo.SecondaryOptions{
		PrimaryURL: primaryURL,
		NodeName:   "eu",
		SecretFile: writeSecret(t, t.TempDir(), "eu.key", string(secret), 0o600),
		MinBackoff: 10 * time.Millisecond,
		MaxBackoff: 200 * time.Millisecond,
	}
}

// runningFollower is a Follower running in the background.
type runningFollower struct {
	*geo.Follower
	stop func()
}

func startFollower(t testing.TB, opts geo.SecondaryOptions, s *site) *runningFollower {
	t.Helper()
	f, err := geo.NewFollower(opts, s.store, s.live, testLog())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.Run(ctx)
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
	t.Cleanup(stop)
	return &runningFollower{Follower: f, stop: stop}
}

// getJSON fetches url with an optional Authorization header and returns
// the status and body.
func get(t testing.TB, url, auth string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("GET %s: no answer within %s", url, testDeadline)
		}
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func statusToken(t testing.TB, secret []byte, node string) string {
	t.Helper()
	h, err := geo.Sign(secret, node, geo.Claims{Scope: geo.ScopeStatus}, 0)
	if err != nil {
		t.Fatal(err)
	}
	return h
}
