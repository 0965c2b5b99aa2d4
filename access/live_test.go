package access

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/internal/atomicfile"
	"github.com/gitgate/gitgate/internal/syncbuf"
)

// eventually polls cond every 10 ms for up to 5 s. It bounds how long the
// test waits, not how fast the code must be.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestLiveReloads(t *testing.T) {
	dir := t.TempDir()
	path := FilePath(dir)
	write := func(content string) {
		t.Helper()
		if err := atomicfile.Write(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var logs syncbuf.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	live := NewLive(dir, slog.New(slog.NewTextHandler(&logs, nil)))

	// A missing file: no users, no rules.
	if err := live.Start(ctx); err != nil {
		t.Fatal(err)
	}
	alice := &gitgate.User{Name: "alice"}
	if p := live.Permission(alice, "group/app"); p != gitgate.PermissionNone {
		t.Fatalf("missing file: %v", p)
	}
	if !strings.Contains(logs.String(), "access file not found") {
		t.Errorf("missing file not logged:\n%s", logs.String())
	}

	// A valid file is picked up.
	write("users:\n  - name: alice\nrules:\n  - pattern: group/*\n    read: [alice]\n")
	eventually(t, "alice to get read", func() bool {
		return live.Permission(alice, "group/app") == gitgate.PermissionRead
	})

	// A change is picked up.
	write("users:\n  - name: alice\nrules:\n  - pattern: group/*\n    write: [alice]\n")
	eventually(t, "alice to get write", func() bool {
		return live.Permission(alice, "group/app") == gitgate.PermissionWrite
	})

	// An invalid file is logged with its line, and the last good one stays.
	write("users:\n  - name: alice\nrules:\n  - pattern: group/*\n    writers: [alice]\n")
	want := path + `:5: unknown field \"writers\" in a rule`
	eventually(t, "the invalid file to be logged", func() bool {
		return strings.Contains(logs.String(), want)
	})
	if !strings.Contains(logs.String(), "keeping the last good version") {
		t.Errorf("log does not say the last good version is kept:\n%s", logs.String())
	}
	if p := live.Permission(alice, "group/app"); p != gitgate.PermissionWrite {
		t.Errorf("after an invalid edit alice has %v, want the last good write", p)
	}

	// Fixing the file applies it.
	write("users:\n  - name: alice\n")
	eventually(t, "alice to lose access", func() bool {
		return live.Permission(alice, "group/app") == gitgate.PermissionNone
	})

	// Removing the file removes everything.
	write("users:\n  - name: alice\n    admin: true\n")
	eventually(t, "alice to become admin", func() bool {
		return live.Permission(alice, "x/y") == gitgate.PermissionWrite
	})
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the missing file to deny all", func() bool {
		return live.Permission(alice, "x/y") == gitgate.PermissionNone
	})
}

func TestLiveStartRefusesInvalidFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(FilePath(dir), []byte("users: 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := NewLive(dir, discardLogger()).Start(t.Context())
	if err == nil || !strings.Contains(err.Error(), "access.yaml:1:") {
		t.Errorf("Start = %v, want an error naming access.yaml:1", err)
	}
}

// An editor saving in place truncates the file before writing it: the empty
// file in between must not lock everyone out.
func TestLiveKeepsRulesWhenTheFileIsEmptied(t *testing.T) {
	dir := t.TempDir()
	good := []byte("users: [{name: alice}]\nrules: [{pattern: a/b, write: [alice]}]\n")
	if err := os.WriteFile(FilePath(dir), good, 0o600); err != nil {
		t.Fatal(err)
	}
	live := NewLive(dir, discardLogger())
	if err := live.Reload(); err != nil {
		t.Fatal(err)
	}
	alice := &gitgate.User{Name: "alice"}
	if err := os.WriteFile(FilePath(dir), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := live.Reload(); err == nil || !strings.Contains(err.Error(), "the file is empty; keeping the last good version") {
		t.Fatalf("Reload of an empty file = %v", err)
	}
	if p := live.Permission(alice, "a/b"); p != gitgate.PermissionWrite {
		t.Fatalf("after the file was emptied: %v, want write", p)
	}
	if err := os.WriteFile(FilePath(dir), good, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := live.Reload(); err != nil {
		t.Fatal(err)
	}
	// A file that is empty from the start is just "no users, no rules".
	other := t.TempDir()
	os.WriteFile(FilePath(other), nil, 0o600)
	if err := NewLive(other, discardLogger()).Reload(); err != nil {
		t.Fatalf("an empty file at start: %v", err)
	}
}

func TestLiveReloadSkipsUnchangedFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(FilePath(dir), []byte("users: [{name: alice}]\nrules: [{pattern: a/b, read: [ghost]}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs syncbuf.Buffer
	live := NewLive(dir, slog.New(slog.NewTextHandler(&logs, nil)))
	for range 3 {
		if err := live.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(logs.String(), "access file loaded"); n != 1 {
		t.Errorf("loaded logged %d times for an unchanged file:\n%s", n, logs.String())
	}
	if n := strings.Count(logs.String(), `user \"ghost\" is not defined`); n != 1 {
		t.Errorf("warning logged %d times:\n%s", n, logs.String())
	}
}

func TestLiveTokensAndKeys(t *testing.T) {
	dir := t.TempDir()
	key, line := newKey(t, "ed25519", "")
	var secret string
	err := NewStore(dir).Update(func(f *File) error {
		if err := f.AddUser("alice", false); err != nil {
			return err
		}
		if _, err := f.AddKey("alice", line); err != nil {
			return err
		}
		var err error
		secret, _, err = f.CreateToken("alice", TokenOptions{Expires: testNow.Add(time.Hour)}, testNow)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	live := NewLive(dir, discardLogger())
	live.now = func() time.Time { return testNow }
	if err := live.Reload(); err != nil {
		t.Fatal(err)
	}
	if u, err := live.AuthenticateToken(secret); err != nil || u.Name != "alice" {
		t.Errorf("AuthenticateToken = %v, %v", u, err)
	}
	live.now = func() time.Time { return testNow.Add(time.Hour) }
	if _, err := live.AuthenticateToken(secret); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("expired token: %v", err)
	}
	if u, ok := live.UserByKey(key); !ok || u.Name != "alice" {
		t.Errorf("UserByKey = %v, %v", u, ok)
	}
}
