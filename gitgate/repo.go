package gitgate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/go-git/go-git/v5"

	"github.com/gitgate/gitgate/internal/atomicfile"
)

// Limits on repository names. Generous for real use, tight for abuse.
const (
	maxRepoNameLength = 1024
	maxRepoNameDepth  = 16
)

// Errors from the resolver. Transports show all of them as "not found", so
// that a client cannot tell a refused path from a missing repository; the
// wrapped reason is for the logs.
var (
	ErrInvalidRepoName = errors.New("invalid repository name")
	ErrRepoNotFound    = errors.New("repository not found")
	// ErrUnsafeRepo is returned for a repository that could make git work
	// outside the root: a ".git" entry or worktree files in it, an object
	// store or alternates outside the root.
	ErrUnsafeRepo = errors.New("repository not served: it reaches outside the repository root")
)

// Repo is a resolved bare repository.
type Repo struct {
	// Name is the canonical name: slash-separated, without ".git".
	Name string
	// Path is the absolute path of the bare repository directory.
	Path string
}

// Resolver maps repository names from requests to bare repositories under a
// root directory. Every name is hostile input.
//
// The mapping is one to one: the repository named "group/name" is the
// directory <root>/group/name.git and nothing else (there is no fallback to
// <root>/group/name), and a name is served only if the directory actually
// opened, after symlinks, is that one. So a symlink inside the root that
// points at another repository, or a spelling in another letter case on a
// case-insensitive file system, is not a second name for it: it is not found.
type Resolver struct {
	root string // absolute, symlinks resolved
}

// NewResolver returns a resolver for the bare repositories under root. The
// root must exist.
func NewResolver(root string) (*Resolver, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("repository root: %w", err)
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return nil, fmt.Errorf("repository root: %w", err)
	}
	fi, err := os.Stat(real)
	if err != nil {
		return nil, fmt.Errorf("repository root: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("repository root %s: not a directory", real)
	}
	return &Resolver{root: real}, nil
}

// Root is the absolute repository root.
func (r *Resolver) Root() string { return r.root }

// CleanName validates a repository name as a client sends it ("group/name",
// "group/name.git") and returns its canonical form ("group/name"). It does no
// I/O and is idempotent. Each slash-separated component must be non-empty,
// consist of ASCII letters, digits, '.', '_' and '-', and must not begin with
// '.' or '-'; so "..", absolute paths, NUL and control bytes, option-like and
// hidden components are all rejected. One final ".git" is dropped; after
// that no component may end in ".git" (in any letter case), since such a
// name would be a second spelling of another repository's directory
// ("group/secret.git.git" of "group/secret").
func CleanName(name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("%w: empty", ErrInvalidRepoName)
	}
	if len(name) > maxRepoNameLength {
		return "", fmt.Errorf("%w: longer than %d bytes", ErrInvalidRepoName, maxRepoNameLength)
	}
	name = strings.TrimSuffix(name, ".git")
	parts := strings.Split(name, "/")
	if len(parts) > maxRepoNameDepth {
		return "", fmt.Errorf("%w: deeper than %d components", ErrInvalidRepoName, maxRepoNameDepth)
	}
	for _, p := range parts {
		if err := checkComponent(p); err != nil {
			return "", fmt.Errorf("%w: %q: %w", ErrInvalidRepoName, name, err)
		}
		if hasGitSuffix(p) {
			return "", fmt.Errorf("%w: %q: %w", ErrInvalidRepoName, name, errGitSuffix)
		}
	}
	return name, nil
}

var (
	errEmptyComponent = errors.New("empty path component")
	errLeadingChar    = errors.New("component begins with '.' or '-'")
	errBadChar        = errors.New("character not allowed")
	errGitSuffix      = errors.New(`component ends in ".git": only the last may, once`)
)

func checkComponent(p string) error {
	if p == "" {
		return errEmptyComponent
	}
	if p[0] == '.' || p[0] == '-' {
		return errLeadingChar
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		default:
			return fmt.Errorf("%w: %q", errBadChar, c)
		}
	}
	return nil
}

// hasGitSuffix reports whether p ends in ".git" in any letter case.
func hasGitSuffix(p string) bool {
	return len(p) >= 4 && strings.EqualFold(p[len(p)-4:], ".git")
}

// Resolve finds the bare repository for a client's name: the directory
// <root>/<name>.git. It is served only if, after symlinks, it is that very
// directory (its canonical name, derived from the real path, is the name
// asked for), it is a bare repository, and nothing in it leads git outside
// the root (see [ErrUnsafeRepo]).
func (r *Resolver) Resolve(name string) (Repo, error) {
	canon, err := CleanName(name)
	if err != nil {
		return Repo{}, err
	}
	rel := filepath.FromSlash(canon) + ".git"
	real, err := r.inside(filepath.Join(r.root, rel))
	if err != nil {
		return Repo{}, err
	}
	if real == "" || !isBareRepo(real) {
		return Repo{}, fmt.Errorf("%w: %s", ErrRepoNotFound, canon)
	}
	if got, _ := filepath.Rel(r.root, real); got != rel {
		return Repo{}, fmt.Errorf("%w: %s is another name (a symlink) for %s", ErrRepoNotFound, canon, filepath.ToSlash(got))
	}
	if err := r.exactCase(real, rel); err != nil {
		return Repo{}, fmt.Errorf("%w: %s: %w", ErrRepoNotFound, canon, err)
	}
	if err := r.confined(real); err != nil {
		return Repo{}, fmt.Errorf("%s: %w", canon, err)
	}
	return Repo{Name: canon, Path: real}, nil
}

