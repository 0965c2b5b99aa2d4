package site

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/pgstore"
)

// BenchmarkHook runs "gitgate hook pre-receive" as git would, reading the
// state from the data dir's file, from the database, and through the gate
// that runs the push (its hook socket, with the gate's pooled connection:
// the usual path), to compare the run time a push pays for the shared
// state.
func BenchmarkHook(b *testing.B) {
	cluster := startCluster(b)
	dir := b.TempDir()
	_, file, _, _ := runtime.Caller(0)
	bin := filepath.Join(dir, "gitgate")
	build := exec.Command("go", "build", "-trimpath", "-tags", "urfave_cli_no_docs", "-o", bin, "./cmd/gitgate")
	build.Dir = filepath.Join(filepath.Dir(file), "..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	dbURL, err := cluster.NewDatabase(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	for _, args := range [][]string{{"maintenance", "disable"}, {"--database-url", dbURL, "db", "migrate"}, {"--database-url", dbURL, "maintenance", "disable"}} {
		if out, err := exec.Command(bin, append([]string{"--data-dir", data}, args...)...).CombinedOutput(); err != nil {
			b.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	run := func(b *testing.B, env ...string) {
		for range b.N {
			cmd := exec.Command(bin, "hook", "pre-receive")
			cmd.Env = append(os.Environ(), env...)
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("hook: %v\n%s", err, out)
			}
		}
	}
	// The gate's side of the hook socket, in this process, as serve runs
	// it: one push's session.
	db, err := pgstore.Open(context.Background(), dbURL, nil, pgstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	view := pgstore.NewStateView(db, 10*time.Second)
	live := gitgate.NewLiveState(view, slog.New(slog.DiscardHandler))
	live.Reload()
	sockDir, err := os.MkdirTemp("", "hb")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(sockDir)
	hg := db.NewHookGate(filepath.Join(sockDir, "hooks.sock"), func() (gitgate.State, error) {
		snap := live.Current()
		return snap.State, snap.Err
	}, 0)
	ln, err := hg.Listen()
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- hg.Serve(ctx, ln, time.Second) }()
	gateEnv, endPush := hg.Start(gitgate.Invocation{Repo: gitgate.Repo{Name: "proj", Path: filepath.Join(dir, "proj.git")}})
	defer func() { endPush(); cancel(); <-served }()
	gateEnv = append(gateEnv, "GITGATE_DATA_DIR="+data, "GITGATE_DATABASE_URL="+dbURL)

	b.Run("file", func(b *testing.B) { run(b, "GITGATE_DATA_DIR="+data) })
	b.Run("database", func(b *testing.B) { run(b, "GITGATE_DATA_DIR="+data, "GITGATE_DATABASE_URL="+dbURL) })
	b.Run("gate", func(b *testing.B) { run(b, gateEnv...) })
	// The ref fence: "reference-transaction prepared" then "committed",
	// one op per pair (this process stands for git: it is taken for a
	// push). With the database, "prepared" registers the update in one
	// transaction with the state read, and "committed" removes it.
	txn := func(b *testing.B, env ...string) {
		for range b.N {
			for _, state := range []string{"prepared", "committed"} {
				cmd := exec.Command(bin, "hook", "reference-transaction", state)
				cmd.Env = append(os.Environ(), env...)
				if out, err := cmd.CombinedOutput(); err != nil {
					b.Fatalf("hook reference-transaction %s: %v\n%s", state, err, out)
				}
			}
		}
	}
	b.Run("txn-file", func(b *testing.B) { txn(b, "GITGATE_DATA_DIR="+data) })
	b.Run("txn-database", func(b *testing.B) { txn(b, "GITGATE_DATA_DIR="+data, "GITGATE_DATABASE_URL="+dbURL) })
	b.Run("txn-gate", func(b *testing.B) { txn(b, gateEnv...) })
	if st, reg, rel := hg.Served(); st == 0 || reg == 0 || rel == 0 {
		b.Fatalf("the gate answered %d/%d/%d requests: the hooks did not go through it", st, reg, rel)
	}
}
