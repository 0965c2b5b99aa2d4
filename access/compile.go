package access

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/gitgate/gitgate/gitgate"
)

// maxTokenName bounds a token's name, in characters.
const maxTokenName = 100

// Validate checks the file as [ParseFile] does and returns every problem
// found, each naming the line it was read from (when it was read).
func (f *File) Validate() error {
	_, err := compile(f)
	return err
}

// NewSnapshot validates f and compiles it into a Snapshot.
func NewSnapshot(f *File) (*Snapshot, error) { return compile(f) }

// compiler checks a File and builds its Snapshot in one pass, collecting
// every problem rather than stopping at the first.
type compiler struct {
	f        *File
	s        *Snapshot
	errs     []error
	names    map[string]*User  // lower-cased name → first user with it
	keys     map[string]string // marshalled key → where it was seen
	tokens   map[[sha256.Size]byte]string
	patterns map[string]int // pattern → line
}

func compile(f *File) (*Snapshot, error) {
	c := &compiler{
		f:        f,
		s:        &Snapshot{users: map[string]*userRecord{}, keys: map[string]*userRecord{}, creds: map[string]credRecord{}},
		names:    map[string]*User{},
		keys:     map[string]string{},
		tokens:   map[[sha256.Size]byte]string{},
		patterns: map[string]int{},
	}
	for i := range f.Users {
		c.user(i, &f.Users[i])
	}
	for i := range f.Rules {
		c.rule(i, &f.Rules[i])
	}
	for i := range c.s.tokens { // the slice is complete: its records stay put
		t := &c.s.tokens[i]
		c.s.creds[credentialKey(t.user.name, tokenCredential(t.id))] = credRecord{token: t}
	}
	if err := joinErrors(c.errs); err != nil {
		return nil, err
	}
	return c.s, nil
}

func (c *compiler) errorf(line int, format string, args ...any) {
	c.errs = append(c.errs, &FileError{File: c.f.source, Line: line, Err: fmt.Errorf(format, args...)})
}

func (c *compiler) warnf(line int, format string, args ...any) {
	c.s.warnings = append(c.s.warnings, &FileError{File: c.f.source, Line: line, Err: fmt.Errorf(format, args...)})
}

func (c *compiler) user(i int, u *User) {
	if err := checkUserName(u.Name); err != nil {
		c.errorf(u.line, "user %d: %v", i+1, err)
		return
	}
	fold := strings.ToLower(u.Name)
	if prev := c.names[fold]; prev != nil {
		c.errorf(u.line, "user %q: defined twice (also as %q at line %d); names are not case-sensitive", u.Name, prev.Name, prev.line)
		return
	}
	c.names[fold] = u
	rec := &userRecord{name: u.Name, admin: u.Admin}
	c.s.users[u.Name] = rec

	for j, k := range u.Keys {
		line := orLine(k.line, u.line)
		key, _, err := ParseKey(k.Line)
		if err != nil {
			c.errorf(line, "user %q: ssh key %d: %v", u.Name, j+1, err)
			continue
		}
		id := string(key.Marshal())
		if prev, ok := c.keys[id]; ok {
			c.errorf(line, "user %q: ssh key %d: same key as %s", u.Name, j+1, prev)
			continue
		}
		c.keys[id] = fmt.Sprintf("user %q's ssh key %d (line %d)", u.Name, j+1, line)
		c.s.keys[id] = rec
		c.s.creds[credentialKey(u.Name, keyCredential(key))] = credRecord{user: rec}
	}

	ids := map[string]bool{}
	for j := range u.Tokens {
		t := &u.Tokens[j]
		line := orLine(t.line, u.line)
		where := fmt.Sprintf("user %q: token %d", u.Name, j+1)
		if !validTokenID(t.ID) {
			c.errorf(line, "%s: id %q: want 1 to 32 letters, digits, '-' or '_'", where, t.ID)
			continue
		}
		where = fmt.Sprintf("user %q: token %q", u.Name, t.ID)
		if ids[t.ID] {
			c.errorf(line, "%s: id used twice", where)
			continue
		}
		ids[t.ID] = true
		if err := checkText(t.Name, maxTokenName); err != nil {
			c.errorf(line, "%s: name: %v", where, err)
		}
		var digest [sha256.Size]byte
		if _, err := hex.Decode(digest[:], []byte(t.SHA256)); err != nil || !validDigest(t.SHA256) {
			c.errorf(line, "%s: sha256 must be 64 lower-case hex digits", where)
			continue
		}
		if prev, ok := c.tokens[digest]; ok {
			c.errorf(line, "%s: same sha256 as %s", where, prev)
			continue
		}
		scopes, err := ParseScopes(t.Scopes)
		if err != nil {
			c.errorf(line, "%s: scopes: %v", where, err)
			continue
		}
		c.tokens[digest] = fmt.Sprintf("user %q's token %q (line %d)", u.Name, t.ID, line)
		// Revoked tokens are kept, so that a failure with one counts against
		// its owner; AuthenticateToken refuses them.
		c.s.tokens = append(c.s.tokens, tokenRecord{id: t.ID, digest: digest, user: rec, expires: t.Expires,
			revoked: !t.Revoked.IsZero(), scopes: scopes})
	}
}

