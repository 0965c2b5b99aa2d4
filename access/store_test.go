package access

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/gitgate/gitgate/gitgate"
)

func TestStoreUpdate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data") // created by Update
	s := NewStore(dir)
	f, err := s.Load()
	if err != nil || len(f.Users) != 0 {
		t.Fatalf("Load of a missing file = %+v, %v", f, err)
	}
	err = s.Update(func(f *File) error {
		if err := f.AddUser("alice", false); err != nil {
			return err
		}
		return f.Grant("group/*", Grantee{Users: []string{"alice"}}, LevelWrite)
	})
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Errorf("file mode %v, want 0600: it holds token hashes", perm)
	}
	f, err = s.Load()
	if err != nil {
		t.Fatal(err)
	}
	snap, err := NewSnapshot(f)
	if err != nil {
		t.Fatal(err)
	}
	if p := snap.Permission(&gitgate.User{Name: "alice"}, "group/app"); p != gitgate.PermissionWrite {
		t.Errorf("alice on group/app: %v", p)
	}

	// A failing edit writes nothing.
	before, _ := os.ReadFile(s.Path())
	boom := errors.New("boom")
	if err := s.Update(func(f *File) error { f.Users = nil; return boom }); !errors.Is(err, boom) {
		t.Errorf("Update = %v, want boom", err)
	}
	// An edit that makes the file invalid writes nothing.
	err = s.Update(func(f *File) error {
		f.Users = append(f.Users, User{Name: "ALICE"})
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "refusing to write an invalid access file") {
		t.Errorf("Update with a duplicate user = %v", err)
	}
	if after, _ := os.ReadFile(s.Path()); string(after) != string(before) {
		t.Errorf("failed updates changed the file:\n%s", after)
	}
}

func TestStoreRefusesInvalidFile(t *testing.T) {
	dir := t.TempDir()
	s := NewStore(dir)
	if err := os.WriteFile(s.Path(), []byte("users:\n  - name: bob\n    colour: red\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := s.Update(func(f *File) error { return f.AddUser("eve", false) })
	want := s.Path() + `:3: unknown field "colour" in a user`
	if err == nil || err.Error() != want {
		t.Errorf("Update = %v, want %s", err, want)
	}
}

func TestStoreConcurrentUpdates(t *testing.T) {
	s := NewStore(t.TempDir())
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			// Each goroutine uses its own Store, as separate CLI processes would.
			errs <- NewStore(filepath.Dir(s.Path())).Update(func(f *File) error {
				return f.AddUser("user"+string(rune('a'+i)), false)
			})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	f, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Users) != n {
		t.Errorf("%d users after %d concurrent adds; edits were lost", len(f.Users), n)
	}
}

func TestEditUsersAndRules(t *testing.T) {
	f := &File{}
	for _, u := range []string{"alice", "bob"} {
		if err := f.AddUser(u, false); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.AddUser("Alice", false); !errors.Is(err, ErrExists) {
		t.Errorf("AddUser(Alice) = %v, want ErrExists", err)
	}
	if err := f.AddUser("not valid", false); err == nil {
		t.Error("AddUser with a space: no error")
	}
	if err := f.Grant("group/*", Grantee{Users: []string{"ghost"}}, LevelRead); !errors.Is(err, ErrNotFound) {
		t.Errorf("grant to an unknown user = %v", err)
	}
	if err := f.Grant("group/*/x", Grantee{SignedIn: true}, LevelRead); err == nil {
		t.Error("grant on a bad pattern: no error")
	}
	if err := f.Grant("group/*", Grantee{}, LevelRead); err == nil {
		t.Error("grant to nobody: no error")
	}
	must(t, f.Grant("group/*", Grantee{Users: []string{"alice", "bob"}}, LevelWrite))
	must(t, f.Grant("group/*", Grantee{Users: []string{"bob"}, SignedIn: true}, LevelRead))
	r := f.Rule("group/*")
	if strings.Join(r.Write, ",") != "alice" || strings.Join(r.Read, ",") != "bob" || r.SignedIn != LevelRead {
		t.Errorf("grant sets levels: %+v", r)
	}
	must(t, f.Grant("group/**", Grantee{Anonymous: true}, LevelRead))
	must(t, f.Revoke("group/*", Grantee{Users: []string{"alice", "bob"}, SignedIn: true}))
	if r := f.Rule("group/*"); r == nil || len(r.Read)+len(r.Write) != 0 || r.SignedIn != LevelNone {
		t.Errorf("after revoke: %+v; the rule must stay, empty", r)
	}
	if err := f.Revoke("group/*", Grantee{Users: []string{"alice"}}); !errors.Is(err, ErrNotFound) {
		t.Errorf("revoking a missing grant = %v", err)
	}
	must(t, f.Grant("group/*", Grantee{Users: []string{"alice"}}, LevelRead))
	must(t, f.RemoveUser("alice"))
	if r := f.Rule("group/*"); len(r.Read) != 0 {
		t.Errorf("RemoveUser left alice in a rule: %+v", r)
	}
	must(t, f.RemoveRule("group/*"))
	if f.Rule("group/*") != nil || f.Rule("group/**") == nil {
		t.Errorf("RemoveRule: %+v", f.Rules)
	}
	must(t, f.Validate())
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
