package access

import (
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/gitgate/gitgate/gitgate"
)

// The methods below make the edits the CLI offers. Each checks its own
// inputs; [Store.Update] validates the whole file again before writing it.

// User returns the user with the given name, or nil.
func (f *File) User(name string) *User {
	for i := range f.Users {
		if f.Users[i].Name == name {
			return &f.Users[i]
		}
	}
	return nil
}

// mustUser is User with an ErrNotFound error.
func (f *File) mustUser(name string) (*User, error) {
	if u := f.User(name); u != nil {
		return u, nil
	}
	return nil, fmt.Errorf("user %q: %w", name, ErrNotFound)
}

// AddUser adds a user with no keys and no tokens.
func (f *File) AddUser(name string, admin bool) error {
	if err := checkUserName(name); err != nil {
		return err
	}
	for _, u := range f.Users {
		if strings.EqualFold(u.Name, name) {
			return fmt.Errorf("user %q: %w", u.Name, ErrExists)
		}
	}
	f.Users = append(f.Users, User{Name: name, Admin: admin})
	return nil
}

// RemoveUser removes a user, with their keys and tokens, and takes them out
// of every rule. Rules left without grants are kept: they still hide their
// repositories from the less specific rules.
func (f *File) RemoveUser(name string) error {
	i := slices.IndexFunc(f.Users, func(u User) bool { return u.Name == name })
	if i < 0 {
		return fmt.Errorf("user %q: %w", name, ErrNotFound)
	}
	f.Users = slices.Delete(f.Users, i, i+1)
	for i := range f.Rules {
		r := &f.Rules[i]
		r.Read = slices.DeleteFunc(r.Read, func(n string) bool { return n == name })
		r.Write = slices.DeleteFunc(r.Write, func(n string) bool { return n == name })
	}
	return nil
}

// AddKey parses an authorized_keys line with [ParseKey] and adds the key to
// the user, in canonical form. A key may belong to only one user.
func (f *File) AddKey(user, line string) (ssh.PublicKey, error) {
	u, err := f.mustUser(user)
	if err != nil {
		return nil, err
	}
	key, comment, err := ParseKey(line)
	if err != nil {
		return nil, err
	}
	for _, other := range f.Users {
		for _, k := range other.Keys {
			if have, _, err := ParseKey(k.Line); err == nil && string(have.Marshal()) == string(key.Marshal()) {
				return nil, fmt.Errorf("key %s of user %q: %w", Fingerprint(key), other.Name, ErrExists)
			}
		}
	}
	u.Keys = append(u.Keys, Key{Line: formatKey(key, comment)})
	return key, nil
}

// RemoveKey removes the user's key whose SHA256 fingerprint ("SHA256:...")
// or comment is which, and returns it. A comment must match exactly one key.
func (f *File) RemoveKey(user, which string) (Key, error) {
	u, err := f.mustUser(user)
	if err != nil {
		return Key{}, err
	}
	var hits []int
	for i, k := range u.Keys {
		key, comment, err := ParseKey(k.Line)
		if err == nil && (Fingerprint(key) == which || comment == which) {
			hits = append(hits, i)
		}
	}
	switch len(hits) {
	case 0:
		return Key{}, fmt.Errorf("user %q: key %q: %w", user, which, ErrNotFound)
	case 1:
	default:
		return Key{}, fmt.Errorf("user %q: %d keys match %q: give the fingerprint", user, len(hits), which)
	}
	k := u.Keys[hits[0]]
	u.Keys = slices.Delete(u.Keys, hits[0], hits[0]+1)
	return k, nil
}

// TokenOptions describe a token to create.
type TokenOptions struct {
	// Name is an optional label, e.g. "ci" or "laptop".
	Name string
	// Expires is when the token stops working; zero means never.
	Expires time.Time
	// Scopes limit the token (see [ParseScopes]); zero means all scopes.
	Scopes gitgate.Scopes
}

// CreateToken adds a new access token for user, created at now, and returns
// its secret and its record. The secret is not stored anywhere: this is the
// only time it can be shown.
func (f *File) CreateToken(user string, opts TokenOptions, now time.Time) (string, Token, error) {
	u, err := f.mustUser(user)
	if err != nil {
		return "", Token{}, err
	}
	if err := checkText(opts.Name, maxTokenName); err != nil {
		return "", Token{}, fmt.Errorf("token name: %w", err)
	}
	if !opts.Expires.IsZero() && !opts.Expires.After(now) {
		return "", Token{}, fmt.Errorf("token expiry %s is not in the future", opts.Expires.Format(time.RFC3339))
	}
	id := newTokenID()
	for slices.ContainsFunc(u.Tokens, func(t Token) bool { return t.ID == id }) {
		id = newTokenID()
	}
	secret := newTokenSecret()
	digest := hashToken(secret)
	t := Token{
		ID:      id,
		Name:    opts.Name,
		SHA256:  hex.EncodeToString(digest[:]),
		Created: now.UTC().Truncate(time.Second),
		Expires: opts.Expires.UTC(),
		Scopes:  ScopeNames(opts.Scopes),
	}
	u.Tokens = append(u.Tokens, t)
	return secret, t, nil
}

