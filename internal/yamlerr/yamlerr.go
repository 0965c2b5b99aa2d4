// Package yamlerr turns yaml.v3 decoding errors into problems with line
// numbers, so that every config file of the gate reports them the same way:
// "file:line: problem".
package yamlerr

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Problem is one problem yaml.v3 reported.
type Problem struct {
	// Line is the line yaml.v3 named, 0 when it named none.
	Line int
	// Msg is the problem in words for the file's editor.
	Msg string
}

var lineRE = regexp.MustCompile(`^line (\d+): (.*)$`)

// Problems splits err, from a yaml.v3 Decoder, into its problems: a
// *yaml.TypeError holds several, any other error is one. yaml.v3's "field X
// not found in type T" reads `unknown field "X" in T`, and names replaces
// Go type names with words ("access.User" → "a user"); it may be nil.
func Problems(err error, names *strings.Replacer) []Problem {
	msgs := []string{err.Error()}
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	out := make([]Problem, 0, len(msgs))
	for _, msg := range msgs {
		p := Problem{Msg: strings.TrimPrefix(msg, "yaml: ")}
		if m := lineRE.FindStringSubmatch(p.Msg); m != nil {
			p.Line, _ = strconv.Atoi(m[1])
			p.Msg = m[2]
		}
		if rest, ok := strings.CutPrefix(p.Msg, "field "); ok {
			if field, typ, ok := strings.Cut(rest, " not found in type "); ok {
				p.Msg = fmt.Sprintf("unknown field %q in %s", field, typ)
			}
		}
		if names != nil {
			p.Msg = names.Replace(p.Msg)
		}
		out = append(out, p)
	}
	return out
}
