package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gitgate/gitgate/access"
	"github.com/gitgate/gitgate/geo"
	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/pgstore"
)

// geoElectionJob is the Elector job of a secondary site's follower.
const geoElectionJob = "geo-follower"

// siteSecondary is one gate of a Geo secondary site whose gates share a
// database (pgstore's geo_secondary.go). Every gate serves reads and hands
// pushes to the primary through its own Follower; the gate elected with
// pgstore.Elector also runs the follower and the replication, writing the
// mirrored state, the replicated access data and the follower's status
// through its Lease. The others learn the state and the access data
// through the database's notifications like any change, and the follower's
// status from the geo_secondary row.
type siteSecondary struct {
	db        *pgstore.DB
	gate      string
	heartbeat time.Duration
	dataDir   string
	log       *slog.Logger
	opts      geo.SecondaryOptions
	follower  *geo.Follower
	replica   *geo.Replicator

	lease   atomic.Pointer[pgstore.Lease] // this gate's turn; nil when it does not lead
	leading atomic.Bool

	mu     sync.Mutex
	row    pgstore.SecondaryStatus // the last read
	rowOK  bool
	readAt time.Time // when row was read; zero: never
}

// setupSiteSecondary builds the Geo part of a secondary gate on a database.
func (s *serveCmd) setupSiteSecondary(g *gate, o geoOptions) (*geoSite, error) {
	ss := &siteSecondary{db: g.shared.db, gate: s.database.gateID, heartbeat: s.database.heartbeat,
		dataDir: s.dataDir, log: s.log, opts: o.secondary}
	f, err := geo.NewSiteFollower(o.secondary, ss, s.dataDir, g.live, ss.siteStatus, s.log)
	if err != nil {
		return nil, err
	}
	ss.follower = f
	if err := geo.WriteSecondaryMarker(s.dataDir, f.Primary(), o.secondary.NodeName); err != nil {
		return nil, err
	}
	ro := s.geo.replica
	ro.Git, ro.Resolver, ro.DataDir = s.git, g.resolver, s.dataDir
	ro.Access = &geo.DocumentAccess{Doc: leasedAccess{ss}}
	ro.Prepare = s.prepareReplica
	ss.replica = geo.NewReplicator(f, ro)
	if err := g.metrics.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "gitgate_geo_secondary_elected",
		Help: "1 on the gate of a secondary site on a database that is elected to follow the primary and replicate, else 0.",
	}, func() float64 { return boolGauge(ss.leading.Load()) })); err != nil {
		return nil, err
	}
	s.log.Info("geo secondary site on the database: one gate follows the primary and replicates",
		"primary", f.Primary(), "node", o.secondary.NodeName, "gate_id", ss.gate)
	return &geoSite{follower: f, replica: ss.replica, dataDir: s.dataDir, site: ss}, nil
}

// Mirror writes the primary's state into the site's database, through this
// gate's lease: a gate that does not lead cannot.
func (ss *siteSecondary) Mirror(ctx context.Context, st gitgate.State, force bool) (bool, error) {
	l := ss.lease.Load()
	if l == nil {
		return false, pgstore.ErrLeaseLost
	}
	return l.Mirror(ctx, st, force)
}

// leasedAccess is the site's access document, updated through the
// current lease only.
type leasedAccess struct{ ss *siteSecondary }

func (a leasedAccess) Name() string { return a.ss.db.AccessDocument().Name() }

func (a leasedAccess) Read(ctx context.Context) ([]byte, error) {
	return a.ss.db.AccessDocument().Read(ctx)
}

func (a leasedAccess) Update(ctx context.Context, fn func([]byte) ([]byte, error)) error {
	l := a.ss.lease.Load()
	if l == nil {
		return pgstore.ErrLeaseLost
	}
	return l.AccessDocument().Update(ctx, fn)
}

var _ access.Document = leasedAccess{}

// run takes part in the election until ctx ends; meanwhile it reads the
// site's follower status every heartbeat.
func (ss *siteSecondary) run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { geo.TrimChangeJournal(ctx, ss.dataDir) })
	ss.readStatus(ctx)
	wg.Go(func() { ss.readStatusLoop(ctx) })
	wg.Go(func() { ss.follower.KeepStatusFile(ctx, ss.heartbeat) })
	e := &pgstore.Elector{DB: ss.db, Job: geoElectionJob, Retry: ss.heartbeat, Gate: ss.gate,
		Leading: ss.leading.Store}
	e.RunLeased(ctx, ss.lead)
	return nil
}

