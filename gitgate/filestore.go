package gitgate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/gitgate/gitgate/internal/atomicfile"
)

// StateFileName is the name of the maintenance state file in the data dir.
const StateFileName = "maintenance.json"

// maxStateFileSize bounds what is read from the state file: it is a few
// hundred bytes when written by the gate, so anything larger is not ours.
const maxStateFileSize = 64 << 10

// FileStore keeps the maintenance state in a JSON file in the data dir.
// Several processes may write at once (the CLI and the server): every change
// is a read-modify-write under an exclusive lock on a sibling lock file, and
// the file is replaced atomically and durably.
type FileStore struct {
	path string
	now  func() time.Time
}

// NewFileStore returns a store for the state file in dataDir.
func NewFileStore(dataDir string) *FileStore {
	return &FileStore{path: filepath.Join(dataDir, StateFileName), now: time.Now}
}

// Path is the state file's path.
func (s *FileStore) Path() string { return s.path }

// Load reads the state. A missing file is "not in maintenance", version 0.
// A file that exists but cannot be read or parsed is an error: callers must
// not treat it as "not in maintenance".
func (s *FileStore) Load(ctx context.Context) (State, error) {
	if err := ctx.Err(); err != nil {
		return State{}, err
	}
	return readStateFile(s.path)
}

// Apply changes the state under the writers' lock and returns the new state.
// A corrupt state file is not overwritten silently: the change fails and says
// why, so the admin can look at it (or remove it) first.
func (s *FileStore) Apply(ctx context.Context, c Change) (State, error) {
	if err := ctx.Err(); err != nil {
		return State{}, err
	}
	if err := os.MkdirAll(filepath.Dir(s.path), 0o750); err != nil {
		return State{}, fmt.Errorf("create data dir: %w", err)
	}
	lock, err := atomicfile.Acquire(s.path + ".lock")
	if err != nil {
		return State{}, fmt.Errorf("lock maintenance state: %w", err)
	}
	defer lock.Release()
	cur, err := readStateFile(s.path)
	if err != nil {
		return State{}, err
	}
	next, err := cur.Apply(c, s.now())
	if err != nil {
		return State{}, err
	}
	if err := s.write(next); err != nil {
		return State{}, err
	}
	return next, nil
}

// Mirror writes st as it is, version included, under the writers' lock: a
// Geo secondary keeps the primary's state in its own file this way, so that
// its server, CLI and hooks all see it. A state whose version is not newer
// than the stored one is ignored (it was already seen), unless force is set
// (the primary's state was reset).
func (s *FileStore) Mirror(ctx context.Context, st State, force bool) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if err := st.Validate(); err != nil {
		return false, fmt.Errorf("mirrored state: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(s.path), 0o750); err != nil {
		return false, fmt.Errorf("create data dir: %w", err)
	}
	lock, err := atomicfile.Acquire(s.path + ".lock")
	if err != nil {
		return false, fmt.Errorf("lock maintenance state: %w", err)
	}
	defer lock.Release()
	if cur, err := readStateFile(s.path); err == nil && cur.Version >= st.Version && !force {
		return false, nil
	}
	if err := s.write(st); err != nil {
		return false, err
	}
	return true, nil
}

func (s *FileStore) write(st State) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode maintenance state: %w", err)
	}
	if err := atomicfile.Write(s.path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write maintenance state %s: %w", s.path, err)
	}
	return nil
}

// readStateFile parses the state file strictly: unknown fields, trailing
// data, oversize files and invalid values are errors.
func readStateFile(path string) (State, error) {
	data, err := atomicfile.ReadBounded(path, maxStateFileSize)
	if errors.Is(err, fs.ErrNotExist) {
		return State{}, nil
	}
	if err != nil {
		return State{}, fmt.Errorf("read maintenance state: %w", err)
	}
	st, err := DecodeState(data)
	if err != nil {
		return State{}, fmt.Errorf("maintenance state %s: %w", path, err)
	}
	return st, nil
}

// DecodeState parses a state from its JSON form, strictly, and validates it.
func DecodeState(data []byte) (State, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var st State
	if err := dec.Decode(&st); err != nil {
		return State{}, fmt.Errorf("parse: %w", err)
	}
	if dec.More() {
		return State{}, errors.New("parse: trailing data after the JSON object")
	}
	if err := st.Validate(); err != nil {
		return State{}, err
	}
	return st, nil
}
