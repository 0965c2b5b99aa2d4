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
		"name":           "name",
		"name.git":       "name",
		"group/name.git": "group/name",
		"group/sub/name": "group/sub/name",
		"a_b-c.d/e.gitx": "a_b-c.d/e.gitx",
		"git/x.github":   "git/x.github",
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
		// Second spellings of "group/secret": only one final .git, once.
		"group/secret.git.git", "a_b-c.d/e.git.git", "group.git/secret", "group.git/secret.git",
		"group/secret.GIT", "group/secret.Git.git", "x.git.git.git",
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
}

// A repository has one name: a symlink inside the root that leads to
// another repository (or to the group it lives in) is not a second one.
func TestResolverOneNamePerRepository(t *testing.T) {
	root := t.TempDir()
	r, _ := NewResolver(root)
	ctx := context.Background()
	for _, name := range []string{"real", "group/secret"} {
		if _, err := r.Create(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	os.Symlink(filepath.Join(r.Root(), "real.git"), filepath.Join(root, "alias.git"))
	os.Symlink("secret.git", filepath.Join(root, "group", "public.git"))
	os.Symlink("group", filepath.Join(root, "grp"))
	for _, name := range []string{"alias", "alias.git", "group/public", "grp/secret", "grp/secret.git"} {
		if repo, err := r.Resolve(name); !errors.Is(err, ErrRepoNotFound) {
			t.Errorf("Resolve(%s) = %+v, %v; want not found", name, repo, err)
		}
	}
	// A doubled .git is no name at all, even though <root>/group/secret.git
	// exists and a directory group/secret.git.git could.
	if err := os.MkdirAll(filepath.Join(root, "group", "secret.git.git"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"group/secret.git.git", "group/secret.git.git.git"} {
		if repo, err := r.Resolve(name); !errors.Is(err, ErrInvalidRepoName) {
			t.Errorf("Resolve(%s) = %+v, %v; want an invalid name", name, repo, err)
		}
	}
	// A plain directory is not served under the name without .git.
	if _, err := r.Create(ctx, "plain"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(root, "plain.git"), filepath.Join(root, "plain")); err != nil {
		t.Fatal(err)
	}
	if repo, err := r.Resolve("plain"); !errors.Is(err, ErrRepoNotFound) {
		t.Errorf("Resolve(plain) = %+v, %v; want not found: only <name>.git is served", repo, err)
	}
	for _, name := range []string{"real", "real.git", "group/secret", "group/secret.git"} {
		repo, err := r.Resolve(name)
		if err != nil || repo.Name+".git" != filepath.ToSlash(strings.TrimPrefix(repo.Path, r.Root()+"/")) {
			t.Errorf("Resolve(%s) = %+v, %v", name, repo, err)
		}
	}
	repos, err := r.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, repo := range repos {
		names = append(names, repo.Name)
	}
	if got := strings.Join(names, ","); got != "group/secret,real" {
		t.Errorf("List = %s", got)
	}
	unserved, err := r.Unserved(ctx)
	if err != nil || len(unserved) != 1 || unserved[0].Path != "plain" || unserved[0].Reason == nil {
		t.Errorf("Unserved = %+v, %v; want plain", unserved, err)
	}
}

// A repository whose git dir leads out of the root (a .git gitfile or
// symlink, worktree files, objects or alternates elsewhere) is not served.
func TestResolverRefusesRepositoriesThatEscape(t *testing.T) {
	outside := t.TempDir()
	out, _ := NewResolver(outside)
	victim, err := out.Create(context.Background(), "victim")
	if err != nil {
		t.Fatal(err)
	}
	escapes := map[string]func(repo string){
		"gitfile": func(repo string) {
			os.WriteFile(filepath.Join(repo, ".git"), []byte("gitdir: "+victim.Path+"\n"), 0o644)
		},
		"git symlink": func(repo string) { os.Symlink(victim.Path, filepath.Join(repo, ".git")) },
		"git dir":     func(repo string) { os.Mkdir(filepath.Join(repo, ".git"), 0o755) },
		"commondir": func(repo string) {
			os.WriteFile(filepath.Join(repo, "commondir"), []byte(victim.Path+"\n"), 0o644)
		},
		"gitdir file": func(repo string) {
			os.WriteFile(filepath.Join(repo, "gitdir"), []byte(victim.Path+"\n"), 0o644)
		},
		"objects symlink": func(repo string) {
			os.RemoveAll(filepath.Join(repo, "objects"))
			os.Symlink(filepath.Join(victim.Path, "objects"), filepath.Join(repo, "objects"))
		},
		"refs symlink": func(repo string) {
			os.RemoveAll(filepath.Join(repo, "refs"))
			os.Symlink(filepath.Join(victim.Path, "refs"), filepath.Join(repo, "refs"))
		},
		"absolute alternate": func(repo string) {
			os.WriteFile(filepath.Join(repo, "objects", "info", "alternates"), []byte(filepath.Join(victim.Path, "objects")+"\n"), 0o644)
		},
		"relative alternate": func(repo string) {
			rel, _ := filepath.Rel(filepath.Join(repo, "objects"), filepath.Join(victim.Path, "objects"))
			os.WriteFile(filepath.Join(repo, "objects", "info", "alternates"), []byte("# shared\n"+rel+"\n"), 0o644)
		},
		"quoted alternate": func(repo string) {
			os.WriteFile(filepath.Join(repo, "objects", "info", "alternates"), []byte(`"`+victim.Path+`/objects"`+"\n"), 0o644)
		},
	}
	for name, escape := range escapes {
		t.Run(name, func(t *testing.T) {
			r, _ := NewResolver(t.TempDir())
			repo, err := r.Create(context.Background(), "group/repo")
			if err != nil {
				t.Fatal(err)
			}
			os.MkdirAll(filepath.Join(repo.Path, "objects", "info"), 0o755)
			escape(repo.Path)
			if got, err := r.Resolve("group/repo"); !errors.Is(err, ErrUnsafeRepo) {
				t.Fatalf("Resolve = %+v, %v; want ErrUnsafeRepo", got, err)
			}
			if repos, _ := r.List(context.Background()); len(repos) != 0 {
				t.Errorf("List = %+v", repos)
			}
			if _, err := r.Create(context.Background(), "group/repo"); !errors.Is(err, ErrUnsafeRepo) {
				t.Errorf("Create over it = %v; want ErrUnsafeRepo", err)
			}
			if u, _ := r.Unserved(context.Background()); len(u) != 1 || u[0].Path != "group/repo.git" || !errors.Is(u[0].Reason, ErrUnsafeRepo) {
				t.Errorf("Unserved = %+v", u)
			}
		})
	}
	// An alternate inside the root (a pool repository, as forks use) is fine.
	r, _ := NewResolver(t.TempDir())
	pool, _ := r.Create(context.Background(), "pool")
	repo, _ := r.Create(context.Background(), "fork")
	os.MkdirAll(filepath.Join(repo.Path, "objects", "info"), 0o755)
	os.WriteFile(filepath.Join(repo.Path, "objects", "info", "alternates"), []byte("../../pool.git/objects\n"+filepath.Join(pool.Path, "objects")+"\n"), 0o644)
	if _, err := r.Resolve("fork"); err != nil {
		t.Errorf("Resolve(fork) with an alternate in the root: %v", err)
	}
}

// FuzzCleanName: whatever the input, an accepted name is canonical, stays
// relative and clean, and resolves inside the root.
func FuzzCleanName(f *testing.F) {
	for _, s := range []string{"a", "group/name.git", "group/name.git.git", "a.git/b", "a.GIT", "../x", "a/./b", "-x", ".git", "a\x00", "a//b", "/abs", "a/b/"} {
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
		if filepath.IsAbs(canon) || filepath.Clean(canon) != canon {
			t.Fatalf("CleanName(%q) = %q: not a clean relative name", name, canon)
		}
		for _, part := range strings.Split(canon, "/") {
			if part == "" || part[0] == '-' || part[0] == '.' || strings.HasSuffix(strings.ToLower(part), ".git") {
				t.Fatalf("CleanName(%q) = %q: bad component %q", name, canon, part)
			}
		}
		if again, err := CleanName(canon); err != nil || again != canon {
			t.Fatalf("CleanName not stable: %q -> %q -> %q, %v", name, canon, again, err)
		}
		if repo, err := r.Resolve(name); err == nil && (repo.Name != canon || repo.Path != filepath.Join(r.Root(), canon+".git")) {
			t.Fatalf("Resolve(%q) = %+v: not the one directory of %q", name, repo, canon)
		}
	})
}

// The exact-case check used on case-insensitive file systems: an entry
// matches only as spelled on disk.
func TestHasEntryIsExact(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "Group"), 0o755)
	for name, want := range map[string]bool{"Group": true, "group": false, "GROUP": false, "Group.git": false} {
		if got, err := hasEntry(dir, name); err != nil || got != want {
			t.Errorf("hasEntry(%q) = %v, %v; want %v", name, got, err, want)
		}
	}
	if got := swapCase("Group/a.git-1"); got != "gROUP/A.GIT-1" {
		t.Errorf("swapCase = %q", got)
	}
}
