package access

import (
	"errors"
	"fmt"
	"strconv"
)

// Sentinel errors. Compare with errors.Is.
var (
	// ErrBadCredentials is returned for a token that is unknown, expired or
	// revoked, and for a secret that is not a token at all. The cases are
	// not told apart, so a caller cannot learn which tokens exist.
	ErrBadCredentials = errors.New("bad credentials")
	// ErrNotFound is returned when an edit names a user, key, token or rule
	// that the file does not have.
	ErrNotFound = errors.New("not found")
	// ErrExists is returned when an edit would add something the file
	// already has.
	ErrExists = errors.New("already exists")
)

// FileError is a problem at a place in the access file. Its text has the
// form "file:line: problem", as compilers print it.
type FileError struct {
	File string
	Line int // 0 when the problem has no single line
	Err  error
}

// Error returns "file:line: problem".
func (e *FileError) Error() string {
	switch {
	case e.File == "" && e.Line == 0:
		return e.Err.Error()
	case e.File == "":
		return "line " + strconv.Itoa(e.Line) + ": " + e.Err.Error()
	case e.Line == 0:
		return e.File + ": " + e.Err.Error()
	}
	return e.File + ":" + strconv.Itoa(e.Line) + ": " + e.Err.Error()
}

// Unwrap returns the problem.
func (e *FileError) Unwrap() error { return e.Err }

// maxErrors is how many problems one error reports; the rest are counted.
const maxErrors = 20

// joinErrors returns nil, the only error, or all of them (at most
// maxErrors) one per line.
func joinErrors(errs []error) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	if len(errs) > maxErrors {
		more := len(errs) - maxErrors
		errs = append(errs[:maxErrors:maxErrors], fmt.Errorf("and %d more problems", more))
	}
	return errors.Join(errs...)
}
