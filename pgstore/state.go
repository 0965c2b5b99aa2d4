package pgstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gitgate/gitgate/gitgate"
)

// Load reads the maintenance state. A database that never had one reads as
// "not in maintenance", version 0.
func (db *DB) Load(ctx context.Context) (gitgate.State, error) {
	ctx, cancel := timeout(ctx)
	defer cancel()
	st, err := loadState(ctx, db.pool)
	if err != nil {
		return gitgate.State{}, db.scrub(fmt.Errorf("read maintenance state from %s: %w", db.redacted, err))
	}
	return st, nil
}

type queryer interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}

// stateQuery reads the state's row; [scanState] reads its answer.
const stateQuery = `SELECT enabled, message, since, changed_by, version FROM maintenance_state WHERE id = 1`

func loadState(ctx context.Context, q queryer) (gitgate.State, error) {
	return scanState(q.QueryRow(ctx, stateQuery))
}

// scanState reads the answer of stateQuery: no row is "not in
// maintenance", version 0; a row that does not validate is an error.
func scanState(row pgx.Row) (gitgate.State, error) {
	st, err := scanStateRow(row)
	if err != nil {
		return gitgate.State{}, err
	}
	return st, validState(st)
}

// validState checks a state read from the database.
func validState(st gitgate.State) error {
	if err := st.Validate(); err != nil {
		return fmt.Errorf("maintenance state in the database: %w", err)
	}
	return nil
}

// scanStateRow reads the answer of stateQuery without validating it.
func scanStateRow(row pgx.Row) (gitgate.State, error) {
	var st gitgate.State
	var since *time.Time
	var version int64
	err := row.Scan(&st.Enabled, &st.Message, &since, &st.By, &version)
	if errors.Is(err, pgx.ErrNoRows) {
		return gitgate.State{}, nil
	}
	if err != nil {
		return gitgate.State{}, err
	}
	st.Version = uint64(version)
	if since != nil {
		st.Since = since.UTC()
	}
	return st, nil
}

// update runs fn on the state read under a row lock and writes its result.
// stored is the version column as it is, even when the row does not
// validate (0 without a row).
func (db *DB) update(ctx context.Context, fn func(cur gitgate.State, curErr error, stored uint64) (gitgate.State, bool, error)) (gitgate.State, error) {
	return db.updateOn(ctx, db.pool, fn)
}

// beginner starts a transaction: the pool, or one connection (a [Lease]'s).
type beginner interface {
	Begin(context.Context) (pgx.Tx, error)
}

