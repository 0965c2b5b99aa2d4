package hooks_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/hooks"
)

// Every committed ref update, by a push or a local command, appends the
// repository to the change journal that a Geo primary reads; the gate's own
// replication (GITGATE_REPLICATION=1) does not. With or without the
// repository's own hook.
func TestInstalledTxnScriptRecordsChanges(t *testing.T) {
	for _, own := range []bool{false, true} {
		t.Run(fmt.Sprint("own hook ", own), func(t *testing.T) {
			f := newFixture(t)
			if own {
				if err := os.WriteFile(filepath.Join(f.bare, "hooks", hooks.TxnHookName), []byte("#!/bin/sh\ncat >/dev/null\n"), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			f.install(hooks.Script{})
			journal := filepath.Join(f.dataDir, gitgate.ChangeJournalName)
			stderr, err := f.push(f.bare)
			f.assertAccepted(stderr, err)
			lines := func() []string {
				data, _ := os.ReadFile(journal)
				return strings.Fields(string(data))
			}
			got := lines()
			if len(got) == 0 {
				t.Fatalf("push: nothing in the journal")
			}
			for _, l := range got {
				if real, _ := filepath.EvalSymlinks(l); real != mustReal(t, f.bare) {
					t.Errorf("journal line %q, want the repository %s", l, f.bare)
				}
			}
			n := len(got)
			if _, stderr, err := f.run(f.bare, []string{gitgate.EnvReplication + "=1"}, "update-ref", "refs/heads/replicated", "HEAD"); err != nil {
				t.Fatalf("update-ref: %v %s", err, stderr)
			}
			if len(lines()) != n {
				t.Errorf("a replication update was journalled: %q", lines())
			}
			if _, stderr, err := f.run(f.bare, nil, "update-ref", "refs/heads/local", "HEAD"); err != nil {
				t.Fatalf("update-ref: %v %s", err, stderr)
			}
			if len(lines()) <= n {
				t.Errorf("a local update was not journalled: %q", lines())
			}
		})
	}
}

func mustReal(t *testing.T, p string) string {
	r, err := filepath.EvalSymlinks(p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
