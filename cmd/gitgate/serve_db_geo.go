package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/gitgate/gitgate/geo"
	"github.com/gitgate/gitgate/pgstore"
)

// shareGeo, on a Geo primary whose gates share a database, keeps the
// site's registry of secondaries (package pgstore's geo.go): at start the
// gate registers the fingerprint of every secret its geo.yaml names, and
// refuses to start when one differs from the fingerprint another gate of
// the site registered (the secondary's tokens would be accepted by some
// gates and refused by others). Then, every heartbeat, it records every
// secondary's last contact with this gate, its version and replication
// report; reads the registry back, so that its status (geo status, the
// nodes API, metrics, a failover's checks) shows the newest contact any
// gate heard; marks the nodes of its geo.yaml as listed; and removes the
// rows of nodes that no gate has listed for --geo-unlisted-after (see
// pgstore.PruneGeoNodes). Secrets stay in the gates' files; the database
// holds no secret.
func (s *serveCmd) shareGeo(ctx context.Context, g *gate) error {
	if g.shared == nil || g.geo == nil || g.geo.primary == nil {
		return nil
	}
	s.shareGeoRole(g)
	cfg, err := geo.LoadConfig(s.dataDir)
	if err != nil {
		return err
	}
	secrets, err := cfg.Secrets()
	if err != nil {
		return err
	}
	db := g.shared.db
	listed := make([]string, 0, len(secrets))
	for name, secret := range secrets {
		err := db.RegisterGeoNode(ctx, name, pgstore.SecretFingerprint(secret), false)
		if errors.Is(err, pgstore.ErrGeoSecretMismatch) {
			return fmt.Errorf("geo: secondary %s: this gate's secret file is not the one the site's other gates registered in the database; give every gate of the site the same secret file for it", name)
		}
		if err != nil {
			return fmt.Errorf("geo: %w", err)
		}
		listed = append(listed, name)
	}
	slices.Sort(listed)
	s.log.Info("geo registry in the database", "secondaries", len(secrets))
	every := s.database.heartbeat
	p := g.geo.primary
	// A contact another gate heard counts as connected for the grace of
	// the gate that heard it plus the registry's delay (its write and
	// this gate's read, a heartbeat each).
	p.ShareSite(s.database.gateID, 5*time.Second+2*every+time.Second)
	reg := &geoRegistry{db: db, primary: p, gate: s.database.gateID, listed: listed,
		unlistedAfter: s.geo.unlistedAfter, recorded: map[string]time.Time{}, warn: s.log.Warn, info: s.log.Info,
		announced: map[string]uint64{}}
	p.OnAnnounced(reg.announce)
	reg.refresh(ctx) // the site's view before the first request
	g.background = append(g.background, func(ctx context.Context) error {
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-tick.C:
			}
			reg.refresh(ctx)
		}
	})
	return nil
}

// geoRegistry is one primary gate's part in the site's registry.
type geoRegistry struct {
	db            *pgstore.DB
	primary       *geo.Primary
	gate          string
	listed        []string // this gate's geo.yaml
	unlistedAfter time.Duration
	recorded      map[string]time.Time // the last contact written, per node
	warn, info    func(string, ...any)

	mu        sync.Mutex
	announced map[string]uint64 // announcements this gate made, not yet written
}

// announce notes that this gate told node of the new primary of t; the
// next heartbeat records it for the site (geo.Primary.OnAnnounced).
func (r *geoRegistry) announce(node string, t geo.Term) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.announced[node] = max(r.announced[node], t.Epoch)
}

// refresh runs one heartbeat: record this gate's contacts, mark its nodes
// listed, prune, and read the site's registry back. A failure is logged
// and retried at the next heartbeat; the gate's own contacts still show.
func (r *geoRegistry) refresh(ctx context.Context) {
	r.mu.Lock()
	announced := r.announced
	r.announced = map[string]uint64{}
	r.mu.Unlock()
	for node, epoch := range announced {
		if err := r.db.RecordGeoAnnounced(ctx, node, epoch); err != nil {
			r.announce(node, geo.Term{Epoch: epoch}) // again at the next heartbeat
			if ctx.Err() == nil {
				r.warn("cannot record a Geo announcement in the database", "node", node, "err", err)
			}
		}
	}
	for _, c := range r.primary.Contacts() {
		if !c.LastContact.After(r.recorded[c.Name]) {
			continue
		}
		var repl json.RawMessage
		if c.Replication != nil {
			repl, _ = json.Marshal(c.Replication)
		}
		if err := r.db.RecordGeoContact(ctx, c.Name, r.gate, c.LastContact, c.VersionSeen, repl); err != nil {
			if ctx.Err() == nil {
				r.warn("cannot record a Geo secondary's contact in the database", "node", c.Name, "err", err)
			}
			continue
		}
		r.recorded[c.Name] = c.LastContact
	}
	if err := r.db.ListGeoNodes(ctx, r.listed); err != nil && ctx.Err() == nil {
		r.warn("cannot mark this gate's Geo secondaries as listed in the database", "err", err)
	}
	if gone, err := r.db.PruneGeoNodes(ctx, r.listed, r.unlistedAfter); err != nil {
		if ctx.Err() == nil {
			r.warn("cannot prune the Geo registry", "err", err)
		}
	} else if len(gone) > 0 {
		r.info("geo: removed from the registry the secondaries no gate of the site lists in its geo.yaml any more",
			"nodes", gone, "unlisted_for", r.unlistedAfter)
	}
	nodes, err := r.db.GeoNodes(ctx)
	if err != nil {
		if ctx.Err() == nil {
			r.warn("cannot read the Geo registry", "err", err)
		}
		return
	}
	r.primary.SetSiteContacts(siteContacts(nodes))
}

