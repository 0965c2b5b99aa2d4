package access

import (
	"errors"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/gitgate/gitgate/gitgate"
)

const precedenceFile = `
users:
  - name: root
    admin: true
  - name: alice
  - name: bob
  - name: carol
rules:
  - pattern: "**"
    signed_in: read
  - pattern: "*"
    anonymous: read
  - pattern: group/**
    write: [alice]
    anonymous: read
  - pattern: group/*
    write: [bob]
    signed_in: read
  - pattern: group/secret
    read: [carol]
  - pattern: group/sub/**
    read: [alice]
  - pattern: group/sub/*
    write: [carol]
  - pattern: group/sub/exact
    signed_in: write
  - pattern: open/*
    anonymous: write
  - pattern: locked/**
`

func TestPermissionPrecedence(t *testing.T) {
	snap := mustSnapshot(t, precedenceFile)
	var (
		anon    *gitgate.User
		root    = &gitgate.User{Name: "root"}
		alice   = &gitgate.User{Name: "alice"}
		bob     = &gitgate.User{Name: "bob"}
		carol   = &gitgate.User{Name: "carol"}
		ghost   = &gitgate.User{Name: "ghost", Admin: true} // not in the file
		fakeAdm = &gitgate.User{Name: "alice", Admin: true} // the file says not admin
	)
	const (
		none  = gitgate.PermissionNone
		read  = gitgate.PermissionRead
		write = gitgate.PermissionWrite
	)
	tests := []struct {
		name string
		user *gitgate.User
		repo string
		want gitgate.Permission
	}{
		// "group/*" beats "group/**" for direct children.
		{"one level beats any depth: listed writer", bob, "group/app", write},
		{"one level beats any depth: signed in", alice, "group/app", read},
		{"one level beats any depth: anonymous gets nothing", anon, "group/app", none},
		// "group/**" applies below one level.
		{"any depth: writer", alice, "group/a/b", write},
		{"any depth: anonymous read", anon, "group/a/b", read},
		{"any depth: other user gets anonymous level", bob, "group/a/b", read},
		// An exact name replaces the wildcards.
		{"exact: listed reader", carol, "group/secret", read},
		{"exact: hides from wildcard writers", alice, "group/secret", none},
		{"exact: hides from wildcard writers too", bob, "group/secret", none},
		{"exact: hides from anonymous", anon, "group/secret", none},
		// Longer literal prefix beats shorter.
		{"longer prefix any depth beats shorter", alice, "group/sub/x/y", read},
		{"longer prefix one level beats any depth", carol, "group/sub/x", write},
		{"longer prefix one level: others nothing", alice, "group/sub/x", none},
		{"exact beats longer wildcard: signed in write", bob, "group/sub/exact", write},
		{"exact: anonymous nothing", anon, "group/sub/exact", none},
		// Top-level patterns.
		{"top level one segment", anon, "toplevel", read},
		{"top level any depth", carol, "other/repo", read},
		{"top level any depth: anonymous nothing", anon, "other/repo", none},
		// Explicit anonymous write.
		{"explicit anonymous write", anon, "open/repo", write},
		{"anonymous level applies to signed in users", alice, "open/repo", write},
		// A rule with no grants denies.
		{"empty rule denies signed in", alice, "locked/x", none},
		{"empty rule denies anonymous", anon, "locked/x", none},
		// Admins.
		{"admin on a denied repo", root, "locked/x", write},
		{"admin on an unmatched repo", root, "no/rule/anywhere", write},
		{"admin flag comes from the file", fakeAdm, "locked/x", none},
		{"unknown user is anonymous", ghost, "group/a/b", read},
		{"unknown user is anonymous: no signed-in grants", ghost, "other/repo", none},
		// Hostile or odd names match nothing.
		{"empty repo", root, "", none},
		{"dot dot", alice, "group/../secret", none},
		{"leading slash", alice, "/group/app", none},
		{"trailing slash", alice, "group/app/", none},
		{"double slash", alice, "group//app", none},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := snap.Permission(tt.user, tt.repo); got != tt.want {
				t.Errorf("Permission(%v, %q) = %v, want %v", tt.user, tt.repo, got, tt.want)
			}
		})
	}
}

func TestPermissionNoRule(t *testing.T) {
	snap := mustSnapshot(t, "users:\n  - name: alice\nrules:\n  - pattern: group/app\n    write: [alice]\n")
	alice := &gitgate.User{Name: "alice"}
	for _, repo := range []string{"group/other", "group", "group/app/sub", "other/app"} {
		if got := snap.Permission(alice, repo); got != gitgate.PermissionNone {
			t.Errorf("Permission(alice, %q) = %v, want none", repo, got)
		}
	}
	if got := snap.Permission(alice, "group/app"); got != gitgate.PermissionWrite {
		t.Errorf("Permission(alice, group/app) = %v, want write", got)
	}
}

func TestZeroSnapshotDeniesEverything(t *testing.T) {
	var snap Snapshot
	if got := snap.Permission(&gitgate.User{Name: "root", Admin: true}, "group/app"); got != gitgate.PermissionNone {
		t.Errorf("Permission = %v, want none", got)
	}
	if _, err := snap.AuthenticateToken(TokenPrefix+"x", testNow); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("AuthenticateToken err = %v, want ErrBadCredentials", err)
	}
	key, _ := newKey(t, "ed25519", "")
	if _, ok := snap.UserByKey(key); ok {
		t.Error("UserByKey found a user in an empty snapshot")
	}
}

func TestUserByKey(t *testing.T) {
	aliceKey, aliceLine := newKey(t, "ed25519", "alice@laptop")
	bobKey, bobLine := newKey(t, "ecdsa256", "")
	otherKey, _ := newKey(t, "ed25519", "")
	snap := mustSnapshot(t, "users:\n  - name: alice\n    admin: true\n    keys:\n      - "+aliceLine+
		"\n  - name: bob\n    keys: ['"+bobLine+"']\n")
	for _, tt := range []struct {
		key    ssh.PublicKey
		want   string
		admin  bool
		wantOK bool
	}{
		{aliceKey, "alice", true, true},
		{bobKey, "bob", false, true},
		{otherKey, "", false, false},
	} {
		u, ok := snap.UserByKey(tt.key)
		if ok != tt.wantOK || (ok && (u.Name != tt.want || u.Admin != tt.admin)) {
			t.Errorf("UserByKey = %v, %v; want %q admin=%v, %v", u, ok, tt.want, tt.admin, tt.wantOK)
		}
	}
}

func mustSnapshot(t testing.TB, yaml string) *Snapshot {
	t.Helper()
	f, err := ParseFile("access.yaml", []byte(yaml))
	if err != nil {
		t.Fatalf("ParseFile: %v", err)
	}
	snap, err := NewSnapshot(f)
	if err != nil {
		t.Fatalf("NewSnapshot: %v", err)
	}
	return snap
}
