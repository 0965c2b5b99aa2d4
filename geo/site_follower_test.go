package geo_test

import (
	"context"
	"sync"
	"testing"

	"github.com/gitgate/gitgate/geo"
	"github.com/gitgate/gitgate/gitgate"
)

// mirrorLog is a StateMirror that records what it is asked to write
// before writing it to the site's real store.
type mirrorLog struct {
	store *gitgate.FileStore
	mu    sync.Mutex
	calls []mirrorCall
}

type mirrorCall struct {
	version uint64
	force   bool
}

func (m *mirrorLog) Mirror(ctx context.Context, st gitgate.State, force bool) (bool, error) {
	m.mu.Lock()
	m.calls = append(m.calls, mirrorCall{st.Version, force})
	m.mu.Unlock()
	return m.store.Mirror(ctx, st, force)
}

// The follower of one gate of a database site: while it does not run, its
// status is the site's (the elected gate's, which the gate reads from the
// database); while it runs, its own. Its first answer after a start never
// forces the shared state back to an older version: only the primary's
// own Reset does. (A file-based follower forces its first answer, which is
// right for a data dir only it writes, and wrong for a database that the
// gate elected before may have brought further.)
func TestSiteFollower(t *testing.T) {
	p := startPrimaryAPI(t)
	p.set(t, true)
	p.set(t, false) // the primary is at version 2
	sec := newSite(t)
	if _, err := sec.store.Mirror(context.Background(), gitgate.State{Version: 5, Enabled: true, By: "x"}, true); err != nil {
		t.Fatal(err)
	}
	sec.live.Reload()
	m := &mirrorLog{store: sec.store}
	siteStatus := geo.FollowerStatus{Node: "eu", Elected: "gate-b", Connected: true, Version: 2}
	f, err := geo.NewSiteFollower(followerOptions(t, p.url, secretEU), m, sec.dataDir, sec.live,
		func() (geo.FollowerStatus, bool) { return siteStatus, true }, testLog())
	if err != nil {
		t.Fatal(err)
	}
	if s := f.Status(); s.Elected != "gate-b" || !s.Connected {
		t.Fatalf("status of a follower that does not run: %+v, want the site's", s)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.Run(ctx) }()
	defer func() { cancel(); <-done }()

	// The primary's version is lower: it is taken on the primary's Reset.
	if got := sec.waitVersion(t, 2); got.Enabled {
		t.Fatalf("after the reset: %+v", got)
	}
	m.mu.Lock()
	calls := append([]mirrorCall(nil), m.calls...)
	m.mu.Unlock()
	for i, c := range calls {
		if c.force && i == 0 {
			t.Errorf("the first answer after the start was forced into the shared state: %+v", calls)
		}
	}
	if s := f.Status(); !s.Running || s.Elected != "" {
		t.Errorf("status of the running follower: %+v, want its own", s)
	}
}
