package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/gitgate/gitgate/access"
	"github.com/gitgate/gitgate/api"
	"github.com/gitgate/gitgate/audit"
	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/hooks"
	"github.com/gitgate/gitgate/internal/atomicfile"
	"github.com/gitgate/gitgate/pgstore"
)

// EnvDatabaseURL names the shared state database. The gate also sets it for
// the git processes it starts, so that their hooks read the same state.
const EnvDatabaseURL = hooks.EnvDatabaseURL

// databaseURLFlag is the global --database-url.
func databaseURLFlag() cli.Flag {
	return &cli.StringFlag{
		Name: "database-url",
		Usage: "keep the maintenance state, users, keys, tokens, rules, audit log and pushes in flight in this " +
			"PostgreSQL database (postgres://... or key=value; sslmode and the PG* variables apply), shared by every gate " +
			"of a site, instead of the data dir's files",
		EnvVars: []string{EnvDatabaseURL},
	}
}

// databaseURL is --database-url from any level of the command line.
func databaseURL(c *cli.Context) string {
	for _, ctx := range c.Lineage() {
		if ctx.IsSet("database-url") {
			return ctx.String("database-url")
		}
	}
	return c.String("database-url")
}

// site is where a command finds the shared state: the data dir's files, or
// the database when --database-url is given. Commands ask it for the state
// store, the access store and the audit log and never look at which it is.
type site struct {
	dir string
	db  *pgstore.DB // nil: the data dir's files
}

// stateStore is the store every command and the gate change the
// maintenance state through.
type stateStore interface {
	gitgate.Store
	Reset(ctx context.Context, c gitgate.Change) (gitgate.State, error)
}

// openSite opens the site's state; Close it when done.
func openSite(c *cli.Context, dir string) (*site, error) {
	s := &site{dir: dir}
	if u := databaseURL(c); u != "" {
		db, err := pgstore.Open(c.Context, u, nil, pgstore.Options{})
		if err != nil {
			return nil, err
		}
		s.db = db
	}
	return s, nil
}

// Close releases the database connections.
func (s *site) Close() {
	if s.db != nil {
		s.db.Close()
	}
}

func (s *site) stateStore(c *cli.Context) stateStore {
	if s.db != nil {
		return s.db
	}
	return localStore(c, s.dir)
}

// txns is the registry of ref transactions that enabling maintenance waits
// for: the site's database, or the data dir's markers.
func (s *site) txns() gitgate.TxnWaiter {
	if s.db != nil {
		return s.db
	}
	return gitgate.DirTxns(filepath.Join(s.dir, gitgate.TxnDirName))
}

func (s *site) accessStore() *access.Store {
	if s.db != nil {
		return access.NewStoreOn(s.db.AccessDocument())
	}
	return access.NewStore(s.dir)
}

func (s *site) audit() *audit.Log {
	if s.db != nil {
		return audit.OpenSink(s.db.AuditSink())
	}
	return audit.Open(s.dir)
}

// pushesInFlight lists the pushes running on every gate of the site; ok is
// false without a database (the local gate's socket answers then).
func (s *site) pushesInFlight(ctx context.Context) ([]pgstore.Remote, bool, error) {
	if s.db == nil {
		return nil, false, nil
	}
	ops, err := s.db.InFlight(ctx)
	var pushes []pgstore.Remote
	for _, op := range ops {
		if op.Service == string(gitgate.ReceivePack) {
			pushes = append(pushes, op)
		}
	}
	return pushes, true, err
}

