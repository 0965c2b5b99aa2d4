package geo_test

import (
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/gitgate/gitgate/geo"
	"github.com/gitgate/gitgate/gitgate"
)

func refusalText(g *geo.Guard) string {
	if r := g.Refusal(); r != nil {
		return r.Message
	}
	return ""
}

func newGuard(t *testing.T, dir, self string, confirmed bool) *geo.Guard {
	t.Helper()
	g, err := geo.NewGuard(dir, self, []string{"asia", "eu"}, confirmed, testLog())
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// A primary accepts pushes after a start only once every secondary of
// geo.yaml has presented its term, and again after every restart.
func TestGuardFencedUntilEverySecondaryConfirms(t *testing.T) {
	dir := t.TempDir()
	if r := newGuard(t, dir, "", false).Refusal(); r != nil {
		t.Fatalf("first start (no site can have been promoted yet): %v", r)
	}
	if rec, ok, err := geo.ReadRole(dir); err != nil || !ok || rec.Role != geo.RolePrimary || rec.Epoch != 0 {
		t.Fatalf("role file after the first start: %+v %v %v", rec, ok, err)
	}
	g := newGuard(t, dir, "", false) // restart
	if got := refusalText(g); got != geo.FencedMessage {
		t.Fatalf("restarted guard: refusal %q, want the fence", got)
	}
	g.Observe("eu", geo.Term{})
	if refusalText(g) != geo.FencedMessage {
		t.Fatal("one confirmation of two lifted the fence")
	}
	g.Observe("asia", geo.Term{Epoch: 0, Primary: "asia"}) // a conflicting claim does not confirm
	if got := refusalText(g); got != geo.ConflictMessage {
		t.Fatalf("same epoch, other primary: refusal %q, want the conflict", got)
	}

	g = newGuard(t, dir, "", false) // restart
	g.Observe("eu", geo.Term{})
	g.Observe("asia", geo.Term{})
	g.Observe("asia", geo.Term{Epoch: 0}) // repeated: harmless
	if got := refusalText(g); got != "" {
		t.Fatalf("after both confirmed: refusal %q", got)
	}
	if newGuard(t, dir, "", false).Refusal() == nil {
		t.Fatal("a restart did not fence again")
	}
	if r := newGuard(t, dir, "", true).Refusal(); r != nil {
		t.Fatalf("--geo-confirm-primary: %v", r)
	}
}

// A higher term naming another site demotes at once, persistently: the
// restarted site refuses pushes even with the admin's override, and
// refuses maintenance changes.
func TestGuardDemotionIsImmediateAndPersists(t *testing.T) {
	dir := t.TempDir()
	g := newGuard(t, dir, "", true)
	if g.Refusal() != nil {
		t.Fatal("confirmed primary refuses")
	}
	g.Observe("eu", geo.Term{}) // a lower or equal term changes nothing
	newTerm := geo.Term{Epoch: 1, Primary: "eu"}
	g.Observe("asia", newTerm)
	want := geo.Demoted(newTerm)
	if got := refusalText(g); got != want {
		t.Fatalf("after a higher term: refusal %q, want %q", got, want)
	}
	if r := g.Refusal(); r.Kind != gitgate.RefusedMaintenance {
		t.Fatalf("kind %v", r.Kind)
	}
	g.Observe("eu", geo.Term{}) // an old term does not bring it back
	if refusalText(g) != want {
		t.Fatal("an old term undid the demotion")
	}
	rec, ok, err := geo.ReadRole(dir)
	if err != nil || !ok || rec.Role != geo.RoleSecondary || rec.Term != newTerm {
		t.Fatalf("persisted role: %+v %v %v", rec, ok, err)
	}
	if _, ok, _ := geo.ReadSecondaryMarker(dir); !ok {
		t.Fatal("no secondary marker: the CLI would still change maintenance here")
	}
	restarted := newGuard(t, dir, "", true)
	if got := refusalText(restarted); got != want {
		t.Fatalf("restarted with --geo-confirm-primary: refusal %q, want %q", got, want)
	}
	if msg, ro := restarted.ReadOnly(); !ro || msg == "" {
		t.Fatal("a demoted primary accepts maintenance changes")
	}
}

// Property: whatever terms arrive, in any order and concurrently, the
// guard ends demoted exactly when some term had a higher epoch naming
// another site, with the highest such term persisted; and once it has
// refused as demoted it never accepts again.
func TestGuardPropertyUnderConcurrency(t *testing.T) {
	for round := range 30 {
		dir := t.TempDir()
		self := "main"
		g, err := geo.NewGuard(dir, self, nil, true, nil)
		if err != nil {
			t.Fatal(err)
		}
		terms := make([]geo.Term, 40)
		var maxOther geo.Term
		for i := range terms {
			r := rand.New(rand.NewPCG(uint64(round), uint64(i)))
			terms[i] = geo.Term{Epoch: r.Uint64N(3)}
			if r.IntN(2) == 0 {
				terms[i].Primary = self
			} else {
				terms[i].Primary = "eu"
			}
			if terms[i].Epoch > 0 && terms[i].Primary != self && terms[i].Epoch > maxOther.Epoch {
				maxOther = terms[i]
			}
		}
		var wg sync.WaitGroup
		var demotedSeen sync.Map
		for i, term := range terms {
			wg.Add(1)
			go func() {
				defer wg.Done()
				g.Observe("n", term)
				if r := g.Refusal(); r != nil && r.Message != geo.ConflictMessage {
					demotedSeen.Store(i, true)
				}
			}()
		}
		wg.Wait()
		rec := g.Record()
		demoted := rec.Role == geo.RoleSecondary
		if demoted != (maxOther.Epoch > 0) {
			t.Fatalf("round %d: demoted=%v, highest other term %v", round, demoted, maxOther)
		}
		if demoted {
			if rec.Epoch < maxOther.Epoch {
				t.Fatalf("round %d: kept %v below %v", round, rec.Term, maxOther)
			}
			onDisk, _, err := geo.ReadRole(dir)
			if err != nil || onDisk.Term != rec.Term || onDisk.Role != geo.RoleSecondary {
				t.Fatalf("round %d: on disk %+v, in memory %+v (%v)", round, onDisk, rec, err)
			}
		}
		seen := false
		demotedSeen.Range(func(any, any) bool { seen = true; return false })
		if seen && !demoted {
			t.Fatalf("round %d: refused as demoted, then primary again", round)
		}
	}
}

// guardedPrimary serves a primary's status poll with a Guard.
func guardedPrimary(t *testing.T, confirmed bool) (*site, *geo.Guard, string) {
	t.Helper()
	s := newSite(t)
	// A restart: the role file of an earlier start is there.
	if err := geo.WriteRole(s.dataDir, geo.RoleRecord{Role: geo.RolePrimary}); err != nil {
		t.Fatal(err)
	}
	guard, err := geo.NewGuard(s.dataDir, "", []string{"eu"}, confirmed, testLog())
	if err != nil {
		t.Fatal(err)
	}
	v := geo.NewVerifier(map[string][]byte{"eu": secretEU})
	p := geo.NewPrimary(s.live, v, testLog())
	p.SetGuard(guard)
	mux := http.NewServeMux()
	mux.Handle("GET "+geo.StatusPath, p.StatusHandler())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() { p.Shutdown(); srv.Close(); <-done })
	return s, guard, "http://" + ln.Addr().String()
}

