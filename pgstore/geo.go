package pgstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Geo on a database site (schema 4). Design:
//
//   - Registry: a primary site's secondaries are rows of geo_nodes, shared
//     by every gate of the site, so "geo status" on any gate lists every
//     secondary and the last status any gate heard from it (a secondary's
//     polls go to whichever gate the load balancer picks). Secrets stay
//     in files, one per node, on every gate (as geo.yaml names them); the
//     database holds only their fingerprint ([SecretFingerprint]), so a
//     copy of the database gives no one a token, and a gate whose file
//     differs from the site's is told at start ([ErrGeoSecretMismatch]).
//   - Status: each gate records a contact with [DB.RecordGeoContact]; the
//     newest contact wins (last_contact never goes back), whichever gate
//     writes last. Every heartbeat each gate reads the registry back
//     ([DB.GeoNodes]), so its "geo status", nodes API, metrics and a
//     failover's checks show the newest contact any gate heard, and which
//     gate heard it.
//   - Pruning (schema 6): a secondary dropped from geo.yaml must leave the
//     registry, but the gates of a site take a new geo.yaml one after the
//     other, so a gate with the new file must not delete the row of a node
//     a gate with the old file still serves. Every primary gate marks the
//     nodes of its geo.yaml as listed every heartbeat ([DB.ListGeoNodes]:
//     listed_at = now()); every gate removes the rows of the nodes that are
//     not in its own geo.yaml and that no gate has listed within a bound
//     ([DB.PruneGeoNodes], [DefaultGeoUnlistedAfter], a minute: many
//     heartbeats, so a slow or restarting gate still counts). The
//     database's clock decides, so the gates' clocks need not agree. A row
//     is thus removed only once every gate that listed it has stopped
//     listing it for a minute: no gate that still serves the node loses
//     it. "gitgate db geo-nodes --remove NODE" removes one at once under
//     the same rule ([DB.RemoveGeoNode]), or with --force regardless (a
//     gate that still lists it registers it again at its next start).
//     Chosen over deleting at a gate's start (which cannot know whether
//     another gate still serves the node) and over explicit removal only
//     (which leaves rows forever when nobody remembers).
//   - One follower per secondary site: the gates of a secondary site
//     share a database, and only one of them may follow the primary and
//     replicate (two would fetch everything twice and race on the
//     repositories). [Elector] elects it with a PostgreSQL session
//     advisory lock on a dedicated connection: the holder works; the
//     others retry; a holder whose connection is lost (its gate died, or
//     the database restarted) loses the lock with it. A gate that died
//     does no more work; a live holder checks its connection every Retry
//     and cancels its work when it fails, so after a database restart two
//     gates may overlap for about one Retry: the work must stand that
//     (fetches into a repository do: git's ref locks order them), and its
//     database writes go through its [Lease], which fails at once when the
//     lock is gone (geo_secondary.go). The other gates learn the mirrored
//     state through the database like any state change.
//   - Role and failover term: for a database site the role record lives in
//     geo_role ([DB.LoadGeoRole], [DB.SaveGeoRole]; [RoleStore] is package
//     geo's RoleStore over it), one row whose epoch never goes down (a
//     write with a lower epoch is refused), so every gate of the site, and
//     every restart, sees the same role. Every write fires NOTIFY on
//     [ChannelGeoRole] (schema 6); each gate's [Watcher] wakes its Guard,
//     which re-reads the row (never the payload) and takes a record whose
//     epoch is not lower than its own: a term a secondary presents to one
//     gate demotes every gate of the site at once.
//
// Wired into "gitgate serve": the registry on a primary site
// (cmd/gitgate/serve_db_geo.go: fingerprints registered at start, a
// mismatch refused; contacts recorded and read back every heartbeat;
// listing and pruning; announcements of a failover's new primary), the
// role record read at start and on every change by every primary gate (a
// planned failover's promotion order and demotion go through it, so every
// gate of the site takes part), and a secondary site of several gates
// (cmd/gitgate/serve_db_secondary.go, and geo_secondary.go here: the
// election around the follower and the replicator, whose writes go
// through the elected gate's [Lease]).

