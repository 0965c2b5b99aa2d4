package site

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// BenchmarkHook runs "gitgate hook pre-receive" as git would, reading the
// state from the data dir's file and from the database, to compare the
// run time a push pays for the shared state.
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
	b.Run("file", func(b *testing.B) { run(b, "GITGATE_DATA_DIR="+data) })
	b.Run("database", func(b *testing.B) { run(b, "GITGATE_DATA_DIR="+data, "GITGATE_DATABASE_URL="+dbURL) })
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
}
