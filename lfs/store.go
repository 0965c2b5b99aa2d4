package lfs

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gitgate/gitgate/internal/atomicfile"
)

// Errors from the store.
var (
	// ErrInvalidOID is returned for an oid that is not 64 lowercase hex digits.
	ErrInvalidOID = errors.New("invalid object id")
	// ErrSizeMismatch is returned for an upload shorter or longer than declared.
	ErrSizeMismatch = errors.New("object size does not match")
	// ErrHashMismatch is returned for an upload whose SHA-256 is not its oid.
	ErrHashMismatch = errors.New("object content does not match its oid")
)

// Store keeps LFS objects, content-addressed, and the links that say which
// repositories may serve them.
type Store struct {
	dir   string // <data-dir>/lfs
	repos string // the repositories' root, "" before SetRepositories
}

// SetRepositories ties links to the repository directories under root
// (the gate's --repos): a repository's links are kept under its name and an
// identity recorded in the repository itself (RepoIDFile, made at its
// first link). A repository deleted and made again under the same name,
// perhaps for other readers, has a new identity and none of the old one's
// objects. Without it (tests of the store alone), links go by name.
func (s *Store) SetRepositories(root string) { s.repos = root }

// RepoIDFile is the file in a bare repository that holds its identity for
// LFS links: 32 hex digits and a newline.
const RepoIDFile = "gitgate-lfs-id"

// staleUploadAge is how long a temporary upload file may go unwritten
// before NewStore removes it as the leftover of a gate that died. An upload
// in progress writes it far more often (every read of the body is bounded
// by the server's idle timeout).
const staleUploadAge = time.Hour

// NewStore returns the store under dir (<data-dir>/lfs), creating its
// directories and removing the partial uploads a gate that died left.
func NewStore(dir string) (*Store, error) {
	for _, d := range []string{"objects", "links", "tmp", "locks"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o750); err != nil {
			return nil, fmt.Errorf("lfs store: %w", err)
		}
	}
	s := &Store{dir: dir}
	s.removeStaleUploads(time.Now())
	return s, nil
}

// removeStaleUploads removes the temporary upload files not written since
// staleUploadAge before now.
func (s *Store) removeStaleUploads(now time.Time) {
	tmp := filepath.Join(s.dir, "tmp")
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "upload-") || !e.Type().IsRegular() {
			continue
		}
		if fi, err := e.Info(); err == nil && now.Sub(fi.ModTime()) > staleUploadAge {
			os.Remove(filepath.Join(tmp, e.Name()))
		}
	}
}

// objectPath is objects/ab/cd/<oid>; oid must be valid.
func (s *Store) objectPath(oid string) string {
	return filepath.Join(s.dir, "objects", oid[0:2], oid[2:4], oid)
}

// repoLinks returns the directory of repo's links, named without using
// the name as a path: the hex SHA-256 of the canonical name and the
// repository's identity. With create, a repository that has no identity
// yet gets one; without, such a repository has no links (an error wrapping
// fs.ErrNotExist).
func (s *Store) repoLinks(repo string, create bool) (string, error) {
	key := repo
	if s.repos != "" {
		id, err := s.repoID(repo, create)
		if err != nil {
			return "", err
		}
		key = repo + "\x00" + id
	}
	sum := sha256.Sum256([]byte(key))
	return filepath.Join(s.dir, "links", hex.EncodeToString(sum[:])), nil
}