// siteContacts converts the registry's rows; a replication report that
// does not decode is left out (the contact still counts).
func siteContacts(nodes []pgstore.GeoNode) []geo.SiteContact {
	out := make([]geo.SiteContact, 0, len(nodes))
	for _, n := range nodes {
		if n.LastContact.IsZero() {
			continue
		}
		c := geo.SiteContact{Name: n.Name, LastContact: n.LastContact, Gate: n.Gate, VersionSeen: n.VersionSeen}
		if len(n.Replication) > 0 {
			var rep geo.ReplicationStatus
			if json.Unmarshal(n.Replication, &rep) == nil {
				c.Replication = &rep
			}
		}
		out = append(out, c)
	}
	return out
}

// roleStore is where this site keeps its Geo role and failover term: the
// data dir's file, or, for a site whose gates share a database, its
// geo_role row (every gate, and every restart, sees the same role). On a
// database site the gate's file is kept in step at each start, the higher
// epoch winning (the database on a tie): a database without a record, or
// with an older one, takes the file's (a site that moved to the database
// keeps a demotion it had learnt; a secondary's follower, which keeps its
// term in its data dir, wrote a later one), and the file takes the
// database's otherwise (a gate restarting as the secondary a failover
// made of its site presents the site's term).
func (s *serveCmd) roleStore(g *gate) (geo.RoleStore, error) {
	files := geo.FileRoleStore{DataDir: s.dataDir}
	if g == nil || g.shared == nil {
		return files, nil
	}
	store := pgstore.RoleStore{DB: g.shared.db}
	ctx := context.Background()
	shared, inDB, err := store.LoadRole(ctx)
	if err != nil {
		return nil, err
	}
	local, inFile, err := files.LoadRole(ctx)
	if err != nil {
		return nil, err
	}
	switch {
	case inFile && (!inDB || local.Epoch > shared.Epoch):
		if err := store.SaveRole(ctx, local); err != nil && !errors.Is(err, geo.ErrRoleBehind) {
			return nil, fmt.Errorf("geo: copy the data dir's %s into the database: %w", geo.RoleFileName, err)
		}
		s.log.Info("geo: the data dir's role record is newer than the site's; copied into the database", "term", local.Term.String(), "role", local.Role)
	case inDB && !(inFile && rolesSame(local, shared)):
		if err := files.SaveRole(ctx, shared); err != nil {
			return nil, err
		}
	}
	return store, nil
}

// rolesSame compares two role records but for when they were written.
func rolesSame(a, b geo.RoleRecord) bool {
	a.Updated, b.Updated = time.Time{}, time.Time{}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

// geoRoleChanged is the watcher's wake-up for a change of the site's role.
func (sh *sharedSite) geoRoleChanged() {
	if f := sh.onGeoRole.Load(); f != nil {
		(*f)()
	}
}

// shareGeoRole, on a Geo primary gate of a database site, makes the gate
// learn every change of the site's role another gate writes (NOTIFY, then
// a re-read into its Guard): a demotion refuses pushes on every gate at
// once, and a planned failover's demotion (the role names the primary to
// follow) restarts every gate of the old primary site as a secondary.
func (s *serveCmd) shareGeoRole(g *gate) {
	if g.shared == nil || g.geo == nil || g.geo.guard == nil {
		return
	}
	guard := g.geo.guard
	primary := g.geo.primary
	// A planned failover's promotion order, written by the gate that runs
	// it, is carried by every gate: the target may poll any of them.
	handover := func(rec geo.RoleRecord) {
		if h := rec.Handover; h != nil && primary != nil {
			if err := primary.OrderPromotion(h.Term, h.Reopen, h.URL); err != nil {
				s.log.Error("geo failover: cannot carry the site's promotion order", "term", h.Term.String(), "err", err)
			}
		}
	}
	handover(guard.Record())
	reload := func() {
		if !guard.Reload(context.Background()) {
			return
		}
		handover(guard.Record())
		if rec := guard.Record(); rec.Role == geo.RoleSecondary && rec.Follow != nil {
			s.log.Warn("geo: a planned failover demoted this site; restarting as a secondary", "term", rec.Term.String(), "primary", rec.Follow.URL)
			s.requestRoleSwitch()
		}
	}
	g.shared.onGeoRole.Store(&reload)
}
