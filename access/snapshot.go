package access

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/gitgate/gitgate/gitgate"
)

// Snapshot is a validated access file compiled for lookups. It is immutable
// and safe for concurrent use; its methods do no I/O. The zero Snapshot has
// no users and no rules.
type Snapshot struct {
	users map[string]*userRecord // by exact name
	keys  map[string]*userRecord // by marshalled public key
	// creds are the live credentials by CredentialKey(user, credential):
	// each key's user, and each token's record (revoked ones included).
	creds  map[string]credRecord
	tokens []tokenRecord    // every token, revoked ones marked
	exact  map[string]*rule // "group/name" by name
	one    map[string]*rule // "group/*" by "group"; "*" by ""
	any    map[string]*rule // "group/**" by "group"; "**" by ""
	// warnings are problems that do not make the file invalid.
	warnings []error
}

var (
	_ gitgate.Authorizer = (*Snapshot)(nil)
	_ gitgate.Authorizer = (*Live)(nil)
)

type userRecord struct {
	name  string
	admin bool
}

func (u *userRecord) user() *gitgate.User {
	return &gitgate.User{Name: u.name, Admin: u.admin}
}

type tokenRecord struct {
	id      string
	digest  [sha256.Size]byte
	user    *userRecord
	expires time.Time
	revoked bool
	scopes  gitgate.Scopes
}

// rule is a compiled Rule.
type rule struct {
	pattern   string
	users     map[string]gitgate.Permission
	signedIn  gitgate.Permission
	anonymous gitgate.Permission
}

// Permission answers what user (nil: anonymous) may do on repo, a canonical
// repository name such as "group/name" (no ".git").
//
// Admins may do everything. For anyone else exactly one rule decides: the
// most specific rule whose pattern matches repo. When no rule matches, the
// answer is PermissionNone. Specificity, from most to least specific:
//
//  1. an exact name ("group/name") beats every wildcard;
//  2. a wildcard after more literal segments beats one after fewer:
//     "group/sub/**" beats "group/**" for "group/sub/x";
//  3. after the same literal segments, "*" (exactly one more segment) beats
//     "**" (one or more): "group/*" beats "group/**" for "group/x".
//
// Patterns in a file are unique, so this always picks a single rule. Within
// that rule the user gets the highest of the grants that apply to them: the
// anonymous level applies to everyone; the signed_in level and the read and
// write lists apply to users defined in the file.
//
// A more specific rule replaces the less specific ones, it does not add to
// them. A "group/secret" rule that grants read to bob alone hides that
// repository from everyone else even if "group/**" grants signed_in: read;
// that is how a private repository lives inside an open group. To widen
// access to one repository, repeat the wider grants in its rule.
//
// The user is looked up by name in this snapshot: the admin flag comes from
// the file, not from user.Admin, and a name the file does not define (say, a
// user deleted since they signed in) is treated as anonymous.
func (s *Snapshot) Permission(user *gitgate.User, repo string) gitgate.Permission {
	if !saneRepo(repo) {
		return gitgate.PermissionNone
	}
	var u *userRecord
	if user != nil {
		u = s.users[user.Name]
	}
	if u != nil && u.admin {
		return gitgate.PermissionWrite
	}
	r := s.match(repo)
	if r == nil {
		return gitgate.PermissionNone
	}
	perm := r.anonymous
	if u != nil {
		perm = max(perm, r.signedIn, r.users[u.name])
	}
	return perm
}

// match returns the most specific rule for repo, or nil.
func (s *Snapshot) match(repo string) *rule {
	if r := s.exact[repo]; r != nil {
		return r
	}
	prefix := parent(repo)
	if r := s.one[prefix]; r != nil {
		return r
	}
	for {
		if r := s.any[prefix]; r != nil {
			return r
		}
		if prefix == "" {
			return nil
		}
		prefix = parent(prefix)
	}
}

// parent drops the last segment of a path: "a/b/c" → "a/b", "a" → "".
func parent(path string) string {
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		return path[:i]
	}
	return ""
}

