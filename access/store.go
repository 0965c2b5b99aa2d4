package access

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/gitgate/gitgate/internal/atomicfile"
)

// Store reads and rewrites the access file for the CLI. Rewrites hold an
// exclusive lock on "<file>.lock", so concurrent CLI commands never lose
// each other's edits, and replace the file atomically, so a running server
// never reads half a file.
type Store struct {
	path string
	doc  Document // nil: the file at path
}

// Document is where the access data is kept when it is not the data dir's
// file: a database row shared by every gate of a site. The bytes are the
// access file's format, parsed and validated exactly as the file is.
type Document interface {
	// Name names the document in messages.
	Name() string
	// Read returns the document, or an error matching fs.ErrNotExist when
	// there is none yet.
	Read(ctx context.Context) ([]byte, error)
	// Update replaces the document with fn's result, atomically with
	// respect to every other writer; old is nil when there is none.
	Update(ctx context.Context, fn func(old []byte) ([]byte, error)) error
}

// NewStoreOn returns a store that keeps the access data in doc.
func NewStoreOn(doc Document) *Store { return &Store{path: doc.Name(), doc: doc} }

// NewStore returns the store for the access file in dataDir.
func NewStore(dataDir string) *Store { return &Store{path: FilePath(dataDir)} }

// Path returns the path of the access file.
func (s *Store) Path() string { return s.path }

// Load reads and validates the file. A missing file reads as a File with no
// users and no rules.
func (s *Store) Load() (*File, error) {
	f, _, err := s.read()
	return f, err
}

// Update reads the file, applies fn and, if fn succeeds, writes the result
// back, all under the lock. The result is validated first; an invalid file
// is never written. Writing re-encodes the file, so comments added by hand
// are lost. An edit made by hand while Update runs is detected and Update
// fails rather than overwrite it.
func (s *Store) Update(fn func(f *File) error) error {
	if s.doc != nil {
		return s.doc.Update(context.Background(), func(old []byte) ([]byte, error) {
			f := &File{source: s.path}
			if len(old) > 0 {
				var err error
				if f, err = ParseFile(s.path, old); err != nil {
					return nil, err
				}
			}
			if err := fn(f); err != nil {
				return nil, err
			}
			data, err := f.Marshal()
			if err != nil {
				return nil, err
			}
			if _, err := ParseFile(s.path, data); err != nil {
				return nil, fmt.Errorf("refusing to write invalid access data: %w", err)
			}
			return data, nil
		})
	}
	if err := os.MkdirAll(filepath.Dir(s.path), 0o750); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	lock, err := atomicfile.Acquire(s.path + ".lock")
	if err != nil {
		return err
	}
	defer lock.Release()

	f, before, err := s.read()
	if err != nil {
		return err
	}
	if err := fn(f); err != nil {
		return err
	}
	data, err := f.Marshal()
	if err != nil {
		return err
	}
	// Validate what will be on disk, as the server will read it.
	if _, err := ParseFile(s.path, data); err != nil {
		return fmt.Errorf("refusing to write an invalid access file: %w", err)
	}
	now, err := readLimited(s.path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if !bytes.Equal(now, before) {
		return fmt.Errorf("%s changed while it was being updated; run the command again", s.path)
	}
	if err := atomicfile.Write(s.path, data, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", s.path, err)
	}
	return nil
}

// read returns the parsed file and its raw bytes (nil when missing).
func (s *Store) read() (*File, []byte, error) {
	var data []byte
	var err error
	if s.doc != nil {
		data, err = s.doc.Read(context.Background())
	} else {
		data, err = readLimited(s.path)
	}
	if errors.Is(err, fs.ErrNotExist) {
		return &File{source: s.path}, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	f, err := ParseFile(s.path, data)
	if err != nil {
		return nil, nil, err
	}
	return f, data, nil
}

// readLimited reads path, refusing files larger than MaxFileSize.
func readLimited(path string) ([]byte, error) {
	data, err := atomicfile.ReadBounded(path, MaxFileSize)
	if errors.Is(err, atomicfile.ErrTooLarge) {
		return nil, &FileError{File: path, Err: fmt.Errorf("larger than %d bytes", MaxFileSize)}
	}
	return data, err
}
