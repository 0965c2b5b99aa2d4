package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gitgate/gitgate/access"
	"github.com/gitgate/gitgate/gitgate"
)

// A Geo secondary site on a database (schema 5). Design:
//
//   - One gate of the site leads: the one holding the follower's
//     [Elector] lock. It follows the primary and replicates; the others
//     serve reads and hand pushes to the primary, and learn the mirrored
//     state and access data through the database like any change (NOTIFY,
//     then a re-read).
//   - Fenced writes: everything the leader writes to the database (the
//     mirrored state, the replicated access document, its status row) goes
//     through its [Lease], that is, over the very connection that holds
//     the advisory lock. A session advisory lock lives exactly as long as
//     its session: when the connection is lost the lock is gone and so is
//     every further write, so a gate that lost the lead (a database
//     restart, a cut connection, a pause) can never overwrite what the
//     next leader wrote, even in the moment before it notices. Repository
//     fetches are not in the database: the old leader stops them within
//     one Retry (git's ref locks order two fetches into one repository).
//   - Status: the leader records its follower's status in the
//     geo_secondary row every heartbeat ([Lease.RecordSecondaryStatus]);
//     every gate reads it ([DB.SecondaryStatus]) with the row's age by the
//     database's clock, so a leader that stopped reporting (died, lost the
//     database) reads as not connected on every gate.

// ErrLeaseLost is returned by the writes of a [Lease] whose lock is no
// longer held: the gate's turn has ended.
var ErrLeaseLost = errors.New("this gate no longer holds the Geo election's lock")

// LeaseApplicationName is the application_name of the connection that
// holds the lock of job for gate.
func LeaseApplicationName(job, gate string) string { return "gitgate-" + job + ":" + gate }

// Lease is one turn of an elected gate: the connection that holds the
// job's advisory lock, on which the writes that only the elected gate may
// make run, so that they fail once the lock is gone.
type Lease struct {
	db     *DB
	mu     sync.Mutex // one statement at a time on conn
	conn   *pgx.Conn
	closed bool
}

// do runs fn on the lock's connection.
func (l *Lease) do(ctx context.Context, fn func(*pgx.Conn) error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || l.conn.IsClosed() {
		return ErrLeaseLost
	}
	if err := fn(l.conn); err != nil {
		if l.conn.IsClosed() {
			return fmt.Errorf("%w: %w", ErrLeaseLost, err)
		}
		return err
	}
	return nil
}

// ping checks the lock's connection.
func (l *Lease) ping(ctx context.Context) error {
	return l.do(ctx, func(c *pgx.Conn) error {
		pctx, cancel := timeout(ctx)
		defer cancel()
		return c.Ping(pctx)
	})
}

// close ends the turn: closing the connection releases the lock.
func (l *Lease) close(ctx context.Context) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	l.conn.Close(cctx)
}

// Mirror is [DB.Mirror] made by the lease holder only: it writes st unless
// the stored version is not older (and force is not set), and reports
// whether it wrote.
func (l *Lease) Mirror(ctx context.Context, st gitgate.State, force bool) (bool, error) {
	if err := st.Validate(); err != nil {
		return false, fmt.Errorf("mirrored state: %w", err)
	}
	wrote := false
	err := l.do(ctx, func(c *pgx.Conn) error {
		_, err := l.db.updateOn(ctx, c, func(cur gitgate.State, err error, _ uint64) (gitgate.State, bool, error) {
			if err == nil && cur.Version >= st.Version && !force {
				return cur, false, nil
			}
			wrote = true
			return st, true, nil
		})
		return err
	})
	return wrote && err == nil, err
}

// AccessDocument is the site's access document, written by the lease
// holder only (reads go through the pool).
func (l *Lease) AccessDocument() access.Document { return leasedDoc{accessDoc{l.db}, l} }

// leasedDoc is the access document whose updates run on a lease.
type leasedDoc struct {
	accessDoc
	lease *Lease
}

// Update replaces the document, on the lease's connection.
func (d leasedDoc) Update(ctx context.Context, fn func(old []byte) ([]byte, error)) error {
	return d.lease.do(ctx, func(c *pgx.Conn) error { return d.accessDoc.updateOn(ctx, c, fn) })
}

// SecondaryStatus is how the elected gate of a secondary site follows the
// primary, as recorded in the database.
type SecondaryStatus struct {
	// Node is the site's node name; Primary the primary's URL.
	Node, Primary string
	// Gate is the elected gate that wrote the row.
	Gate string
	// Connected is true while its status poll of the primary succeeds.
	Connected bool
	// LastContact is when the primary last answered (zero: never).
	LastContact time.Time
	// Version is the primary's state version last mirrored.
	Version   uint64
	LastError string
	// Replication is the replication report (package geo's, as JSON).
	Replication json.RawMessage
	// Age is how long ago the row was written, and ContactAge how long
	// ago LastContact was (-1 when never), by the database's clock; both
	// set on read.
	Age, ContactAge time.Duration
}

// RecordSecondaryStatus writes the site's follower status; only the lease
// holder can.
func (l *Lease) RecordSecondaryStatus(ctx context.Context, s SecondaryStatus) error {
	var repl, last any
	if s.Replication != nil {
		repl = string(s.Replication)
	}
	if !s.LastContact.IsZero() {
		last = s.LastContact
	}
	return l.do(ctx, func(c *pgx.Conn) error {
		qctx, cancel := timeout(ctx)
		defer cancel()
		_, err := c.Exec(qctx, `INSERT INTO geo_secondary (id, node, primary_url, gate, connected, last_contact, version, last_error, replication, updated)
			VALUES (1, $1, $2, $3, $4, $5, $6, $7, $8::jsonb, now())
			ON CONFLICT (id) DO UPDATE SET node = $1, primary_url = $2, gate = $3, connected = $4, last_contact = $5,
				version = $6, last_error = $7, replication = $8::jsonb, updated = now()`,
			s.Node, s.Primary, s.Gate, s.Connected, last, int64(s.Version), s.LastError, repl)
		if err != nil {
			return l.db.scrub(fmt.Errorf("record the Geo secondary's status: %w", err))
		}
		return nil
	})
}

// SecondaryStatus reads the site's follower status; ok is false when no
// gate has recorded one.
func (db *DB) SecondaryStatus(ctx context.Context) (s SecondaryStatus, ok bool, err error) {
	ctx, cancel := timeout(ctx)
	defer cancel()
	var last *time.Time
	var version int64
	var repl []byte
	var age float64
	var contactAge *float64
	err = db.pool.QueryRow(ctx, `SELECT node, primary_url, gate, connected, last_contact, version, last_error, replication,
			extract(epoch FROM now() - updated)::float8, extract(epoch FROM now() - last_contact)::float8
		FROM geo_secondary WHERE id = 1`).Scan(&s.Node, &s.Primary, &s.Gate, &s.Connected, &last, &version,
		&s.LastError, &repl, &age, &contactAge)
	if errors.Is(err, pgx.ErrNoRows) {
		return SecondaryStatus{}, false, nil
	}
	if err != nil {
		return SecondaryStatus{}, false, db.scrub(fmt.Errorf("read the Geo secondary's status: %w", err))
	}
	if last != nil {
		s.LastContact = last.UTC()
	}
	s.Version = uint64(version)
	if repl != nil {
		s.Replication = json.RawMessage(repl)
	}
	s.Age = max(time.Duration(age*float64(time.Second)), 0)
	s.ContactAge = -1
	if contactAge != nil {
		s.ContactAge = max(time.Duration(*contactAge*float64(time.Second)), 0)
	}
	return s, true, nil
}
