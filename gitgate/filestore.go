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

// ErrStateMissing is returned when the state file is missing, or is a
// symbolic link whose target is missing, in a data dir that has had a state:
// it was removed or lost, and reading it as "never in maintenance" would
// reopen pushes. "gitgate maintenance reset" writes a new one.
var ErrStateMissing = errors.New("the maintenance state file is missing")

// FileStore keeps the maintenance state in a JSON file in the data dir.
// Several processes may write at once (the CLI and the server): every change
// is a read-modify-write under an exclusive lock on a sibling lock file, and
// the file is replaced atomically and durably.
//
// The lock file (maintenance.json.lock) also records the highest version the
// data dir has held. Once that record exists, the data dir has had a state:
// a missing state file is then an error (ErrStateMissing), never "not in
// maintenance", and a reset continues the versions above it.
type FileStore struct {
	path string
	now  func() time.Time

	// LockBusy, if not nil, is called once when a change finds the lock
	// held by another writer and has to wait for it.
	LockBusy func()
}

// NewFileStore returns a store for the state file in dataDir.
func NewFileStore(dataDir string) *FileStore {
	return &FileStore{path: filepath.Join(dataDir, StateFileName), now: time.Now}
}

// Path is the state file's path.
func (s *FileStore) Path() string { return s.path }

// lockPath is the path of the writers' lock file, which also keeps the
// highest version written.
func (s *FileStore) lockPath() string { return s.path + ".lock" }

// Load reads the state. A data dir that never had a state (no state file,
// no version record) is "not in maintenance", version 0. A file that exists
// but cannot be read or parsed in time, a FIFO or other special file, or a
// missing file in a data dir that has had one is an error: callers must not
// treat it as "not in maintenance".
func (s *FileStore) Load(ctx context.Context) (State, error) {
	if err := ctx.Err(); err != nil {
		return State{}, err
	}
	return s.read(ctx)
}

// Apply changes the state under the writers' lock and returns the new state.
// A corrupt or missing state file is not overwritten silently: the change
// fails and says why, so the admin can look at it first (and then reset it).
func (s *FileStore) Apply(ctx context.Context, c Change) (State, error) {
	var next State
	err := s.locked(ctx, func(lock *atomicfile.Lock) error {
		cur, err := s.read(ctx)
		if err != nil {
			return err
		}
		if next, err = cur.Apply(c, s.now()); err != nil {
			return err
		}
		return s.write(lock, next)
	})
	return next, err
}

// Reset replaces the state, whatever the file holds (nothing, a broken
// link, a corrupt file), with a fresh state changed by c: disabled unless c
// enables it. The new version is one above the highest this data dir has
// held, as recorded in the lock file or read from the old file, so the
// versions never go back and Geo secondaries take it as a newer state.
func (s *FileStore) Reset(ctx context.Context, c Change) (State, error) {
	var next State
	err := s.locked(ctx, func(lock *atomicfile.Lock) error {
		base := readHighWater(lock)
		if cur, err := s.read(ctx); err == nil {
			base = max(base, cur.Version)
		}
		var err error
		if next, err = (State{Version: base}).Apply(c, s.now()); err != nil {
			return err
		}
		return s.write(lock, next)
	})
	return next, err
}

// Init records, for a data dir written before versions were recorded in
// the lock file, the version of its state file, so that from now on a
// missing state file is seen as missing. It does nothing in a data dir
// that has no state yet, an unreadable one, or already has the record. The
// server calls it at start.
func (s *FileStore) Init(ctx context.Context) error {
	return s.locked(ctx, func(lock *atomicfile.Lock) error {
		if note, err := lock.ReadNote(maxNoteSize); err != nil || len(note) > 0 {
			return err
		}
		cur, err := s.read(ctx)
		if err != nil {
			return nil // nothing to record; Load reports the state's error
		}
		if _, err := os.Lstat(s.path); err != nil {
			return nil // no state yet: the first write records it
		}
		return writeHighWater(lock, cur.Version)
	})
}