// inside resolves symlinks in path and checks that the result is within the
// root. It returns "" for a path that does not exist.
func (r *Resolver) inside(path string) (string, error) {
	real, err := filepath.EvalSymlinks(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrRepoNotFound, err)
	}
	if !r.contains(real) {
		return "", fmt.Errorf("%w: %s leads outside the repository root", ErrInvalidRepoName, path)
	}
	return real, nil
}

// contains reports whether the symlink-free absolute path real is the root or
// below it.
func (r *Resolver) contains(real string) bool {
	return real == r.root || strings.HasPrefix(real, r.root+string(filepath.Separator))
}

// maxDirScan bounds the entries read from one directory by exactCase.
const maxDirScan = 1 << 16

// exactCase checks, on a file system that ignores letter case, that every
// component of rel (relative to the root) is spelled as on disk, so that
// "Group/Secret" is not a second name for "group/secret". On a
// case-sensitive file system it costs one failed lstat.
func (r *Resolver) exactCase(real, rel string) error {
	swapped := swapCase(rel)
	if swapped == rel {
		return nil // no letters: nothing to fold
	}
	other, err := os.Lstat(filepath.Join(r.root, swapped))
	if err != nil {
		return nil // the other spelling does not exist: case matters here
	}
	this, err := os.Lstat(real)
	if err != nil || !os.SameFile(this, other) {
		return nil
	}
	dir := r.root
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		found, err := hasEntry(dir, part)
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("%q is not spelled as on disk", part)
		}
		dir = filepath.Join(dir, part)
	}
	return nil
}

// hasEntry reports whether dir has an entry spelled exactly name. It reads
// at most maxDirScan entries.
func hasEntry(dir, name string) (bool, error) {
	f, err := os.Open(dir)
	if err != nil {
		return false, err
	}
	defer f.Close()
	for seen := 0; seen < maxDirScan; {
		names, err := f.Readdirnames(1024)
		for _, n := range names {
			if n == name {
				return true, nil
			}
		}
		seen += len(names)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return false, nil
			}
			return false, err
		}
	}
	return false, fmt.Errorf("%s has more than %d entries", dir, maxDirScan)
}

func swapCase(s string) string {
	b := []byte(s)
	for i, c := range b {
		switch {
		case 'a' <= c && c <= 'z':
			b[i] = c - 'a' + 'A'
		case 'A' <= c && c <= 'Z':
			b[i] = c - 'A' + 'a'
		}
	}
	return string(b)
}

// maxAlternatesSize bounds the objects/info/alternates file read by confined.
const maxAlternatesSize = 64 << 10

// confined checks that git, started on the bare repository at real, stays
// inside the root. git's upload-archive and receive-pack (which have no
// --strict) would open <repo>/.git first if it existed, and a gitfile or
// symlink there can point anywhere; "commondir" and "gitdir" make a
// worktree-style git dir that borrows another repository's refs and
// objects. None of those may exist. The object store and the refs must be
// the repository's own directories, not symlinks, and every alternate
// object store (alternates of alternates included) must resolve inside the
// root: an alternate elsewhere would let a fetch read, and a push build on,
// objects of a repository the gate does not guard.
func (r *Resolver) confined(real string) error {
	for _, name := range [...]string{".git", "commondir", "gitdir"} {
		if _, err := os.Lstat(filepath.Join(real, name)); err == nil || !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w: it holds %q", ErrUnsafeRepo, name)
		}
	}
	objects := filepath.Join(real, "objects")
	// The object store and the refs must be the repository's own
	// directories: symlinked to another repository's, even inside the
	// root, they would make this name a second name for that repository.
	for _, dir := range [...]string{objects, filepath.Join(real, "refs")} {
		if p, err := filepath.EvalSymlinks(dir); err != nil || p != dir {
			return fmt.Errorf("%w: %s is a symbolic link or unreadable", ErrUnsafeRepo, filepath.Base(dir))
		}
	}
	return r.confinedAlternates(objects, 0, map[string]bool{})
}

// Bounds on the alternates walk. git itself follows alternates of
// alternates up to five levels deep; the total bounds the work a file full
// of entries can cause.
const (
	maxAlternateDepth  = 5
	maxAlternateStores = 64
)

