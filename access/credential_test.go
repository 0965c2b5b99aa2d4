package access

import (
	"errors"
	"testing"
	"time"

	"github.com/gitgate/gitgate/gitgate"
)

// TestUserByCredential: what a user signed in with names them again only
// while it is still theirs and valid, so that anything issued on a sign-in
// (a signed Git LFS header) dies with the key, the token or the user.
func TestUserByCredential(t *testing.T) {
	f := &File{}
	for _, name := range []string{"alice", "bob"} {
		if err := f.AddUser(name, false); err != nil {
			t.Fatal(err)
		}
	}
	key, line := newKey(t, "ed25519", "alice@laptop")
	if _, err := f.AddKey("alice", line); err != nil {
		t.Fatal(err)
	}
	secret, tok, err := f.CreateToken("alice", TokenOptions{Scopes: gitgate.ScopeReadRepository, Expires: testNow.Add(time.Hour)}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	snapOf := func() *Snapshot {
		t.Helper()
		data, err := f.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return mustSnapshot(t, string(data))
	}
	snap := snapOf()

	byKey, ok := snap.UserByKey(key)
	if !ok || byKey.Credential != "key:"+Fingerprint(key) {
		t.Fatalf("UserByKey = %+v, %v; want the key's credential", byKey, ok)
	}
	byToken, err := snap.AuthenticateToken(secret, testNow)
	if err != nil || byToken.Credential != "token:"+tok.ID {
		t.Fatalf("AuthenticateToken = %+v, %v; want the token's credential", byToken, err)
	}
	for _, u := range []struct{ name, cred string }{{"alice", byKey.Credential}, {"alice", byToken.Credential}} {
		got, err := snap.UserByCredential(u.name, u.cred, testNow)
		if err != nil || got.Name != "alice" || got.Credential != u.cred {
			t.Fatalf("UserByCredential(%q, %q) = %+v, %v", u.name, u.cred, got, err)
		}
	}
	if got, _ := snap.UserByCredential("alice", byToken.Credential, testNow); got.Scopes != byToken.Scopes {
		t.Errorf("token credential scopes %v, want %v", got.Scopes, byToken.Scopes)
	}
	refused := func(what, name, cred string, s *Snapshot, now time.Time) {
		t.Helper()
		if u, err := s.UserByCredential(name, cred, now); !errors.Is(err, ErrBadCredentials) {
			t.Errorf("%s: UserByCredential(%q, %q) = %+v, %v; want ErrBadCredentials", what, name, cred, u, err)
		}
	}
	refused("another user's key", "bob", byKey.Credential, snap, testNow)
	refused("another user's token", "bob", byToken.Credential, snap, testNow)
	refused("no credential", "alice", "", snap, testNow)
	refused("unknown user", "carol", byKey.Credential, snap, testNow)
	refused("expired token", "alice", byToken.Credential, snap, testNow.Add(2*time.Hour))

	if _, err := f.RemoveKey("alice", Fingerprint(key)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.RevokeToken("alice", tok.ID, testNow); err != nil {
		t.Fatal(err)
	}
	snap = snapOf()
	refused("removed key", "alice", byKey.Credential, snap, testNow)
	refused("revoked token", "alice", byToken.Credential, snap, testNow)

	if _, err := f.AddKey("alice", line); err != nil {
		t.Fatal(err)
	}
	if err := f.RemoveUser("alice"); err != nil {
		t.Fatal(err)
	}
	refused("removed user", "alice", byKey.Credential, snapOf(), testNow)
}
