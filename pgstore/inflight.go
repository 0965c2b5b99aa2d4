package pgstore

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gitgate/gitgate/gitgate"
)

// Inflight registers one gate's pushes in flight in the database, so that
// "maintenance status" and "enable --wait" on any gate see every gate's.
// It is a gitgate.Registry. Rows carry an expiry a few heartbeats ahead and
// are refreshed every heartbeat, so a gate that dies leaves rows that
// expire by themselves.
type Inflight struct {
	db        *DB
	gateID    string
	heartbeat time.Duration

	mu   sync.Mutex
	ops  map[uint64]gitgate.Running
	kick chan struct{}
}

// NewInflight returns the registry of gate gateID, refreshing every
// heartbeat (0: 2 s); rows expire after three heartbeats.
func (db *DB) NewInflight(gateID string, heartbeat time.Duration) *Inflight {
	if heartbeat <= 0 {
		heartbeat = 2 * time.Second
	}
	return &Inflight{db: db, gateID: gateID, heartbeat: heartbeat, ops: map[uint64]gitgate.Running{}, kick: make(chan struct{}, 1)}
}

// Started records an operation that began.
func (r *Inflight) Started(id uint64, op gitgate.Running) {
	r.mu.Lock()
	r.ops[id] = op
	r.mu.Unlock()
	r.poke()
}

// Finished records that an operation ended.
func (r *Inflight) Finished(id uint64) {
	r.mu.Lock()
	delete(r.ops, id)
	r.mu.Unlock()
	r.poke()
}

func (r *Inflight) poke() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Run writes the gate's operations to the database at once on every change
// and every heartbeat, until ctx ends; then it removes the gate's rows.
func (r *Inflight) Run(ctx context.Context) error {
	tick := time.NewTicker(r.heartbeat)
	defer tick.Stop()
	failing := false
	for {
		if err := r.sync(ctx); err != nil && ctx.Err() == nil {
			if !failing {
				r.db.log.Warn("cannot register the operations in flight in the database; other gates' --wait cannot see them", "err", err)
			}
			failing = true
		} else {
			failing = false
		}
		select {
		case <-ctx.Done():
			cctx, cancel := timeout(context.WithoutCancel(ctx))
			defer cancel()
			_, _ = r.db.pool.Exec(cctx, `DELETE FROM operations_in_flight WHERE gate_id = $1`, r.gateID)
			return nil
		case <-r.kick:
		case <-tick.C:
		}
	}
}

// sync replaces the gate's rows with its operations, with a fresh expiry.
func (r *Inflight) sync(ctx context.Context) error {
	r.mu.Lock()
	ids := make([]int64, 0, len(r.ops))
	ops := make([]gitgate.Running, 0, len(r.ops))
	for id, op := range r.ops {
		ids = append(ids, int64(id))
		ops = append(ops, op)
	}
	r.mu.Unlock()
	ctx, cancel := timeout(ctx)
	defer cancel()
	ttl := 3 * r.heartbeat
	err := pgx.BeginFunc(ctx, r.db.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM operations_in_flight WHERE (gate_id = $1 AND NOT (op_id = ANY($2))) OR expires_at < now() - interval '1 hour'`,
			r.gateID, ids); err != nil {
			return err
		}
		b := &pgx.Batch{}
		for i, op := range ops {
			b.Queue(`INSERT INTO operations_in_flight (gate_id, op_id, service, repo, username, transport, started, expires_at)
				VALUES ($1, $2, $3, $4, $5, $6, $7, now() + $8::interval)
				ON CONFLICT (gate_id, op_id) DO UPDATE SET expires_at = EXCLUDED.expires_at`,
				r.gateID, ids[i], string(op.Service), op.Repo, op.User.String(), string(op.Transport), op.Started, ttl)
		}
		return tx.SendBatch(ctx, b).Close()
	})
	return r.db.scrub(err)
}

// Remote is an operation in flight on some gate of the site.
type Remote struct {
	Gate      string    `json:"gate"`
	Service   string    `json:"service"`
	Repo      string    `json:"repo"`
	User      string    `json:"user"`
	Transport string    `json:"transport"`
	Started   time.Time `json:"started"`
}

// InFlight returns the unexpired operations of every gate, oldest first.
func (db *DB) InFlight(ctx context.Context) ([]Remote, error) {
	ctx, cancel := timeout(ctx)
	defer cancel()
	rows, err := db.pool.Query(ctx, `SELECT gate_id, service, repo, username, transport, started
		FROM operations_in_flight WHERE expires_at > now() ORDER BY started, gate_id, op_id`)
	if err != nil {
		return nil, db.scrub(fmt.Errorf("operations in flight: %w", err))
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Remote, error) {
		var x Remote
		err := r.Scan(&x.Gate, &x.Service, &x.Repo, &x.User, &x.Transport, &x.Started)
		return x, err
	})
	return out, db.scrub(err)
}
