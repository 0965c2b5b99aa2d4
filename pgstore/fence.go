package pgstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gitgate/gitgate/gitgate"
)

// The ref fence across gates. In file mode (package gitgate's fence.go)
// the reference-transaction hook registers a marker in the data dir and
// enable waits for the markers; gates that share a database but not a data
// dir cannot see each other's markers. So with a database the registry is
// table ref_transactions, and the order is made by PostgreSQL's locks:
//
//  1. In "prepared", the hook runs ONE transaction ([RegisterTxn]): it
//     takes maintenance_state in ROW EXCLUSIVE mode (hooks do not block
//     each other; a state change, which takes SHARE ROW EXCLUSIVE, waits
//     for every hook transaction that holds it, and hooks that ask after
//     the change wait for it to commit), reads the state and inserts its
//     row. It commits; then, when maintenance is off, git writes the refs,
//     else the hook refuses them.
//  2. In "committed" or "aborted", the hook deletes its newest row
//     ([ReleaseTxn]).
//  3. Enable commits the state, then waits until the unexpired rows
//     present at that moment are gone ([DB.WaitTxns]).
//
// A hook either committed its row before the state change committed (then
// enable sees the row and waits for it), or read the state after it (then
// it sees maintenance mode and aborts the update).

// DefaultTxnTTL is how long a ref transaction's row counts when its hook
// never removes it (the hook or git died): enable stops waiting for it
// after this, or at once when its git process is gone and it ran on the
// host that waits.
const DefaultTxnTTL = 5 * time.Minute

// TxnOwner names the git process that runs a ref transaction.
type TxnOwner struct {
	// Host is the host name where git runs.
	Host string
	// PID is the git process.
	PID int
	// Repo is the repository, for reports.
	Repo string
}

// connectOnce opens one connection for the hook, bounded by QueryTimeout,
// with the simple protocol (no prepare round trips).
func connectOnce(ctx context.Context, connString string) (*pgx.Conn, string, error) {
	cfg, err := pgx.ParseConfig(connString)
	if err != nil {
		return nil, "", scrub(fmt.Errorf("database URL %s: %w", Redact(connString), err), "")
	}
	if cfg.ConnectTimeout == 0 || cfg.ConnectTimeout > QueryTimeout {
		cfg.ConnectTimeout = QueryTimeout
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, "", scrub(fmt.Errorf("database %s: %w", Redact(connString), err), cfg.Password)
	}
	return conn, cfg.Password, nil
}

// RegisterTxn reads the maintenance state and registers the ref
// transaction of owner, in one database transaction that a state change
// waits for (see above), and returns the state read: the caller refuses
// the update when it is enabled (git then runs the hook with "aborted",
// which releases the record). Errors never contain the password.
func RegisterTxn(ctx context.Context, connString string, owner TxnOwner, ttl time.Duration) (gitgate.State, error) {
	if owner.PID <= 0 || owner.Host == "" {
		return gitgate.State{}, fmt.Errorf("register ref transaction: bad owner %q/%d", owner.Host, owner.PID)
	}
	if ttl <= 0 {
		ttl = DefaultTxnTTL
	}
	ctx, cancel := timeout(ctx)
	defer cancel()
	conn, secret, err := connectOnce(ctx, connString)
	if err != nil {
		return gitgate.State{}, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	st, _, err := registerTxn(ctx, conn, owner, ttl)
	if err != nil {
		return gitgate.State{}, scrub(fmt.Errorf("register ref transaction in %s: %w", Redact(connString), err), secret)
	}
	return st, nil
}

// batcher sends a batch: a *pgx.Conn or a *pgxpool.Pool.
type batcher interface {
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// registerTxn is the registration in one round trip: BEGIN, the lock that
// orders it with every state change, the read, the row, COMMIT, sent
// together. A failed statement aborts the rest and the transaction (a
// pool's connection in a failed transaction is closed, not reused). It
// returns the state read and the row's id (also with the error of a state
// that does not validate: the row is there).
func registerTxn(ctx context.Context, q batcher, owner TxnOwner, ttl time.Duration) (gitgate.State, int64, error) {
	b := &pgx.Batch{}
	b.Queue(`BEGIN`)
	b.Queue(`LOCK TABLE maintenance_state IN ROW EXCLUSIVE MODE`)
	b.Queue(stateQuery)
	// Registered even when refused: git runs the hook with "aborted"
	// next, which releases one record of its process.
	b.Queue(`INSERT INTO ref_transactions (host, pid, repo, expires_at)
		VALUES ($1, $2, $3, now() + $4::interval) RETURNING id`, owner.Host, owner.PID, owner.Repo, ttl)
	b.Queue(`COMMIT`)
	br := q.SendBatch(ctx, b)
	var st gitgate.State
	var id int64
	err := func() error {
		for range 2 {
			if _, err := br.Exec(); err != nil {
				return err
			}
		}
		var err error
		if st, err = scanStateRow(br.QueryRow()); err != nil {
			return err
		}
		if err := br.QueryRow().Scan(&id); err != nil {
			return err
		}
		_, err = br.Exec()
		return err
	}()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return gitgate.State{}, 0, err
	}
	// A state that does not validate is an error, but the row is
	// registered (and released by "aborted").
	if err := validState(st); err != nil {
		return gitgate.State{}, id, err
	}
	return st, id, nil
}

// ReleaseTxn removes the newest row of owner's git process: its
// transaction was committed or aborted (git nests transactions, so rows
// are counted, never removed wholesale). No row is not an error.
func ReleaseTxn(ctx context.Context, connString string, owner TxnOwner) error {
	ctx, cancel := timeout(ctx)
	defer cancel()
	conn, secret, err := connectOnce(ctx, connString)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, `DELETE FROM ref_transactions WHERE id =
		(SELECT max(id) FROM ref_transactions WHERE host = $1 AND pid = $2)`, owner.Host, owner.PID)
	if err != nil {
		return scrub(fmt.Errorf("release ref transaction in %s: %w", Redact(connString), err), secret)
	}
	return nil
}

