package access

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/gitgate/gitgate/internal/yamlerr"
)

// MaxFileSize is the largest access file accepted.
const MaxFileSize = 8 << 20

// fileHeader starts every file the CLI writes.
const fileHeader = `# gitgate access file: users, SSH keys, access tokens and access rules.
# Edit by hand or with "gitgate user", "gitgate token" and "gitgate access".
# Comments are not kept when gitgate rewrites this file.
`

// ParseFile reads an access file. name is used in error messages, which have
// the form "name:line: problem". The file is checked strictly: unknown
// fields, wrong types and every problem [File.Validate] finds are errors.
// Empty data is a valid file with no users and no rules.
func ParseFile(name string, data []byte) (*File, error) {
	f, err := decode(name, data)
	if err != nil {
		return nil, err
	}
	if _, err := compile(f); err != nil {
		return nil, err
	}
	return f, nil
}

// decode turns data into a File without semantic checks, recording the line
// of every user, key, token and rule.
func decode(name string, data []byte) (*File, error) {
	f := &File{source: name}
	if len(data) > MaxFileSize {
		return nil, &FileError{File: name, Err: fmt.Errorf("file is %d bytes, at most %d allowed", len(data), MaxFileSize)}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	switch err := dec.Decode(f); {
	case errors.Is(err, io.EOF):
		return f, nil // empty file
	case err != nil:
		if fe := badTimestamp(name, data); fe != nil {
			return nil, fe
		}
		return nil, yamlError(name, err)
	}
	if err := dec.Decode(new(yaml.Node)); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, yamlError(name, err)
		}
		return nil, &FileError{File: name, Err: errors.New("more than one YAML document")}
	}
	// The strict decode succeeded, so a second, untyped pass over the same
	// bytes has the same shape; it only supplies line numbers.
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, yamlError(name, err)
	}
	recordLines(f, &root)
	return f, nil
}

// Marshal returns the file as YAML, with a short header comment. Comments
// read from a hand-edited file are not kept.
func (f *File) Marshal() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString(fileHeader)
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(f); err != nil {
		return nil, fmt.Errorf("encode access file: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode access file: %w", err)
	}
	return buf.Bytes(), nil
}

// UnmarshalYAML reads a key line and remembers where it was.
func (k *Key) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &FileError{Line: n.Line, Err: errors.New("ssh key must be a string (an authorized_keys line)")}
	}
	k.Line, k.line = n.Value, n.Line
	return nil
}

// MarshalYAML writes a key as its line.
func (k Key) MarshalYAML() (any, error) { return k.Line, nil }

// recordLines walks the YAML tree alongside f and stores node lines in it.
func recordLines(f *File, root *yaml.Node) {
	doc := deref(root)
	if doc != nil && doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		doc = deref(doc.Content[0])
	}
	users := seqItems(mapValue(doc, "users"))
	for i := range f.Users {
		if i >= len(users) {
			break
		}
		u := &f.Users[i]
		u.line = users[i].Line
		tokens := seqItems(mapValue(users[i], "tokens"))
		for j := range u.Tokens {
			if j < len(tokens) {
				u.Tokens[j].line = tokens[j].Line
			}
		}
	}
	rules := seqItems(mapValue(doc, "rules"))
	for i := range f.Rules {
		if i < len(rules) {
			f.Rules[i].line = rules[i].Line
		}
	}
}

// badTimestamp finds a token time that does not parse. yaml.v3 reports
// those without a line number, so look for the culprit to name it.
func badTimestamp(name string, data []byte) error {
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil || len(root.Content) != 1 {
		return nil
	}
	for _, u := range seqItems(mapValue(root.Content[0], "users")) {
		for _, t := range seqItems(mapValue(u, "tokens")) {
			for _, field := range []string{"created", "expires", "revoked"} {
				n := mapValue(t, field)
				if n == nil {
					continue
				}
				var tm time.Time
				if n.Decode(&tm) != nil {
					return &FileError{File: name, Line: n.Line, Err: fmt.Errorf(
						"%s: %q is not a time: write 2026-05-01 or 2026-05-01T12:00:00Z", field, n.Value)}
				}
			}
		}
	}
	return nil
}

func deref(n *yaml.Node) *yaml.Node {
	for range 8 { // aliases of aliases, but never a loop
		if n == nil || n.Kind != yaml.AliasNode {
			return n
		}
		n = n.Alias
	}
	return nil
}

// mapValue returns the value for key in mapping n, or nil.
func mapValue(n *yaml.Node, key string) *yaml.Node {
	n = deref(n)
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return deref(n.Content[i+1])
		}
	}
	return nil
}

// seqItems returns the items of sequence n, aliases resolved.
func seqItems(n *yaml.Node) []*yaml.Node {
	n = deref(n)
	if n == nil || n.Kind != yaml.SequenceNode {
		return nil
	}
	items := make([]*yaml.Node, len(n.Content))
	for i, c := range n.Content {
		items[i] = deref(c)
		if items[i] == nil {
			items[i] = c
		}
	}
	return items
}

// yamlTypeNames turns Go type names in yaml.v3 messages into file words.
var yamlTypeNames = strings.NewReplacer(
	"access.File", "the access file",
	"access.User", "a user",
	"access.Token", "a token",
	"access.Rule", "a rule",
	"access.Level", "an access level",
	"[]access.User", "a list of users",
	"[]access.Token", "a list of tokens",
	"[]access.Rule", "a list of rules",
	"[]access.Key", "a list of keys",
	"[]string", "a list of names",
)

// yamlError converts a yaml.v3 error into FileErrors that name the file and
// line the way compilers do.
func yamlError(name string, err error) error {
	var fe *FileError
	if errors.As(err, &fe) { // from Key.UnmarshalYAML, via the decoder
		return &FileError{File: name, Line: fe.Line, Err: fe.Err}
	}
	var errs []error
	for _, p := range yamlerr.Problems(err, yamlTypeNames) {
		if strings.Contains(p.Msg, "did not find expected alphabetic or numeric character") {
			// An unquoted "*" or "**" reads as a YAML alias.
			p.Msg += ` (quote patterns that start with '*': pattern: "**")`
		}
		errs = append(errs, &FileError{File: name, Line: p.Line, Err: errors.New(p.Msg)})
	}
	return joinErrors(errs)
}