// lead is this gate's turn: the follower, the replication and the status
// row, until the lease is lost or ctx ends.
func (ss *siteSecondary) lead(ctx context.Context, l *pgstore.Lease) {
	ss.lease.Store(l)
	defer ss.lease.CompareAndSwap(l, nil)
	ss.log.Info("geo: this gate is elected to follow the primary and replicate for the site")
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { ss.replica.Run(ctx) })
	wg.Go(func() { ss.writeStatusLoop(ctx, l) })
	ss.follower.Run(ctx)
	cancel() // the follower returned on its own: a role change
	wg.Wait()
	// Tell the other gates at once, if the lease still can.
	st := ss.follower.Status()
	st.Connected = false
	st.LastError = "the elected gate " + ss.gate + " stopped following"
	fctx, fcancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer fcancel()
	_ = l.RecordSecondaryStatus(fctx, ss.statusRow(st))
	ss.log.Info("geo: this gate no longer follows the primary for the site")
}

// writeStatusLoop records the follower's status every heartbeat.
func (ss *siteSecondary) writeStatusLoop(ctx context.Context, l *pgstore.Lease) {
	tick := time.NewTicker(ss.heartbeat)
	defer tick.Stop()
	failing := false
	for {
		err := l.RecordSecondaryStatus(ctx, ss.statusRow(ss.follower.Status()))
		switch {
		case ctx.Err() != nil:
			return
		case err != nil && !failing:
			ss.log.Warn("geo: cannot record the follower's status in the database", "err", err)
			failing = true
		case err == nil:
			failing = false
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// statusRow is st as the database keeps it.
func (ss *siteSecondary) statusRow(st geo.FollowerStatus) pgstore.SecondaryStatus {
	row := pgstore.SecondaryStatus{Node: st.Node, Primary: st.Primary, Gate: ss.gate, Connected: st.Connected,
		LastContact: st.LastContact, Version: st.Version, LastError: st.LastError}
	if st.Replication != nil {
		row.Replication, _ = json.Marshal(st.Replication)
	}
	return row
}

// readStatusLoop reads the site's follower status every heartbeat.
func (ss *siteSecondary) readStatusLoop(ctx context.Context) {
	tick := time.NewTicker(ss.heartbeat)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		ss.readStatus(ctx)
	}
}

// readStatus reads the site's follower status once.
func (ss *siteSecondary) readStatus(ctx context.Context) {
	row, ok, err := ss.db.SecondaryStatus(ctx)
	if err != nil {
		return
	}
	ss.mu.Lock()
	ss.row, ss.rowOK, ss.readAt = row, ok, time.Now()
	ss.mu.Unlock()
}

// siteStatus is the site's follower as the database tells it, for a gate
// whose own follower does not run: connected only while the elected gate
// reports it connected and has reported within three heartbeats.
func (ss *siteSecondary) siteStatus() (geo.FollowerStatus, bool) {
	ss.mu.Lock()
	row, ok, readAt := ss.row, ss.rowOK, ss.readAt
	ss.mu.Unlock()
	st := geo.FollowerStatus{Node: ss.opts.NodeName, Primary: ss.follower.Primary()}
	switch {
	case readAt.IsZero():
		st.LastError = "this gate cannot read the site's follower status from the database"
		return st, true
	case !ok:
		st.LastError = "no gate of this site has followed the primary yet"
		return st, true
	}
	since := time.Since(readAt)
	age := row.Age + since
	st.Elected, st.LastContact, st.Version, st.LastError = row.Gate, row.LastContact, row.Version, row.LastError
	st.Running = age < 3*ss.heartbeat
	st.Connected = row.Connected && st.Running
	if !st.Running {
		st.LastError = fmt.Sprintf("the elected gate %s has not reported for %s", row.Gate, age.Round(time.Millisecond))
	}
	if !st.Connected {
		st.Stale = row.ContactAge + since
		if row.ContactAge < 0 {
			st.Stale = age
		}
	}
	if row.Replication != nil {
		var rs geo.ReplicationStatus
		if json.Unmarshal(row.Replication, &rs) == nil {
			st.Replication = &rs
		}
	}
	return st, true
}

// refuseOnSecondarySite refuses a local change through the CLI when the
// site's database is a Geo secondary site's (a gate of the site has
// recorded its follower there), whatever data dir the CLI was given: its
// state and access data are the primary's. A database that cannot say
// refuses too.
func (s *site) refuseOnSecondarySite(ctx context.Context, notDone string, message func(primaryURL string) string) error {
	if s.db == nil {
		return nil
	}
	row, ok, err := s.db.SecondaryStatus(ctx)
	if err != nil {
		return fmt.Errorf("the database's Geo role cannot be read, so %s: %w", notDone, err)
	}
	if ok {
		return errors.New(message(row.Primary))
	}
	return nil
}

// refuseAccessOnSecondarySite is refuseOnSecondarySite for users, keys,
// tokens and rules.
func (s *site) refuseAccessOnSecondarySite(ctx context.Context) error {
	return s.refuseOnSecondarySite(ctx, "the access data is not changed", geo.ChangeAccessOnPrimary)
}