func (c *compiler) rule(i int, r *Rule) {
	p, err := parsePattern(r.Pattern)
	if err != nil {
		c.errorf(r.line, "rule %d: pattern %q: %v", i+1, r.Pattern, err)
		return
	}
	where := fmt.Sprintf("rule %q", r.Pattern)
	if prev, ok := c.patterns[r.Pattern]; ok {
		c.errorf(r.line, "%s: pattern used twice (also at line %d); put all its grants in one rule", where, prev)
		return
	}
	c.patterns[r.Pattern] = r.line

	cr := &rule{pattern: r.Pattern, users: map[string]gitgate.Permission{}}
	for _, lv := range []struct {
		field string
		level Level
		perm  *gitgate.Permission
	}{
		{"signed_in", r.SignedIn, &cr.signedIn},
		{"anonymous", r.Anonymous, &cr.anonymous},
	} {
		if lv.level != LevelNone && lv.level != LevelRead && lv.level != LevelWrite {
			c.errorf(r.line, "%s: %s: want %q or %q, not %q", where, lv.field, LevelRead, LevelWrite, lv.level)
		}
		*lv.perm = lv.level.Permission()
	}
	if r.Anonymous == LevelWrite {
		c.warnf(r.line, "%s: anonymous: write lets anyone push to %s without signing in", where, r.Pattern)
	}
	c.grantees(r, where, "read", r.Read, gitgate.PermissionRead, cr)
	c.grantees(r, where, "write", r.Write, gitgate.PermissionWrite, cr)

	switch p.kind {
	case matchExact:
		c.s.exact = setRule(c.s.exact, p.prefix, cr)
	case matchOne:
		c.s.one = setRule(c.s.one, p.prefix, cr)
	case matchAny:
		c.s.any = setRule(c.s.any, p.prefix, cr)
	}
}

// grantees records the users listed under one level of a rule.
func (c *compiler) grantees(r *Rule, where, field string, names []string, perm gitgate.Permission, cr *rule) {
	for _, name := range names {
		if name == "*" {
			c.errorf(r.line, `%s: %s: "*" is not a user name: use "signed_in: %s" to grant every signed-in user`, where, field, field)
			continue
		}
		if err := checkUserName(name); err != nil {
			c.errorf(r.line, "%s: %s: %v", where, field, err)
			continue
		}
		if prev, ok := cr.users[name]; ok {
			if prev == perm {
				c.errorf(r.line, "%s: %s: user %q listed twice", where, field, name)
			} else {
				c.errorf(r.line, "%s: user %q listed under both read and write", where, name)
			}
			continue
		}
		if u := c.names[strings.ToLower(name)]; u != nil && u.Name != name {
			c.errorf(r.line, "%s: %s: user %q is defined as %q; write it the same way", where, field, name, u.Name)
			continue
		}
		cr.users[name] = perm
		if c.s.users[name] == nil {
			c.warnf(r.line, "%s: %s: user %q is not defined in this file; the grant has no effect", where, field, name)
		}
	}
}

func setRule(m map[string]*rule, key string, r *rule) map[string]*rule {
	if m == nil {
		m = map[string]*rule{}
	}
	m[key] = r
	return m
}

func orLine(line, fallback int) int {
	if line > 0 {
		return line
	}
	return fallback
}

// checkUserName accepts 1 to 255 ASCII letters, digits, '.', '_' and '-',
// starting with a letter, digit or '_'.
func checkUserName(name string) error {
	switch {
	case name == "":
		return errors.New("empty user name")
	case len(name) > maxNameLength:
		return fmt.Errorf("user name of %d bytes, at most %d allowed", len(name), maxNameLength)
	case !isASCIIAlnum(name[0]) && name[0] != '_':
		return fmt.Errorf("user name %q must start with a letter, digit or '_'", name)
	}
	for _, b := range []byte(name) {
		if !isASCIIAlnum(b) && b != '.' && b != '_' && b != '-' {
			return fmt.Errorf("user name %q holds %q: only letters, digits, '.', '_' and '-' are allowed", name, b)
		}
	}
	return nil
}

// checkText accepts one line of printable UTF-8 text of at most max characters.
func checkText(s string, max int) error {
	switch {
	case !utf8.ValidString(s):
		return errors.New("not valid UTF-8")
	case utf8.RuneCountInString(s) > max:
		return fmt.Errorf("longer than %d characters", max)
	case strings.ContainsFunc(s, func(r rune) bool { return r == '\t' || isControl(r) }):
		return errors.New("holds control characters")
	}
	return nil
}
