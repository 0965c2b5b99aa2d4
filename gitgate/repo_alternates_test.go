package gitgate

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// An alternates file that is a FIFO must not block Resolve (and with it
// every request for the repository, and the start-up scan) forever: it is
// not a file git's objects can be listed in, so the repository is refused.
func TestResolverAlternatesFIFODoesNotBlock(t *testing.T) {
	r, _ := NewResolver(t.TempDir())
	repo, err := r.Create(context.Background(), "group/repo")
	if err != nil {
		t.Fatal(err)
	}
	info := filepath.Join(repo.Path, "objects", "info")
	os.MkdirAll(info, 0o755)
	if err := syscall.Mkfifo(filepath.Join(info, "alternates"), 0o644); err != nil {
		t.Skip("mkfifo:", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := r.Resolve("group/repo")
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrUnsafeRepo) {
			t.Fatalf("Resolve = %v; want ErrUnsafeRepo", err)
		}
	case <-time.After(10 * time.Second):
		// Unblock the stuck open so the test process can end.
		if f, err := os.OpenFile(filepath.Join(info, "alternates"), os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
		t.Fatal("Resolve blocked on an alternates FIFO")
	}
}

// git follows alternates of alternates (up to five deep): a repository
// whose alternate is a pool inside the root, whose own alternate lies
// outside the root, reaches outside the root just as a direct one does.
func TestResolverRefusesNestedAlternatesOutsideTheRoot(t *testing.T) {
	out, _ := NewResolver(t.TempDir())
	victim, err := out.Create(context.Background(), "victim")
	if err != nil {
		t.Fatal(err)
	}
	r, _ := NewResolver(t.TempDir())
	pool, _ := r.Create(context.Background(), "pool")
	fork, _ := r.Create(context.Background(), "fork")
	for _, p := range []string{pool.Path, fork.Path} {
		os.MkdirAll(filepath.Join(p, "objects", "info"), 0o755)
	}
	os.WriteFile(filepath.Join(fork.Path, "objects", "info", "alternates"), []byte("../../pool.git/objects\n"), 0o644)
	if _, err := r.Resolve("fork"); err != nil {
		t.Fatalf("Resolve(fork) with a pool in the root: %v", err)
	}
	os.WriteFile(filepath.Join(pool.Path, "objects", "info", "alternates"), []byte(filepath.Join(victim.Path, "objects")+"\n"), 0o644)
	if got, err := r.Resolve("fork"); !errors.Is(err, ErrUnsafeRepo) {
		t.Fatalf("Resolve(fork) = %+v, %v; want ErrUnsafeRepo (its pool's alternate is outside the root)", got, err)
	}
	// A cycle of alternates inside the root ends.
	os.WriteFile(filepath.Join(pool.Path, "objects", "info", "alternates"), []byte("../../fork.git/objects\n"), 0o644)
	if _, err := r.Resolve("fork"); err != nil && !errors.Is(err, ErrUnsafeRepo) {
		t.Fatalf("Resolve(fork) with an alternates cycle: %v", err)
	}
}

// A repository whose objects and refs are symlinks to another repository's
// (inside the root) is that repository under a second name, with the
// second name's access rules: it must not be served.
func TestResolverRefusesBorrowedObjectsAndRefs(t *testing.T) {
	r, _ := NewResolver(t.TempDir())
	secret, err := r.Create(context.Background(), "group/secret")
	if err != nil {
		t.Fatal(err)
	}
	for _, sub := range [][]string{{"objects"}, {"refs"}, {"objects", "refs"}} {
		alias, err := r.Create(context.Background(), "public/alias")
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range sub {
			os.RemoveAll(filepath.Join(alias.Path, d))
			if err := os.Symlink(filepath.Join(secret.Path, d), filepath.Join(alias.Path, d)); err != nil {
				t.Fatal(err)
			}
		}
		if got, err := r.Resolve("public/alias"); !errors.Is(err, ErrUnsafeRepo) {
			t.Errorf("%v symlinked to another repository's: Resolve = %+v, %v; want ErrUnsafeRepo", sub, got, err)
		}
		os.RemoveAll(alias.Path)
	}
	if _, err := r.Resolve("group/secret"); err != nil {
		t.Fatalf("the repository itself: %v", err)
	}
}
