package geo

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/gitgate/gitgate/gitgate"
)

// AuthScheme is the HTTP authorization scheme of site-to-site calls:
// "Authorization: GL-Geo <node>:<jwt>", as GitLab Geo spells it.
const AuthScheme = "GL-Geo"

// Scope is what a token allows. A token has exactly one scope.
type Scope string

// Scopes of site-to-site tokens.
const (
	// ScopeStatus lets a secondary follow the primary's maintenance state.
	ScopeStatus Scope = "status"
	// ScopePush lets a secondary push to one repository on the primary on
	// behalf of the user named in the token.
	ScopePush Scope = "push"
	// ScopeReplication is for replication traffic between sites.
	ScopeReplication Scope = "replication"
	// ScopeReplicate lets a secondary fetch one repository from the
	// primary (git's smart HTTP upload-pack) for replication, whatever the
	// primary's access rules say about it.
	ScopeReplicate Scope = "replicate"
	// ScopePromote, on a status answer from the primary to the target of
	// a planned failover, orders its promotion to the token's Term.
	ScopePromote Scope = "promote"
	// ScopeAnnounce, on a status answer from a demoted primary, tells a
	// secondary the new primary's Term and URL.
	ScopeAnnounce Scope = "announce"
)

// Token lifetimes.
const (
	// TokenTTL is the lifetime of the tokens this package signs: long enough
	// for a request to reach the other site, short enough that a leaked
	// token is soon worthless.
	TokenTTL = time.Minute
	// MaxTokenTTL is the longest lifetime a Verifier accepts (exp - iat).
	MaxTokenTTL = 5 * time.Minute
	// ClockLeeway is the clock difference between sites tolerated on exp and
	// iat.
	ClockLeeway = 10 * time.Second
)

// Reasons a token is refused. Compare with errors.Is; the texts are safe to
// show to the other site (see WriteUnauthorized).
var (
	ErrNoToken      = errors.New("no GL-Geo authorization")
	ErrMalformed    = errors.New("malformed GL-Geo authorization")
	ErrUnknownNode  = errors.New("unknown Geo node")
	ErrBadSignature = errors.New("bad token signature")
	ErrExpired      = errors.New("token expired or not yet valid (are the sites' clocks in sync?)")
	ErrWrongScope   = errors.New("token scope does not allow this request")
	ErrWrongRepo    = errors.New("token is for another repository")
)

// tokenErrors are the reasons above, for Reason.
var tokenErrors = [...]error{ErrNoToken, ErrMalformed, ErrUnknownNode, ErrBadSignature, ErrExpired, ErrWrongScope, ErrWrongRepo}

// Claims is the payload of a site-to-site token.
type Claims struct {
	// Node is the name of the site that signed the token; it must match the
	// node in the Authorization header.
	Node string `json:"node"`
	// Scope is what the token allows.
	Scope Scope `json:"scope"`
	// Repo is the canonical repository name ("group/name"), for ScopePush
	// and ScopeReplicate.
	Repo string `json:"repo,omitempty"`
	// User is the name of the user the secondary authenticated, for
	// ScopePush; empty for an anonymous push.
	User string `json:"user,omitempty"`
	// Admin is the user's admin flag, for ScopePush.
	Admin bool `json:"admin,omitempty"`
	// Credential is what the user signed in with on the secondary
	// (gitgate.User.Credential), for ScopePush: the primary checks what it
	// issues on the user's behalf (signed Git LFS headers) against it.
	Credential string `json:"cred,omitempty"`
	// Term is the highest failover term the signing site has seen; the
	// receiving site checks it on every contact (see Guard.Observe).
	Term *Term `json:"term,omitempty"`
	// Reopen, for ScopePromote, says whether the new primary disables
	// maintenance once every secondary has confirmed its term.
	Reopen bool `json:"reopen,omitempty"`
	// URL, for ScopeAnnounce, is the new primary's base URL.
	URL string `json:"url,omitempty"`
	// RegisteredClaims holds iat, exp and jti, set by Sign.
	jwt.RegisteredClaims
}

// PushUser returns the user a push token acts for (nil: anonymous).
func (c *Claims) PushUser() *gitgate.User {
	if c.User == "" {
		return nil
	}
	return &gitgate.User{Name: c.User, Admin: c.Admin, Credential: c.Credential}
}

// Sign returns an Authorization header value "GL-Geo <node>:<jwt>" carrying
// c, signed with HS256 and secret, issued now and valid for ttl (TokenTTL
// when ttl is zero). c.Node is set to node; iat, exp and jti are filled in.
func Sign(secret []byte, node string, c Claims, ttl time.Duration) (string, error) {
	return sign(secret, node, c, ttl, time.Now())
}

func sign(secret []byte, node string, c Claims, ttl time.Duration, now time.Time) (string, error) {
	if err := ValidateNodeName(node); err != nil {
		return "", err
	}
	if len(secret) == 0 {
		return "", errors.New("sign Geo token: empty secret")
	}
	if ttl <= 0 {
		ttl = TokenTTL
	}
	c.Node = node
	c.RegisteredClaims = jwt.RegisteredClaims{
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		ID:        newTokenID(),
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, &c).SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("sign Geo token: %w", err)
	}
	return AuthScheme + " " + node + ":" + s, nil
}

func newTokenID() string {
	b := make([]byte, 16)
	rand.Read(b) // never fails, see crypto/rand
	return hex.EncodeToString(b)
}