// ErrGeoSecretMismatch is returned when a gate's secret file for a node
// is not the one the site registered.
var ErrGeoSecretMismatch = errors.New("the secret file differs from the one the site registered for this node")

// ErrGeoEpochBehind is returned by [DB.SaveGeoRole] for a record older
// than the stored one.
var ErrGeoEpochBehind = errors.New("the stored Geo role has a higher failover epoch")

// SecretFingerprint is what the registry keeps of a node's secret: a
// domain-separated SHA-256, which reveals nothing of a secret of at least
// 32 random bytes (as geo requires) and cannot sign a token.
func SecretFingerprint(secret []byte) string {
	h := sha256.New()
	h.Write([]byte("gitgate geo secret fingerprint v1\x00"))
	h.Write(secret)
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// GeoNode is a secondary in the registry, with the last status a gate of
// the site heard from it.
type GeoNode struct {
	Name string `json:"name"`
	// Fingerprint is the registered secret's [SecretFingerprint].
	Fingerprint string    `json:"secret_fingerprint"`
	Added       time.Time `json:"added"`
	// LastContact is zero before any contact.
	LastContact time.Time `json:"last_contact,omitzero"`
	// Gate is the gate that recorded the last contact.
	Gate        string `json:"gate,omitempty"`
	VersionSeen uint64 `json:"version_seen"`
	// Replication is the node's last replication report, as it sent it.
	Replication json.RawMessage `json:"replication,omitempty"`
	// Listed is when a gate of the site last listed the node in its
	// geo.yaml (see PruneGeoNodes).
	Listed time.Time `json:"listed"`
	// AnnouncedEpoch is the highest failover epoch a gate of the site
	// announced to the node (see RecordGeoAnnounced).
	AnnouncedEpoch uint64 `json:"announced_epoch"`
}

// RecordGeoAnnounced records that a gate of the site told node of the new
// primary of epoch (a planned failover's step 4, on whichever gate the
// node polls). The recorded epoch never goes down.
func (db *DB) RecordGeoAnnounced(ctx context.Context, node string, epoch uint64) error {
	ctx, cancel := timeout(ctx)
	defer cancel()
	if _, err := db.pool.Exec(ctx, `UPDATE geo_nodes SET announced_epoch = greatest(announced_epoch, $2) WHERE name = $1`,
		node, int64(epoch)); err != nil {
		return db.scrub(fmt.Errorf("record the Geo announcement to %s: %w", node, err))
	}
	return nil
}

// RegisterGeoNode adds node name with the fingerprint of the gate's secret,
// or checks it against the registered one (ErrGeoSecretMismatch); with
// replace it overwrites it (a rotated secret).
func (db *DB) RegisterGeoNode(ctx context.Context, name, fingerprint string, replace bool) error {
	ctx, cancel := timeout(ctx)
	defer cancel()
	var stored string
	err := db.pool.QueryRow(ctx, `INSERT INTO geo_nodes (name, secret_fingerprint) VALUES ($1, $2)
		ON CONFLICT (name) DO UPDATE SET secret_fingerprint = CASE WHEN $3 THEN EXCLUDED.secret_fingerprint ELSE geo_nodes.secret_fingerprint END,
			listed_at = now()
		RETURNING secret_fingerprint`, name, fingerprint, replace).Scan(&stored)
	if err != nil {
		return db.scrub(fmt.Errorf("register Geo node %s: %w", name, err))
	}
	if stored != fingerprint {
		return fmt.Errorf("Geo node %s: %w", name, ErrGeoSecretMismatch)
	}
	return nil
}

// ErrGeoNodeListed refuses to remove a registry row that a gate of the
// site listed in its geo.yaml within the bound.
var ErrGeoNodeListed = errors.New("a gate of the site still lists this node in its geo.yaml")

// DefaultGeoUnlistedAfter is how long no gate of the site may have listed
// a node in its geo.yaml before its registry row is removed: many
// heartbeats, so that a gate that is slow or restarting still counts.
const DefaultGeoUnlistedAfter = time.Minute

// RemoveGeoNode removes node name from the registry; false when it was not
// there. Unless force, a row that a gate listed within unlistedFor is
// kept (ErrGeoNodeListed): that gate still serves the node.
func (db *DB) RemoveGeoNode(ctx context.Context, name string, unlistedFor time.Duration, force bool) (bool, error) {
	ctx, cancel := timeout(ctx)
	defer cancel()
	tag, err := db.pool.Exec(ctx, `DELETE FROM geo_nodes WHERE name = $1 AND ($2 OR listed_at < now() - make_interval(secs => $3))`,
		name, force, unlistedFor.Seconds())
	if err != nil {
		return false, db.scrub(fmt.Errorf("remove Geo node %s: %w", name, err))
	}
	if tag.RowsAffected() == 1 {
		return true, nil
	}
	var listed time.Time
	err = db.pool.QueryRow(ctx, `SELECT listed_at FROM geo_nodes WHERE name = $1`, name).Scan(&listed)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, db.scrub(fmt.Errorf("remove Geo node %s: %w", name, err))
	}
	return false, fmt.Errorf("Geo node %s (listed at %s): %w", name, listed.UTC().Format(time.RFC3339), ErrGeoNodeListed)
}

