package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gitgate/gitgate/geo"
)

// TestRepoCreateRefusedOnSecondary: a Geo secondary's repositories come
// from the primary, and one made by hand would be trashed as "removed on
// the primary" after the delete delay; so the CLI refuses it, naming the
// primary, and makes nothing. A marker that cannot be read refuses too.
func TestRepoCreateRefusedOnSecondary(t *testing.T) {
	dir := t.TempDir()
	if err := geo.WriteSecondaryMarker(dir, "https://primary.example.com", "eu"); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := gitgateCLI(t, dir, "repo", "create", "group/new")
	if code == 0 {
		t.Fatal("repo create on a secondary succeeded")
	}
	want := geo.ChangeReposOnPrimary("https://primary.example.com")
	if !strings.Contains(stderr, want) {
		t.Fatalf("stderr %q does not say %q", stderr, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "repositories", "group", "new.git")); !os.IsNotExist(err) {
		t.Fatalf("repository made anyway: %v", err)
	}
	// --if-missing does not make it pass either.
	if _, _, code := gitgateCLI(t, dir, "repo", "create", "--if-missing", "group/new"); code == 0 {
		t.Fatal("repo create --if-missing on a secondary succeeded")
	}

	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, geo.MarkerFileName), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, code = gitgateCLI(t, bad, "repo", "create", "group/new")
	if code == 0 || !strings.Contains(stderr, "Geo role cannot be read") {
		t.Fatalf("unreadable marker: exit %d, stderr %q", code, stderr)
	}

	// A site that is no secondary still creates.
	plain := t.TempDir()
	mustCLI(t, plain, "repo", "create", "group/new")
}
