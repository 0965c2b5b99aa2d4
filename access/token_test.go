package access

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"
)

var testNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func TestTokenLifecycle(t *testing.T) {
	f := &File{}
	for _, name := range []string{"alice", "bob"} {
		if err := f.AddUser(name, name == "alice"); err != nil {
			t.Fatal(err)
		}
	}
	expires := testNow.Add(24 * time.Hour)
	forever, tForever, err := f.CreateToken("alice", TokenOptions{Name: "laptop"}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	daily, tDaily, err := f.CreateToken("bob", TokenOptions{Name: "ci", Expires: expires}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	revoked, tRevoked, err := f.CreateToken("bob", TokenOptions{}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.RevokeToken("bob", tRevoked.ID, testNow); err != nil {
		t.Fatal(err)
	}

	// The file holds hashes and metadata, never a secret.
	data, err := f.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{forever, daily, revoked} {
		if !strings.HasPrefix(secret, TokenPrefix) || len(secret) != len(TokenPrefix)+43 {
			t.Errorf("secret %q: want %s and 43 base64url characters", secret, TokenPrefix)
		}
		if strings.Contains(string(data), secret) || strings.Contains(string(data), secret[len(TokenPrefix):]) {
			t.Fatalf("the file contains a secret:\n%s", data)
		}
	}
	sum := sha256.Sum256([]byte(forever))
	if tForever.SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("stored hash %s is not the SHA-256 of the whole secret", tForever.SHA256)
	}
	if tForever.ID == "" || tDaily.Name != "ci" || !tDaily.Expires.Equal(expires) || !tDaily.Created.Equal(testNow) {
		t.Errorf("token metadata: %+v %+v", tForever, tDaily)
	}

	f, err = ParseFile("access.yaml", data) // as the server would read it
	if err != nil {
		t.Fatal(err)
	}
	snap, err := NewSnapshot(f)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		secret    string
		now       time.Time
		wantUser  string
		wantAdmin bool
	}{
		{"valid, never expires", forever, testNow.AddDate(10, 0, 0), "alice", true},
		{"valid before expiry", daily, expires.Add(-time.Second), "bob", false},
		{"expired exactly at expiry", daily, expires, "", false},
		{"expired after expiry", daily, expires.Add(time.Hour), "", false},
		{"revoked", revoked, testNow, "", false},
		{"unknown", TokenPrefix + strings.Repeat("A", 43), testNow, "", false},
		{"one character off", forever[:len(forever)-1] + flip(forever[len(forever)-1]), testNow, "", false},
		{"hash instead of secret", tForever.SHA256, testNow, "", false},
		{"no prefix", forever[len(TokenPrefix):], testNow, "", false},
		{"empty", "", testNow, "", false},
		{"huge", TokenPrefix + strings.Repeat("A", 10000), testNow, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := snap.AuthenticateToken(tt.secret, tt.now)
			if tt.wantUser == "" {
				// Unknown, expired and revoked are refused the same way.
				if u != nil || !errors.Is(err, ErrBadCredentials) {
					t.Fatalf("AuthenticateToken = %v, %v; want nil, ErrBadCredentials", u, err)
				}
				return
			}
			if err != nil || u.Name != tt.wantUser || u.Admin != tt.wantAdmin {
				t.Fatalf("AuthenticateToken = %+v, %v; want %s admin=%v", u, err, tt.wantUser, tt.wantAdmin)
			}
		})
	}
}

func flip(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}

func TestTokenStatus(t *testing.T) {
	tok := Token{Expires: testNow}
	if s := tok.Status(testNow.Add(-time.Second)); s != TokenActive {
		t.Errorf("before expiry: %s", s)
	}
	if s := tok.Status(testNow); s != TokenExpired {
		t.Errorf("at expiry: %s", s)
	}
	tok.Revoked = testNow.Add(-time.Hour)
	if s := tok.Status(testNow.Add(-time.Second)); s != TokenRevoked {
		t.Errorf("revoked: %s", s)
	}
}

func TestCreateTokenErrors(t *testing.T) {
	f := &File{}
	if err := f.AddUser("alice", false); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.CreateToken("nobody", TokenOptions{}, testNow); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown user: %v", err)
	}
	if _, _, err := f.CreateToken("alice", TokenOptions{Expires: testNow}, testNow); err == nil {
		t.Error("expiry now: no error")
	}
	if _, _, err := f.CreateToken("alice", TokenOptions{Name: "a\nb"}, testNow); err == nil {
		t.Error("name with a newline: no error")
	}
	if len(f.Users[0].Tokens) != 0 {
		t.Errorf("failed creates left tokens: %+v", f.Users[0].Tokens)
	}
}

func TestRevokeToken(t *testing.T) {
	f := &File{}
	if err := f.AddUser("alice", false); err != nil {
		t.Fatal(err)
	}
	_, tok, err := f.CreateToken("alice", TokenOptions{}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	first, err := f.RevokeToken("alice", tok.ID, testNow)
	if err != nil || !first.Revoked.Equal(testNow) {
		t.Fatalf("RevokeToken = %+v, %v", first, err)
	}
	again, err := f.RevokeToken("alice", tok.ID, testNow.Add(time.Hour))
	if err != nil || !again.Revoked.Equal(testNow) {
		t.Errorf("revoking again = %+v, %v; want the first revocation time kept", again, err)
	}
	if _, err := f.RevokeToken("alice", "nope", testNow); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown id: %v", err)
	}
}

func BenchmarkAuthenticateToken(b *testing.B) {
	f := &File{}
	if err := f.AddUser("alice", false); err != nil {
		b.Fatal(err)
	}
	var secret string
	for range 1000 {
		s, _, err := f.CreateToken("alice", TokenOptions{}, testNow)
		if err != nil {
			b.Fatal(err)
		}
		secret = s
	}
	snap, err := NewSnapshot(f)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := snap.AuthenticateToken(secret, testNow); err != nil {
			b.Fatal(err)
		}
	}
}