// RevokeToken marks the user's token id as revoked at now and returns it.
// Revoking a revoked token keeps its first revocation time. Revoked tokens
// stay in the file so that listings show them.
func (f *File) RevokeToken(user, id string, now time.Time) (Token, error) {
	u, err := f.mustUser(user)
	if err != nil {
		return Token{}, err
	}
	for i := range u.Tokens {
		t := &u.Tokens[i]
		if t.ID == id {
			if t.Revoked.IsZero() {
				t.Revoked = now.UTC().Truncate(time.Second)
			}
			return *t, nil
		}
	}
	return Token{}, fmt.Errorf("user %q: token %q: %w", user, id, ErrNotFound)
}

// Grantee says whom a grant is for. Any combination may be set.
type Grantee struct {
	// Users are users defined in the file.
	Users []string
	// SignedIn is every user defined in the file.
	SignedIn bool
	// Anonymous is everyone, signed in or not.
	Anonymous bool
}

func (g Grantee) empty() bool { return len(g.Users) == 0 && !g.SignedIn && !g.Anonymous }

// Rule returns the rule with exactly this pattern, or nil.
func (f *File) Rule(pattern string) *Rule {
	for i := range f.Rules {
		if f.Rules[i].Pattern == pattern {
			return &f.Rules[i]
		}
	}
	return nil
}

// Grant sets the level of the grantees in the rule for pattern, adding the
// rule if there is none. It sets rather than raises: granting read to a user
// who had write leaves them with read. Named users must exist.
func (f *File) Grant(pattern string, to Grantee, level Level) error {
	if _, err := parsePattern(pattern); err != nil {
		return fmt.Errorf("pattern %q: %w", pattern, err)
	}
	if level != LevelRead && level != LevelWrite {
		return fmt.Errorf("access level %q: want %q or %q", level, LevelRead, LevelWrite)
	}
	if to.empty() {
		return errors.New("grant to whom? name users, signed-in users or anonymous")
	}
	for _, name := range to.Users {
		if _, err := f.mustUser(name); err != nil {
			return err
		}
	}
	r := f.Rule(pattern)
	if r == nil {
		f.Rules = append(f.Rules, Rule{Pattern: pattern})
		r = &f.Rules[len(f.Rules)-1]
	}
	for _, name := range to.Users {
		r.Read = slices.DeleteFunc(r.Read, func(n string) bool { return n == name })
		r.Write = slices.DeleteFunc(r.Write, func(n string) bool { return n == name })
		if level == LevelRead {
			r.Read = append(r.Read, name)
		} else {
			r.Write = append(r.Write, name)
		}
	}
	if to.SignedIn {
		r.SignedIn = level
	}
	if to.Anonymous {
		r.Anonymous = level
	}
	return nil
}

// Revoke removes the grantees' grants from the rule for pattern. The rule
// stays, even with no grants left, because removing it would let a less
// specific rule apply; use RemoveRule for that.
func (f *File) Revoke(pattern string, from Grantee) error {
	r := f.Rule(pattern)
	if r == nil {
		return fmt.Errorf("rule %q: %w", pattern, ErrNotFound)
	}
	if from.empty() {
		return errors.New("revoke from whom? name users, signed-in users or anonymous")
	}
	for _, name := range from.Users {
		if !slices.Contains(r.Read, name) && !slices.Contains(r.Write, name) {
			return fmt.Errorf("rule %q grants nothing to user %q: %w", pattern, name, ErrNotFound)
		}
	}
	for _, name := range from.Users {
		r.Read = slices.DeleteFunc(r.Read, func(n string) bool { return n == name })
		r.Write = slices.DeleteFunc(r.Write, func(n string) bool { return n == name })
	}
	if from.SignedIn {
		r.SignedIn = LevelNone
	}
	if from.Anonymous {
		r.Anonymous = LevelNone
	}
	return nil
}

// RemoveRule removes the rule for pattern; the next less specific rule then
// applies to its repositories.
func (f *File) RemoveRule(pattern string) error {
	i := slices.IndexFunc(f.Rules, func(r Rule) bool { return r.Pattern == pattern })
	if i < 0 {
		return fmt.Errorf("rule %q: %w", pattern, ErrNotFound)
	}
	f.Rules = slices.Delete(f.Rules, i, i+1)
	return nil
}
