package access

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/gitgate/gitgate/gitgate"
)

// FileName is the name of the access file inside the data directory.
const FileName = "access.yaml"

// FilePath returns the path of the access file in dataDir.
func FilePath(dataDir string) string { return filepath.Join(dataDir, FileName) }

// File is the content of the access file, as written by hand or by the CLI.
// A File read with [ParseFile] is valid; one changed in code is checked
// again by [File.Validate], [NewSnapshot] and [Store.Update].
type File struct {
	Users []User `yaml:"users,omitempty"`
	Rules []Rule `yaml:"rules,omitempty"`

	// source names the file in error messages.
	source string
}

// User is one user of the gate.
type User struct {
	Name  string `yaml:"name"`
	Admin bool   `yaml:"admin,omitempty"`
	// Keys are SSH public keys in authorized_keys format, without options.
	Keys   []Key   `yaml:"keys,omitempty"`
	Tokens []Token `yaml:"tokens,omitempty"`

	line int
}

// Key is one SSH public key line as written in the file
// ("ssh-ed25519 AAAA... comment").
type Key struct {
	Line string

	line int
}

// Token is a stored access token. The secret itself is never stored, only
// its SHA-256.
type Token struct {
	// ID names the token in listings and on "gitgate token revoke".
	ID   string `yaml:"id"`
	Name string `yaml:"name,omitempty"`
	// SHA256 is the lower-case hex SHA-256 of the whole secret, prefix
	// included.
	SHA256  string    `yaml:"sha256"`
	Created time.Time `yaml:"created,omitempty"`
	// Expires is when the token stops working; zero means never.
	Expires time.Time `yaml:"expires,omitempty"`
	// Revoked is when the token was revoked; zero means it was not.
	Revoked time.Time `yaml:"revoked,omitempty"`
	// Scopes limit what the token may do: read_repository, write_repository
	// and api, as GitLab's personal access tokens. A token without scopes
	// (one made before scopes existed, or without --scope) has them all.
	Scopes []string `yaml:"scopes,omitempty,flow"`

	line int
}

// TokenStatus is whether a token can be used at a given time.
type TokenStatus string

// Token statuses.
const (
	TokenActive  TokenStatus = "active"
	TokenExpired TokenStatus = "expired"
	TokenRevoked TokenStatus = "revoked"
)

// Status tells whether t can be used at time now.
func (t Token) Status(now time.Time) TokenStatus {
	switch {
	case !t.Revoked.IsZero():
		return TokenRevoked
	case !t.Expires.IsZero() && !now.Before(t.Expires):
		return TokenExpired
	}
	return TokenActive
}

// Level is a level of access written in the file: "read" or "write". The
// empty Level grants nothing.
type Level string

// Levels of access.
const (
	LevelNone  Level = ""
	LevelRead  Level = "read"
	LevelWrite Level = "write"
)

// ParseLevel accepts "read" or "write".
func ParseLevel(s string) (Level, error) {
	switch l := Level(s); l {
	case LevelRead, LevelWrite:
		return l, nil
	}
	return LevelNone, fmt.Errorf("access level %q: want %q or %q", s, LevelRead, LevelWrite)
}

// Permission converts the level to a gitgate permission.
func (l Level) Permission() gitgate.Permission {
	switch l {
	case LevelRead:
		return gitgate.PermissionRead
	case LevelWrite:
		return gitgate.PermissionWrite
	}
	return gitgate.PermissionNone
}

// Rule grants access on the repositories matched by Pattern. See
// [Snapshot.Permission] for how rules combine.
type Rule struct {
	// Pattern is an exact repository name ("group/name"), a group's direct
	// children ("group/*") or everything below a group ("group/**").
	Pattern string `yaml:"pattern"`
	// Read and Write list the users granted that level.
	Read  []string `yaml:"read,omitempty,flow"`
	Write []string `yaml:"write,omitempty,flow"`
	// SignedIn is granted to every user defined in the file.
	SignedIn Level `yaml:"signed_in,omitempty"`
	// Anonymous is granted to everyone, signed in or not. LevelWrite lets
	// anyone on the network push: it must be written out explicitly.
	Anonymous Level `yaml:"anonymous,omitempty"`

	line int
}
