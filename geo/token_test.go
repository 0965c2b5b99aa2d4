package geo

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/gitgate/gitgate/gitgate"
)

var (
	secretEU     = []byte("eu-secret-0123456789abcdef0123456789abcdef")
	secretAsia   = []byte("asia-secret-0123456789abcdef0123456789abcdef")
	testVerifier = func(now time.Time) *Verifier {
		v := NewVerifier(map[string][]byte{"eu": secretEU, "asia": secretAsia})
		v.now = func() time.Time { return now }
		return v
	}
)

func mustSign(t *testing.T, secret []byte, node string, c Claims, ttl time.Duration, now time.Time) string {
	t.Helper()
	h, err := sign(secret, node, c, ttl, now)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// rawToken signs arbitrary claims with any method, for forgeries.
func rawToken(t *testing.T, method jwt.SigningMethod, key any, claims jwt.Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestVerify(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	v := testVerifier(now)
	status := Claims{Scope: ScopeStatus}
	push := Claims{Scope: ScopePush, Repo: "group/project", User: "alice"}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	claimsAt := func(scope Scope) jwt.MapClaims {
		return jwt.MapClaims{"node": "eu", "scope": string(scope), "iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "jti": "x"}
	}
	good := mustSign(t, secretEU, "eu", status, 0, now)
	goodJWT := strings.TrimPrefix(good, "GL-Geo eu:")
	// One character of the signature changed (not the last, whose low bits
	// strict base64 decoding requires to be zero).
	i := len(goodJWT) - 10
	forged := goodJWT[:i] + flip(goodJWT[i:i+1]) + goodJWT[i+1:]
	// A token whose claims were changed after signing.
	parts := strings.Split(goodJWT, ".")
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"node":"eu","scope":"push","repo":"group/project","user":"root","admin":true,"iat":`+itoa(now.Unix())+`,"exp":`+itoa(now.Add(time.Minute).Unix())+`}`)) + "." + parts[2]

	tests := []struct {
		name   string
		header string
		scope  Scope
		repo   string
		want   error
	}{
		{"status token", good, ScopeStatus, "", nil},
		{"push token", mustSign(t, secretEU, "eu", push, 0, now), ScopePush, "group/project", nil},
		{"push token, repo with .git", mustSign(t, secretEU, "eu", push, 0, now), ScopePush, "group/project.git", nil},
		{"scheme is case-insensitive", "gl-geo " + strings.TrimPrefix(good, "GL-Geo "), ScopeStatus, "", nil},
		{"within the clock leeway", mustSign(t, secretEU, "eu", status, time.Minute, now.Add(-time.Minute-5*time.Second)), ScopeStatus, "", nil},

		{"no header", "", ScopeStatus, "", ErrNoToken},
		{"forged signature", "GL-Geo eu:" + forged, ScopeStatus, "", ErrBadSignature},
		{"claims changed after signing", "GL-Geo eu:" + tampered, ScopePush, "group/project", ErrBadSignature},
		{"signed with another node's secret", mustSign(t, secretAsia, "eu", status, 0, now), ScopeStatus, "", ErrBadSignature},
		{"alg none", "GL-Geo eu:" + rawToken(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claimsAt(ScopeStatus)), ScopeStatus, "", ErrBadSignature},
		{"HS512", "GL-Geo eu:" + rawToken(t, jwt.SigningMethodHS512, secretEU, claimsAt(ScopeStatus)), ScopeStatus, "", ErrBadSignature},
		{"RS256", "GL-Geo eu:" + rawToken(t, jwt.SigningMethodRS256, rsaKey, claimsAt(ScopeStatus)), ScopeStatus, "", ErrBadSignature},
		{"expired", mustSign(t, secretEU, "eu", status, time.Minute, now.Add(-2*time.Minute)), ScopeStatus, "", ErrExpired},
		{"replayed after expiry", mustSign(t, secretEU, "eu", push, 0, now.Add(-TokenTTL-ClockLeeway-time.Second)), ScopePush, "group/project", ErrExpired},
		{"issued in the future", mustSign(t, secretEU, "eu", status, time.Minute, now.Add(time.Minute)), ScopeStatus, "", ErrExpired},
		{"lifetime too long", mustSign(t, secretEU, "eu", status, time.Hour, now), ScopeStatus, "", ErrMalformed},
		{"no exp", "GL-Geo eu:" + rawToken(t, jwt.SigningMethodHS256, secretEU, jwt.MapClaims{"node": "eu", "scope": "status", "iat": now.Unix()}), ScopeStatus, "", ErrMalformed},
		{"status token used for a push", good, ScopePush, "group/project", ErrWrongScope},
		{"push token used for status", mustSign(t, secretEU, "eu", push, 0, now), ScopeStatus, "", ErrWrongScope},
		{"replication token used for status", mustSign(t, secretEU, "eu", Claims{Scope: ScopeReplication}, 0, now), ScopeStatus, "", ErrWrongScope},
		{"push token for another repo", mustSign(t, secretEU, "eu", push, 0, now), ScopePush, "group/other", ErrWrongRepo},
		{"push token, doubled .git", mustSign(t, secretEU, "eu", push, 0, now), ScopePush, "group/project.git.git", ErrWrongRepo},
		{"push token for a second spelling", mustSign(t, secretEU, "eu", Claims{Scope: ScopePush, Repo: "group/project.git"}, 0, now), ScopePush, "group/project.git.git", ErrWrongRepo},
		{"push token for a name that is not canonical", mustSign(t, secretEU, "eu", Claims{Scope: ScopePush, Repo: "group/project.git"}, 0, now), ScopePush, "group/project", ErrWrongRepo},
		{"push token without repo", mustSign(t, secretEU, "eu", Claims{Scope: ScopePush}, 0, now), ScopePush, "group/project", ErrWrongRepo},
		{"unknown node", mustSign(t, secretEU, "us", status, 0, now), ScopeStatus, "", ErrUnknownNode},
		{"token of one node sent as another", "GL-Geo asia:" + rawToken(t, jwt.SigningMethodHS256, secretAsia, jwt.MapClaims{"node": "eu", "scope": "status", "iat": now.Unix(), "exp": now.Add(time.Minute).Unix()}), ScopeStatus, "", ErrMalformed},
		{"other scheme", "Bearer " + goodJWT, ScopeStatus, "", ErrMalformed},
		{"scheme only", "GL-Geo", ScopeStatus, "", ErrMalformed},
		{"no node", "GL-Geo :" + goodJWT, ScopeStatus, "", ErrMalformed},
		{"no colon", "GL-Geo eu" + goodJWT, ScopeStatus, "", ErrMalformed},
		{"bad node name", "GL-Geo e/u:" + goodJWT, ScopeStatus, "", ErrMalformed},
		{"not a JWT", "GL-Geo eu:not-a-jwt", ScopeStatus, "", ErrMalformed},
		{"JWT with bad base64", "GL-Geo eu:a.b.c", ScopeStatus, "", ErrMalformed},
		{"space in the token", "GL-Geo eu:" + goodJWT + " x", ScopeStatus, "", ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := v.Verify(tt.header, tt.scope, tt.repo)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("Verify: %v, want %v", err, tt.want)
			}
			if err == nil && (c.Node != "eu" || c.Scope != tt.scope || c.ID == "") {
				t.Errorf("claims %+v", c)
			}
		})
	}
}

func flip(s string) string {
	b := []byte(s)
	for i := range b {
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
	}
	return string(b)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestSignedTokenCarriesPushIdentity(t *testing.T) {
	now := time.Now()
	h := mustSign(t, secretEU, "eu", Claims{Scope: ScopePush, Repo: "g/p", User: "root", Admin: true}, 0, now)
	c, err := testVerifier(now).Verify(h, ScopePush, "g/p")
	if err != nil {
		t.Fatal(err)
	}
	if u := c.PushUser(); u == nil || u.Name != "root" || !u.Admin {
		t.Errorf("PushUser = %+v", u)
	}
	if c.ExpiresAt.Sub(c.IssuedAt.Time) != TokenTTL {
		t.Errorf("lifetime %s, want %s", c.ExpiresAt.Sub(c.IssuedAt.Time), TokenTTL)
	}
	anon := mustSign(t, secretEU, "eu", Claims{Scope: ScopePush, Repo: "g/p"}, 0, now)
	if c, err := testVerifier(now).Verify(anon, ScopePush, "g/p"); err != nil || c.PushUser() != nil {
		t.Errorf("anonymous push token: %v, %v", c, err)
	}
	if _, err := Sign(secretEU, "bad node", Claims{Scope: ScopeStatus}, 0); err == nil {
		t.Error("Sign accepted a bad node name")
	}
	if _, err := Sign(nil, "eu", Claims{Scope: ScopeStatus}, 0); err == nil {
		t.Error("Sign accepted an empty secret")
	}
}

func TestWriteUnauthorized(t *testing.T) {
	for err, want := range map[error]string{
		ErrExpired:                             `{"message":"401 Unauthorized: token expired or not yet valid (are the sites' clocks in sync?)"}`,
		jwtError(jwt.ErrTokenSignatureInvalid): `{"message":"401 Unauthorized: bad token signature"}`,
		ErrWrongScope:                          `{"message":"401 Unauthorized: token scope does not allow this request"}`,
		ErrUnknownNode:                         `{"message":"401 Unauthorized: unknown Geo node"}`,
		ErrMalformed:                           `{"message":"401 Unauthorized: malformed GL-Geo authorization"}`,
		errors.New("internal detail"):          `{"message":"401 Unauthorized: invalid token"}`,
	} {
		rec := httptest.NewRecorder()
		WriteUnauthorized(rec, err)
		if rec.Code != 401 || strings.TrimSpace(rec.Body.String()) != want || rec.Header().Get("Content-Type") != "application/json" {
			t.Errorf("%v: %d %s %q", err, rec.Code, rec.Body, rec.Header().Get("Content-Type"))
		}
	}
}

type fixedAuth struct{ user *gitgate.User }

func (a fixedAuth) Authenticate(*http.Request) (*gitgate.User, error) { return a.user, nil }

func TestPushAuthenticator(t *testing.T) {
	now := time.Now()
	v := testVerifier(now)
	auth := v.Authenticator(fixedAuth{&gitgate.User{Name: "from-next"}})
	push := mustSign(t, secretEU, "eu", Claims{Scope: ScopePush, Repo: "group/project", User: "alice"}, 0, now)
	status := mustSign(t, secretEU, "eu", Claims{Scope: ScopeStatus}, 0, now)
	tests := []struct {
		method, target, header string
		user                   string // "" with wantErr false: anonymous
		wantErr                error
	}{
		{"GET", "/group/project.git/info/refs?service=git-receive-pack", push, "alice", nil},
		{"POST", "/group/project.git/git-receive-pack", push, "alice", nil},
		{"POST", "/group/project/git-receive-pack", push, "alice", nil},
		{"GET", "/group/project.git/info/refs?service=git-upload-pack", push, "", ErrWrongScope},
		{"POST", "/group/project.git/git-upload-pack", push, "", ErrWrongScope},
		{"PUT", "/api/v4/application/settings", push, "", ErrWrongScope},
		{"GET", "/group/other.git/info/refs?service=git-receive-pack", push, "", ErrWrongRepo},
		{"GET", "/group/project.git/info/refs?service=git-receive-pack", status, "", ErrWrongScope},
		{"GET", "/group/project.git/info/refs?service=git-receive-pack", "GL-Geo eu:garbage", "", ErrMalformed},
		{"POST", "/group/project.git/info/lfs/objects/batch", push, "alice", nil},
		{"PUT", "/group/project.git/info/lfs/objects/" + strings.Repeat("a", 64), push, "alice", nil},
		{"POST", "/group/project.git/info/lfs/locks", push, "alice", nil},
		{"POST", "/group/other.git/info/lfs/objects/batch", push, "", ErrWrongRepo},
		{"POST", "/group/./project.git/info/lfs/objects/batch", push, "", ErrWrongRepo},
		{"POST", "/group/project.git/info/lfs/objects/batch", status, "", ErrWrongScope},
		{"POST", "/group/project.git/info/lfs/objects/batch", "", "from-next", nil},
		{"GET", "/group/project.git/info/refs?service=git-receive-pack", "", "from-next", nil},
		{"GET", "/group/project.git/info/refs?service=git-receive-pack", "Basic YTpi", "from-next", nil},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(tt.method, tt.target, nil)
		if tt.header != "" {
			r.Header.Set("Authorization", tt.header)
		}
		u, err := auth.Authenticate(r)
		if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
			t.Errorf("%s %s: error %v, want %v", tt.method, tt.target, err, tt.wantErr)
			continue
		}
		if err == nil && u.String() != tt.user {
			t.Errorf("%s %s: user %v, want %s", tt.method, tt.target, u, tt.user)
		}
	}
}
