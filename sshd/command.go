package sshd

import (
	"errors"
	"fmt"
	"strings"

	"github.com/gitgate/gitgate/gitgate"
)

// maxCommandLength bounds an exec request. A git command line is a service
// name and a repository path; anything longer is not one.
const maxCommandLength = 4096

// Errors from [ParseCommand]. Each maps to one fixed line shown to the client
// (the client's input is never echoed back).
var (
	// ErrDisallowedCommand is returned for anything but a git service.
	ErrDisallowedCommand = errors.New("disallowed command")
	// ErrMalformedCommand is returned for a git service whose argument is not
	// a single single-quoted path.
	ErrMalformedCommand = errors.New("malformed command")
	// ErrInvalidPath is returned for a path that can name no repository.
	ErrInvalidPath = errors.New("invalid repository path")
)

// Command is an SSH exec request that asks for a git service.
type Command struct {
	Service gitgate.Service
	// Path is the repository path as the client sent it, without the
	// quotes and without a leading "/" or "~/": "group/name.git".
	Path string
	// Name is Path in canonical form ([gitgate.CleanName]): "group/name".
	// Which repository that is, if any, is decided by [gitgate.Policy.Open]
	// on Path.
	Name string
}

// services lists the services in the order ParseCommand tries them.
var services = [...]gitgate.Service{gitgate.UploadPack, gitgate.ReceivePack, gitgate.UploadArchive}

// ParseCommand parses the command of an SSH exec request as git sends it:
//
//	git-upload-pack '/group/name.git'
//
// The service is git-upload-pack, git-receive-pack or git-upload-archive,
// also spelled "git upload-pack"; it is followed by one space and the path in
// single quotes. The path may start with "/" or "~/" and must be a valid
// repository name ([gitgate.CleanName]); git never needs to escape such a
// path, so any quote inside it is an error. Nothing is ever interpreted by a
// shell, and the path cannot start with "-".
func ParseCommand(raw string) (Command, error) {
	if len(raw) > maxCommandLength {
		return Command{}, fmt.Errorf("%w: longer than %d bytes", ErrMalformedCommand, maxCommandLength)
	}
	verb, quoted, found := strings.Cut(raw, " '")
	svc, known := serviceFromVerb(verb)
	switch {
	case !found && startsWithService(raw):
		return Command{}, fmt.Errorf("%w: the repository path must be single-quoted", ErrMalformedCommand)
	case !found || !known:
		if startsWithService(verb) {
			return Command{}, fmt.Errorf("%w: unexpected text before the path", ErrMalformedCommand)
		}
		return Command{}, ErrDisallowedCommand
	}
	inner, ok := strings.CutSuffix(quoted, "'")
	if !ok || strings.ContainsRune(inner, '\'') {
		return Command{}, fmt.Errorf("%w: the path must be one single-quoted word", ErrMalformedCommand)
	}
	path, ok := strings.CutPrefix(inner, "/")
	if !ok {
		path, _ = strings.CutPrefix(inner, "~/")
	}
	name, err := gitgate.CleanName(path)
	if err != nil {
		return Command{}, fmt.Errorf("%w: %w", ErrInvalidPath, err)
	}
	return Command{Service: svc, Path: path, Name: name}, nil
}

// String returns the command as git sends it.
func (c Command) String() string { return string(c.Service) + " '" + c.Path + "'" }

// serviceFromVerb accepts exactly "git-<service>" or "git <service>".
func serviceFromVerb(verb string) (gitgate.Service, bool) {
	for _, svc := range services {
		if verb == string(svc) || verb == "git "+svc.Subcommand() {
			return svc, true
		}
	}
	return "", false
}

// startsWithService reports whether s, split into words, begins with a
// service name: a git command with a wrong argument rather than some other
// program.
func startsWithService(s string) bool {
	words := strings.Fields(s)
	if len(words) >= 1 {
		if _, ok := serviceFromVerb(words[0]); ok {
			return true
		}
	}
	if len(words) >= 2 {
		if _, ok := serviceFromVerb(words[0] + " " + words[1]); ok {
			return true
		}
	}
	return false
}

// LFSCommand is a git-lfs-authenticate request: git-lfs runs it over SSH to
// get the URL of the LFS HTTP API and a header for it.
type LFSCommand struct {
	// Path is the repository path as sent, without quotes and without a
	// leading "/" or "~/"; Name is its canonical form.
	Path, Name string
	// Operation is "download" or "upload".
	Operation string
}

// The LFS commands' names.
const (
	lfsAuthenticate = "git-lfs-authenticate"
	lfsTransfer     = "git-lfs-transfer"
)

// ParseLFSCommand recognises git-lfs-authenticate: ok is false for any other
// command (then ParseCommand applies). Its arguments are a repository path,
// bare or single-quoted as git-lfs sends it, and the operation, download or
// upload; the path is checked as ParseCommand checks a git service's.
func ParseLFSCommand(raw string) (cmd LFSCommand, ok bool, err error) {
	return parseLFSCommand(lfsAuthenticate, raw)
}

// ParseLFSTransferCommand recognises git-lfs-transfer, the pure-SSH LFS
// protocol, whose arguments are those of git-lfs-authenticate.
func ParseLFSTransferCommand(raw string) (cmd LFSCommand, ok bool, err error) {
	return parseLFSCommand(lfsTransfer, raw)
}

func parseLFSCommand(name, raw string) (cmd LFSCommand, ok bool, err error) {
	usage := fmt.Errorf("%w: %s takes a path and download or upload", ErrMalformedCommand, name)
	args, ok := strings.CutPrefix(raw, name+" ")
	if !ok {
		return LFSCommand{}, raw == name, usage
	}
	if len(raw) > maxCommandLength {
		return LFSCommand{}, true, fmt.Errorf("%w: longer than %d bytes", ErrMalformedCommand, maxCommandLength)
	}
	words := strings.Split(args, " ")
	if len(words) != 2 || (words[1] != "download" && words[1] != "upload") {
		return LFSCommand{}, true, usage
	}
	inner := words[0]
	if q, quoted := strings.CutPrefix(inner, "'"); quoted {
		if inner, quoted = strings.CutSuffix(q, "'"); !quoted {
			return LFSCommand{}, true, fmt.Errorf("%w: unbalanced quote", ErrMalformedCommand)
		}
	}
	if strings.ContainsRune(inner, '\'') {
		return LFSCommand{}, true, fmt.Errorf("%w: quote inside the path", ErrMalformedCommand)
	}
	path, slash := strings.CutPrefix(inner, "/")
	if !slash {
		path, _ = strings.CutPrefix(inner, "~/")
	}
	clean, err := gitgate.CleanName(path)
	if err != nil {
		return LFSCommand{}, true, fmt.Errorf("%w: %w", ErrInvalidPath, err)
	}
	return LFSCommand{Path: path, Name: clean, Operation: words[1]}, true, nil
}
