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