// repoID reads repo's identity, making it first when create is set. It is
// written to a temporary file and linked into place, so a reader never sees
// it half written and two first links agree on one.
func (s *Store) repoID(repo string, create bool) (string, error) {
	p := filepath.Join(s.repos, filepath.FromSlash(repo)+".git", RepoIDFile)
	data, err := atomicfile.ReadBounded(p, 64)
	if err == nil {
		id := strings.TrimSuffix(string(data), "\n")
		if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
			return "", fmt.Errorf("lfs: %s of %s is malformed", RepoIDFile, repo)
		}
		return id, nil
	}
	if !create || !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("lfs: identity of %s: %w", repo, err)
	}
	var b [16]byte
	rand.Read(b[:])
	tmp, err := os.CreateTemp(filepath.Dir(p), RepoIDFile+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("lfs: identity of %s: %w", repo, err)
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.WriteString(hex.EncodeToString(b[:]) + "\n")
	if err := errors.Join(werr, tmp.Sync(), tmp.Close()); err != nil {
		return "", fmt.Errorf("lfs: identity of %s: %w", repo, err)
	}
	if err := os.Link(tmp.Name(), p); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("lfs: identity of %s: %w", repo, err)
	}
	if err := atomicfile.SyncDir(filepath.Dir(p)); err != nil {
		return "", fmt.Errorf("lfs: identity of %s: %w", repo, err)
	}
	return s.repoID(repo, false)
}

// repoKey names a per-repository file or directory without using the name
// as a path: the hex SHA-256 of the canonical name.
func repoKey(repo string) string {
	sum := sha256.Sum256([]byte(repo))
	return hex.EncodeToString(sum[:])
}

func (s *Store) linkPath(repo, oid string, create bool) (string, error) {
	dir, err := s.repoLinks(repo, create)
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, oid[0:2], oid), nil
}

// Stat returns the size of the object linked to repo, and whether it is
// there. An object that exists but is not linked to repo is not there.
func (s *Store) Stat(repo, oid string) (int64, bool) {
	if !ValidOID(oid) {
		return 0, false
	}
	link, err := s.linkPath(repo, oid, false)
	if err != nil {
		return 0, false
	}
	if _, err := os.Lstat(link); err != nil {
		return 0, false
	}
	fi, err := os.Lstat(s.objectPath(oid))
	if err != nil || !fi.Mode().IsRegular() {
		return 0, false
	}
	return fi.Size(), true
}

// Open opens the object linked to repo for reading, with its size. It
// returns an error wrapping fs.ErrNotExist when the object is not linked to
// repo or missing.
func (s *Store) Open(repo, oid string) (*os.File, int64, error) {
	if _, ok := s.Stat(repo, oid); !ok {
		return nil, 0, fmt.Errorf("object %s in %s: %w", oid, repo, fs.ErrNotExist)
	}
	f, err := os.Open(s.objectPath(oid))
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, 0, fmt.Errorf("object %s: %w", oid, fs.ErrNotExist)
	}
	return f, fi.Size(), nil
}

