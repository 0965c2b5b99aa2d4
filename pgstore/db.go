package pgstore

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// QueryTimeout bounds every statement the store sends, so that a database
// that hangs never holds a request, a CLI command or the hook for long.
const QueryTimeout = 5 * time.Second

// ErrSchema is wrapped by the errors of [Open] and [CheckSchema] when the
// database's schema is not the one this binary knows.
var ErrSchema = errors.New("database schema mismatch")

// migration is one embedded SQL file.
type migration struct {
	version int
	name    string
	sql     string
}

// migrations returns the embedded migrations in order.
func migrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration %s: name must start with its number", e.Name())
		}
		data, err := migrationFiles.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: e.Name(), sql: string(data)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i, m := range out {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration %s: expected number %d", m.name, i+1)
		}
	}
	return out, nil
}

// SchemaVersion is the schema version this binary knows.
func SchemaVersion() int {
	ms, err := migrations()
	if err != nil {
		return 0
	}
	return len(ms)
}

// DB is a site's shared state in PostgreSQL.
type DB struct {
	pool     *pgxpool.Pool
	connConf *pgx.ConnConfig // for the watcher's dedicated connection
	redacted string
	secret   string // the password, scrubbed from every error
	log      *slog.Logger
	now      func() time.Time
}

// passwordRE finds password=... in a key/value connection string.
var passwordRE = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)

// Redact returns the connection string with its password replaced by
// "xxxxx", for logs and messages. A URL's user information is masked from
// the text itself, up to its last "@", so that a password that net/url
// cannot parse, or parses as a host or a path (an unencoded space, %, /, ?
// or #), is masked too; an "@" later in the URL masks more than the
// password, never less.
func Redact(connString string) string {
	if scheme, rest, ok := strings.Cut(connString, "://"); ok && !strings.ContainsAny(scheme, " =") {
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			if c := strings.Index(rest[:at], ":"); c >= 0 {
				rest = rest[:c+1] + "xxxxx" + rest[at:]
			}
		}
		masked := scheme + "://" + rest
		if u, err := url.Parse(masked); err == nil {
			if q := u.Query(); q.Has("password") {
				q.Set("password", "xxxxx")
				u.RawQuery = q.Encode()
				return u.String()
			}
			return masked
		}
		return passwordRE.ReplaceAllString(masked, "${1}xxxxx")
	}
	return passwordRE.ReplaceAllString(connString, "${1}xxxxx")
}

// scrubbed is an error whose text has the password removed; it still
// unwraps to the original.
type scrubbed struct {
	msg string
	err error
}

func (s *scrubbed) Error() string { return s.msg }
func (s *scrubbed) Unwrap() error { return s.err }

// scrub removes secret (and any password=... or URL password) from err's text.
func scrub(err error, secret string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if secret != "" {
		msg = strings.ReplaceAll(msg, secret, "xxxxx")
		if esc := url.QueryEscape(secret); esc != secret {
			msg = strings.ReplaceAll(msg, esc, "xxxxx")
		}
	}
	msg = passwordRE.ReplaceAllString(msg, "${1}xxxxx")
	if msg == err.Error() {
		return err
	}
	return &scrubbed{msg: msg, err: err}
}

// Options tune [Open].
type Options struct {
	// MaxConns bounds the pool (0: 4, enough for a gate, small for a hook).
	MaxConns int32
	// SkipSchemaCheck opens a database whatever its schema ("db migrate").
	SkipSchemaCheck bool
}