// AuthenticateToken returns the owner of the access token secret, with the
// token's scopes, or ErrBadCredentials if the secret is unknown, revoked or
// expired at now. For a revoked or expired token the error also names its
// owner (see [TokenOwner]), so that failures count against that user. Every
// stored digest is compared in constant time, so the time taken says
// nothing about which tokens exist. The scan is linear in the number of
// tokens, tens of microseconds per thousand, which suits a file kept by hand.
func (s *Snapshot) AuthenticateToken(secret string, now time.Time) (*gitgate.User, error) {
	if !looksLikeToken(secret) {
		return nil, fmt.Errorf("%w: not a gitgate token", ErrBadCredentials)
	}
	digest := hashToken(secret)
	var found *tokenRecord
	for i := range s.tokens {
		if subtle.ConstantTimeCompare(s.tokens[i].digest[:], digest[:]) == 1 {
			found = &s.tokens[i]
		}
	}
	if found == nil {
		return nil, fmt.Errorf("%w: unknown token", ErrBadCredentials)
	}
	return found.check(now)
}

// check returns the token's owner, with its scopes and credential, or
// ErrBadCredentials for a revoked or expired token: the one check of a
// token, whether it is sent as a secret or named by what was issued on it.
func (t *tokenRecord) check(now time.Time) (*gitgate.User, error) {
	// The reasons are for the log; every client sees the same refusal.
	if t.revoked {
		return nil, &tokenOwnerError{owner: t.user.name, err: fmt.Errorf("%w: token of user %q is revoked",
			ErrBadCredentials, t.user.name)}
	}
	if !t.expires.IsZero() && !now.Before(t.expires) {
		return nil, &tokenOwnerError{owner: t.user.name, err: fmt.Errorf("%w: token of user %q expired at %s",
			ErrBadCredentials, t.user.name, t.expires.UTC().Format(time.RFC3339))}
	}
	u := t.user.user()
	u.Scopes = t.scopes
	u.Credential = tokenCredential(t.id)
	return u, nil
}

// credRecord is one live credential: an SSH key's user, or a token.
type credRecord struct {
	user  *userRecord  // an SSH key
	token *tokenRecord // an access token
}

// keyCredential and tokenCredential spell gitgate.User.Credential.
func keyCredential(key ssh.PublicKey) string { return "key:" + Fingerprint(key) }
func tokenCredential(id string) string       { return "token:" + id }

// credentialKey is the creds map's key.
func credentialKey(user, credential string) string { return user + "\x00" + credential }

// UserByCredential returns the user named name as they are now, when the
// credential they signed in with (gitgate.User.Credential) is still theirs
// and still valid at now: the key is still on the user, the token still
// theirs and neither revoked nor expired. Anything issued on a sign-in (a
// signed Git LFS header) is checked with it on every use, so removing the
// key, the token or the user stops it at once. The error wraps
// ErrBadCredentials.
func (s *Snapshot) UserByCredential(name, credential string, now time.Time) (*gitgate.User, error) {
	c, ok := s.creds[credentialKey(name, credential)]
	switch {
	case name == "" || credential == "" || !ok:
		return nil, fmt.Errorf("%w: user %q has no credential %q", ErrBadCredentials, name, credential)
	case c.token != nil:
		return c.token.check(now)
	}
	u := c.user.user()
	u.Credential = credential
	return u, nil
}

// tokenOwnerError is a refused token whose owner is known.
type tokenOwnerError struct {
	owner string
	err   error
}

func (e *tokenOwnerError) Error() string { return e.err.Error() }
func (e *tokenOwnerError) Unwrap() error { return e.err }

// TokenOwner returns the user a refused token belongs to (a revoked or
// expired one), or "" when the token is unknown.
func TokenOwner(err error) string {
	var e *tokenOwnerError
	if errors.As(err, &e) {
		return e.owner
	}
	return ""
}

// UserByKey returns the user who owns the SSH public key, comparing the
// exact key bytes.
func (s *Snapshot) UserByKey(key ssh.PublicKey) (*gitgate.User, bool) {
	if key == nil {
		return nil, false
	}
	u := s.keys[string(key.Marshal())]
	if u == nil {
		return nil, false
	}
	user := u.user()
	user.Credential = keyCredential(key)
	return user, true
}

// User returns the user with the given name.
func (s *Snapshot) User(name string) (*gitgate.User, bool) {
	u := s.users[name]
	if u == nil {
		return nil, false
	}
	return u.user(), true
}

// Warnings returns problems that do not make the file invalid, such as a
// rule naming an undefined user or granting anonymous write.
func (s *Snapshot) Warnings() []error { return s.warnings }
