// Package pgtest starts a throwaway PostgreSQL cluster for tests: the
// installed initdb and pg_ctl (found on PATH, then under
// /usr/lib/postgresql/*/bin), run as an unprivileged user when the tests
// run as root (initdb refuses root), listening on a free loopback port only,
// with its unix socket and data in a private temporary directory. One cluster
// serves a whole test package (start it in TestMain); each test gets a fresh
// database (CREATE DATABASE ... TEMPLATE template0).
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrNotInstalled is returned by Start when initdb or pg_ctl cannot be found.
var ErrNotInstalled = errors.New("PostgreSQL server binaries (initdb, pg_ctl) not found")

// Cluster is a running throwaway PostgreSQL server.
type Cluster struct {
	dir     string // owned by the server's user; removed by Stop
	dataDir string
	bin     string
	cred    *syscall.Credential
	port    int
	mu      sync.Mutex
	stopped bool
}

// findBin returns the directory holding initdb and pg_ctl.
func findBin() (string, error) {
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		if _, err := exec.LookPath("initdb"); err == nil {
			return filepath.Dir(p), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Sort(sort.Reverse(sort.StringSlice(dirs))) // newest major first (lexical is fine for 1x)
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "pg_ctl")); err == nil {
			if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
				return d, nil
			}
		}
	}
	return "", ErrNotInstalled
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Start initialises and starts a cluster. The caller must call Stop.
func Start(ctx context.Context) (*Cluster, error) {
	bin, err := findBin()
	if err != nil {
		return nil, err
	}
	c := &Cluster{bin: bin}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("nobody")
		if err != nil {
			return nil, fmt.Errorf("pgtest: running as root and no user nobody to run PostgreSQL as: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	c.dir = filepath.Join(os.TempDir(), "gitgate-pgtest-"+hex.EncodeToString(rnd[:]))
	if err := os.Mkdir(c.dir, 0o700); err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	if c.cred != nil {
		if err := os.Chown(c.dir, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			os.RemoveAll(c.dir)
			return nil, fmt.Errorf("pgtest: %w", err)
		}
	}
	c.dataDir = filepath.Join(c.dir, "data")
	if out, err := c.run(ctx, "initdb", "-D", c.dataDir, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8", "--locale=C"); err != nil {
		os.RemoveAll(c.dir)
		return nil, fmt.Errorf("pgtest: initdb: %w\n%s", err, out)
	}
	for range 5 { // a free port can be taken between the probe and the start
		if c.port, err = freePort(); err != nil {
			break
		}
		if err = c.Restart(ctx); err == nil {
			return c, nil
		}
	}
	c.Stop()
	return nil, err
}

// run runs one of the server's binaries as the server's user.
func (c *Cluster) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(c.bin, name), args...)
	cmd.Dir = c.dir
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C"}
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	return cmd.CombinedOutput()
}

// Restart starts the server (again, after [Cluster.Kill]) on the same port
// and waits until it accepts connections.
func (c *Cluster) Restart(ctx context.Context) error {
	opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -c unix_socket_directories=%s -c fsync=off -c full_page_writes=off -c max_connections=200",
		c.port, c.dir)
	out, err := c.run(ctx, "pg_ctl", "start", "-w", "-t", "60", "-D", c.dataDir, "-l", filepath.Join(c.dir, "log"), "-o", opts)
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(c.dir, "log"))
		return fmt.Errorf("pgtest: pg_ctl start: %w\n%s\n%s", err, out, log)
	}
	c.mu.Lock()
	c.stopped = false
	c.mu.Unlock()
	return nil
}

// Kill stops the server at once (pg_ctl stop -m immediate), as a crash
// would; [Cluster.Restart] brings it back.
func (c *Cluster) Kill(ctx context.Context) error {
	out, err := c.run(ctx, "pg_ctl", "stop", "-m", "immediate", "-w", "-D", c.dataDir)
	if err != nil {
		return fmt.Errorf("pgtest: pg_ctl stop: %w\n%s", err, out)
	}
	return nil
}

// Stop stops the server and removes its directory. It is safe to call twice.
func (c *Cluster) Stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped && c.dir == "" {
		return
	}
	c.stopped = true
	if c.dataDir != "" {
		_, _ = c.run(context.Background(), "pg_ctl", "stop", "-m", "immediate", "-w", "-D", c.dataDir)
	}
	if c.dir != "" {
		os.RemoveAll(c.dir)
		c.dir = ""
	}
}

// Port is the server's TCP port on 127.0.0.1.
func (c *Cluster) Port() int { return c.port }

// URL returns the connection URL of database db (as the superuser postgres).
func (c *Cluster) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, db)
}

// NewDatabase creates a fresh, empty database and returns its URL.
func (c *Cluster) NewDatabase(ctx context.Context) (string, error) {
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return "", fmt.Errorf("pgtest: %w", err)
	}
	defer conn.Close(context.Background())
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	name := "t_" + hex.EncodeToString(rnd[:])
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name+" TEMPLATE template0"); err != nil {
		return "", fmt.Errorf("pgtest: create database: %w", err)
	}
	return c.URL(name), nil
}

// Main is the TestMain of a package that needs a cluster: it starts one,
// stores it in *cl (nil, with a loud message, when PostgreSQL is not
// installed), runs the tests and stops it, even when they fail.
func Main(m *testing.M, cl **Cluster) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	c, err := Start(ctx)
	cancel()
	switch {
	case errors.Is(err, ErrNotInstalled):
		fmt.Fprintln(os.Stderr, "!!!!!!!! pgtest: PostgreSQL is NOT INSTALLED: the PostgreSQL tests are SKIPPED (install Debian's postgresql package; .ci/run does) !!!!!!!!")
	case err != nil:
		fmt.Fprintln(os.Stderr, err)
		return 1
	default:
		*cl = c
		defer c.Stop()
	}
	return m.Run()
}

// Database returns a fresh database's URL for t, skipping t loudly when
// there is no cluster.
func Database(t testing.TB, c *Cluster) string {
	t.Helper()
	if c == nil {
		t.Skip("!!! SKIPPED: PostgreSQL is not installed (initdb/pg_ctl not found); this test needs a real server !!!")
	}
	url, err := c.NewDatabase(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return url
}
