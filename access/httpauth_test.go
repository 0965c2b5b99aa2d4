package access

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gitgate/gitgate/gitgate"
)

// snapTokens checks tokens against a compiled snapshot at a fixed time.
type snapTokens struct {
	s   *Snapshot
	now time.Time
}

func (c snapTokens) AuthenticateToken(secret string) (*gitgate.User, error) {
	return c.s.AuthenticateToken(secret, c.now)
}

func (c snapTokens) User(name string) (*gitgate.User, bool) { return c.s.User(name) }

// signinFixture is an access file with an admin, a user and an attacker who
// has a valid token of their own, and an authenticator throttling after 10
// failures.
type signinFixture struct {
	auth                     *RequestAuthenticator
	clock                    *fakeClock
	admin, mallory, expired  string // token secrets
	revoked, bobRead, bobAll string
}

func newSigninFixture(t *testing.T) *signinFixture {
	t.Helper()
	f := &File{}
	for _, u := range []string{"admin", "bob", "mallory"} {
		if err := f.AddUser(u, u == "admin"); err != nil {
			t.Fatal(err)
		}
	}
	fx := &signinFixture{clock: &fakeClock{t: testNow}}
	mk := func(user string, opts TokenOptions) string {
		secret, _, err := f.CreateToken(user, opts, testNow.Add(-time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		return secret
	}
	fx.admin = mk("admin", TokenOptions{})
	fx.mallory = mk("mallory", TokenOptions{})
	fx.expired = mk("bob", TokenOptions{Expires: testNow.Add(-time.Minute)})
	fx.bobRead = mk("bob", TokenOptions{Scopes: gitgate.ScopeReadRepository})
	fx.bobAll = mk("bob", TokenOptions{})
	secret, rev, err := f.CreateToken("bob", TokenOptions{}, testNow.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.RevokeToken("bob", rev.ID, testNow); err != nil {
		t.Fatal(err)
	}
	fx.revoked = secret
	snap, err := compile(f)
	if err != nil {
		t.Fatal(err)
	}
	fx.auth = &RequestAuthenticator{
		Tokens: snapTokens{s: snap, now: testNow},
		Limiter: NewLimiter(LimiterConfig{MaxFailures: 10, Block: time.Minute, MaxBlock: time.Hour,
			Forget: 10 * time.Minute, Now: fx.clock.Now}),
	}
	return fx
}

// try signs in from addr with a token as PRIVATE-TOKEN, or with HTTP Basic
// when basicUser is set.
func (fx *signinFixture) try(addr, basicUser, token string) (*gitgate.User, error) {
	r := httptest.NewRequest("GET", "/group/repo.git/info/refs?service=git-upload-pack", nil)
	r.RemoteAddr = addr
	if basicUser != "" {
		r.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(basicUser+":"+token)))
	} else {
		r.Header.Set("PRIVATE-TOKEN", token)
	}
	return fx.auth.Authenticate(r)
}

func isThrottled(err error) bool {
	var th *ThrottledError
	return errors.As(err, &th)
}

// Ten bad tokens from an address used to lock out a valid admin from it. A
// valid credential is checked first and never throttled.
func TestValidCredentialNeverThrottled(t *testing.T) {
	fx := newSigninFixture(t)
	const addr = "192.0.2.7:40000"
	for i := range 30 {
		_, err := fx.try(addr, "", fmt.Sprintf("ggt_guess%d", i))
		if err == nil {
			t.Fatal("a guess signed in")
		}
	}
	if _, err := fx.try(addr, "", "ggt_another_guess"); !isThrottled(err) {
		t.Fatalf("bad token after 30 failures: %v, want throttled", err)
	}
	u, err := fx.try(addr, "", fx.admin)
	if err != nil || u == nil || u.Name != "admin" {
		t.Fatalf("admin's valid token from the busy address: %v, %v; want signed in", u, err)
	}
	// The admin's success does not clear the address either.
	if _, err := fx.try(addr, "", "ggt_yet_another"); !isThrottled(err) {
		t.Fatalf("bad token after the admin's success: %v, want still throttled", err)
	}
}

// An attacker who signs in with their own valid token every 9 guesses used
// to reset the address's count and was never throttled.
func TestOwnSuccessDoesNotResetAddress(t *testing.T) {
	fx := newSigninFixture(t)
	const addr = "198.51.100.9:1234"
	throttled := false
	for round := 0; round < 5 && !throttled; round++ {
		for i := range 9 {
			if _, err := fx.try(addr, "", fmt.Sprintf("ggt_r%di%d", round, i)); isThrottled(err) {
				throttled = true
			}
		}
		if u, err := fx.try(addr, "", fx.mallory); err != nil || u.Name != "mallory" {
			t.Fatalf("mallory's own token: %v %v", u, err)
		}
	}
	if !throttled {
		t.Fatal("45 bad tokens interleaved with the attacker's own successes were never throttled")
	}
}

// Failures count per user name too, across addresses: the Basic user name
// given, and the owner of a known but refused token. A success forgets only
// the user's own failures.
func TestFailuresCountPerUserName(t *testing.T) {
	fx := newSigninFixture(t)
	for i := range 10 {
		fx.try(fmt.Sprintf("203.0.113.%d:9", i), "Bob", fmt.Sprintf("ggt_guess%d", i))
	}
	if _, err := fx.try("203.0.113.200:9", "bob", "ggt_fresh_address"); !isThrottled(err) {
		t.Fatalf("11th bad try for bob from a new address: %v, want throttled", err)
	}
	if _, err := fx.try("203.0.113.200:9", "carol", "ggt_other_name"); isThrottled(err) {
		t.Fatalf("another user name from a new address is throttled: %v", err)
	}
	// Mallory's success does not clear bob's count.
	if _, err := fx.try("203.0.113.201:9", "", fx.mallory); err != nil {
		t.Fatal(err)
	}
	if _, err := fx.try("203.0.113.202:9", "bob", "ggt_x"); !isThrottled(err) {
		t.Fatalf("bob after mallory's success: %v, want throttled", err)
	}
	// Bob's own valid token still works, and forgets bob's failures.
	if u, err := fx.try("203.0.113.203:9", "bob", fx.bobAll); err != nil || u.Name != "bob" {
		t.Fatalf("bob's valid token: %v %v", u, err)
	}
	if _, err := fx.try("203.0.113.204:9", "bob", "ggt_y"); isThrottled(err) {
		t.Fatalf("bob after his own success: %v, want counted afresh", err)
	}
}

func TestRefusedTokenCountsAgainstOwner(t *testing.T) {
	fx := newSigninFixture(t)
	for i := range 5 {
		fx.try(fmt.Sprintf("10.1.0.%d:1", i), "", fx.expired)
		fx.try(fmt.Sprintf("10.2.0.%d:1", i), "oauth2", fx.revoked)
	}
	if _, err := fx.try("10.3.0.1:1", "", fx.expired); !isThrottled(err) {
		t.Fatalf("bob's expired token after 10 refusals from 10 addresses: %v, want throttled", err)
	}
	if got := TokenOwner(func() error { _, err := fx.auth.Tokens.AuthenticateToken(fx.revoked); return err }()); got != "bob" {
		t.Errorf("owner of the revoked token: %q", got)
	}
}

// Throttled answers carry a wait in whole seconds, at least one.
func TestThrottledWaitWholeSeconds(t *testing.T) {
	fx := newSigninFixture(t)
	const addr = "192.0.2.50:1"
	for i := range 10 {
		fx.try(addr, "", fmt.Sprintf("ggt_%d", i))
	}
	fx.clock.Advance(59*time.Second + 700*time.Millisecond)
	_, err := fx.try(addr, "", "ggt_z")
	var th *ThrottledError
	if !errors.As(err, &th) {
		t.Fatalf("%v, want throttled", err)
	}
	if th.RetryAfter() != time.Second {
		t.Errorf("RetryAfter %s, want 1s", th.RetryAfter())
	}
}

// The token's scopes reach the user.
func TestAuthenticateCarriesScopes(t *testing.T) {
	fx := newSigninFixture(t)
	u, err := fx.try("192.0.2.1:1", "bob", fx.bobRead)
	if err != nil || u.Scopes != gitgate.ScopeReadRepository {
		t.Fatalf("bob's read token: %+v, %v", u, err)
	}
	u, err = fx.try("192.0.2.1:1", "", fx.bobAll)
	if err != nil || u.Scopes != 0 || !u.Scopes.Has(gitgate.ScopeAPI) {
		t.Fatalf("bob's unscoped token: %+v, %v", u, err)
	}
}

// Under concurrency, with attackers failing from the same address and with
// the same user names, every valid sign-in succeeds, and the attackers end
// up throttled. Run with -race.
func TestValidNeverThrottledUnderConcurrency(t *testing.T) {
	fx := newSigninFixture(t)
	const addr = "192.0.2.99:1"
	var wg sync.WaitGroup
	var throttled atomic.Int64
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				user := []string{"", "admin", "bob", "mallory"}[(w+i)%4]
				if _, err := fx.try(addr, user, fmt.Sprintf("ggt_w%di%d", w, i)); isThrottled(err) {
					throttled.Add(1)
				}
			}
		}()
	}
	failures := make(chan string, 4*50)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				secret, want := fx.admin, "admin"
				if (w+i)%2 == 1 {
					secret, want = fx.bobAll, "bob"
				}
				if u, err := fx.try(addr, want, secret); err != nil || u.Name != want {
					failures <- fmt.Sprintf("%s: %v, %v", want, u, err)
				}
			}
		}()
	}
	wg.Wait()
	close(failures)
	for f := range failures {
		t.Error("valid sign-in refused:", f)
	}
	if throttled.Load() == 0 {
		t.Error("400 bad credentials from one address were never throttled")
	}
}

// A Basic user name that is nobody's ("oauth2", what GitLab users write)
// counts only against the address: one client's failures must not turn
// everyone else's typos into 429s.
func TestPlaceholderUserNameNotCounted(t *testing.T) {
	fx := newSigninFixture(t)
	for i := range 20 {
		fx.try(fmt.Sprintf("203.0.113.%d:9", i), "oauth2", fmt.Sprintf("ggt_guess%d", i))
	}
	if _, err := fx.try("198.51.100.1:9", "oauth2", "ggt_typo"); err == nil || isThrottled(err) {
		t.Fatalf("a typo from a fresh address with user oauth2: %v, want a plain refusal", err)
	}
}