// Open connects to the database at connString (a postgres:// URL or a
// key=value string; sslmode and the libpq PG* environment variables apply,
// as pgx.ParseConfig reads them) and checks that its schema is the one this
// binary knows. Errors never contain the password.
func Open(ctx context.Context, connString string, log *slog.Logger, opts Options) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(connString)
	if err != nil {
		return nil, scrub(fmt.Errorf("database URL %s: %w", Redact(connString), err), "")
	}
	db := &DB{redacted: Redact(connString), secret: cfg.ConnConfig.Password, log: log, now: time.Now}
	if log == nil {
		db.log = slog.New(slog.DiscardHandler)
	}
	cfg.MaxConns = 4
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	if cfg.ConnConfig.ConnectTimeout == 0 || cfg.ConnConfig.ConnectTimeout > QueryTimeout {
		cfg.ConnConfig.ConnectTimeout = QueryTimeout
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "gitgate"
	db.connConf = cfg.ConnConfig.Copy()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, db.scrub(fmt.Errorf("database %s: %w", db.redacted, err))
	}
	db.pool = pool
	if !opts.SkipSchemaCheck {
		if err := db.CheckSchema(ctx); err != nil {
			pool.Close()
			return nil, err
		}
	}
	return db, nil
}

// Close closes the pool.
func (db *DB) Close() { db.pool.Close() }

// String is the redacted URL.
func (db *DB) String() string { return db.redacted }

func (db *DB) scrub(err error) error { return scrub(err, db.secret) }

// timeout bounds one statement.
func timeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, QueryTimeout)
}

// currentVersion reads schema_version; 0 when the table does not exist.
func currentVersion(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) (int, error) {
	var v int
	err := q.QueryRow(ctx, `SELECT version FROM schema_version`).Scan(&v)
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "42P01": // undefined_table
		return 0, nil
	case errors.Is(err, pgx.ErrNoRows):
		return 0, nil
	}
	return v, err
}

// CheckSchema refuses a schema older or newer than this binary's.
func (db *DB) CheckSchema(ctx context.Context) error {
	ctx, cancel := timeout(ctx)
	defer cancel()
	v, err := currentVersion(ctx, db.pool)
	if err != nil {
		return db.scrub(fmt.Errorf("database %s: read schema version: %w", db.redacted, err))
	}
	return checkVersion(v, SchemaVersion())
}

func checkVersion(have, want int) error {
	switch {
	case have == want:
		return nil
	case have == 0:
		return fmt.Errorf(`%w: the database has no gitgate schema; run "gitgate db migrate" first`, ErrSchema)
	case have < want:
		return fmt.Errorf(`%w: the database schema is version %d, older than this gitgate's %d; run "gitgate db migrate"`, ErrSchema, have, want)
	}
	return fmt.Errorf("%w: the database schema is version %d, newer than this gitgate's %d; run a gitgate release that knows it (refusing to run against it)", ErrSchema, have, want)
}

// Migrate applies the migrations the database has not had, in one
// transaction under an advisory lock (several gates may run it at once). It
// returns the versions before and after. A database newer than this binary
// is refused and left alone.
func (db *DB) Migrate(ctx context.Context) (from, to int, err error) {
	ms, err := migrations()
	if err != nil {
		return 0, 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	err = pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(7265846577)`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)`); err != nil {
			return err
		}
		if from, err = currentVersion(ctx, tx); err != nil {
			return err
		}
		if from > len(ms) {
			return checkVersion(from, len(ms))
		}
		for _, m := range ms[from:] {
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return fmt.Errorf("migration %s: %w", m.name, err)
			}
		}
		to = len(ms)
		if _, err := tx.Exec(ctx, `DELETE FROM schema_version`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO schema_version (version) VALUES ($1)`, to)
		return err
	})
	if err != nil {
		return from, from, db.scrub(fmt.Errorf("database %s: migrate: %w", db.redacted, err))
	}
	return from, to, nil
}

// IsEmpty reports whether the database holds no gitgate data yet (no
// state, no access document, no audit events).
func (db *DB) IsEmpty(ctx context.Context) (bool, error) {
	ctx, cancel := timeout(ctx)
	defer cancel()
	var n int
	err := db.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM maintenance_state) + (SELECT count(*) FROM access_document) + (SELECT count(*) FROM audit_log)`).Scan(&n)
	if err != nil {
		return false, db.scrub(err)
	}
	return n == 0, nil
}
