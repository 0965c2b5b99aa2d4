package gitgate

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCleanName(t *testing.T) {
	valid := map[string]string{
		"name":              "name",
		"name.git":          "name",
		"group/name.git":    "group/name",
		"group/sub/name":    "group/sub/name",
		"a_b-c.d/e.git.git": "a_b-c.d/e.git",
	}
	for in, want := range valid {
		if got, err := CleanName(in); err != nil || got != want {
			t.Errorf("CleanName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{
		"", ".git", "..", "../x", "group/../x", "/abs", "a//b", "a/", "-x", "group/-x",
		".hidden", "group/.x", "a\x00b", "a\nb", "a b", "a\\b", "é", "a:b", "~x",
		strings.Repeat("a/", 16) + "x", strings.Repeat("a", 1025),
	} {
		if got, err := CleanName(in); !errors.Is(err, ErrInvalidRepoName) {
			t.Errorf("CleanName(%q) = %q, %v; want ErrInvalidRepoName", in, got, err)
		}
	}
}

func TestResolverCreateResolveList(t *testing.T) {
	root := t.TempDir()
	r, err := NewResolver(root)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, name := range []string{"top", "group/name", "group/sub/deep"} {
		if _, err := r.Create(ctx, name); err != nil {
			t.Fatalf("Create(%s): %v", name, err)
		}
	}
	if _, err := r.Create(ctx, "group/name.git"); err == nil {
		t.Error("Create of an existing repository succeeded")
	}
	repo, err := r.Resolve("group/name.git")
	if err != nil || repo.Name != "group/name" || repo.Path != filepath.Join(r.Root(), "group", "name.git") {
		t.Fatalf("Resolve = %+v, %v", repo, err)
	}
	if _, err := r.Resolve("group"); !errors.Is(err, ErrRepoNotFound) {
		t.Errorf("a plain directory resolved: %v", err)
	}
	repos, err := r.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, repo := range repos {
		names = append(names, repo.Name)
	}
	if got := strings.Join(names, ","); got != "group/name,group/sub/deep,top" {
		t.Errorf("List = %s", got)
	}
	if _, err := SeedReadme(repos[2], "# top\n", "gitgate", time.Unix(0, 0)); err != nil {
		t.Fatal(err)
	}
	if _, err := SeedReadme(repos[2], "# top\n", "gitgate", time.Unix(0, 0)); err == nil {
		t.Error("SeedReadme wrote over a repository with commits")
	}
}

func TestResolverRefusesSymlinksOutOfTheRoot(t *testing.T) {
	root, outside := t.TempDir(), t.TempDir()
	r, _ := NewResolver(root)
	out, _ := NewResolver(outside)
	if _, err := out.Create(context.Background(), "secret"); err != nil {
		t.Fatal(err)
	}
	os.Symlink(filepath.Join(outside, "secret.git"), filepath.Join(root, "link.git"))
	os.Symlink(outside, filepath.Join(root, "group"))
	for _, name := range []string{"link", "group/secret"} {
		if _, err := r.Resolve(name); !errors.Is(err, ErrInvalidRepoName) {
			t.Errorf("Resolve(%s) = %v; want refusal", name, err)
		}
	}
	// A symlink that stays inside the root is fine.
	if _, err := r.Create(context.Background(), "real"); err != nil {
		t.Fatal(err)
	}
	os.Symlink(filepath.Join(r.Root(), "real.git"), filepath.Join(root, "alias.git"))
	if repo, err := r.Resolve("alias"); err != nil || repo.Path != filepath.Join(r.Root(), "real.git") {
		t.Errorf("Resolve(alias) = %+v, %v", repo, err)
	}
}

// FuzzCleanName: whatever the input, an accepted name is canonical, stays
// relative and clean, and resolves inside the root.
func FuzzCleanName(f *testing.F) {
	for _, s := range []string{"a", "group/name.git", "../x", "a/./b", "-x", ".git", "a\x00", "a//b", "/abs", "a/b/"} {
		f.Add(s)
	}
	root := f.TempDir()
	r, err := NewResolver(root)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, name string) {
		canon, err := CleanName(name)
		if err != nil {
			return
		}
		if filepath.IsAbs(canon) || filepath.Clean(canon) != canon || strings.Contains(canon, "..") {
			t.Fatalf("CleanName(%q) = %q: not a clean relative name", name, canon)
		}
		for _, part := range strings.Split(canon, "/") {
			if part == "" || part[0] == '-' || part[0] == '.' {
				t.Fatalf("CleanName(%q) = %q: bad component %q", name, canon, part)
			}
		}
		if again, err := CleanName(canon); err != nil || (again != canon && again+".git" != canon) {
			t.Fatalf("CleanName not stable: %q -> %q -> %q, %v", name, canon, again, err)
		}
		if repo, err := r.Resolve(name); err == nil && !strings.HasPrefix(repo.Path, r.Root()+"/") {
			t.Fatalf("Resolve(%q) escaped the root: %s", name, repo.Path)
		}
	})
}