func dbCommand() *cli.Command {
	return &cli.Command{
		Name:  "db",
		Usage: "set up the PostgreSQL database that several gates of a site share (--database-url)",
		Subcommands: []*cli.Command{
			{
				Name:  "migrate",
				Usage: "create or upgrade the database schema to this gitgate's version",
				Description: "Applies the schema migrations built into this binary, in one transaction; safe\n" +
					"to run from several gates at once. A gate refuses to start on a schema older or\n" +
					"newer than its own.",
				Action: withArgs(0, 0, dbMigrate),
			},
			{
				Name:  "import",
				Usage: "copy a file-based site (maintenance state, access file, audit log) into the database",
				Description: "Reads the maintenance state, the access file and the audit log of --data-dir and\n" +
					"writes them into the database given by --database-url, keeping the state's\n" +
					"version. A database that already holds gitgate data is refused unless --force\n" +
					"(its state and access data are then replaced, the audit events appended).",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "data-dir", Usage: "the data dir to import (default: the global --data-dir)"},
					&cli.BoolFlag{Name: "force", Usage: "import into a database that already holds gitgate data"},
				},
				Action: withArgs(0, 0, dbImport),
			},
			dbGeoNodesCommand(),
		},
	}
}

// needDatabase opens --database-url without the schema check.
func needDatabase(c *cli.Context) (*pgstore.DB, error) {
	u := databaseURL(c)
	if u == "" {
		return nil, usageError{errors.New("this command needs --database-url (or " + EnvDatabaseURL + ")")}
	}
	return pgstore.Open(c.Context, u, nil, pgstore.Options{SkipSchemaCheck: true})
}

func dbMigrate(c *cli.Context, _ []string) error {
	db, err := needDatabase(c)
	if err != nil {
		return err
	}
	defer db.Close()
	from, to, err := db.Migrate(c.Context)
	if err != nil {
		return err
	}
	if from == to {
		fmt.Fprintf(c.App.Writer, "database %s: schema is at version %d, nothing to do\n", db, to)
		return nil
	}
	fmt.Fprintf(c.App.Writer, "database %s: schema migrated from version %d to %d\n", db, from, to)
	return nil
}

// maxAuditImport bounds the audit log read by db import.
const maxAuditImport = 256 << 20

func dbImport(c *cli.Context, _ []string) error {
	dir := c.String("data-dir")
	if dir == "" {
		var err error
		if dir, err = dataDir(c); err != nil {
			return err
		}
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("data dir %s: not a directory", dir)
	}
	db, err := needDatabase(c)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.CheckSchema(c.Context); err != nil {
		return err
	}
	empty, err := db.IsEmpty(c.Context)
	if err != nil {
		return err
	}
	if !empty && !c.Bool("force") {
		return fmt.Errorf("database %s already holds gitgate data; refusing to overwrite it (use --force to replace its state and access data)", db)
	}
	// Read and check everything before writing anything.
	st, err := gitgate.NewFileStore(dir).Load(c.Context)
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	accessData, err := atomicfile.ReadBounded(access.FilePath(dir), access.MaxFileSize)
	hasAccess := err == nil
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("import: %w", err)
	default:
		if _, err := access.ParseFile(access.FilePath(dir), accessData); err != nil {
			return fmt.Errorf("import: %w", err)
		}
	}
	events, err := readAuditLines(filepath.Join(dir, audit.FileName))
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}

	if st.Version > 0 {
		if _, err := db.Mirror(c.Context, st, true); err != nil {
			return err
		}
	}
	if hasAccess {
		if err := db.AccessDocument().Update(c.Context, func([]byte) ([]byte, error) { return accessData, nil }); err != nil {
			return err
		}
	}
	sink := db.AuditSink()
	for _, ev := range events {
		if err := sink.Append(ev); err != nil {
			return err
		}
	}
	mode := "disabled"
	if st.Enabled {
		mode = "enabled"
	}
	fmt.Fprintf(c.App.Writer, "imported %s into %s: maintenance %s (version %d), access data %s, %d audit event(s)\n",
		dir, db, mode, st.Version, map[bool]string{true: "yes", false: "none"}[hasAccess], len(events))
	return nil
}

// readAuditLines returns the non-empty lines of an audit log (none when
// it does not exist).
func readAuditLines(path string) ([][]byte, error) {
	data, err := atomicfile.ReadBounded(path, maxAuditImport)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for i, line := range strings.Split(string(data), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		if !strings.HasPrefix(strings.TrimSpace(line), "{") {
			return nil, fmt.Errorf("%s line %d: not a JSON event", path, i+1)
		}
		out = append(out, []byte(line))
	}
	return out, nil
}