// ListGeoNodes records that this gate lists names in its geo.yaml now
// (every heartbeat), so that no other gate prunes their rows.
func (db *DB) ListGeoNodes(ctx context.Context, names []string) error {
	ctx, cancel := timeout(ctx)
	defer cancel()
	if _, err := db.pool.Exec(ctx, `UPDATE geo_nodes SET listed_at = now() WHERE name = ANY($1)`, names); err != nil {
		return db.scrub(fmt.Errorf("list Geo nodes: %w", err))
	}
	return nil
}

// PruneGeoNodes removes the registry rows of the nodes not in keep (this
// gate's geo.yaml) that no gate of the site has listed within unlistedFor,
// and returns their names. The database's clock decides, so the gates'
// clocks need not agree.
func (db *DB) PruneGeoNodes(ctx context.Context, keep []string, unlistedFor time.Duration) ([]string, error) {
	ctx, cancel := timeout(ctx)
	defer cancel()
	if keep == nil {
		keep = []string{}
	}
	rows, err := db.pool.Query(ctx, `DELETE FROM geo_nodes WHERE NOT (name = ANY($1))
		AND listed_at < now() - make_interval(secs => $2) RETURNING name`, keep, unlistedFor.Seconds())
	if err != nil {
		return nil, db.scrub(fmt.Errorf("prune Geo nodes: %w", err))
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, db.scrub(fmt.Errorf("prune Geo nodes: %w", err))
	}
	slices.Sort(names)
	return names, nil
}