// confinedAlternates checks that every alternate object store of the object
// directory objects, and every alternate of those (git follows them too),
// resolves inside the root. The alternates file is read only if it is a
// regular file: a FIFO there would block the request that resolves the
// repository forever.
func (r *Resolver) confinedAlternates(objects string, depth int, seen map[string]bool) error {
	data, err := atomicfile.ReadBounded(filepath.Join(objects, "info", "alternates"), maxAlternatesSize)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: alternates unreadable, not a regular file, or larger than %d bytes: %w", ErrUnsafeRepo, maxAlternatesSize, err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		if line[0] == '"' { // a C-quoted path: not worth parsing, refuse
			return fmt.Errorf("%w: quoted path in alternates", ErrUnsafeRepo)
		}
		if !filepath.IsAbs(line) {
			line = filepath.Join(objects, line)
		}
		p, err := filepath.EvalSymlinks(line)
		if err != nil || !r.contains(p) {
			return fmt.Errorf("%w: alternate object store %s is missing or outside the root", ErrUnsafeRepo, line)
		}
		if seen[p] {
			continue
		}
		seen[p] = true
		if len(seen) > maxAlternateStores {
			return fmt.Errorf("%w: more than %d alternate object stores", ErrUnsafeRepo, maxAlternateStores)
		}
		if depth < maxAlternateDepth {
			if err := r.confinedAlternates(p, depth+1, seen); err != nil {
				return err
			}
		}
	}
	return nil
}

// isBareRepo checks, as git does, that dir has HEAD, objects/ and refs/. It
// is a few stat calls: cheap enough for the request path.
func isBareRepo(dir string) bool {
	if fi, err := os.Stat(filepath.Join(dir, "HEAD")); err != nil || !fi.Mode().IsRegular() {
		return false
	}
	for _, sub := range [...]string{"objects", "refs"} {
		if fi, err := os.Stat(filepath.Join(dir, sub)); err != nil || !fi.IsDir() {
			return false
		}
	}
	return true
}

// Create makes a new, empty bare repository <root>/<name>.git with go-git,
// creating the groups it lives in. It fails if the repository exists.
func (r *Resolver) Create(ctx context.Context, name string) (Repo, error) {
	if err := ctx.Err(); err != nil {
		return Repo{}, err
	}
	canon, err := CleanName(name)
	if err != nil {
		return Repo{}, err
	}
	_, rerr := r.Resolve(canon)
	if rerr == nil {
		return Repo{}, fmt.Errorf("repository %s already exists", canon)
	}
	path := filepath.Join(r.root, filepath.FromSlash(canon)+".git")
	if _, err := os.Lstat(path); err == nil {
		return Repo{}, fmt.Errorf("create %s: %s exists but is not served: %w", canon, path, rerr)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return Repo{}, fmt.Errorf("create %s: %w", canon, err)
	}
	if _, err := r.inside(filepath.Dir(path)); err != nil {
		return Repo{}, err
	}
	if _, err := git.PlainInitWithOptions(path, &git.PlainInitOptions{
		Bare:        true,
		InitOptions: git.InitOptions{DefaultBranch: "refs/heads/main"},
	}); err != nil {
		return Repo{}, fmt.Errorf("create %s: %w", canon, err)
	}
	return r.Resolve(canon)
}

// List returns every bare repository under the root that [Resolver.Resolve]
// serves, sorted by name. It does not follow symlinks and skips directories
// whose names a client could not ask for.
func (r *Resolver) List(ctx context.Context) ([]Repo, error) {
	repos, _, err := r.scan(ctx)
	return repos, err
}

// Unserved is a bare repository under the root that no name reaches.
type Unserved struct {
	// Path is relative to the root, slash-separated.
	Path string
	// Reason says why Resolve does not serve it.
	Reason error
}

// Unserved lists the bare repositories under the root (symlinks not
// followed, hidden directories skipped) that [Resolver.Resolve] does not
// serve under any name: a directory without ".git" at the end, a name
// with a second ".git", a repository that reaches outside the root. An
// administrator should rename or repair them.
func (r *Resolver) Unserved(ctx context.Context) ([]Unserved, error) {
	_, unserved, err := r.scan(ctx)
	return unserved, err
}

// scan walks the root for bare repositories and sorts them into served and
// not served.
func (r *Resolver) scan(ctx context.Context) ([]Repo, []Unserved, error) {
	var repos []Repo
	var unserved []Unserved
	err := filepath.WalkDir(r.root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		if !d.IsDir() || path == r.root {
			return nil
		}
		rel, _ := filepath.Rel(r.root, path)
		if checkComponent(d.Name()) != nil {
			return filepath.SkipDir
		}
		if !isBareRepo(path) {
			return nil
		}
		// Only what a client could be served, under its one name.
		name, ok := strings.CutSuffix(filepath.ToSlash(rel), ".git")
		var repo Repo
		switch {
		case !ok:
			err = errors.New(`the directory name does not end in ".git"`)
		default:
			repo, err = r.Resolve(name)
		}
		if err == nil && repo.Path != path {
			err = fmt.Errorf("served as %s", repo.Path)
		}
		if err == nil {
			repos = append(repos, repo)
		} else {
			unserved = append(unserved, Unserved{Path: filepath.ToSlash(rel), Reason: err})
		}
		return filepath.SkipDir
	})
	if err != nil {
		return nil, nil, fmt.Errorf("list repositories: %w", err)
	}
	sort.Slice(repos, func(i, j int) bool { return repos[i].Name < repos[j].Name })
	return repos, unserved, nil
}
