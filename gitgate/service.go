package gitgate

import (
	"fmt"
	"strings"
)

// Service is a Git service a client asks the server to run.
type Service string

// The services a gate serves. Their values are the names git uses on the wire.
const (
	UploadPack    Service = "git-upload-pack"    // clone, fetch, pull, ls-remote
	ReceivePack   Service = "git-receive-pack"   // push
	UploadArchive Service = "git-upload-archive" // git archive --remote

	// Git LFS operations (see package lfs). They are not git services and
	// ParseService does not accept them; they exist so that the one policy
	// decides LFS requests as it decides git's.
	LFSDownload Service = "lfs-download" // object download, lock listing and verify
	LFSUpload   Service = "lfs-upload"   // object upload: a write
	LFSLock     Service = "lfs-lock"     // lock create and unlock: a write
)

// ErrUnknownService is returned by [ParseService] for anything but the three
// services above.
var ErrUnknownService = fmt.Errorf("unknown git service")

// ParseService accepts a service name as git spells it on the wire
// ("git-upload-pack") or as a git subcommand ("upload-pack").
func ParseService(name string) (Service, error) {
	switch s := Service("git-" + strings.TrimPrefix(name, "git-")); s {
	case UploadPack, ReceivePack, UploadArchive:
		return s, nil
	}
	return "", fmt.Errorf("%w: %q", ErrUnknownService, name)
}

// IsWrite reports whether the service can change a repository.
func (s Service) IsWrite() bool { return s == ReceivePack || s == LFSUpload || s == LFSLock }

// Subcommand is the git subcommand that implements the service ("upload-pack").
func (s Service) Subcommand() string { return strings.TrimPrefix(string(s), "git-") }

// Transport names the door an operation came through.
type Transport string

// Transports known to the gate.
const (
	TransportHTTP Transport = "http"
	TransportSSH  Transport = "ssh"
	TransportHook Transport = "hook"
)

// User is an authenticated identity. A nil *User is an anonymous client.
type User struct {
	Name  string
	Admin bool
	// Scopes limit what the user may do when signed in with a scoped access
	// token. Zero means no limit: SSH keys, and tokens that have no scopes
	// (those created before scopes existed, or without --scope).
	Scopes Scopes
	// SiteRepo, when set, marks a Geo site fetching for replication (a
	// "replicate" site token): it may read exactly this repository
	// (canonical name), whatever the access rules say, and nothing else.
	SiteRepo string
	// Credential names what the user signed in with, so that something
	// issued on it (a signed Git LFS header) can be checked again against
	// the live access data on every use: "key:SHA256:…" for an SSH key,
	// "token:<id>" for an access token; empty for identities that are not
	// a user's own credential (Geo site tokens, the local admin).
	Credential string
}

// Scopes is a set of access token scopes, named as GitLab's personal access
// token scopes. The zero value is "not scoped" and grants everything.
type Scopes uint8

// The scopes a token can carry.
const (
	// ScopeReadRepository allows clone and fetch over HTTP.
	ScopeReadRepository Scopes = 1 << iota
	// ScopeWriteRepository allows push over HTTP, and includes read.
	ScopeWriteRepository
	// ScopeAPI allows the settings API (for an admin), and, as in GitLab,
	// full read and write access to repositories over HTTP.
	ScopeAPI
)

// Has reports whether s grants every scope in want. An unscoped (zero) set
// grants everything.
func (s Scopes) Has(want Scopes) bool { return s == 0 || s&want == want }

// RepositoryPermission is the most these scopes allow on any repository:
// write with write_repository or api, read with read_repository, nothing
// otherwise. The user's access rules still decide below that ceiling.
func (s Scopes) RepositoryPermission() Permission {
	switch {
	case s.Has(ScopeWriteRepository) || s.Has(ScopeAPI):
		return PermissionWrite
	case s.Has(ScopeReadRepository):
		return PermissionRead
	}
	return PermissionNone
}

// String returns the user name, or "anonymous" for a nil user.
func (u *User) String() string {
	if u == nil {
		return "anonymous"
	}
	return u.Name
}

// Operation is one client request: who asks to run which service on which
// repository, and through which transport.
type Operation struct {
	Service    Service
	Repo       string // canonical repository name, e.g. "group/name" (no .git)
	User       *User  // nil when anonymous
	Transport  Transport
	RemoteAddr string
}
