package lfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Prune removes repo's links to the objects keep does not name, except
// links made at or after since (an object copied or fetched while the
// listing keep came from was being read). A Geo secondary calls it with
// the primary's listing of repo, so that an object no longer linked there
// is no longer served here. It returns the oids unlinked.
func (s *Store) Prune(repo string, keep func(oid string) bool, since time.Time) ([]string, error) {
	root, err := s.repoLinks(repo, false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var gone []string
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == root {
				return fs.SkipAll
			}
			return err
		}
		if d.IsDir() || !ValidOID(d.Name()) || keep(d.Name()) {
			return nil
		}
		fi, err := d.Info()
		if err != nil || !fi.ModTime().Before(since) {
			return nil
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		gone = append(gone, d.Name())
		return nil
	})
	if err != nil {
		return gone, fmt.Errorf("lfs: prune links of %s: %w", repo, err)
	}
	return gone, nil
}

// SweepResult counts what [Store.Sweep] did.
type SweepResult struct {
	Trashed  int // objects no repository links, moved to the trash
	Restored int // trashed objects linked again, moved back
	Removed  int // trashed objects past the retention, deleted
}

// Sweep moves the objects none of repos links to lfs/trash/, moves back
// those that are linked again, and deletes the trashed ones that have been
// there for retention. repos are all the repositories of the site: links of
// any other (a removed repository's) keep nothing. A Geo secondary runs it
// after each reconcile, so an object removed on the primary leaves its
// disk only after the same delay as a removed repository.
//
// It takes no lock against uploads: an object linked while the sweep runs
// may be trashed, and is then missing until the next sweep restores it (a
// secondary fetches a missing object from its primary meanwhile).
func (s *Store) Sweep(repos []string, retention time.Duration, now time.Time) (SweepResult, error) {
	var res SweepResult
	linked := map[string]bool{}
	for _, repo := range repos {
		root, err := s.repoLinks(repo, false)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return res, err
		}
		err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) && p == root {
					return fs.SkipAll
				}
				return err
			}
			if !d.IsDir() && ValidOID(d.Name()) {
				linked[d.Name()] = true
			}
			return nil
		})
		if err != nil {
			return res, fmt.Errorf("lfs: sweep: links of %s: %w", repo, err)
		}
	}
	trash := filepath.Join(s.dir, "trash")
	if err := os.MkdirAll(trash, 0o750); err != nil {
		return res, fmt.Errorf("lfs: sweep: %w", err)
	}
	err := filepath.WalkDir(filepath.Join(s.dir, "objects"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !ValidOID(d.Name()) || linked[d.Name()] {
			return nil
		}
		dest := filepath.Join(trash, d.Name())
		if err := os.Rename(p, dest); err != nil {
			return err
		}
		os.Chtimes(dest, now, now) // the retention counts from now
		res.Trashed++
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("lfs: sweep: %w", err)
	}
	entries, err := os.ReadDir(trash)
	if err != nil {
		return res, fmt.Errorf("lfs: sweep: %w", err)
	}
	for _, e := range entries {
		oid := e.Name()
		if !ValidOID(oid) {
			continue
		}
		p := filepath.Join(trash, oid)
		switch fi, err := e.Info(); {
		case err != nil:
		case linked[oid]:
			if _, err := os.Lstat(s.objectPath(oid)); err == nil {
				os.Remove(p) // copied again meanwhile
				continue
			}
			if err := os.MkdirAll(filepath.Dir(s.objectPath(oid)), 0o750); err != nil {
				return res, fmt.Errorf("lfs: sweep: %w", err)
			}
			if err := os.Rename(p, s.objectPath(oid)); err != nil {
				return res, fmt.Errorf("lfs: sweep: restore %s: %w", oid, err)
			}
			res.Restored++
		case now.Sub(fi.ModTime()) >= retention:
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return res, fmt.Errorf("lfs: sweep: %w", err)
			}
			res.Removed++
		}
	}
	return res, nil
}
