package access

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// maxAuthorization bounds an Authorization or PRIVATE-TOKEN header value.
const maxAuthorization = 4096

// Errors from ParseCredentials.
var (
	// ErrNoCredentials means the request carries no credentials: the client
	// is anonymous.
	ErrNoCredentials = errors.New("no credentials")
	// ErrMalformedCredentials means the request carries credentials that
	// cannot be read. Treat it like bad credentials.
	ErrMalformedCredentials = errors.New("malformed credentials")
)

// Credentials are the access token an HTTP client presented.
type Credentials struct {
	// Token is the access token secret.
	Token string
	// Username is the user name sent with HTTP Basic, empty otherwise. It is
	// for logs only: the token alone says who the user is.
	Username string
	// Scheme says where the token came from: "basic", "bearer" or
	// "private-token".
	Scheme string
}

// ParseCredentials reads the access token from request headers, in any of
// the forms GitLab users already use:
//
//   - "PRIVATE-TOKEN: <token>";
//   - "Authorization: Bearer <token>";
//   - "Authorization: Basic <base64 of user:token>", what git sends for
//     https://user:token@host/ URLs and from credential helpers.
//
// With Basic, the token is the password and any user name is accepted,
// "oauth2" as GitLab users commonly write, the token owner's name, or
// something else: the token alone identifies the user, and requiring a
// matching name would add no security to a 256-bit secret.
//
// It returns ErrNoCredentials when there is no credential header, and an
// error wrapping ErrMalformedCredentials for anything it cannot read: more
// than one credential, an oversized value, an unknown scheme, bad base64, a
// missing colon, an empty token, or control characters. It only parses; it
// does not check the token.
func ParseCredentials(h http.Header) (Credentials, error) {
	auth, private := h.Values("Authorization"), h.Values("Private-Token")
	switch n := len(auth) + len(private); {
	case n == 0:
		return Credentials{}, ErrNoCredentials
	case n > 1:
		return Credentials{}, malformed("more than one credential header")
	case len(private) == 1:
		if err := checkCredentialToken(private[0]); err != nil {
			return Credentials{}, err
		}
		return Credentials{Token: private[0], Scheme: "private-token"}, nil
	}
	return parseAuthorization(auth[0])
}

func parseAuthorization(v string) (Credentials, error) {
	if len(v) > maxAuthorization {
		return Credentials{}, malformed("Authorization header of %d bytes", len(v))
	}
	scheme, param, _ := strings.Cut(v, " ")
	param = strings.TrimLeft(param, " ")
	switch {
	case strings.EqualFold(scheme, "Bearer"):
		if err := checkCredentialToken(param); err != nil {
			return Credentials{}, err
		}
		return Credentials{Token: param, Scheme: "bearer"}, nil
	case strings.EqualFold(scheme, "Basic"):
		return parseBasic(param)
	}
	return Credentials{}, malformed("unsupported authorization scheme %q", truncate(scheme, 20))
}

func parseBasic(param string) (Credentials, error) {
	raw, err := base64.StdEncoding.DecodeString(strings.TrimRight(param, " "))
	if err != nil {
		return Credentials{}, malformed("basic credentials are not valid base64")
	}
	user, token, ok := strings.Cut(string(raw), ":")
	if !ok {
		return Credentials{}, malformed("basic credentials without ':' between user name and token")
	}
	if strings.ContainsFunc(user, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return Credentials{}, malformed("control characters in the user name")
	}
	if err := checkCredentialToken(token); err != nil {
		return Credentials{}, err
	}
	return Credentials{Token: token, Username: user, Scheme: "basic"}, nil
}

// checkCredentialToken accepts 1 to maxTokenLength visible ASCII characters.
func checkCredentialToken(t string) error {
	switch {
	case t == "":
		return malformed("empty token")
	case len(t) > maxTokenLength:
		return malformed("token of %d bytes", len(t))
	}
	for _, c := range []byte(t) {
		if c <= ' ' || c >= 0x7f {
			return malformed("token holds spaces, control or non-ASCII characters")
		}
	}
	return nil
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformedCredentials, fmt.Sprintf(format, args...))
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
