package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// The registry holds names and secret fingerprints (never a secret),
// refuses a gate whose secret differs from the site's, and keeps the
// newest contact whichever gate records it.
func TestGeoRegistry(t *testing.T) {
	db, _ := migrated(t)
	ctx := t.Context()
	secret := []byte(strings.Repeat("s", 40))
	fp := SecretFingerprint(secret)
	if strings.Contains(fp, string(secret)) || !strings.HasPrefix(fp, "sha256:") || fp == SecretFingerprint([]byte(strings.Repeat("t", 40))) {
		t.Fatalf("fingerprint %q", fp)
	}
	for range 2 { // every gate of the site registers at start
		if err := db.RegisterGeoNode(ctx, "eu", fp, false); err != nil {
			t.Fatal(err)
		}
	}
	other := SecretFingerprint([]byte(strings.Repeat("x", 40)))
	if err := db.RegisterGeoNode(ctx, "eu", other, false); !errors.Is(err, ErrGeoSecretMismatch) {
		t.Fatalf("a gate with another secret: %v, want ErrGeoSecretMismatch", err)
	}
	if err := db.RegisterGeoNode(ctx, "us", fp, false); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().UTC().Truncate(time.Microsecond)
	repl := json.RawMessage(`{"synced": 3, "pending": 1}`)
	if err := db.RecordGeoContact(ctx, "eu", "A", t0, 7, repl); err != nil {
		t.Fatal(err)
	}
	// Gate B heard from it earlier, and writes later: no step back.
	if err := db.RecordGeoContact(ctx, "eu", "B", t0.Add(-time.Second), 6, nil); err != nil {
		t.Fatal(err)
	}
	if err := db.RecordGeoContact(ctx, "us", "B", t0, 7, nil); err != nil {
		t.Fatal(err)
	}
	if err := db.RecordGeoContact(ctx, "asia", "B", t0, 7, nil); err == nil {
		t.Fatal("a contact of an unregistered node was recorded")
	}
	nodes, err := db.GeoNodes(ctx)
	if err != nil || len(nodes) != 2 {
		t.Fatalf("nodes: %+v, %v", nodes, err)
	}
	eu := nodes[0]
	var got map[string]int
	json.Unmarshal(eu.Replication, &got)
	if eu.Name != "eu" || eu.Gate != "A" || eu.VersionSeen != 7 || !eu.LastContact.Equal(t0) || got["synced"] != 3 || eu.Fingerprint != fp {
		t.Fatalf("eu: %+v", eu)
	}
	if nodes[1].Name != "us" || nodes[1].Replication != nil {
		t.Fatalf("us: %+v", nodes[1])
	}
	// A rotated secret is registered on purpose.
	if err := db.RegisterGeoNode(ctx, "eu", other, true); err != nil {
		t.Fatal(err)
	}
	if err := db.RegisterGeoNode(ctx, "eu", fp, false); !errors.Is(err, ErrGeoSecretMismatch) {
		t.Fatalf("the old secret after a rotation: %v", err)
	}
	if ok, err := db.RemoveGeoNode(ctx, "us", 0, true); !ok || err != nil {
		t.Fatalf("remove: %v %v", ok, err)
	}
	if ok, _ := db.RemoveGeoNode(ctx, "us", 0, true); ok {
		t.Fatal("removed twice")
	}
}

// The role record's epoch never goes down, also with many gates writing
// at once: the stored epoch is the highest written.
func TestGeoRoleNeverStepsBack(t *testing.T) {
	db, _ := migrated(t)
	ctx := t.Context()
	if _, ok, err := db.LoadGeoRole(ctx); ok || err != nil {
		t.Fatalf("fresh database: %v %v", ok, err)
	}
	rec := func(epoch uint64, role string) GeoRole {
		return GeoRole{Epoch: epoch, Record: json.RawMessage(fmt.Sprintf(`{"epoch":%d,"role":%q}`, epoch, role))}
	}
	if err := db.SaveGeoRole(ctx, rec(2, "primary")); err != nil {
		t.Fatal(err)
	}
	if err := db.SaveGeoRole(ctx, rec(1, "primary")); !errors.Is(err, ErrGeoEpochBehind) {
		t.Fatalf("an older epoch: %v", err)
	}
	if err := db.SaveGeoRole(ctx, rec(2, "secondary")); err != nil {
		t.Fatalf("the same epoch: %v", err)
	}
	if err := db.SaveGeoRole(ctx, GeoRole{Epoch: 3, Record: json.RawMessage("{")}); err == nil {
		t.Fatal("a record that is not JSON was saved")
	}
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() { _ = db.SaveGeoRole(ctx, rec(uint64(3+i%20), "primary")) })
	}
	wg.Wait()
	r, ok, err := db.LoadGeoRole(ctx)
	var back map[string]any
	json.Unmarshal(r.Record, &back)
	if err != nil || !ok || r.Epoch != 22 || back["epoch"] != float64(22) {
		t.Fatalf("after concurrent writes: %+v (%v) %v %v, want epoch 22", r, back, ok, err)
	}
}