// ReasonDatabase is what the hook tells the pusher when the shared state
// database cannot be read.
const ReasonDatabase = "the maintenance state database cannot be read"

// dbHookSource is the hook's state source with --database-url: one
// connection, one query, bounded in time; every failure is a
// hooks.StateError, so the hook refuses the push (fail closed).
type dbHookSource struct {
	url     string
	timeout time.Duration
	// gateSocket, when set, is the admin socket of the gate that started
	// the push: it is asked first (the gate holds the database's state in
	// memory, current through LISTEN/NOTIFY, and says when it is stale),
	// which saves the hook a database connection.
	gateSocket string
}

// Load reads the state from the gate that runs the push (its hook
// socket), or the local gate, or the database.
func (s dbHookSource) Load(ctx context.Context) (gitgate.State, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if socket, secret := pgstore.HookEnv(); socket != "" && secret != "" {
		st, err := pgstore.GateState(ctx, socket, secret)
		if err == nil {
			return st, nil
		}
		if !errors.Is(err, pgstore.ErrNoGate) {
			return gitgate.State{}, &hooks.StateError{Reason: ReasonDatabase, Err: err}
		}
		// The gate is gone: read the database.
	}
	if s.gateSocket != "" {
		if _, err := os.Stat(s.gateSocket); err == nil {
			set, err := api.NewSocketClient(s.gateSocket).Settings(ctx)
			switch {
			case err == nil && set.MaintenanceStateError != nil:
				return gitgate.State{}, &hooks.StateError{Reason: ReasonDatabase, Err: errors.New(*set.MaintenanceStateError)}
			case err == nil:
				st := gitgate.State{Enabled: set.MaintenanceMode, Version: set.MaintenanceModeVersion}
				if set.MaintenanceModeMessage != nil {
					st.Message = *set.MaintenanceModeMessage
				}
				return st, nil
			}
			// No gate answers there: read the database.
		}
	}
	st, err := pgstore.LoadOnce(ctx, s.url)
	if err != nil {
		return gitgate.State{}, &hooks.StateError{Reason: ReasonDatabase, Err: err}
	}
	return st, nil
}

// describeRemote is one line about a push on some gate.
func describeRemote(p pgstore.Remote) string {
	return fmt.Sprintf("push to %s by %s over %s on gate %s, running since %s", p.Repo, p.User, p.Transport, p.Gate, p.Started.UTC().Format(time.RFC3339))
}

// waitForSiteDrain polls the database until no gate of the site has a
// push in flight, or --timeout.
func waitForSiteDrain(c *cli.Context) error {
	dir, err := dataDir(c)
	if err != nil {
		return err
	}
	site, err := openSite(c, dir)
	if err != nil {
		return err
	}
	defer site.Close()
	ctx, cancel := context.WithTimeout(c.Context, c.Duration("timeout"))
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	announced := false
	var last []pgstore.Remote
	for {
		pushes, _, err := site.pushesInFlight(ctx)
		if err != nil && ctx.Err() == nil {
			return err
		}
		if err == nil {
			if len(pushes) == 0 {
				fmt.Fprintln(c.App.Writer, "no push in flight on any gate of the site: safe to start the maintenance work")
				return nil
			}
			last = pushes
			if !announced {
				fmt.Fprintf(c.App.Writer, "waiting for %d push(es) in flight on the site's gates to finish...\n", len(pushes))
				announced = true
			}
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			if pushes, _, err := site.pushesInFlight(context.WithoutCancel(c.Context)); err == nil {
				if len(pushes) == 0 {
					fmt.Fprintln(c.App.Writer, "no push in flight on any gate of the site: safe to start the maintenance work")
					return nil
				}
				last = pushes
			}
			lines := make([]string, 0, len(last))
			for _, p := range last {
				lines = append(lines, "  "+describeRemote(p))
			}
			return cli.Exit(fmt.Sprintf("timed out after %s; still in flight:\n%s", c.Duration("timeout"), strings.Join(lines, "\n")), 1)
		}
	}
}
