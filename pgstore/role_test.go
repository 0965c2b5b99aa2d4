package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gitgate/gitgate/geo"
)

// The gates of a database site share one role record: the first start
// writes the original term once (gates starting together agree); a term a
// secondary presents to gate A demotes gate B too, learnt through NOTIFY
// and a re-read, so B refuses pushes with the demotion's words; the epoch
// in the database never goes down, whichever gate writes what, and a
// gate that saw less is told (geo.ErrRoleBehind). (Before, each gate kept
// its role in its own data dir, and gate B went on accepting pushes after
// gate A was demoted.)
func TestRoleSharedByTheGates(t *testing.T) {
	a, url := migrated(t)
	gates := []*DB{a}
	for range 2 {
		db, err := Open(t.Context(), url, nil, Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(db.Close)
		gates = append(gates, db)
	}
	// Three gates start at once on an empty geo_role (confirmed: a gate
	// that finds the record another wrote a moment ago is fenced, as any
	// restart is, until the secondaries confirm).
	guards := make([]*geo.Guard, len(gates))
	var wg sync.WaitGroup
	errs := make([]error, len(gates))
	for i, db := range gates {
		wg.Go(func() {
			guards[i], errs[i] = geo.NewGuardOn(t.Context(), RoleStore{DB: db}, t.TempDir(), "us", []string{"eu"}, true, nil)
		})
	}
	wg.Wait()
	for i, g := range guards {
		if errs[i] != nil {
			t.Fatalf("gate %d: %v", i, errs[i])
		}
		if rec := g.Record(); rec.Role != geo.RolePrimary || rec.Term != (geo.Term{Epoch: 0, Primary: "us"}) {
			t.Fatalf("gate %d's role at the first start: %+v", i, rec)
		}
	}
	// A restart reads the site's record (and is fenced until eu confirms).
	restarted, err := geo.NewGuardOn(t.Context(), RoleStore{DB: gates[1]}, t.TempDir(), "us", []string{"eu"}, false, nil)
	if err != nil || restarted.Refusal() == nil || restarted.Refusal().Message != geo.FencedMessage {
		t.Fatalf("a restarted gate: %v %+v", err, restarted.Refusal())
	}

	// Gates B and C learn role changes as a gate does: NOTIFY, then a
	// re-read.
	ctx, cancel := context.WithCancel(t.Context())
	defer wg.Wait()
	defer cancel()
	var connected [2]atomic.Bool
	for i, db := range gates[1:] {
		w := &Watcher{DB: db, OnState: func() {}, OnAccess: func() {}, OnGeoRole: func() { guards[i+1].Reload(ctx) },
			Refresh: time.Second, Connected: connected[i].Store}
		wg.Go(func() { w.Run(ctx) })
	}
	waitFor(t, "the watchers to connect", func() bool { return connected[0].Load() && connected[1].Load() })
	for _, g := range guards {
		if g.Refusal() != nil {
			t.Fatalf("an original primary refuses pushes: %+v", g.Refusal())
		}
	}

	// Secondary eu was promoted (epoch 1) and presents it to gate A only.
	promoted := geo.Term{Epoch: 1, Primary: "eu"}
	guards[0].Observe("eu", promoted)
	want := geo.Demoted(promoted)
	for i, g := range guards {
		waitFor(t, fmt.Sprintf("gate %d to refuse pushes", i), func() bool {
			r := g.Refusal()
			return r != nil && r.Message == want
		})
		if msg, ro := g.ReadOnly(); !ro || !strings.Contains(msg, "demoted") {
			t.Errorf("gate %d after the demotion: read-only %v %q", i, ro, msg)
		}
	}
	store := RoleStore{DB: gates[2]}
	if rec, ok, err := store.LoadRole(t.Context()); err != nil || !ok || rec.Term != promoted || rec.Role != geo.RoleSecondary {
		t.Fatalf("the stored role: %+v %v %v", rec, ok, err)
	}
	// A gate that saw less cannot write the old term back.
	old := guards[0].Record()
	old.Term, old.Role = geo.Term{Epoch: 0, Primary: "us"}, geo.RolePrimary
	if err := store.SaveRole(t.Context(), old); !errors.Is(err, geo.ErrRoleBehind) {
		t.Fatalf("a write of the old term: %v, want ErrRoleBehind", err)
	}
	// Nor does a lower term presented to any gate undo it.
	guards[1].Observe("eu", geo.Term{Epoch: 0, Primary: "us"})
	if guards[1].Refusal() == nil {
		t.Fatal("gate B accepts pushes after an old term")
	}

	// Property: terms presented to the gates at once, in any order; the
	// database ends with the highest, and every gate, after its re-read,
	// holds it (none is left at a lower epoch).
	var terms sync.WaitGroup
	for i := range 30 {
		terms.Go(func() {
			guards[i%3].Observe("eu", geo.Term{Epoch: uint64(2 + i%10), Primary: fmt.Sprintf("n%d", i%10)})
		})
	}
	terms.Wait()
	top := geo.Term{Epoch: 11, Primary: "n9"}
	if rec, _, err := store.LoadRole(t.Context()); err != nil || rec.Term != top {
		t.Fatalf("the stored term after concurrent demotions: %+v %v, want %s", rec.Term, err, top)
	}
	for i, g := range guards {
		g.Reload(t.Context())
		waitFor(t, fmt.Sprintf("gate %d to hold %s", i, top), func() bool { return g.Term() == top })
	}
}
