package gitgate

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/go-git/go-git/v5"
)

// Limits on repository names. Generous for real use, tight for abuse.
const (
	maxRepoNameLength = 1024
	maxRepoNameDepth  = 16
)

// Errors from the resolver. Transports show both as "not found", so that a
// client cannot tell a forbidden path from a missing repository; the wrapped
// reason is for the logs.
var (
	ErrInvalidRepoName = errors.New("invalid repository name")
	ErrRepoNotFound    = errors.New("repository not found")
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
// I/O. Each slash-separated component must be non-empty, consist of ASCII
// letters, digits, '.', '_' and '-', and must not begin with '.' or '-'; so
// "..", absolute paths, NUL and control bytes, option-like and hidden
// components are all rejected.
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
	}
	return name, nil
}

var (
	errEmptyComponent = errors.New("empty path component")
	errLeadingChar    = errors.New("component begins with '.' or '-'")
	errBadChar        = errors.New("character not allowed")
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

// Resolve finds the bare repository for a client's name. The repository lives
// at <root>/<name>.git (or, for repositories made by other tools, at
// <root>/<name>). The path must stay inside the root after symlinks are
// resolved, and must be a bare repository.
func (r *Resolver) Resolve(name string) (Repo, error) {
	canon, err := CleanName(name)
	if err != nil {
		return Repo{}, err
	}
	for _, rel := range [...]string{canon + ".git", canon} {
		path, err := r.inside(filepath.Join(r.root, filepath.FromSlash(rel)))
		if err != nil {
			return Repo{}, err
		}
		if path != "" && isBareRepo(path) {
			return Repo{Name: canon, Path: path}, nil
		}
	}
	return Repo{}, fmt.Errorf("%w: %s", ErrRepoNotFound, canon)
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
	if real != r.root && !strings.HasPrefix(real, r.root+string(filepath.Separator)) {
		return "", fmt.Errorf("%w: %s leads outside the repository root", ErrInvalidRepoName, path)
	}
	return real, nil
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
	if _, err := r.Resolve(canon); err == nil {
		return Repo{}, fmt.Errorf("repository %s already exists", canon)
	}
	path := filepath.Join(r.root, filepath.FromSlash(canon)+".git")
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

// List returns every bare repository under the root, sorted by name. It does
// not follow symlinks and skips directories whose names a client could not
// ask for.
func (r *Resolver) List(ctx context.Context) ([]Repo, error) {
	var repos []Repo
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
		if isBareRepo(path) {
			if canon, err := CleanName(filepath.ToSlash(rel)); err == nil {
				repos = append(repos, Repo{Name: canon, Path: path})
			}
			return filepath.SkipDir
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list repositories: %w", err)
	}
	sort.Slice(repos, func(i, j int) bool { return repos[i].Name < repos[j].Name })
	return repos, nil
}
