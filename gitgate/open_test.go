package gitgate

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// readmeRules are the README's example rules: under group/ anonymous users
// read and bob writes, but group/secret only bob may read.
type readmeRules struct{}

func (readmeRules) Permission(u *User, repo string) Permission {
	switch rest, inGroup := strings.CutPrefix(repo, "group/"); {
	case repo == "group/secret":
		if u.String() == "bob" {
			return PermissionRead
		}
	case inGroup && rest != "" && !strings.Contains(rest, "/"):
		if u.String() == "bob" {
			return PermissionWrite
		}
		return PermissionRead
	}
	return PermissionNone
}

// aliasRoot makes a repository root with the README's repositories and every
// kind of second name for them that a file system allows: symlinks to a
// repository and to its group, and a directory whose name ends in .git.
func aliasRoot(t *testing.T) *Resolver {
	t.Helper()
	root := t.TempDir()
	r, err := NewResolver(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"group/secret", "group/public", "group/sub/deep", "top"} {
		if _, err := r.Create(context.Background(), name); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{
		"group/alias.git": "secret.git",
		"grp":             "group",
		"other/s.git":     "../group/secret.git",
	} {
		path := filepath.Join(root, link)
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.Symlink(target, path); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// names returns the table of names a client could try, and n generated ones:
// components drawn from the repositories' names in other cases and with
// .git suffixes, one to three deep.
func names(n int) []string {
	table := []string{
		"group/secret", "group/secret.git", "group/secret.git.git", "group/secret.git.git.git",
		"group/Secret", "GROUP/secret", "group/SECRET.GIT", "group/secret.GIT",
		"group/alias", "group/alias.git", "grp/secret", "grp/secret.git", "other/s",
		"group/public", "group/public.git.git", "group.git/public", "top", "top.git", "Top",
		"group/sub/deep", "group/sub/deep.git.git", "group/sub.git/deep", "grp/sub/deep",
		"group", "group/sub", "missing", "group/missing",
	}
	segs := []string{"group", "Group", "GROUP", "grp", "secret", "Secret", "public", "alias", "sub", "deep", "top", "other", "s"}
	sufs := []string{"", "", "", ".git", ".git.git", ".GIT", ".Git.git"}
	rng := rand.New(rand.NewSource(10))
	for range n {
		parts := make([]string, 1+rng.Intn(3))
		for i := range parts {
			parts[i] = segs[rng.Intn(len(segs))] + sufs[rng.Intn(len(sufs))]
		}
		table = append(table, strings.Join(parts, "/"))
	}
	return table
}

// canonicalOf derives a repository's one name from the directory opened.
func canonicalOf(r *Resolver, path string) string {
	rel, err := filepath.Rel(r.Root(), path)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(filepath.ToSlash(rel), ".git")
}

// For every name that resolves, the repository's name is the one derived
// from the directory actually opened, and the decision is the decision for
// that name: no spelling reaches a repository under rules meant for another.
func TestEveryNameThatResolvesIsDecidedAsItsCanonicalName(t *testing.T) {
	r := aliasRoot(t)
	p := &Policy{State: fixedState{}, Access: readmeRules{}}
	users := []*User{nil, {Name: "bob"}, {Name: "carol"}}
	resolved := 0
	for _, name := range names(2000) {
		repo, err := r.Resolve(name)
		if err != nil {
			continue
		}
		resolved++
		canon := canonicalOf(r, repo.Path)
		if repo.Name != canon {
			t.Errorf("Resolve(%q) = name %q for the directory of %q", name, repo.Name, canon)
			continue
		}
		if c, err := CleanName(name); err != nil || c != canon {
			t.Errorf("Resolve(%q) opened %q, but the name cleans to %q, %v", name, canon, c, err)
		}
		for _, u := range users {
			for _, svc := range []Service{UploadPack, ReceivePack, UploadArchive} {
				got := p.Decide(Operation{Service: svc, User: u, Repo: repo.Name})
				want := p.Decide(Operation{Service: svc, User: u, Repo: canon})
				if !sameDecision(got, want) {
					t.Errorf("%s %s by %s: decided %v, for its repository %s %v", svc, name, u, got.Err, canon, want.Err)
				}
			}
		}
	}
	if resolved < 10 {
		t.Fatalf("only %d names resolved: the generator does not reach the repositories", resolved)
	}
}

func sameDecision(a, b Decision) bool {
	return a.Allowed() == b.Allowed() && (a.Allowed() || errors.Is(a.Err, b.Err))
}

// Open is the same property through the one resolve-and-decide step, run
// from several goroutines at once: whatever the spelling, the operation is
// decided on the canonical name, and a name that reaches no repository gets
// exactly the refusal of a missing one.
func TestOpenDecidesOnTheCanonicalName(t *testing.T) {
	r := aliasRoot(t)
	p := &Policy{State: fixedState{}, Access: readmeRules{}}
	ctx := context.Background()
	all := names(1000)
	var wg sync.WaitGroup
	errs := make(chan error, len(all))
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(all); i += 4 {
				name := all[i]
				for _, u := range []*User{nil, {Name: "bob"}, {Name: "carol"}} {
					op := Operation{Service: ReceivePack, User: u, Repo: name}
					repo, d := p.Open(ctx, r, &op)
					if _, err := r.Resolve(name); err != nil {
						missing := p.Missing(Operation{Service: ReceivePack, User: u, Repo: "no/such/repository"})
						if r := d.Refusal(); r == nil || !errors.Is(d.Err, missing.Err) || r.Cause == nil {
							errs <- fmt.Errorf("Open(%q) by %s = %v; want %v with a cause", name, u, d.Err, missing.Err)
						}
						continue
					}
					canon := canonicalOf(r, repo.Path)
					want := p.Decide(Operation{Service: ReceivePack, User: u, Repo: canon})
					if op.Repo != canon || !sameDecision(d, want) {
						errs <- fmt.Errorf("Open(%q) by %s = %s, %v; want %s, %v", name, u, op.Repo, d.Err, canon, want.Err)
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// The README's attack: group/secret.git.git was served as "group/secret.git",
// which the group/* rule lets anonymous users read and bob push to.
func TestOpenRefusesTheDoubledGitSuffix(t *testing.T) {
	r := aliasRoot(t)
	p := &Policy{State: fixedState{}, Access: readmeRules{}}
	for _, tc := range []struct {
		user *User
		svc  Service
		want error
	}{
		{nil, UploadPack, ErrUnauthenticated},
		{&User{Name: "bob"}, ReceivePack, ErrNotFound},
	} {
		op := Operation{Service: tc.svc, User: tc.user, Repo: "group/secret.git.git"}
		if _, d := p.Open(context.Background(), r, &op); !errors.Is(d.Err, tc.want) {
			t.Errorf("%s group/secret.git.git by %s: %v; want %v", tc.svc, tc.user, d.Err, tc.want)
		}
	}
}

// Hidden and missing repositories get the same refusal, whoever asks, even
// next to repositories that anonymous users may read.
func TestOpenHiddenLooksMissing(t *testing.T) {
	r := aliasRoot(t)
	p := &Policy{State: fixedState{}, Access: readmeRules{}}
	for _, u := range []*User{nil, {Name: "carol"}} {
		var seen []error
		for _, name := range []string{"group/secret", "group/missing", "group/secret.git.git", "group/alias", "grp/secret", "group/Secret"} {
			for _, svc := range []Service{UploadPack, ReceivePack} {
				op := Operation{Service: svc, User: u, Repo: name}
				_, d := p.Open(context.Background(), r, &op)
				seen = append(seen, d.Err)
			}
		}
		for i, err := range seen {
			if err == nil || !errors.Is(err, seen[0]) {
				t.Errorf("%s: refusal %d is %v, refusal 0 %v", u, i, err, seen[0])
			}
		}
	}
}
