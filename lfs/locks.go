package lfs

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/gitgate/gitgate/internal/atomicfile"
)

// Limits of the lock store.
const (
	maxLocksPerRepo  = 10000
	maxLockPathBytes = 4096
)

// maxLocksFile bounds a repository's lock file, read and written (a
// variable only so that tests can reach it without writing 16 MiB).
var maxLocksFile int64 = 16 << 20

// Errors from the lock store.
var (
	ErrLockExists   = errors.New("lock already created")
	ErrLockNotFound = errors.New("lock not found")
	ErrNotLockOwner = errors.New("lock owned by another user")
	ErrTooManyLocks = errors.New("too many locks in this repository") // by count or by the lock file's size
	ErrBadLockPath  = errors.New("invalid lock path")
)

// Lock is one file lock, as the LFS locking API shows it.
type Lock struct {
	ID       string    `json:"id"`
	Path     string    `json:"path"`
	LockedAt time.Time `json:"locked_at"`
	Owner    Owner     `json:"owner"`
}

// Owner is a lock's owner.
type Owner struct {
	Name string `json:"name"`
}

// lockShards is the number of mutexes the lock store spreads repositories
// over.
const lockShards = 64

// Locks keeps each repository's locks in one JSON file
// (lfs/locks/<repo key>.json), replaced atomically on every change. A
// repository's requests are serialised by one of lockShards mutexes, chosen
// by its key, so that a repository with a large lock file (each change
// rewrites it whole) does not hold the others.
type Locks struct {
	dir    string
	shards [lockShards]sync.Mutex
}

// NewLocks returns the lock store under dir (<data-dir>/lfs/locks).
func NewLocks(dir string) *Locks { return &Locks{dir: dir} }

// lock takes repo's mutex and returns its unlock.
func (l *Locks) lock(repo string) func() {
	h := fnv.New32a()
	h.Write([]byte(repo))
	mu := &l.shards[h.Sum32()%lockShards]
	mu.Lock()
	return mu.Unlock
}

func (l *Locks) file(repo string) string { return filepath.Join(l.dir, repoKey(repo)+".json") }

func (l *Locks) read(repo string) ([]Lock, error) {
	data, err := atomicfile.ReadBounded(l.file(repo), maxLocksFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("lfs locks: %w", err)
	}
	var locks []Lock
	if err := json.Unmarshal(data, &locks); err != nil {
		return nil, fmt.Errorf("lfs locks %s: %w", l.file(repo), err)
	}
	return locks, nil
}

func (l *Locks) write(repo string, locks []Lock) error {
	data, err := json.Marshal(locks)
	if err != nil {
		return err
	}
	if int64(len(data)) > maxLocksFile {
		// read would refuse it, and with it every lock request of repo.
		return ErrTooManyLocks
	}
	return atomicfile.Write(l.file(repo), data, 0o640)
}

// List returns repo's locks sorted by path.
func (l *Locks) List(repo string) ([]Lock, error) {
	defer l.lock(repo)()
	locks, err := l.read(repo)
	sort.Slice(locks, func(i, j int) bool { return locks[i].Path < locks[j].Path })
	return locks, err
}

// Create locks path in repo for owner. A path already locked returns the
// existing lock and ErrLockExists.
func (l *Locks) Create(repo, path, owner string) (Lock, error) {
	if path == "" || len(path) > maxLockPathBytes {
		return Lock{}, ErrBadLockPath
	}
	defer l.lock(repo)()
	locks, err := l.read(repo)
	if err != nil {
		return Lock{}, err
	}
	for _, lk := range locks {
		if lk.Path == path {
			return lk, ErrLockExists
		}
	}
	if len(locks) >= maxLocksPerRepo {
		return Lock{}, ErrTooManyLocks
	}
	id := make([]byte, 16)
	rand.Read(id)
	lk := Lock{ID: hex.EncodeToString(id), Path: path, LockedAt: time.Now().UTC().Truncate(time.Second), Owner: Owner{Name: owner}}
	if err := l.write(repo, append(locks, lk)); err != nil {
		return Lock{}, err
	}
	return lk, nil
}

// Delete removes lock id from repo. Only its owner may, unless force is set
// (the caller checks who may force).
func (l *Locks) Delete(repo, id, user string, force bool) (Lock, error) {
	defer l.lock(repo)()
	locks, err := l.read(repo)
	if err != nil {
		return Lock{}, err
	}
	for i, lk := range locks {
		if lk.ID != id {
			continue
		}
		if lk.Owner.Name != user && !force {
			return lk, ErrNotLockOwner
		}
		if err := l.write(repo, append(locks[:i:i], locks[i+1:]...)); err != nil {
			return Lock{}, err
		}
		return lk, nil
	}
	return Lock{}, ErrLockNotFound
}