// One gate of a site runs the elected job at a time; when the holder's
// connection is cut (its backend terminated, as when its gate dies or the
// database restarts) its work stops and another gate takes over.
func TestGeoElection(t *testing.T) {
	db, url := migrated(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var running, maxRunning, turns atomic.Int64
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for range 3 {
		e := &Elector{DB: db, Job: "follower", Retry: 20 * time.Millisecond}
		wg.Go(func() {
			e.Run(ctx, func(wctx context.Context) {
				n := running.Add(1)
				for {
					m := maxRunning.Load()
					if n <= m || maxRunning.CompareAndSwap(m, n) {
						break
					}
				}
				turns.Add(1)
				<-wctx.Done()
				running.Add(-1)
			})
		})
	}
	waitFor(t, "a gate to be elected", func() bool { return running.Load() == 1 })
	admin, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	for k := range 3 {
		before := turns.Load()
		// Cut the holder's connection from the server's side.
		if _, err := admin.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND classid = $1 AND granted`, int64(geoLockSpace)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, fmt.Sprintf("takeover %d", k), func() bool { return turns.Load() > before && running.Load() == 1 })
	}
	// Terminating a backend lets the next holder in while the old one
	// still runs until its next check: overlap bounded by one Retry, but
	// never more than two at once.
	if m := maxRunning.Load(); m > 2 {
		t.Errorf("%d gates ran the job at once", m)
	}
	cancel()
	wg.Wait()
	if n := running.Load(); n != 0 {
		t.Errorf("%d jobs still running after the end", n)
	}
}

// A node gone from a gate's geo.yaml leaves the registry only once no gate
// of the site has listed it within the bound: during a rolling change of
// geo.yaml, a gate with the new file never deletes the row of a node
// another gate still serves; "db geo-nodes --remove" refuses such a row
// unless forced.
func TestGeoRegistryPrune(t *testing.T) {
	db, url := migrated(t)
	ctx := t.Context()
	fp := SecretFingerprint([]byte(strings.Repeat("s", 40)))
	for _, n := range []string{"asia", "eu", "us"} {
		if err := db.RegisterGeoNode(ctx, n, fp, false); err != nil {
			t.Fatal(err)
		}
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	age := func() { // two minutes pass
		if _, err := conn.Exec(ctx, `UPDATE geo_nodes SET listed_at = listed_at - interval '2 minutes'`); err != nil {
			t.Fatal(err)
		}
	}
	// Just registered: nothing is pruned, even by a gate that lists none.
	if gone, err := db.PruneGeoNodes(ctx, nil, time.Minute); err != nil || len(gone) != 0 {
		t.Fatalf("prune of fresh rows: %v %v", gone, err)
	}
	age()
	// Gate A still lists eu and us (its heartbeat); gate C's geo.yaml
	// has only eu.
	if err := db.ListGeoNodes(ctx, []string{"eu", "us"}); err != nil {
		t.Fatal(err)
	}
	gone, err := db.PruneGeoNodes(ctx, []string{"eu"}, time.Minute)
	if err != nil || len(gone) != 1 || gone[0] != "asia" {
		t.Fatalf("pruned %v (%v), want [asia]", gone, err)
	}
	if _, err := db.RemoveGeoNode(ctx, "us", time.Minute, false); !errors.Is(err, ErrGeoNodeListed) {
		t.Fatalf("remove of a node a gate lists: %v, want ErrGeoNodeListed", err)
	}
	// Gate A got the new geo.yaml too: us is listed no more.
	age()
	if ok, err := db.RemoveGeoNode(ctx, "us", time.Minute, false); !ok || err != nil {
		t.Fatalf("remove of an unlisted node: %v %v", ok, err)
	}
	if ok, err := db.RemoveGeoNode(ctx, "eu", time.Minute, true); !ok || err != nil {
		t.Fatalf("forced remove: %v %v", ok, err)
	}
	if nodes, err := db.GeoNodes(ctx); err != nil || len(nodes) != 0 {
		t.Fatalf("registry left: %+v %v", nodes, err)
	}
}

// The epoch announced to a node never goes down, whichever gate records
// last.
func TestGeoAnnouncedNeverGoesDown(t *testing.T) {
	db, _ := migrated(t)
	ctx := t.Context()
	if err := db.RegisterGeoNode(ctx, "asia", SecretFingerprint([]byte(strings.Repeat("s", 40))), false); err != nil {
		t.Fatal(err)
	}
	for _, e := range []uint64{2, 1, 3, 0} {
		if err := db.RecordGeoAnnounced(ctx, "asia", e); err != nil {
			t.Fatal(err)
		}
	}
	if nodes, err := db.GeoNodes(ctx); err != nil || len(nodes) != 1 || nodes[0].AnnouncedEpoch != 3 {
		t.Fatalf("nodes %+v %v", nodes, err)
	}
}