// Over the real status poll: the follower's term confirms the restarted
// primary; "geo promote" on the follower makes the primary demote itself
// at the follower's next poll, and the follower stops mirroring it.
func TestPromotionDemotesThePrimaryAtNextContact(t *testing.T) {
	prim, guard, url := guardedPrimary(t, false)
	sec := newSite(t)
	if err := geo.WriteSecondaryMarker(sec.dataDir, url, "eu"); err != nil {
		t.Fatal(err)
	}
	opts := followerOptions(t, url, secretEU)
	opts.PollWait = time.Minute // longer than testDeadline: the promotion must cut the held poll short
	if guard.Refusal() == nil {
		t.Fatal("restarted primary not fenced")
	}
	f := startFollower(t, opts, sec)
	mustWaitFor(t, "the secondary to confirm the primary's term", func() bool { return guard.Refusal() == nil })
	if tm := f.Term(); tm == nil || *tm != (geo.Term{}) {
		t.Fatalf("follower's term %v", tm)
	}

	// Not in sync (no replication here): promote refuses without --force.
	if _, err := geo.Promote(sec.dataDir, time.Now(), false); !errors.Is(err, geo.ErrNotInSync) {
		t.Fatalf("promote without force: %v", err)
	}
	if guard.Refusal() != nil {
		t.Fatal("a refused promotion demoted the primary")
	}
	res, err := geo.Promote(sec.dataDir, time.Now(), true)
	if err != nil || !res.Forced || res.Record.Term != (geo.Term{Epoch: 1, Primary: "eu"}) {
		t.Fatalf("forced promote: %+v %v", res, err)
	}
	mustWaitFor(t, "the old primary to demote itself", func() bool { return guard.Refusal() != nil })
	if got, want := refusalText(guard), geo.Demoted(geo.Term{Epoch: 1, Primary: "eu"}); got != want {
		t.Fatalf("refusal %q, want %q", got, want)
	}
	// The old primary's later states are not mirrored by the promoted site.
	before := sec.live.Current().State.Version
	prim.set(t, true)
	mustWaitFor(t, "the follower to refuse the demoted site", func() bool {
		return f.Status().LastError != ""
	})
	if v := sec.live.Current().State.Version; v != before {
		t.Fatalf("promoted site mirrored the demoted site's state: version %d → %d", before, v)
	}
	// Again: no-op.
	if res, err := geo.Promote(sec.dataDir, time.Now(), false); err != nil || res.Record.Epoch != 1 {
		t.Fatalf("promote again: %+v %v", res, err)
	}
	f.stop()
	if _, err := geo.NewFollower(opts, sec.store, sec.live, testLog()); err == nil {
		t.Fatal("a promoted site started as a secondary")
	}
}

// A term that could wrap the epoch round or break the role file is
// ignored, and a role file edited to name another primary is no primary.
func TestGuardIgnoresInvalidTerms(t *testing.T) {
	dir := t.TempDir()
	g := newGuard(t, dir, "", true)
	for _, bad := range []geo.Term{{Epoch: geo.MaxEpoch + 1, Primary: "eu"}, {Epoch: 1, Primary: "eu\nrole: primary"}, {Epoch: 1, Primary: "../x"}} {
		g.Observe("eu", bad)
		if r := g.Refusal(); r != nil {
			t.Fatalf("invalid term %+v changed the guard: %v", bad, r)
		}
	}
	if _, _, err := geo.ReadRole(dir); err != nil {
		t.Fatalf("role file after invalid terms: %v", err)
	}
	if err := geo.WriteRole(dir, geo.RoleRecord{Term: geo.Term{Epoch: 3, Primary: "eu"}, Role: geo.RolePrimary}); err != nil {
		t.Fatal(err)
	}
	if got := refusalText(newGuard(t, dir, "", true)); got != geo.Demoted(geo.Term{Epoch: 3, Primary: "eu"}) {
		t.Fatalf("a primary whose term names another site: refusal %q", got)
	}
}
