package access

import (
	"errors"
	"fmt"
	"strings"
)

// maxNameLength bounds repository names, patterns and user names.
const maxNameLength = 255

// patternKind is how a pattern matches.
type patternKind int

const (
	matchExact patternKind = iota // "group/name": that repository only
	matchOne                      // "group/*": direct children of group
	matchAny                      // "group/**": everything below group
)

// pattern is a parsed repository pattern: the literal segments before the
// wildcard, joined with "/" ("" for "*" and "**"), and how the rest matches.
type pattern struct {
	prefix string
	kind   patternKind
}

// parsePattern checks a pattern: literal segments of letters, digits, '.',
// '_' and '-' (not "." or "..", not starting with '-', not ending in
// ".git"), optionally followed by a last segment "*" or "**".
func parsePattern(s string) (pattern, error) {
	if s == "" {
		return pattern{}, errors.New("empty pattern")
	}
	if len(s) > maxNameLength {
		return pattern{}, fmt.Errorf("pattern of %d bytes, at most %d allowed", len(s), maxNameLength)
	}
	p := pattern{prefix: s, kind: matchExact}
	switch {
	case s == "*":
		return pattern{kind: matchOne}, nil
	case s == "**":
		return pattern{kind: matchAny}, nil
	case strings.HasSuffix(s, "/**"):
		p = pattern{prefix: strings.TrimSuffix(s, "/**"), kind: matchAny}
	case strings.HasSuffix(s, "/*"):
		p = pattern{prefix: strings.TrimSuffix(s, "/*"), kind: matchOne}
	}
	for _, seg := range strings.Split(p.prefix, "/") {
		if err := checkSegment(seg); err != nil {
			return pattern{}, err
		}
	}
	return p, nil
}

// checkSegment checks one literal segment of a pattern.
func checkSegment(seg string) error {
	switch {
	case seg == "":
		return errors.New(`empty path segment: no leading, trailing or double "/"`)
	case strings.Contains(seg, "*"):
		return errors.New(`wildcards must be a whole last segment: "group/*" or "group/**"`)
	case seg == "." || seg == "..":
		return fmt.Errorf("%q is not a repository path segment", seg)
	case seg[0] == '-':
		return fmt.Errorf("path segment %q starts with '-'", seg)
	case strings.HasSuffix(seg, ".git"):
		return fmt.Errorf("path segment %q ends in .git: write repository names without .git", seg)
	}
	for _, c := range []byte(seg) {
		if !isASCIIAlnum(c) && c != '.' && c != '_' && c != '-' {
			return fmt.Errorf("path segment %q holds %q: only letters, digits, '.', '_' and '-' are allowed", seg, c)
		}
	}
	return nil
}

// saneRepo reports whether repo is a plausible canonical repository name:
// non-empty segments, none "." or "..". Anything else matches no rule.
func saneRepo(repo string) bool {
	if repo == "" {
		return false
	}
	for seg := range strings.SplitSeq(repo, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
	}
	return true
}
