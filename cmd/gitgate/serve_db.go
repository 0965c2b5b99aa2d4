package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/urfave/cli/v2"

	"github.com/gitgate/gitgate/access"
	"github.com/gitgate/gitgate/api"
	"github.com/gitgate/gitgate/audit"
	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/pgstore"
)

// databaseOptions are serve's settings for the shared state database.
type databaseOptions struct {
	url        string
	staleAfter time.Duration
	gateID     string
	heartbeat  time.Duration
}

// DefaultStaleAfter is --database-stale-after's default.
const DefaultStaleAfter = 10 * time.Second

func databaseFlags() []cli.Flag {
	return []cli.Flag{
		&cli.DurationFlag{
			Name: "database-stale-after",
			Usage: "with --database-url: while the database cannot be read, pushes go on for this long on the last " +
				"state read, then are refused until it is back (clones go on with the last known access data)",
			Value:   DefaultStaleAfter,
			EnvVars: []string{"GITGATE_DATABASE_STALE_AFTER"},
		},
		&cli.StringFlag{
			Name:    "gate-id",
			Usage:   "with --database-url: this gate's name in the site's list of pushes in flight, and on a Geo secondary site in its election (default: host name and a random suffix)",
			EnvVars: []string{"GITGATE_GATE_ID"},
		},
		&cli.DurationFlag{
			Name:    "database-heartbeat",
			Usage:   "with --database-url: how often this gate refreshes its pushes in flight (they expire after three) and, on a Geo secondary site, tries the election and records or reads the site's follower status",
			Value:   2 * time.Second,
			EnvVars: []string{"GITGATE_DATABASE_HEARTBEAT"},
			Hidden:  true,
		},
	}
}

func databaseOptionsFrom(c *cli.Context) (databaseOptions, error) {
	o := databaseOptions{url: databaseURL(c), staleAfter: c.Duration("database-stale-after"),
		gateID: c.String("gate-id"), heartbeat: c.Duration("database-heartbeat")}
	if o.staleAfter <= 0 {
		return o, usageError{errors.New("serve: --database-stale-after must be positive")}
	}
	if o.heartbeat <= 0 {
		return o, usageError{errors.New("serve: --database-heartbeat must be positive")}
	}
	if o.gateID == "" {
		host, _ := os.Hostname()
		var rnd [4]byte
		_, _ = rand.Read(rnd[:])
		o.gateID = host + "-" + hex.EncodeToString(rnd[:])
	}
	return o, nil
}

// sharedSite is the gate's part of a site that shares its state in
// PostgreSQL.
type sharedSite struct {
	db        *pgstore.DB
	view      *pgstore.StateView
	inflight  *pgstore.Inflight
	hooks     *pgstore.HookGate // nil without the hook socket
	connected atomic.Bool
	onGeoRole atomic.Pointer[func()] // the site's Geo role changed (serve_db_geo.go)
}

// buildShared keeps the state, the access data, the audit log and the
// pushes in flight in the database: the gate loads them now, refusing to
// start on a schema it does not know, and a watcher keeps them current.
func (s *serveCmd) buildShared(ctx context.Context, g *gate) error {
	db, err := pgstore.Open(ctx, s.database.url, s.log, pgstore.Options{MaxConns: 8})
	if err != nil {
		return err
	}
	sh := &sharedSite{db: db, view: pgstore.NewStateView(db, s.database.staleAfter)}
	sh.inflight = db.NewInflight(s.database.gateID, s.database.heartbeat)
	g.shared = sh
	g.audit = audit.OpenSink(db.AuditSink())
	g.live = gitgate.NewLiveState(sh.view, s.log)
	// Enable waits for the ref updates of every gate (the site's registry).
	g.fenced = &gitgate.FencedStore{Store: db, Txns: db, Timeout: s.fenceTimeout, Written: g.live.Reload}
	g.live.Run(ctx, 0) // the first load; the watcher keeps it current
	if err := g.live.Current().Err; err != nil {
		db.Close()
		return fmt.Errorf("maintenance state: %w", err)
	}
	g.users = access.NewLiveOn(db.AccessDocument(), s.log)
	if err := g.users.Start(ctx); err != nil {
		db.Close()
		return fmt.Errorf("access data: %w", err)
	}
	// The hooks of the git processes the gate starts read the same state.
	g.runner.Env = append(g.runner.Env, EnvDatabaseURL+"="+s.database.url)

	refresh := min(s.database.staleAfter/4, time.Second)
	w := &pgstore.Watcher{DB: db, OnState: g.live.Reload, OnAccess: func() { _ = g.users.Reload() },
		OnGeoRole: sh.geoRoleChanged, Refresh: refresh, Connected: sh.connected.Store}
	sh.connected.Store(true)
	serveHooks := s.hookGate(g, db)
	g.background = append(g.background, func(ctx context.Context) error {
		var wg sync.WaitGroup
		wg.Go(func() { w.Run(ctx) })
		wg.Go(func() { _ = sh.inflight.Run(ctx) })
		if serveHooks != nil {
			wg.Go(func() { serveHooks(ctx) })
		}
		wg.Wait()
		db.Close()
		return nil
	})
	s.log.Info("shared state in PostgreSQL", "database", db.String(), "gate_id", s.database.gateID,
		"stale_after", s.database.staleAfter)
	return nil
}

// shareTracker registers the gate's pushes in the database and exports the
// database's health as metrics.
func (s *serveCmd) shareTracker(g *gate) error {
	sh := g.shared
	if sh == nil {
		return nil
	}
	g.tracker.ShareWith(sh.inflight)
	if sh.hooks != nil {
		if err := g.metrics.Register(hookGateMetrics(sh.hooks)...); err != nil {
			return err
		}
	}
	return g.metrics.Register(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "gitgate_database_up",
			Help: "1 while the gate's notification connection to the shared state database is up.",
		}, func() float64 {
			if sh.connected.Load() {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "gitgate_database_state_age_seconds",
			Help: "Seconds since the gate last read the maintenance state from the database; pushes are refused past --database-stale-after.",
		}, func() float64 { return sh.view.Age().Seconds() }),
	)
}

// sitePushes lists the pushes running on every gate of the site, for the
// settings answer (so that "maintenance status --url" shows them); ok is
// false without a shared database.
func (g *gate) sitePushes(ctx context.Context) ([]api.SitePush, bool, error) {
	if g.shared == nil {
		return nil, false, nil
	}
	ops, err := g.shared.db.InFlight(ctx)
	if err != nil {
		return nil, true, err
	}
	var out []api.SitePush
	for _, op := range ops {
		if op.Service == string(gitgate.ReceivePack) {
			out = append(out, api.SitePush{Gate: op.Gate, RunningOp: api.RunningOp{
				Service: op.Service, Repo: op.Repo, User: op.User, Transport: op.Transport, Started: op.Started.UTC()}})
		}
	}
	return out, true, nil
}