// Verifier checks tokens signed by known nodes. It is safe for concurrent
// use and holds no mutable state.
type Verifier struct {
	secrets map[string][]byte
	now     func() time.Time
}

// NewVerifier returns a Verifier for the nodes in secrets (node name →
// shared secret). The map is copied.
func NewVerifier(secrets map[string][]byte) *Verifier {
	v := &Verifier{secrets: make(map[string][]byte, len(secrets)), now: time.Now}
	for node, s := range secrets {
		v.secrets[node] = slices.Clone(s)
	}
	return v
}

// Nodes returns the names of the known nodes, sorted.
func (v *Verifier) Nodes() []string { return slices.Sorted(maps.Keys(v.secrets)) }

// Verify checks an Authorization header value: its form, the node, the
// HS256 signature with that node's secret, the lifetime, the scope and, for
// ScopePush, that the token is for repo. The error wraps one of the
// sentinel errors above.
func (v *Verifier) Verify(header string, scope Scope, repo string) (*Claims, error) {
	if header == "" {
		return nil, ErrNoToken
	}
	node, token, ok := parseHeader(header)
	if !ok {
		return nil, ErrMalformed
	}
	secret, known := v.secrets[node]
	if !known {
		return nil, fmt.Errorf("%w: %q", ErrUnknownNode, node)
	}
	p := jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(ClockLeeway),
		jwt.WithTimeFunc(v.now),
		jwt.WithStrictDecoding(),
	)
	var c Claims
	if _, err := p.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return secret, nil }); err != nil {
		return nil, jwtError(err)
	}
	switch {
	case c.Node != node:
		return nil, fmt.Errorf("%w: token of node %q sent as node %q", ErrMalformed, c.Node, node)
	case c.IssuedAt == nil || c.ExpiresAt.Sub(c.IssuedAt.Time) > MaxTokenTTL:
		return nil, fmt.Errorf("%w: lifetime longer than %s", ErrMalformed, MaxTokenTTL)
	case c.Scope != scope:
		return nil, fmt.Errorf("%w: scope %q, need %q", ErrWrongScope, c.Scope, scope)
	case (scope == ScopePush || scope == ScopeReplicate) && !sameRepo(c.Repo, repo):
		return nil, fmt.Errorf("%w: token for %q, request for %q", ErrWrongRepo, c.Repo, repo)
	}
	return &c, nil
}

// VerifyRequest verifies the request's Authorization header.
func (v *Verifier) VerifyRequest(r *http.Request, scope Scope, repo string) (*Claims, error) {
	h := r.Header.Get("Authorization")
	if h == "" || !hasScheme(h) {
		return nil, ErrNoToken
	}
	return v.Verify(h, scope, repo)
}

// parseHeader splits "GL-Geo <node>:<jwt>".
func parseHeader(h string) (node, token string, ok bool) {
	if !hasScheme(h) {
		return "", "", false
	}
	rest := h[len(AuthScheme)+1:]
	node, token, ok = strings.Cut(rest, ":")
	if !ok || ValidateNodeName(node) != nil || token == "" || strings.ContainsAny(token, " \t") {
		return "", "", false
	}
	return node, token, true
}

// hasScheme reports whether h starts with "GL-Geo " (scheme names are
// case-insensitive in HTTP).
func hasScheme(h string) bool {
	return len(h) > len(AuthScheme) && strings.EqualFold(h[:len(AuthScheme)], AuthScheme) && h[len(AuthScheme)] == ' '
}

// jwtError maps the JWT library's errors to ours.
func jwtError(err error) error {
	var sentinel error
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed), errors.Is(err, jwt.ErrTokenRequiredClaimMissing),
		errors.Is(err, jwt.ErrInvalidType):
		sentinel = ErrMalformed
	case errors.Is(err, jwt.ErrTokenExpired), errors.Is(err, jwt.ErrTokenUsedBeforeIssued),
		errors.Is(err, jwt.ErrTokenNotValidYet):
		sentinel = ErrExpired
	default: // invalid signature, alg none, a method other than HS256
		sentinel = ErrBadSignature
	}
	return fmt.Errorf("%w: %w", sentinel, err)
}

// sameRepo reports whether a request for repo (as written in its path, with
// or without ".git") is for the token's repository claim. The claim must be a
// canonical name and the request's name must clean to exactly it, so a token
// is good for one repository under its one name; the primary then resolves
// that name to the repository itself (see [gitgate.Policy.Open]).
func sameRepo(claim, repo string) bool {
	cr, err := gitgate.CleanName(repo)
	return err == nil && canonical(claim) && cr == claim
}

// Reason returns the text of the sentinel err wraps, safe to send to the
// other site; "invalid token" for anything else.
func Reason(err error) string {
	for _, s := range tokenErrors {
		if errors.Is(err, s) {
			return s.Error()
		}
	}
	return "invalid token"
}

// WriteUnauthorized answers 401 with a JSON body in GitLab's style:
// {"message":"401 Unauthorized: <reason>"}.
func WriteUnauthorized(w http.ResponseWriter, err error) {
	w.Header().Set("WWW-Authenticate", AuthScheme)
	writeJSONMessage(w, http.StatusUnauthorized, "401 Unauthorized: "+Reason(err))
}

// writeJSONMessage answers status with {"message": msg}.
func writeJSONMessage(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, struct {
		Message string `json:"message"`
	}{msg})
}

// writeJSON answers status with v as JSON, uncached.
func writeJSON(w http.ResponseWriter, status int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		status, data = http.StatusInternalServerError, []byte(`{"message":"500 Internal Server Error"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(data, '\n'))
}
