package lfs

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestPruneAndSweep: links the listing no longer names go, except those
// made since it was asked for; an object no repository links goes to the
// trash, comes back when linked again, and is deleted after the retention.
func TestPruneAndSweep(t *testing.T) {
	s, dir := newTestStore(t)
	a, b, c := []byte("kept\n"), []byte("unlinked\n"), []byte("shared\n")
	for repo, objs := range map[string][][]byte{"one": {a, b, c}, "two": {c}} {
		for _, o := range objs {
			if _, err := s.Put(repo, oidOf(o), int64(len(o)), bytes.NewReader(o), nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	now := time.Now()
	listed := map[string]bool{oidOf(a): true}
	// Asked before the links were made: nothing is old enough to go.
	if gone, err := s.Prune("one", func(oid string) bool { return listed[oid] }, now.Add(-time.Hour)); err != nil || len(gone) != 0 {
		t.Fatalf("prune of links newer than the listing: %v, %v", gone, err)
	}
	gone, err := s.Prune("one", func(oid string) bool { return listed[oid] }, now.Add(time.Second))
	if err != nil || len(gone) != 2 {
		t.Fatalf("prune: %v, %v; want b and c unlinked from one", gone, err)
	}
	for o, want := range map[string]bool{oidOf(a): true, oidOf(b): false, oidOf(c): false} {
		if _, ok := s.Stat("one", o); ok != want {
			t.Errorf("one links %.8s: %v, want %v", o, ok, want)
		}
	}
	if _, ok := s.Stat("two", oidOf(c)); !ok {
		t.Fatal("pruning one unlinked two's object")
	}

	res, err := s.Sweep([]string{"one", "two"}, time.Hour, now)
	if err != nil || res != (SweepResult{Trashed: 1}) {
		t.Fatalf("sweep: %+v, %v; want b trashed", res, err)
	}
	trashed := filepath.Join(dir, "trash", oidOf(b))
	if _, err := os.Stat(trashed); err != nil {
		t.Fatal(err)
	}
	// Linked again (by name only: the object is in the trash): it comes back.
	if err := s.Link("one", oidOf(b)); err != nil {
		t.Fatal(err)
	}
	if res, err := s.Sweep([]string{"one", "two"}, time.Hour, now); err != nil || res != (SweepResult{Restored: 1}) {
		t.Fatalf("sweep after relinking: %+v, %v", res, err)
	}
	if err := s.Check(oidOf(b), int64(len(b))); err != nil {
		t.Fatalf("restored object: %v", err)
	}
	// Two's links do not count once two is not a repository of the site.
	if res, err := s.Sweep([]string{"one"}, time.Hour, now); err != nil || res != (SweepResult{Trashed: 1}) {
		t.Fatalf("sweep without two: %+v, %v; want c trashed", res, err)
	}
	if res, err := s.Sweep([]string{"one"}, time.Hour, now.Add(30*time.Minute)); err != nil || res != (SweepResult{}) {
		t.Fatalf("sweep within the retention: %+v, %v", res, err)
	}
	if res, err := s.Sweep([]string{"one"}, time.Hour, now.Add(time.Hour)); err != nil || res != (SweepResult{Removed: 1}) {
		t.Fatalf("sweep after the retention: %+v, %v", res, err)
	}
	if got := files(t, dir, "trash"); len(got) != 0 {
		t.Fatalf("trash after the retention: %v", got)
	}
}
