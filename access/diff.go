package access

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	"golang.org/x/crypto/ssh"
)

// maxChangeItems bounds how many items a Change lists; the rest are
// counted, so that a rewritten file of thousands of users gives an audit
// line of bounded size.
const maxChangeItems = 32

// Change says what changed between two versions of the access data, in
// words an auditor reads: users, keys (by SHA256 fingerprint), tokens (by
// id, never by secret or digest) and rules (by pattern).
type Change struct {
	Items []string // e.g. "+user bob", "-key SHA256:... (bob)", "~rule group/*"
	More  int      // items left out past maxChangeItems
}

// Empty reports whether nothing that grants or denies access changed (a
// comment or the order of entries may have).
func (c Change) Empty() bool { return len(c.Items) == 0 && c.More == 0 }

// String lists the items separated by "; ".
func (c Change) String() string {
	s := strings.Join(c.Items, "; ")
	if c.More > 0 {
		s += fmt.Sprintf("; and %d more", c.More)
	}
	return s
}

func (c *Change) add(format string, args ...any) {
	if len(c.Items) >= maxChangeItems {
		c.More++
		return
	}
	c.Items = append(c.Items, fmt.Sprintf(format, args...))
}

// Diff returns what changed from old to new; nil stands for an empty file.
// Items come in a stable order: users, then keys, tokens and rules.
func Diff(old, new *File) Change {
	if old == nil {
		old = &File{}
	}
	if new == nil {
		new = &File{}
	}
	var c Change
	oldUsers, newUsers := usersByName(old), usersByName(new)
	for _, name := range sortedKeys(oldUsers, newUsers) {
		o, n := oldUsers[name], newUsers[name]
		switch {
		case o == nil:
			c.add("+user %s%s", name, adminNote(n.Admin))
		case n == nil:
			c.add("-user %s", name)
		case o.Admin != n.Admin:
			c.add("~user %s%s", name, adminNote(n.Admin))
		}
	}
	oldKeys, newKeys := keysByFingerprint(old), keysByFingerprint(new)
	for _, fp := range sortedKeys(oldKeys, newKeys) {
		o, n := oldKeys[fp], newKeys[fp]
		switch {
		case o == "":
			c.add("+key %s (%s)", fp, n)
		case n == "":
			c.add("-key %s (%s)", fp, o)
		case o != n:
			c.add("~key %s (%s, was %s)", fp, n, o)
		}
	}
	oldTokens, newTokens := tokensByID(old), tokensByID(new)
	for _, id := range sortedKeys(oldTokens, newTokens) {
		o, n := oldTokens[id], newTokens[id]
		switch {
		case o == nil:
			c.add("+token %s (%s)", id, n.owner)
		case n == nil:
			c.add("-token %s (%s)", id, o.owner)
		case o.Revoked.IsZero() && !n.Revoked.IsZero():
			c.add("revoked token %s (%s)", id, n.owner)
		case !reflect.DeepEqual(o.withoutLine(), n.withoutLine()):
			c.add("~token %s (%s)", id, n.owner)
		}
	}
	oldRules, newRules := rulesByPattern(old), rulesByPattern(new)
	for _, p := range sortedKeys(oldRules, newRules) {
		o, n := oldRules[p], newRules[p]
		switch {
		case o == nil:
			c.add("+rule %s", p)
		case n == nil:
			c.add("-rule %s", p)
		case !reflect.DeepEqual(o, n):
			c.add("~rule %s", p)
		}
	}
	return c
}

func adminNote(admin bool) string {
	if admin {
		return " (admin)"
	}
	return ""
}

func usersByName(f *File) map[string]*User {
	m := make(map[string]*User, len(f.Users))
	for i := range f.Users {
		m[f.Users[i].Name] = &f.Users[i]
	}
	return m
}

// keysByFingerprint maps each key's SHA256 fingerprint to its owner. A
// line that does not parse (the file was validated, so none should) is
// named by its first 64 bytes.
func keysByFingerprint(f *File) map[string]string {
	m := make(map[string]string)
	for _, u := range f.Users {
		for _, k := range u.Keys {
			id := k.Line
			if key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(k.Line)); err == nil {
				id = ssh.FingerprintSHA256(key)
			} else if len(id) > 64 {
				id = id[:64]
			}
			m[id] = u.Name
		}
	}
	return m
}

type ownedToken struct {
	Token
	owner string
}

func (t *ownedToken) withoutLine() ownedToken {
	c := *t
	c.line = 0
	return c
}

func tokensByID(f *File) map[string]*ownedToken {
	m := make(map[string]*ownedToken)
	for _, u := range f.Users {
		for _, t := range u.Tokens {
			m[t.ID] = &ownedToken{Token: t, owner: u.Name}
		}
	}
	return m
}

// rulesByPattern maps each pattern to its rule with the line number and
// the order of its user lists left out, so that moving a rule or sorting
// its lists is no change.
func rulesByPattern(f *File) map[string]*Rule {
	m := make(map[string]*Rule, len(f.Rules))
	for _, r := range f.Rules {
		r.line = 0
		r.Read = slices.Sorted(slices.Values(r.Read))
		r.Write = slices.Sorted(slices.Values(r.Write))
		m[r.Pattern] = &r
	}
	return m
}

// sortedKeys returns the keys of both maps, sorted, without duplicates.
func sortedKeys[V any](a, b map[string]V) []string {
	keys := make([]string, 0, len(a)+len(b))
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}
