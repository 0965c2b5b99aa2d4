package gitgate

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Defaults of the [QuarantineCleaner].
const (
	// DefaultQuarantineMaxAge is how long a push quarantine must have been
	// untouched before it is removed. No push runs that long: git processes
	// are bounded far below it, so only the remains of a killed push are
	// that old.
	DefaultQuarantineMaxAge = 24 * time.Hour
	// DefaultQuarantineInterval is how often the repositories are swept.
	DefaultQuarantineInterval = time.Hour
)

// quarantinePrefix starts the name of the directory, under a repository's
// objects/, where git receive-pack keeps a push's objects until its refs
// are updated (git's tmp-objdir).
const quarantinePrefix = "tmp_objdir-incoming-"

// maxQuarantineScan bounds the entries looked at inside one quarantine
// directory. One with more is kept (and logged): it is not worth the I/O
// to prove it stale.
const maxQuarantineScan = 100_000

// QuarantineCleaner removes the object quarantine directories
// (objects/tmp_objdir-incoming-*) that pushes killed before the end left
// behind in the repositories; git removes them itself when a push ends in
// any other way. A quarantine is stale when neither it nor anything in it
// has been modified for MaxAge, so a running push's quarantine, which git is
// writing into, is never taken.
type QuarantineCleaner struct {
	Resolver *Resolver
	// MaxAge is the age of a stale quarantine; DefaultQuarantineMaxAge if 0.
	MaxAge time.Duration
	// Interval is the time between sweeps; DefaultQuarantineInterval if 0.
	Interval time.Duration
	Log      *slog.Logger
	// Now gives the time; time.Now if nil.
	Now func() time.Time
}

// Run sweeps the repositories at once and then every Interval, until ctx
// ends. It returns nil when ctx ends; a failed sweep is logged and the next
// one is tried.
func (c *QuarantineCleaner) Run(ctx context.Context) error {
	interval := c.Interval
	if interval <= 0 {
		interval = DefaultQuarantineInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := c.Sweep(ctx); err != nil && ctx.Err() == nil {
			c.Log.Warn("quarantine sweep failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Sweep removes the stale quarantines of every repository the resolver
// serves and returns how many it removed.
func (c *QuarantineCleaner) Sweep(ctx context.Context) (int, error) {
	repos, err := c.Resolver.List(ctx)
	if err != nil {
		return 0, fmt.Errorf("quarantine sweep: %w", err)
	}
	maxAge := c.MaxAge
	if maxAge <= 0 {
		maxAge = DefaultQuarantineMaxAge
	}
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	cutoff := now().Add(-maxAge)
	removed := 0
	var errs []error
	for _, repo := range repos {
		if err := ctx.Err(); err != nil {
			return removed, err
		}
		n, err := c.sweepRepo(repo, cutoff)
		removed += n
		if err != nil {
			errs = append(errs, err)
		}
	}
	if removed > 0 {
		c.Log.Info("quarantine sweep done", "removed", removed, "repositories", len(repos))
	}
	return removed, errors.Join(errs...)
}

// sweepRepo removes repo's quarantines last modified before cutoff.
func (c *QuarantineCleaner) sweepRepo(repo Repo, cutoff time.Time) (int, error) {
	objects := filepath.Join(repo.Path, "objects")
	entries, err := os.ReadDir(objects)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", repo.Name, err)
	}
	removed := 0
	var errs []error
	for _, e := range entries {
		// Only real directories: a symlink by that name is not git's.
		if !e.IsDir() || !strings.HasPrefix(e.Name(), quarantinePrefix) {
			continue
		}
		dir := filepath.Join(objects, e.Name())
		newest, err := newestModTime(dir)
		if err != nil {
			c.Log.Warn("quarantine kept: cannot tell its age", "repo", repo.Name, "dir", e.Name(), "err", err)
			continue
		}
		if !newest.Before(cutoff) {
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, fmt.Errorf("%s: remove %s: %w", repo.Name, e.Name(), err))
			continue
		}
		removed++
		c.Log.Info("stale push quarantine removed", "repo", repo.Name, "dir", e.Name(), "modified", newest.UTC().Format(time.RFC3339))
	}
	return removed, errors.Join(errs...)
}

// newestModTime is the latest modification time of dir and everything in
// it, symlinks not followed. It fails for a directory of more than
// maxQuarantineScan entries.
func newestModTime(dir string) (time.Time, error) {
	var newest time.Time
	seen := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if seen++; seen > maxQuarantineScan {
			return fmt.Errorf("more than %d entries", maxQuarantineScan)
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if fi.ModTime().After(newest) {
			newest = fi.ModTime()
		}
		return nil
	})
	return newest, err
}