// Put reads exactly size bytes from r, checks that their SHA-256 is oid,
// and stores them as the object, linked to repo. commit, when not nil, is
// asked last, just before the object is renamed into place: an error from
// it (maintenance began while the bytes came in) stores nothing and is
// returned as it is. Nothing becomes an object
// unless the content is exactly right: the bytes go to a temporary file in
// the same file system, which is fsynced and renamed into place only after
// the checks; on any error it is removed. A byte past size is an error:
// Put reads at most size+1 bytes. It returns the bytes read.
func (s *Store) Put(repo, oid string, size int64, r io.Reader, commit func() error) (n int64, err error) {
	if !ValidOID(oid) {
		return 0, ErrInvalidOID
	}
	if size < 0 {
		return 0, ErrSizeMismatch
	}
	tmp, err := os.CreateTemp(filepath.Join(s.dir, "tmp"), "upload-*")
	if err != nil {
		return 0, fmt.Errorf("lfs: temporary file: %w", err)
	}
	defer func() {
		if tmp != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	n, err = io.Copy(io.MultiWriter(tmp, h), io.LimitReader(r, size+1))
	if err != nil {
		return n, fmt.Errorf("lfs: receive object: %w", err)
	}
	if n != size {
		return n, fmt.Errorf("%w: %d bytes declared, %s received", ErrSizeMismatch, size, received(n, size))
	}
	if hex.EncodeToString(h.Sum(nil)) != oid {
		return n, ErrHashMismatch
	}
	if err := tmp.Sync(); err != nil {
		return n, fmt.Errorf("lfs: sync object: %w", err)
	}
	if err := tmp.Chmod(0o440); err != nil {
		return n, fmt.Errorf("lfs: chmod object: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return n, fmt.Errorf("lfs: close object: %w", err)
	}
	if commit != nil {
		if err := commit(); err != nil {
			return n, err
		}
	}
	final := s.objectPath(oid)
	if err := os.MkdirAll(filepath.Dir(final), 0o750); err != nil {
		return n, fmt.Errorf("lfs: %w", err)
	}
	// The same content may already be there (another repository's): the
	// rename replaces it with identical bytes.
	if err := os.Rename(tmp.Name(), final); err != nil {
		return n, fmt.Errorf("lfs: store object: %w", err)
	}
	tmp = nil
	if err := atomicfile.SyncDir(filepath.Dir(final)); err != nil {
		return n, err
	}
	return n, s.link(repo, oid)
}

func received(n, size int64) string {
	if n > size {
		return "more"
	}
	return fmt.Sprint(n)
}

// link records that repo has the object.
func (s *Store) link(repo, oid string) error {
	p, err := s.linkPath(repo, oid, true)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		return fmt.Errorf("lfs: link: %w", err)
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o640)
	if err != nil {
		return fmt.Errorf("lfs: link: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("lfs: link: %w", err)
	}
	return atomicfile.SyncDir(filepath.Dir(p))
}

// Object is an LFS object: its oid and size.
type Object struct {
	OID  string `json:"oid"`
	Size int64  `json:"size"`
}

// Objects lists the objects linked to repo that are in the store, sorted
// by oid.
func (s *Store) Objects(repo string) ([]Object, error) {
	root, err := s.repoLinks(repo, false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil // no identity yet: nothing was ever linked
	}
	if err != nil {
		return nil, err
	}
	var out []Object
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == root {
				return fs.SkipAll
			}
			return err
		}
		if d.IsDir() || !ValidOID(d.Name()) {
			return nil
		}
		if size, ok := s.Stat(repo, d.Name()); ok {
			out = append(out, Object{OID: d.Name(), Size: size})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("lfs: list objects: %w", err)
	}
	return out, nil // WalkDir visits in lexical order: sorted by oid
}

// Check reads the stored object oid and returns nil when it is there with
// exactly size bytes whose SHA-256 is oid; otherwise an error wrapping
// fs.ErrNotExist, ErrSizeMismatch or ErrHashMismatch.
func (s *Store) Check(oid string, size int64) error {
	if !ValidOID(oid) {
		return ErrInvalidOID
	}
	f, err := os.Open(s.objectPath(oid))
	if err != nil {
		return fmt.Errorf("lfs: object %s: %w", oid, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(f, size+1))
	if err != nil {
		return fmt.Errorf("lfs: read object %s: %w", oid, err)
	}
	if n != size {
		return fmt.Errorf("%w: object %s has %s bytes, want %d", ErrSizeMismatch, oid, received(n, size), size)
	}
	if hex.EncodeToString(h.Sum(nil)) != oid {
		return fmt.Errorf("object %s: %w", oid, ErrHashMismatch)
	}
	return nil
}

// Link records that repo has the object oid, which must be in the store
// (checked by the caller: Link does not read it).
func (s *Store) Link(repo, oid string) error {
	if !ValidOID(oid) {
		return ErrInvalidOID
	}
	return s.link(repo, oid)
}

// ObjectStat returns the file information of the stored object oid,
// linked or not.
func (s *Store) ObjectStat(oid string) (fs.FileInfo, error) {
	if !ValidOID(oid) {
		return nil, ErrInvalidOID
	}
	return os.Lstat(s.objectPath(oid))
}
