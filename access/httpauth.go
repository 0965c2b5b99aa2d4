package access

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gitgate/gitgate/gitgate"
)

// TokenChecker finds the user an access token belongs to.
type TokenChecker interface {
	AuthenticateToken(secret string) (*gitgate.User, error)
}

// UserLookup finds a user by name. A TokenChecker that also implements it
// lets [RequestAuthenticator] count failures only against user names that
// exist: a placeholder such as "oauth2", which every client may send, is
// nobody's account and would let one client's failures throttle everyone
// else's mistakes.
type UserLookup interface {
	User(name string) (*gitgate.User, bool)
}

// ThrottledError is returned for bad credentials from a client or for a user
// name that failed to sign in too often; it may try again after Wait.
type ThrottledError struct {
	Wait time.Duration
	// Cause is why the credential was refused (for logs).
	Cause error
}

// RetryAfter is how long the client must wait.
func (e *ThrottledError) RetryAfter() time.Duration { return e.Wait }

func (e *ThrottledError) Error() string {
	return fmt.Sprintf("too many failed sign-ins; retry in %s", e.Wait.Round(time.Second))
}

// RequestAuthenticator authenticates HTTP requests by their access token
// (see [ParseCredentials]) and slows down clients that keep failing.
//
// The credential is always checked first, and a valid one is never
// throttled: a busy shared address (a NAT, a proxy) or someone failing with
// a user's name cannot lock that user out. A bad credential counts against
// the client's address, the user name given with HTTP Basic when it names a
// user (see [UserLookup]), and the owner of a known token that was refused (revoked or expired); once any of them
// has failed too often, bad credentials get a *[ThrottledError] instead of
// a plain refusal. A successful sign-in forgets only that user's own
// failures, never an address's, so signing in with one's own token between
// guesses does not reset anything.
//
// Tokens hold 256 random bits, so guessing one is hopeless either way; the
// throttle keeps scripted guessing noisy and expensive for the client (429
// with Retry-After) and flags it in logs and metrics.
type RequestAuthenticator struct {
	Tokens  TokenChecker
	Limiter *Limiter // nil: no throttling
}

// Authenticate returns the request's user; (nil, nil) when the request has
// no credentials (anonymous); an error wrapping [ErrBadCredentials] for
// credentials that are malformed, unknown, expired or revoked; and a
// *[ThrottledError] instead for bad credentials from an address or for a
// user name that failed too often. r.RemoteAddr is the client's address:
// behind a proxy, the caller sets it from [TrustedProxies] first.
func (a *RequestAuthenticator) Authenticate(r *http.Request) (*gitgate.User, error) {
	creds, err := ParseCredentials(r.Header)
	if errors.Is(err, ErrNoCredentials) {
		return nil, nil
	}
	var owner string
	if err == nil {
		user, terr := a.Tokens.AuthenticateToken(creds.Token)
		if terr == nil {
			if a.Limiter != nil {
				a.Limiter.Success(UserKey(user.Name))
			}
			return user, nil
		}
		err, owner = terr, TokenOwner(terr)
	}
	if !errors.Is(err, ErrBadCredentials) {
		err = fmt.Errorf("%w: %w", ErrBadCredentials, err)
	}
	if creds.Username != "" {
		err = fmt.Errorf("%w (user name given: %q)", err, truncate(creds.Username, 100))
	}
	if a.Limiter == nil {
		return nil, err
	}
	username := creds.Username
	if users, ok := a.Tokens.(UserLookup); ok && username != "" {
		_, known := users.User(username)
		if !known {
			_, known = users.User(strings.ToLower(username))
		}
		if !known {
			username = "" // "oauth2" and the like: shared by everyone, nobody's account
		}
	}
	keys := failureKeys(r.RemoteAddr, username, owner)
	var wait time.Duration
	for _, k := range keys {
		if ok, w := a.Limiter.Allow(k); !ok {
			wait = max(wait, w)
		}
	}
	if wait > 0 {
		return nil, &ThrottledError{Wait: wholeSeconds(wait), Cause: err}
	}
	for _, k := range keys {
		a.Limiter.Failure(k)
	}
	return nil, err
}

// failureKeys are the limiter keys a bad credential counts against, without
// repeats.
func failureKeys(addr, username, owner string) []string {
	keys := []string{AddrKey(addr)}
	for _, name := range []string{username, owner} {
		if name == "" {
			continue
		}
		if k := UserKey(name); !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	return keys
}

// wholeSeconds rounds d up to whole seconds, at least one, as Retry-After
// needs.
func wholeSeconds(d time.Duration) time.Duration {
	return max(time.Second, (d+time.Second-1)/time.Second*time.Second)
}
