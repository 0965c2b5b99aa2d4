package lfs

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func oidOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func newTestStore(t *testing.T) (*Store, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "lfs")
	s, err := NewStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s, dir
}

// files lists every regular file under dir/sub.
func files(t *testing.T, dir, sub string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(filepath.Join(dir, sub), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	return out
}

func TestValidOID(t *testing.T) {
	good := strings.Repeat("ab", 32)
	for oid, want := range map[string]bool{
		good:                           true,
		strings.ToUpper(good):          false,
		good[:63]:                      false,
		good + "0":                     false,
		"../" + good[3:]:               false,
		strings.Repeat("g", 64):        false,
		good[:62] + "/a":               false,
		"":                             false,
		good[:32] + "\x00" + good[33:]: false,
	} {
		if got := ValidOID(oid); got != want {
			t.Errorf("ValidOID(%q) = %v, want %v", oid, got, want)
		}
	}
}

// TestStorePutRejectsBadContent: wrong hash, short and long bodies are
// refused and leave no object, no link and no temporary file; the right
// content becomes an object linked to its repository only.
func TestStorePutRejectsBadContent(t *testing.T) {
	s, dir := newTestStore(t)
	content := bytes.Repeat([]byte("lfs object\n"), 1000)
	oid := oidOf(content)
	size := int64(len(content))
	wrong := bytes.Clone(content)
	wrong[10] ^= 1
	for name, tc := range map[string]struct {
		body []byte
		want error
	}{
		"wrong hash": {wrong, ErrHashMismatch},
		"short":      {content[:size-1], ErrSizeMismatch},
		"long":       {append(bytes.Clone(content), 'x'), ErrSizeMismatch},
		"empty":      {nil, ErrSizeMismatch},
	} {
		if _, err := s.Put("proj", oid, size, bytes.NewReader(tc.body), nil); !errors.Is(err, tc.want) {
			t.Errorf("%s: err %v, want %v", name, err, tc.want)
		}
	}
	if _, err := s.Put("proj", "../../etc/passwd", 1, strings.NewReader("x"), nil); !errors.Is(err, ErrInvalidOID) {
		t.Errorf("bad oid: %v", err)
	}
	if f := append(files(t, dir, "objects"), append(files(t, dir, "tmp"), files(t, dir, "links")...)...); len(f) != 0 {
		t.Fatalf("rejected uploads left files: %v", f)
	}
	stop := errors.New("maintenance began")
	if _, err := s.Put("proj", oid, size, bytes.NewReader(content), func() error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("refused commit: %v", err)
	}
	if f := append(files(t, dir, "objects"), files(t, dir, "tmp")...); len(f) != 0 {
		t.Fatalf("a refused commit left files: %v", f)
	}
	if n, err := s.Put("proj", oid, size, bytes.NewReader(content), nil); err != nil || n != size {
		t.Fatalf("good upload: %d, %v", n, err)
	}
	if got, ok := s.Stat("proj", oid); !ok || got != size {
		t.Fatalf("Stat(proj) = %d, %v", got, ok)
	}
	if _, ok := s.Stat("other", oid); ok {
		t.Fatalf("an object pushed to proj is visible through other")
	}
	if _, _, err := s.Open("other", oid); err == nil {
		t.Fatalf("Open through an unlinked repository worked")
	}
	f, n, err := s.Open("proj", oid)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, _ := io.ReadAll(f)
	if n != size || !bytes.Equal(got, content) {
		t.Fatalf("read back %d bytes, want %d", len(got), size)
	}
	if tmp := files(t, dir, "tmp"); len(tmp) != 0 {
		t.Fatalf("temporary files left: %v", tmp)
	}
}

// TestStoreConcurrentPuts: the same object uploaded at once through two
// repositories ends as one object linked to both.
func TestStoreConcurrentPuts(t *testing.T) {
	s, dir := newTestStore(t)
	content := []byte(strings.Repeat("same bytes ", 5000))
	oid := oidOf(content)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.Put([]string{"a", "b"}[i%2], oid, int64(len(content)), bytes.NewReader(content), nil)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, repo := range []string{"a", "b"} {
		if _, ok := s.Stat(repo, oid); !ok {
			t.Errorf("not linked to %s", repo)
		}
	}
	if n := len(files(t, dir, "objects")); n != 1 {
		t.Errorf("%d object files, want 1", n)
	}
}

func TestSigner(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	s := NewSigner(bytes.Repeat([]byte{7}, 32))
	s.now = func() time.Time { return now }
	g := Grant{User: "alice", Repo: "proj", Op: "upload", OID: strings.Repeat("a", 64), Size: 5}
	h := s.Sign(g, time.Minute)
	got, signed, err := s.Verify(h)
	if !signed || err != nil || got.User != "alice" || got.Repo != "proj" || got.OID != g.OID || got.Size != 5 {
		t.Fatalf("Verify(own header) = %+v, %v, %v", got, signed, err)
	}
	if _, signed, _ := s.Verify("Basic YWxpY2U6eA=="); signed {
		t.Fatalf("a Basic header taken as signed")
	}
	other := NewSigner(bytes.Repeat([]byte{8}, 32))
	other.now = s.now
	for name, bad := range map[string]string{
		"other secret": other.Sign(g, time.Minute),
		"truncated":    h[:len(h)-2],
		"no mac":       strings.Split(h, ".")[0],
		"swapped":      AuthScheme + " " + strings.Split(other.Sign(Grant{User: "admin", Repo: "proj", Op: "upload"}, time.Hour), " ")[1][:10] + "." + strings.Split(h, ".")[1],
		"huge":         AuthScheme + " " + strings.Repeat("a", maxTokenLength+1),
	} {
		if _, signed, err := s.Verify(bad); !signed || !errors.Is(err, ErrBadToken) {
			t.Errorf("%s: signed %v, err %v", name, signed, err)
		}
	}
	now = now.Add(2 * time.Minute)
	if _, _, err := s.Verify(h); !errors.Is(err, ErrBadToken) {
		t.Errorf("expired header accepted: %v", err)
	}
}

func TestLoadOrCreateSecret(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lfs", "secret")
	a, err := LoadOrCreateSecret(path)
	if err != nil || len(a) != 32 {
		t.Fatalf("create: %d bytes, %v", len(a), err)
	}
	b, err := LoadOrCreateSecret(path)
	if err != nil || !bytes.Equal(a, b) {
		t.Fatalf("reload gave another secret (%v)", err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret mode %v", fi.Mode())
	}
	os.WriteFile(path, []byte("short\n"), 0o600)
	if _, err := LoadOrCreateSecret(path); err == nil {
		t.Fatalf("a broken secret file was accepted")
	}
}

func TestLocks(t *testing.T) {
	l := NewLocks(t.TempDir())
	a, err := l.Create("proj", "f.bin", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := l.Create("proj", "f.bin", "bob"); !errors.Is(err, ErrLockExists) || got.ID != a.ID {
		t.Fatalf("second lock: %+v %v", got, err)
	}
	if _, err := l.Create("other", "f.bin", "bob"); err != nil {
		t.Fatalf("locks are per repository: %v", err)
	}
	if _, err := l.Delete("proj", a.ID, "bob", false); !errors.Is(err, ErrNotLockOwner) {
		t.Fatalf("bob unlocked alice's lock: %v", err)
	}
	if _, err := l.Delete("proj", a.ID, "bob", true); err != nil {
		t.Fatalf("forced unlock: %v", err)
	}
	if _, err := l.Delete("proj", a.ID, "alice", false); !errors.Is(err, ErrLockNotFound) {
		t.Fatalf("unlock twice: %v", err)
	}
	if locks, _ := l.List("proj"); len(locks) != 0 {
		t.Fatalf("locks left: %+v", locks)
	}
	if _, err := l.Create("proj", "", "alice"); !errors.Is(err, ErrBadLockPath) {
		t.Fatalf("empty path: %v", err)
	}
}

// TestLocksFileStaysReadable: locks with long paths cannot grow a
// repository's lock file past what the store reads back (maxLocksFile is
// smaller than maxLocksPerRepo paths of maxLockPathBytes), which would
// break every lock request of the repository, listing included.
func TestLocksFileStaysReadable(t *testing.T) {
	// The same arithmetic at 1 MiB: about 250 locks with long paths
	// reach the file bound long before the count limit.
	defer func(old int64) { maxLocksFile = old }(maxLocksFile)
	maxLocksFile = 1 << 20
	l := NewLocks(t.TempDir())
	long := func(i int) string { return fmt.Sprintf("%0*d", maxLockPathBytes, i) }
	one, _ := json.Marshal([]Lock{{ID: strings.Repeat("0", 32), Path: long(0), LockedAt: time.Now().UTC(), Owner: Owner{Name: "alice"}}})
	n := int(maxLocksFile)/(len(one)+1) - 1 // just under the bound
	locks := make([]Lock, 0, n)
	for i := range n {
		locks = append(locks, Lock{ID: fmt.Sprintf("%032x", i), Path: long(i), LockedAt: time.Now().UTC(), Owner: Owner{Name: "alice"}})
	}
	if err := l.write("proj", locks); err != nil {
		t.Fatal(err)
	}
	if n >= maxLocksPerRepo {
		t.Skip("the count limit comes first")
	}
	for i := n; i < n+8; i++ {
		_, err := l.Create("proj", long(i), "alice")
		if err != nil && !errors.Is(err, ErrTooManyLocks) {
			t.Fatalf("create lock %d: %v", i, err)
		}
	}
	if _, err := l.List("proj"); err != nil {
		t.Fatalf("the lock file grew past what the store can read: %v", err)
	}
}

// TestStoreRemovesStaleUploads: a partial upload left by a gate that died
// (kill -9, power loss) is removed when the store opens again; one still
// being written (recent) is kept.
func TestStoreRemovesStaleUploads(t *testing.T) {
	dir := t.TempDir()
	if _, err := NewStore(dir); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, "tmp", "upload-1")
	fresh := filepath.Join(dir, "tmp", "upload-2")
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * staleUploadAge)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	if _, err := NewStore(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); err == nil {
		t.Errorf("a stale partial upload was kept")
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("an upload in progress was removed: %v", err)
	}
}

// TestLocksOfOneRepositoryDoNotHoldOthers: a repository whose lock file is
// being rewritten (held here for as long as the test likes) does not hold
// the lock requests of another repository, which would otherwise wait
// behind every rewrite of a 16 MiB file.
func TestLocksOfOneRepositoryDoNotHoldOthers(t *testing.T) {
	l := NewLocks(t.TempDir())
	other := "other"
	for i := 0; shardOf("big") == shardOf(other); i++ {
		other = fmt.Sprintf("other-%d", i)
	}
	unlock := l.lock("big") // a rewrite of big's lock file in progress
	defer unlock()
	done := make(chan error, 1)
	go func() {
		_, err := l.List(other)
		if err == nil {
			_, err = l.Create(other, "a.bin", "alice")
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second): // a deadline, not a speed bound: it never returns while held
		t.Fatal("another repository's lock requests waited for the big repository's lock")
	}
}

func shardOf(repo string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(repo))
	return h.Sum32() % lockShards
}

