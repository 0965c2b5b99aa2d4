package geo_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gitgate/gitgate/geo"
	"github.com/gitgate/gitgate/gitgate"
)

// checkMirrored checks that the secondary's state file holds the primary's
// state as it is, version, time and author included.
func checkMirrored(t *testing.T, sec *site, want gitgate.State) {
	t.Helper()
	got, err := sec.store.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !got.Since.Equal(want.Since) || got.Version != want.Version || got.Enabled != want.Enabled || got.By != want.By || got.Message != want.Message {
		t.Fatalf("secondary's state file %+v, want the primary's %+v", got, want)
	}
}

func TestFollowerMirrorsEveryChange(t *testing.T) {
	p := startPrimaryAPI(t)
	sec := newSite(t)
	f := startFollower(t, followerOptions(t, p.url, secretEU), sec)
	mustWaitFor(t, "the follower to connect", func() bool { return f.Status().Connected })

	for i := range 6 {
		st := p.set(t, i%2 == 0)
		if got := sec.waitVersion(t, st.Version); got.Enabled != st.Enabled {
			t.Fatalf("toggle %d: secondary has %+v, want %+v", i, got, st)
		}
		checkMirrored(t, sec, st)
	}
	mustWaitFor(t, "the follower's status to show version 6", func() bool { return f.Status().Version == 6 })
	s := f.Status()
	if !s.Connected || !s.Running || s.Stale != 0 || s.Version != 6 || s.LastError != "" || s.LastContact.IsZero() ||
		s.Node != "eu" || s.Primary != p.url {
		t.Errorf("status %+v", s)
	}
	mustWaitFor(t, "the primary to see version 6", func() bool { return p.node(t, "eu").VersionSeen == 6 })

	rec := httptest.NewRecorder()
	f.SelfHandler().ServeHTTP(rec, httptest.NewRequest("GET", geo.NodesPath, nil))
	var self map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &self); err != nil || rec.Code != 200 {
		t.Fatalf("self: %d %s", rec.Code, rec.Body)
	}
	for k, want := range map[string]any{"role": "secondary", "node": "eu", "primary_url": p.url, "connected": true,
		"version": float64(6), "stale_seconds": float64(0), "running": true} {
		if self[k] != want {
			t.Errorf("self %s = %v, want %v (%s)", k, self[k], want, rec.Body)
		}
	}
}

func TestFollowerResumesWithoutMissingAChange(t *testing.T) {
	p := startPrimaryAPI(t)
	sec := newSite(t)
	opts := followerOptions(t, p.url, secretEU)
	f := startFollower(t, opts, sec)
	sec.waitVersion(t, p.set(t, true).Version)
	f.stop()

	// Two toggles while the secondary is not following.
	p.set(t, false)
	last := p.set(t, true)
	if got := sec.live.Current().State; got.Version != 1 {
		t.Fatalf("stopped follower still mirrored: %+v", got)
	}
	st, ok, err := geo.ReadFollowerStatus(sec.dataDir, time.Now())
	if !ok || err != nil || st.Running || st.Connected || st.Version != 1 {
		t.Fatalf("status file of a stopped follower: %+v %v %v", st, ok, err)
	}

	startFollower(t, opts, sec)
	sec.waitVersion(t, last.Version)
	checkMirrored(t, sec, last)
}

func TestFollowerPrimaryDownThenBack(t *testing.T) {
	p := startPrimaryAPI(t)
	sec := newSite(t)
	f := startFollower(t, followerOptions(t, p.url, secretEU), sec)
	on := p.set(t, true)
	sec.waitVersion(t, on.Version)

	p.stop()
	mustWaitFor(t, "the follower to notice", func() bool {
		s := f.Status()
		return !s.Connected && s.LastError != "" && s.Stale > 0
	})
	// The last known state is kept, and how stale it is grows.
	if snap := sec.live.Current(); snap.Err != nil || snap.State != on {
		t.Fatalf("secondary state while the primary is down: %+v", snap)
	}
	s1 := f.Status()
	mustWaitFor(t, "the staleness to grow", func() bool { return f.Status().Stale > s1.Stale })
	mustWaitFor(t, "the follower to report the refused connections", func() bool {
		return strings.Contains(f.Status().LastError, "connection refused")
	})
	if s := f.Status(); s.Version != on.Version {
		t.Errorf("status while down: %+v", s)
	}
	var fromFile geo.FollowerStatus
	mustWaitFor(t, "the status file to show it", func() bool {
		st, ok, err := geo.ReadFollowerStatus(sec.dataDir, time.Now())
		fromFile = st
		return ok && err == nil && !st.Connected && st.Running && st.LastError != ""
	})
	if fromFile.Stale <= 0 || fromFile.Version != on.Version || fromFile.LastContact.IsZero() {
		t.Errorf("status file while down: %+v", fromFile)
	}

	// Changes made while the secondary could not see them.
	p.set(t, false)
	last := p.set(t, true)
	p.restart(t)
	sec.waitVersion(t, last.Version)
	checkMirrored(t, sec, last)
	mustWaitFor(t, "the follower to report it is connected", func() bool { return f.Status().Connected })
	if s := f.Status(); s.Stale != 0 || s.LastError != "" || s.Version != last.Version {
		t.Errorf("status after reconnecting: %+v", s)
	}
}

