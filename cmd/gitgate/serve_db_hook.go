package main

import (
	"context"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/pgstore"
)

// HookSocketName is the Unix socket, in the data dir, on which a gate on a
// database answers the hooks of the pushes it runs (package pgstore's
// HookGate), so that they need no database connection of their own.
const HookSocketName = "hooks.sock"

// hookGate makes the gate answer its pushes' hooks on its pooled database
// connections, and returns the function that serves them (nil when the
// socket cannot be made: the hooks then connect to the database
// themselves, as a push through another server's does).
func (s *serveCmd) hookGate(g *gate, db *pgstore.DB) func(context.Context) {
	socket := filepath.Join(s.dataDir, HookSocketName)
	if len(socket) > 100 { // sun_path holds 108 bytes
		s.log.Warn("hook socket off: the data dir's path is too long for a Unix socket; each hook run connects to the database", "socket", socket)
		return nil
	}
	state := func() (gitgate.State, error) {
		snap := g.live.Current()
		return snap.State, snap.Err
	}
	hg := db.NewHookGate(socket, state, s.database.heartbeat)
	ln, err := hg.Listen()
	if err != nil {
		s.log.Warn("hook socket off: each hook run connects to the database", "err", readOnly(err))
		return nil
	}
	g.runner.Pushes = hg
	g.shared.hooks = hg
	// Pushes in their shutdown grace still ask their gate.
	wait := s.grace + s.pushFinish + gitgate.DefaultKillDelay
	return func(ctx context.Context) {
		if err := hg.Serve(ctx, ln, wait); err != nil {
			s.log.Error("hook socket failed; hooks connect to the database", "err", err)
		}
	}
}

// hookGateMetrics counts the hook requests the gate answered.
func hookGateMetrics(hg *pgstore.HookGate) []prometheus.Collector {
	var out []prometheus.Collector
	for i, op := range []string{"state", "register", "release"} {
		out = append(out, prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "gitgate_database_hook_requests_total",
			Help:        "Requests of the hooks of this gate's pushes answered on its hook socket (state: pre-receive; register, release: reference-transaction), without a database connection of their own.",
			ConstLabels: prometheus.Labels{"op": op},
		}, func() float64 {
			st, reg, rel := hg.Served()
			return float64([]uint64{st, reg, rel}[i])
		}))
	}
	return out
}