// RecordGeoContact records that gate heard from node at at, with the state
// version it said it had and its replication report (nil: keep the last
// one). An older contact than the recorded one changes nothing, so the
// registry never steps back whichever gate writes last. An unregistered
// node is an error.
func (db *DB) RecordGeoContact(ctx context.Context, node, gate string, at time.Time, versionSeen uint64, replication json.RawMessage) error {
	ctx, cancel := timeout(ctx)
	defer cancel()
	var repl any
	if replication != nil {
		repl = string(replication)
	}
	tag, err := db.pool.Exec(ctx, `UPDATE geo_nodes SET last_contact = $3, contact_gate = $2, version_seen = $4,
			replication = coalesce($5::jsonb, replication)
		WHERE name = $1 AND (last_contact IS NULL OR last_contact <= $3)`, node, gate, at, int64(versionSeen), repl)
	if err != nil {
		return db.scrub(fmt.Errorf("record Geo contact of %s: %w", node, err))
	}
	if tag.RowsAffected() == 0 {
		var n int
		if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM geo_nodes WHERE name = $1`, node).Scan(&n); err != nil {
			return db.scrub(fmt.Errorf("record Geo contact of %s: %w", node, err))
		}
		if n == 0 {
			return fmt.Errorf("record Geo contact: node %s is not registered", node)
		}
	}
	return nil
}

// GeoNodes lists the registry, by name.
func (db *DB) GeoNodes(ctx context.Context) ([]GeoNode, error) {
	ctx, cancel := timeout(ctx)
	defer cancel()
	rows, err := db.pool.Query(ctx, `SELECT name, secret_fingerprint, added_at, last_contact, contact_gate, version_seen, replication, listed_at, announced_epoch
		FROM geo_nodes ORDER BY name`)
	if err != nil {
		return nil, db.scrub(fmt.Errorf("Geo nodes: %w", err))
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (GeoNode, error) {
		var n GeoNode
		var last *time.Time
		var version, announced int64
		var repl []byte
		if err := r.Scan(&n.Name, &n.Fingerprint, &n.Added, &last, &n.Gate, &version, &repl, &n.Listed, &announced); err != nil {
			return n, err
		}
		n.AnnouncedEpoch = uint64(announced)
		n.Added, n.Listed = n.Added.UTC(), n.Listed.UTC()
		if last != nil {
			n.LastContact = last.UTC()
		}
		n.VersionSeen = uint64(version)
		if repl != nil {
			n.Replication = json.RawMessage(repl)
		}
		return n, nil
	})
	if err != nil {
		return nil, db.scrub(fmt.Errorf("Geo nodes: %w", err))
	}
	return out, nil
}

// GeoRole is a database site's persisted role record: the record itself
// (package geo's RoleRecord, as JSON, which this package does not
// interpret) and its failover epoch, which orders the writes.
type GeoRole struct {
	Epoch  uint64
	Record json.RawMessage
}

// LoadGeoRole reads the site's role record; ok is false when it has none.
func (db *DB) LoadGeoRole(ctx context.Context) (role GeoRole, ok bool, err error) {
	ctx, cancel := timeout(ctx)
	defer cancel()
	var epoch int64
	var rec []byte
	err = db.pool.QueryRow(ctx, `SELECT epoch, record FROM geo_role WHERE id = 1`).Scan(&epoch, &rec)
	if errors.Is(err, pgx.ErrNoRows) {
		return GeoRole{}, false, nil
	}
	if err != nil {
		return GeoRole{}, false, db.scrub(fmt.Errorf("read the Geo role: %w", err))
	}
	return GeoRole{Epoch: uint64(epoch), Record: rec}, true, nil
}

// SaveGeoRole writes the site's role record, unless the stored one has a
// higher epoch (ErrGeoEpochBehind): a demotion or a promotion, once
// written, is never undone by a gate that saw less. A record of the same
// epoch replaces the stored one (a step of one failover).
func (db *DB) SaveGeoRole(ctx context.Context, role GeoRole) error {
	if !json.Valid(role.Record) {
		return errors.New("save the Geo role: the record is not JSON")
	}
	ctx, cancel := timeout(ctx)
	defer cancel()
	tag, err := db.pool.Exec(ctx, `INSERT INTO geo_role (id, record, epoch, updated) VALUES (1, $1::jsonb, $2, now())
		ON CONFLICT (id) DO UPDATE SET record = EXCLUDED.record, epoch = EXCLUDED.epoch, updated = now()
		WHERE geo_role.epoch <= EXCLUDED.epoch`, string(role.Record), int64(role.Epoch))
	if err != nil {
		return db.scrub(fmt.Errorf("save the Geo role: %w", err))
	}
	if tag.RowsAffected() == 0 {
		return ErrGeoEpochBehind
	}
	return nil
}

// geoLockSpace is the first key of the Geo advisory locks (the second is
// the job's name's hash), apart from db migrate's single-key lock.
const geoLockSpace = 0x67656f // "geo"

// Elector runs a job on one gate of a site at a time: the gate that holds
// the job's PostgreSQL advisory lock, on a dedicated connection.
type Elector struct {
	DB *DB
	// Job names what is elected ("follower", say).
	Job string
	// Retry is how often a gate that does not hold the lock tries again,
	// and how often the holder checks its connection (0: 1 s).
	Retry time.Duration
	// Leading, if set, is called with true when this gate takes the lock
	// and false when it loses it.
	Leading func(bool)
	// Gate, if set, names this gate in the lock connection's
	// application_name ([LeaseApplicationName]), so that the holder can be
	// told from the database (pg_stat_activity).
	Gate string
}

// lockKey is the advisory lock's second key for the job.
func (e *Elector) lockKey() int32 {
	h := fnv.New32a()
	h.Write([]byte(e.Job))
	return int32(h.Sum32())
}

// Run takes part in the election until ctx ends: whenever this gate holds
// the lock it runs work, with a context that ends when ctx ends or the
// lock's connection is lost (the lock goes with it, and another gate may
// take over: work must stop when its context ends). work returning ends
// this gate's turn: the lock is released and taken part for again after
// Retry.
func (e *Elector) Run(ctx context.Context, work func(context.Context)) {
	e.RunLeased(ctx, func(ctx context.Context, _ *Lease) { work(ctx) })
}

// RunLeased is Run, giving work the [Lease] of its turn: the database
// writes work makes through it succeed only while this gate holds the lock.
func (e *Elector) RunLeased(ctx context.Context, work func(context.Context, *Lease)) {
	retry := e.Retry
	if retry <= 0 {
		retry = time.Second
	}
	for ctx.Err() == nil {
		if conn, ok := e.tryLock(ctx); ok {
			e.lead(ctx, conn, retry, work)
		}
		select {
		case <-ctx.Done():
		case <-time.After(retry):
		}
	}
}

// tryLock opens a connection and tries the lock, without waiting.
func (e *Elector) tryLock(ctx context.Context) (*pgx.Conn, bool) {
	cctx, cancel := timeout(ctx)
	defer cancel()
	cfg := e.DB.connConf.Copy()
	if e.Gate != "" {
		cfg.RuntimeParams["application_name"] = LeaseApplicationName(e.Job, e.Gate)
	}
	conn, err := pgx.ConnectConfig(cctx, cfg)
	if err != nil {
		return nil, false
	}
	var got bool
	if err := conn.QueryRow(cctx, `SELECT pg_try_advisory_lock($1, $2)`, int32(geoLockSpace), e.lockKey()).Scan(&got); err != nil || !got {
		conn.Close(context.WithoutCancel(cctx))
		return nil, false
	}
	return conn, true
}

// lead runs work while conn, which holds the lock, stays up.
func (e *Elector) lead(ctx context.Context, conn *pgx.Conn, check time.Duration, work func(context.Context, *Lease)) {
	wctx, cancel := context.WithCancel(ctx)
	lease := &Lease{db: e.DB, conn: conn}
	done := make(chan struct{})
	if e.Leading != nil {
		e.Leading(true)
	}
	go func() {
		defer close(done)
		work(wctx, lease)
	}()
	tick := time.NewTicker(check)
	defer tick.Stop()
loop:
	for {
		select {
		case <-done:
			break loop
		case <-ctx.Done():
			break loop
		case <-tick.C:
			err := lease.ping(ctx)
			var pgErr *pgconn.PgError
			if err != nil && !errors.As(err, &pgErr) {
				e.DB.log.Error("lost the connection that holds the Geo election's lock; stopping", "job", e.Job, "err", e.DB.scrub(err))
				break loop
			}
		}
	}
	// Stop the work before the lock can go to another gate: closing the
	// connection releases it.
	cancel()
	<-done
	if e.Leading != nil {
		e.Leading(false)
	}
	lease.close(ctx)
}