// updateOn is update in a transaction begun on on.
func (db *DB) updateOn(ctx context.Context, on beginner, fn func(cur gitgate.State, curErr error, stored uint64) (gitgate.State, bool, error)) (gitgate.State, error) {
	ctx, cancel := timeout(ctx)
	defer cancel()
	var next gitgate.State
	err := pgx.BeginFunc(ctx, on, func(tx pgx.Tx) error {
		// The row may not exist yet: lock the table's writers instead.
		if _, err := tx.Exec(ctx, `LOCK TABLE maintenance_state IN SHARE ROW EXCLUSIVE MODE`); err != nil {
			return err
		}
		cur, curErr := loadState(ctx, tx)
		var stored int64
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM maintenance_state`).Scan(&stored); err != nil {
			return err
		}
		var write bool
		var err error
		if next, write, err = fn(cur, curErr, uint64(stored)); err != nil || !write {
			return err
		}
		var since *time.Time
		if !next.Since.IsZero() {
			since = &next.Since
		}
		_, err = tx.Exec(ctx, `INSERT INTO maintenance_state (id, enabled, message, since, changed_by, version)
			VALUES (1, $1, $2, $3, $4, $5)
			ON CONFLICT (id) DO UPDATE SET enabled = $1, message = $2, since = $3, changed_by = $4, version = $5`,
			next.Enabled, next.Message, since, next.By, int64(next.Version))
		return err
	})
	if err != nil {
		if errors.Is(err, gitgate.ErrInvalidMessage) {
			return next, err
		}
		return next, db.scrub(fmt.Errorf("maintenance state in %s: %w", db.redacted, err))
	}
	return next, nil
}

// Apply changes the state atomically and returns the new state.
func (db *DB) Apply(ctx context.Context, c gitgate.Change) (gitgate.State, error) {
	return db.update(ctx, func(cur gitgate.State, err error, _ uint64) (gitgate.State, bool, error) {
		if err != nil {
			return cur, false, err
		}
		next, err := cur.Apply(c, db.now())
		return next, err == nil, err
	})
}

// Reset replaces the state, even one that does not read, with a fresh one
// changed by c, one version above the stored one.
func (db *DB) Reset(ctx context.Context, c gitgate.Change) (gitgate.State, error) {
	return db.update(ctx, func(_ gitgate.State, _ error, stored uint64) (gitgate.State, bool, error) {
		next, err := (gitgate.State{Version: stored}).Apply(c, db.now())
		return next, err == nil, err
	})
}

// Mirror writes st as it is, unless the stored version is not older (and
// force is not set). It reports whether it wrote.
func (db *DB) Mirror(ctx context.Context, st gitgate.State, force bool) (bool, error) {
	if err := st.Validate(); err != nil {
		return false, fmt.Errorf("mirrored state: %w", err)
	}
	wrote := false
	_, err := db.update(ctx, func(cur gitgate.State, err error, _ uint64) (gitgate.State, bool, error) {
		if err == nil && cur.Version >= st.Version && !force {
			return cur, false, nil
		}
		wrote = true
		return st, true, nil
	})
	return wrote && err == nil, err
}

// ErrStale is wrapped by the error a [StateView] reports when the gate has
// not been able to read the database for longer than its bound.
var ErrStale = errors.New("the shared state database cannot be reached")

// StateView is the Store a gate's LiveState loads: the database, with the
// stale bound. While the database cannot be read, Load answers the last
// state read, until that read is older than StaleAfter; then it fails with
// an error wrapping ErrStale, so pushes are refused.
type StateView struct {
	DB         *DB
	StaleAfter time.Duration

	mu     sync.Mutex
	last   gitgate.State
	lastOK time.Time // zero: never read
	now    func() time.Time
}

// NewStateView returns a view of db's state with the given bound.
func NewStateView(db *DB, staleAfter time.Duration) *StateView {
	return &StateView{DB: db, StaleAfter: staleAfter, now: time.Now}
}

// Load reads the state, or answers the last one within the bound.
func (v *StateView) Load(ctx context.Context) (gitgate.State, error) {
	st, err := v.DB.Load(ctx)
	v.mu.Lock()
	defer v.mu.Unlock()
	now := v.now()
	if err == nil {
		v.last, v.lastOK = st, now
		return st, nil
	}
	if !v.lastOK.IsZero() && now.Sub(v.lastOK) < v.StaleAfter {
		return v.last, nil
	}
	if v.lastOK.IsZero() {
		return gitgate.State{}, fmt.Errorf("%w: %w", ErrStale, err)
	}
	return v.last, fmt.Errorf("%w since %s (more than --database-stale-after %s): %w",
		ErrStale, v.lastOK.UTC().Format(time.RFC3339), v.StaleAfter, err)
}

// Apply changes the state in the database.
func (v *StateView) Apply(ctx context.Context, c gitgate.Change) (gitgate.State, error) {
	return v.DB.Apply(ctx, c)
}

// Age is how long ago the database was last read successfully (-1 when
// never), for readiness and metrics.
func (v *StateView) Age() time.Duration {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.lastOK.IsZero() {
		return -1
	}
	return v.now().Sub(v.lastOK)
}

// String names the database (redacted), for logs.
func (v *StateView) String() string { return v.DB.redacted }

// LoadOnce reads the state over one short-lived connection, without a
// pool: the pre-receive hook's path, which runs once per push and must stay
// within a few milliseconds of reading a file. Errors never contain the
// password.
func LoadOnce(ctx context.Context, connString string) (gitgate.State, error) {
	cfg, err := pgx.ParseConfig(connString)
	if err != nil {
		return gitgate.State{}, scrub(fmt.Errorf("database URL %s: %w", Redact(connString), err), "")
	}
	ctx, cancel := timeout(ctx)
	defer cancel()
	if cfg.ConnectTimeout == 0 || cfg.ConnectTimeout > QueryTimeout {
		cfg.ConnectTimeout = QueryTimeout
	}
	// One query on a fresh connection: the simple protocol saves the
	// round trip that preparing it would cost.
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return gitgate.State{}, scrub(fmt.Errorf("database %s: %w", Redact(connString), err), cfg.Password)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	st, err := loadState(ctx, conn)
	if err != nil {
		return gitgate.State{}, scrub(fmt.Errorf("read maintenance state from %s: %w", Redact(connString), err), cfg.Password)
	}
	return st, nil
}
