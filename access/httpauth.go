package access

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gitgate/gitgate/gitgate"
)

// TokenChecker finds the user an access token belongs to.
type TokenChecker interface {
	AuthenticateToken(secret string) (*gitgate.User, error)
}

// ThrottledError is returned for a client that failed to sign in too often;
// it may try again after Wait.
type ThrottledError struct{ Wait time.Duration }

// RetryAfter is how long the client must wait.
func (e *ThrottledError) RetryAfter() time.Duration { return e.Wait }

func (e *ThrottledError) Error() string {
	return fmt.Sprintf("too many failed sign-ins; retry in %s", e.Wait.Round(time.Second))
}

// RequestAuthenticator authenticates HTTP requests by their access token
// (see [ParseCredentials]) and slows down clients that keep failing.
type RequestAuthenticator struct {
	Tokens  TokenChecker
	Limiter *Limiter // nil: no throttling
}

// Authenticate returns the request's user; (nil, nil) when the request has
// no credentials (anonymous); an error wrapping [ErrBadCredentials] for
// credentials that are malformed, unknown, expired or revoked; and a
// *[ThrottledError] while the client's address is blocked, without checking
// its credentials at all.
func (a *RequestAuthenticator) Authenticate(r *http.Request) (*gitgate.User, error) {
	creds, err := ParseCredentials(r.Header)
	if errors.Is(err, ErrNoCredentials) {
		return nil, nil
	}
	if a.Limiter != nil {
		if ok, wait := a.Limiter.Allow(r.RemoteAddr); !ok {
			return nil, &ThrottledError{Wait: wait}
		}
	}
	if err == nil {
		var user *gitgate.User
		if user, err = a.Tokens.AuthenticateToken(creds.Token); err == nil {
			if a.Limiter != nil {
				a.Limiter.Success(r.RemoteAddr)
			}
			return user, nil
		}
	}
	if a.Limiter != nil {
		a.Limiter.Failure(r.RemoteAddr)
	}
	if !errors.Is(err, ErrBadCredentials) {
		err = fmt.Errorf("%w: %w", ErrBadCredentials, err)
	}
	if creds.Username != "" {
		err = fmt.Errorf("%w (user name given: %q)", err, creds.Username)
	}
	return nil, err
}