func TestFollowerKeepsStateWhenPrimaryStateUnreadable(t *testing.T) {
	p := startPrimaryAPI(t)
	sec := newSite(t)
	f := startFollower(t, followerOptions(t, p.url, secretEU), sec)
	on := p.set(t, true)
	sec.waitVersion(t, on.Version)

	p.corrupt(t)
	mustWaitFor(t, "the follower to see the 503", func() bool {
		s := f.Status()
		return !s.Connected && s.LastError == "the primary is unavailable: 503 Service Unavailable: the primary cannot read its maintenance state"
	})
	if snap := sec.live.Current(); snap.Err != nil || snap.State != on {
		t.Fatalf("a primary with an unreadable state changed the secondary: %+v", snap)
	}

	// The admin repairs the primary's state file.
	fixed := gitgate.State{Enabled: false, Version: on.Version + 1, By: "admin", Since: time.Now().UTC()}
	if _, err := p.store.Mirror(context.Background(), fixed, true); err != nil {
		t.Fatal(err)
	}
	p.live.Reload()
	if got := sec.waitVersion(t, fixed.Version); got.Enabled {
		t.Fatalf("after the repair: %+v", got)
	}
}

// A removed state file on the primary does not reopen pushes anywhere: the
// primary answers 503 and the secondary keeps its state. The admin's reset
// continues the versions, so the secondary takes it as an ordinary newer
// state; a state replaced by hand with a lower version still reaches the
// secondary through the reset flag.
func TestFollowerFollowsAReset(t *testing.T) {
	p := startPrimaryAPI(t)
	sec := newSite(t)
	f := startFollower(t, followerOptions(t, p.url, secretEU), sec)
	p.set(t, false)
	on := p.set(t, true)
	sec.waitVersion(t, on.Version)

	if err := os.Remove(p.store.Path()); err != nil {
		t.Fatal(err)
	}
	p.live.Reload()
	mustWaitFor(t, "the follower to see the 503", func() bool {
		return strings.Contains(f.Status().LastError, "the primary cannot read its maintenance state")
	})
	if snap := sec.live.Current(); snap.Err != nil || snap.State != on {
		t.Fatalf("a primary whose state file was removed changed the secondary: %+v", snap)
	}

	reset, err := p.store.Reset(context.Background(), gitgate.Change{By: "admin"})
	if err != nil {
		t.Fatal(err)
	}
	p.live.Reload()
	if reset.Version <= on.Version {
		t.Fatalf("reset to version %d, not above %d", reset.Version, on.Version)
	}
	if got := sec.waitVersion(t, reset.Version); got.Enabled {
		t.Fatalf("after the reset: %+v", got)
	}

	// A lower version put in place by hand (a restored backup).
	old := gitgate.State{Enabled: true, Version: 1, By: "backup"}
	if _, err := p.store.Mirror(context.Background(), old, true); err != nil {
		t.Fatal(err)
	}
	p.live.Reload()
	if got := sec.waitVersion(t, old.Version); !got.Enabled {
		t.Fatalf("after the restore: %+v", got)
	}
}

func TestFollowerWithAWrongSecret(t *testing.T) {
	p := startPrimaryAPI(t)
	sec := newSite(t)
	on := sec.set(t, true) // whatever the secondary had stays
	f := startFollower(t, followerOptions(t, p.url, []byte("a-wrong-secret-"+testSecret)), sec)
	mustWaitFor(t, "the refusal", func() bool { return f.Status().LastError != "" })
	s := f.Status()
	want := "the primary refused this site's token: 401 Unauthorized: bad token signature"
	if s.LastError != want || s.Connected || !s.LastContact.IsZero() {
		t.Errorf("status %+v, want error %q", s, want)
	}
	if snap := sec.live.Current(); snap.State != on {
		t.Errorf("state changed: %+v", snap)
	}
}

func TestNewFollowerChecksItsOptions(t *testing.T) {
	sec := newSite(t)
	dir := t.TempDir()
	opts := followerOptions(t, "http://127.0.0.1:1", secretEU)
	opts.SecretFile = writeSecret(t, dir, "open.key", testSecret, 0o644)
	if _, err := geo.NewFollower(opts, sec.store, sec.live, nil); err == nil || !strings.Contains(err.Error(), "has mode 0644") {
		t.Errorf("world-readable secret: %v", err)
	}
	opts.NodeName = "no such name"
	if _, err := geo.NewFollower(opts, sec.store, sec.live, nil); err == nil {
		t.Error("bad node name accepted")
	}
}