// TestStoreObjectsAndCheck: Objects lists what is linked to a repository
// (not another's), Check finds a copy whose bytes changed on disk, and
// Link makes a stored object a repository's.
func TestStoreObjectsAndCheck(t *testing.T) {
	s, _ := newTestStore(t)
	a, b := []byte("object a"), []byte("object b, longer")
	for _, c := range []struct {
		repo string
		data []byte
	}{{"p", a}, {"q", b}} {
		if _, err := s.Put(c.repo, oidOf(c.data), int64(len(c.data)), bytes.NewReader(c.data), nil); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Objects("p")
	if err != nil || len(got) != 1 || got[0] != (Object{OID: oidOf(a), Size: int64(len(a))}) {
		t.Fatalf("Objects(p) = %v, %v", got, err)
	}
	if got, err := s.Objects("none"); err != nil || len(got) != 0 {
		t.Fatalf("Objects(none) = %v, %v", got, err)
	}
	if err := s.Check(oidOf(a), int64(len(a))); err != nil {
		t.Fatalf("Check of a good object: %v", err)
	}
	if err := s.Check(oidOf(a), int64(len(a))+1); !errors.Is(err, ErrSizeMismatch) {
		t.Fatalf("Check with the wrong size: %v", err)
	}
	p := s.objectPath(oidOf(a))
	os.Chmod(p, 0o640)
	if err := os.WriteFile(p, []byte("object A"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(oidOf(a), int64(len(a))); !errors.Is(err, ErrHashMismatch) {
		t.Fatalf("Check of a corrupted object: %v", err)
	}
	if err := s.Check(oidOf([]byte("absent")), 6); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Check of a missing object: %v", err)
	}
	if err := s.Link("p", oidOf(b)); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Objects("p"); len(got) != 2 {
		t.Fatalf("after Link: %v", got)
	}
}

// TestLinksBelongToTheRepositoryNotItsName: objects linked to a repository
// are not served through a repository made again under the same name (a
// private repository deleted and created anew for other readers).
func TestLinksBelongToTheRepositoryNotItsName(t *testing.T) {
	repos := t.TempDir()
	s, err := NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s.SetRepositories(repos)
	repoDir := filepath.Join(repos, "group", "secret.git")
	if err := os.MkdirAll(repoDir, 0o755); err != nil {
		t.Fatal(err)
	}
	data := []byte("the old repository's secret\n")
	sum := sha256.Sum256(data)
	oid := hex.EncodeToString(sum[:])
	if _, err := s.Put("group/secret", oid, int64(len(data)), bytes.NewReader(data), nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Stat("group/secret", oid); !ok {
		t.Fatal("the object is not served through the repository it was pushed to")
	}
	if objs, err := s.Objects("group/secret"); err != nil || len(objs) != 1 {
		t.Fatalf("objects: %v %v", objs, err)
	}

	// Deleted, and made again under the same name.
	if err := os.RemoveAll(repoDir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(repoDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Stat("group/secret", oid); ok {
		t.Fatal("the new repository serves the deleted one's object")
	}
	if f, _, err := s.Open("group/secret", oid); err == nil {
		f.Close()
		t.Fatal("the new repository opens the deleted one's object")
	}
	if objs, err := s.Objects("group/secret"); err != nil || len(objs) != 0 {
		t.Fatalf("the new repository lists %v (%v)", objs, err)
	}
	// Linking it to the new repository (a push of it there) works, and
	// only then is it served.
	if err := s.Link("group/secret", oid); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Stat("group/secret", oid); !ok {
		t.Fatal("an object linked to the new repository is not served")
	}
}