// Mirror writes st as it is, version included, under the writers' lock: a
// Geo secondary keeps the primary's state in its own file this way, so that
// its server, CLI and hooks all see it. A state whose version is not newer
// than the stored one is ignored (it was already seen), unless force is set
// (the primary's state was reset). A missing or unreadable local file is
// replaced.
func (s *FileStore) Mirror(ctx context.Context, st State, force bool) (bool, error) {
	if err := st.Validate(); err != nil {
		return false, fmt.Errorf("mirrored state: %w", err)
	}
	wrote := false
	err := s.locked(ctx, func(lock *atomicfile.Lock) error {
		if cur, err := s.read(ctx); err == nil && cur.Version >= st.Version && !force {
			return nil
		}
		wrote = true
		return s.write(lock, st)
	})
	return wrote && err == nil, err
}

// locked runs fn holding the writers' lock. The wait for the lock is
// bounded by ctx, and by atomicfile.DefaultLockTimeout when ctx has no
// deadline.
func (s *FileStore) locked(ctx context.Context, fn func(*atomicfile.Lock) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(s.path), 0o750); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	lctx := ctx
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		lctx, cancel = context.WithTimeout(ctx, atomicfile.DefaultLockTimeout)
		defer cancel()
	}
	lock, err := atomicfile.AcquireContext(lctx, s.lockPath(), s.LockBusy)
	if err != nil {
		return fmt.Errorf("lock maintenance state: %w", err)
	}
	defer lock.Release()
	return fn(lock)
}

// write records the version in the lock file, then replaces the state file.
// In that order, a crash in between leaves the record ahead (versions
// skip one), never behind (a reset could reuse a version).
func (s *FileStore) write(lock *atomicfile.Lock, st State) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode maintenance state: %w", err)
	}
	if err := writeHighWater(lock, max(readHighWater(lock), st.Version)); err != nil {
		return fmt.Errorf("record maintenance state version: %w", err)
	}
	if err := atomicfile.Write(s.path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write maintenance state %s: %w", s.path, err)
	}
	return nil
}

// The version record in the lock file: fixed width, so that a new record
// overwrites the old one in place.
const (
	noteFormat  = "highest version %020d\n"
	maxNoteSize = 64
)

func writeHighWater(lock *atomicfile.Lock, v uint64) error {
	return lock.WriteNote(fmt.Appendf(nil, noteFormat, v))
}

// readHighWater returns the recorded version, or 0 when there is none or it
// cannot be read (the state file's own version is then the only trace).
func readHighWater(lock *atomicfile.Lock) uint64 {
	note, err := lock.ReadNote(maxNoteSize)
	if err != nil {
		return 0
	}
	var v uint64
	if _, err := fmt.Sscanf(string(note), noteFormat, &v); err != nil {
		return 0
	}
	return v
}

// read parses the state file strictly: unknown fields, trailing data,
// oversize files, special files and invalid values are errors, and so is a
// read that does not finish in time.
func (s *FileStore) read(ctx context.Context) (State, error) {
	data, err := atomicfile.ReadBoundedContext(ctx, s.path, maxStateFileSize)
	if errors.Is(err, fs.ErrNotExist) {
		return State{}, s.missing()
	}
	if err != nil {
		return State{}, fmt.Errorf("read maintenance state: %w", err)
	}
	st, err := DecodeState(data)
	if err != nil {
		return State{}, fmt.Errorf("maintenance state %s: %w", s.path, err)
	}
	return st, nil
}

// missing decides what a missing state file means: nothing in a data dir
// that never had a state, ErrStateMissing in one that had (its lock file
// records a version), and always for a symbolic link whose target is gone.
func (s *FileStore) missing() error {
	const hint = `pushes stay refused; if that is intended, run "gitgate maintenance reset"`
	if fi, err := os.Lstat(s.path); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		return fmt.Errorf("%w: %s is a symbolic link whose target is missing; %s", ErrStateMissing, s.path, hint)
	}
	fi, err := os.Lstat(s.lockPath())
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("read maintenance state: %s is missing and whether this data dir had one cannot be told: %w", s.path, err)
	case fi.Size() > 0:
		return fmt.Errorf("%w: %s was removed, but this data dir has had a state (recorded in %s); %s",
			ErrStateMissing, s.path, filepath.Base(s.lockPath()), hint)
	}
	return nil
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
