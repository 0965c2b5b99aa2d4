package httpgit_test

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/httpgit"
	"github.com/gitgate/gitgate/internal/gittest"
)

// testGate is a gate serving smart HTTP on a loopback port, in this process.
type testGate struct {
	url     string
	root    string
	dataDir string
	store   *gitgate.FileStore
	live    *gitgate.LiveState
	srv     *httpgit.Server
	env     []string // environment for the git client
	stop    context.CancelFunc
	done    chan error
}

type gateOptions struct {
	anonymousPush bool
	grace         time.Duration
	tracker       *gitgate.Tracker      // nil: none
	configure     func(*httpgit.Config) // limits, for the tests of bounds
}

func startGate(t *testing.T, opts gateOptions) *testGate {
	t.Helper()
	data := t.TempDir()
	root := filepath.Join(data, "repositories")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	store := gitgate.NewFileStore(data)
	live := gitgate.NewLiveState(store, log)
	live.Run(ctx, 0)
	resolver, err := gitgate.NewResolver(root)
	if err != nil {
		t.Fatal(err)
	}
	runner, err := gitgate.NewRunner("git", data)
	if err != nil {
		t.Fatal(err)
	}
	cfg := httpgit.Config{
		Policy:   &gitgate.Policy{State: live, Access: gitgate.AnonymousAccess{Write: opts.anonymousPush}},
		Resolver: resolver,
		Runner:   runner,
		Auth:     httpgit.Anonymous{},
		Ready:    func(context.Context) error { return live.Current().Err },
		Tracker:  opts.tracker,
		Log:      log,
	}
	if opts.configure != nil {
		opts.configure(&cfg)
	}
	srv, err := httpgit.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if opts.grace == 0 {
		opts.grace = 10 * time.Second
	}
	g := &testGate{
		url: "http://" + ln.Addr().String(), root: resolver.Root(), dataDir: data,
		store: store, live: live, srv: srv, env: gittest.Env(t), stop: cancel, done: make(chan error, 1),
	}
	go func() { g.done <- srv.Serve(ctx, ln, opts.grace) }()
	t.Cleanup(g.shutdown)
	return g
}

// shutdown stops the gate and waits for it; safe to call twice.
func (g *testGate) shutdown() {
	g.stop()
	if g.done != nil {
		<-g.done
		g.done = nil
	}
}

// setMaintenance changes the state as the CLI does and makes the gate see it
// at once (the file watch would, a few milliseconds later).
func (g *testGate) setMaintenance(t *testing.T, on bool) {
	t.Helper()
	if _, err := g.store.Apply(context.Background(), gitgate.Change{Enabled: &on, By: "test"}); err != nil {
		t.Fatal(err)
	}
	g.live.Reload()
}