// pendingTxn is one row enable waits for.
type pendingTxn struct {
	id      int64
	owner   TxnOwner
	started time.Time
}

// WaitTxns waits until every unexpired ref transaction registered at the
// time of the call has been released, on any gate of the site. Rows of
// this host whose git process is gone are removed as stale. It gives up
// after timeout (zero: gitgate.DefaultFenceTimeout) with a
// *gitgate.FenceTimeoutError, or when ctx ends. It makes DB a
// gitgate.TxnWaiter.
func (db *DB) WaitTxns(ctx context.Context, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = gitgate.DefaultFenceTimeout
	}
	host, _ := os.Hostname()
	pending, err := db.pendingTxns(ctx, nil)
	if err != nil || len(pending) == 0 {
		return err
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	delay := time.Millisecond
	for {
		var stale []int64
		left := pending[:0]
		for _, p := range pending {
			if host != "" && p.owner.Host == host && !gitgate.ProcessAlive(p.owner.PID) {
				stale = append(stale, p.id)
				continue
			}
			left = append(left, p)
		}
		pending = left
		if len(stale) > 0 {
			if err := db.dropTxns(ctx, stale); err != nil {
				return err
			}
		}
		if len(pending) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for ref updates in flight: %w", context.Cause(ctx))
		case <-deadline.C:
			out := make([]gitgate.TxnMarker, 0, len(pending))
			for _, p := range pending {
				out = append(out, gitgate.TxnMarker{
					Name: p.owner.Host + "/" + strconv.Itoa(p.owner.PID),
					PID:  p.owner.PID,
					Info: fmt.Sprintf("%s on host %s, since %s", p.owner.Repo, p.owner.Host, p.started.UTC().Format(time.RFC3339Nano)),
				})
			}
			sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
			return &gitgate.FenceTimeoutError{Timeout: timeout, Pending: out}
		case <-time.After(delay):
		}
		delay = min(2*delay, 50*time.Millisecond)
		ids := make([]int64, len(pending))
		for i, p := range pending {
			ids[i] = p.id
		}
		if pending, err = db.pendingTxns(ctx, ids); err != nil {
			return err
		}
		if len(pending) == 0 {
			return nil
		}
	}
}

// pendingTxns returns the unexpired rows, all of them when ids is nil,
// else those among ids.
func (db *DB) pendingTxns(ctx context.Context, ids []int64) ([]pendingTxn, error) {
	ctx, cancel := timeout(ctx)
	defer cancel()
	q := `SELECT id, host, pid, repo, started FROM ref_transactions WHERE expires_at > now() ORDER BY id`
	args := []any{}
	if ids != nil {
		q = `SELECT id, host, pid, repo, started FROM ref_transactions WHERE expires_at > now() AND id = ANY($1) ORDER BY id`
		args = append(args, ids)
	}
	rows, err := db.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, db.scrub(fmt.Errorf("ref transactions in flight: %w", err))
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (pendingTxn, error) {
		var p pendingTxn
		err := r.Scan(&p.id, &p.owner.Host, &p.owner.PID, &p.owner.Repo, &p.started)
		return p, err
	})
	if err != nil {
		return nil, db.scrub(fmt.Errorf("ref transactions in flight: %w", err))
	}
	return out, nil
}

// dropTxns removes stale rows, and every row expired for an hour.
func (db *DB) dropTxns(ctx context.Context, ids []int64) error {
	ctx, cancel := timeout(ctx)
	defer cancel()
	_, err := db.pool.Exec(ctx, `DELETE FROM ref_transactions WHERE id = ANY($1) OR expires_at < now() - interval '1 hour'`, ids)
	if err != nil && !errors.Is(err, context.Canceled) {
		return db.scrub(fmt.Errorf("remove stale ref transactions: %w", err))
	}
	return nil
}

var _ gitgate.TxnWaiter = (*DB)(nil)
