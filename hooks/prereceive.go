// Package hooks is the gate's backstop: a pre-receive hook that refuses
// pushes while the instance is in read-only maintenance mode, whatever path
// the push took to the repository (through the gate, git daemon, git-shell,
// git-http-backend, another forge or a local "git push /path").
//
// [PreReceive] is the hook itself. It reads the maintenance state from a
// [StateLoader] (the gate's data dir, or a running gate's status endpoint),
// prints the same refusal as every other door and exits 1; when the state
// cannot be read it refuses the push too (fail closed), unless told to fail
// open. After a successful check it runs the repository's own pre-receive
// hook, if the installer kept one, with the same stdin.
//
// An [Installer] writes, checks and [Uninstall] removes the small sh script
// that makes git run the gitgate binary as a repository's hooks/pre-receive:
//
//	#!/bin/sh
//	# installed by gitgate: refuses pushes during read-only maintenance mode
//	# ...
//	exec '/usr/local/bin/gitgate' hook pre-receive --data-dir '/var/lib/gitgate' --chained "$0.gitgate-chained"
//
// The script names the data dir (or status URL) itself, so that git servers
// that do not set the gate's environment still find the state. A pre-receive
// hook that was there before is kept as pre-receive.gitgate-chained and
// restored on uninstall. The script goes into <git dir>/hooks: git does not
// run it in a repository whose core.hooksPath points elsewhere.
package hooks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/gitgate/gitgate/gitgate"
)

// Texts the hook prints on stderr (git shows each line to the pusher after
// "remote: "). The maintenance refusal itself is [gitgate.MaintenanceMessage].
const (
	// StateUnreadableMessage starts the refusal printed when the maintenance
	// state cannot be read; ": <reason>." follows, the reason being one of
	// the Reason constants.
	StateUnreadableMessage = "Git push is not allowed because the maintenance state cannot be read"
	// FailOpenWarning starts the warning printed when the state cannot be
	// read and the hook lets the push through because it runs with
	// --fail-open; ": <reason>." follows.
	FailOpenWarning = "Warning: the maintenance state cannot be read, and this server lets pushes through anyway (--fail-open)"
	// InterruptedMessage starts the refusal printed when the hook is ended
	// by a signal (or by the death of the git process that runs it) while
	// the repository's own hook runs; ": <reason>." follows.
	InterruptedMessage = "Git push is not allowed because the pre-receive check did not finish"
	// ChainedHookFailedMessage is printed when the repository's own
	// pre-receive hook exists but cannot be started. The push is refused, as
	// git itself refuses it when a hook cannot run.
	ChainedHookFailedMessage = "Git push is not allowed because the repository's own pre-receive hook cannot be run."
)

// Reasons why the maintenance state cannot be read. They are shown to the
// pusher, so they name no paths and carry no Go error text; the detail stays
// in [StateError.Err].
const (
	ReasonNotConfigured     = "the hook is configured with neither a data dir nor a status URL"
	ReasonDataDirMissing    = "the data dir does not exist"
	ReasonDataDirUnreadable = "the data dir cannot be accessed"
	ReasonStateFileInvalid  = "the state file in the data dir is unreadable or corrupt"
	ReasonStateFileMissing  = "the state file in the data dir is missing"
	ReasonStateFileTimeout  = "the state file in the data dir could not be read in time"
	ReasonInterrupted       = "the check was interrupted"
	ReasonStatusURLInvalid  = "the status URL is not a valid http or https URL"
	ReasonTokenUnreadable   = "the token file cannot be read"
	ReasonStatusUnreachable = "the status URL cannot be reached"
	ReasonStatusTimeout     = "the status URL did not answer in time"
	ReasonStatusAnswer      = "the status URL's answer has no valid maintenance_mode field"
	// ReasonStatusHTTPFormat is a fmt format taking the HTTP status code.
	ReasonStatusHTTPFormat = "the status URL answered with HTTP status %d"
	// ReasonUnknown is used for errors that carry no reason of their own.
	ReasonUnknown = "an unexpected error occurred"
)

// StateError says why the maintenance state could not be read. Reason is
// shown to the pusher; Err is the detail, for administrators and tests.
type StateError struct {
	Reason string
	Err    error
}

// Error returns the reason and the detail.
func (e *StateError) Error() string {
	if e.Err == nil {
		return e.Reason
	}
	return e.Reason + ": " + e.Err.Error()
}

// Unwrap returns the detail.
func (e *StateError) Unwrap() error { return e.Err }

// Reason returns the text to show the pusher for an error from a
// [StateLoader]: the reason of the [StateError] it wraps, else ReasonUnknown.
func Reason(err error) string {
	var se *StateError
	if errors.As(err, &se) && se.Reason != "" {
		return se.Reason
	}
	return ReasonUnknown
}

// StateLoader gives the current maintenance state. [gitgate.FileStore]
// satisfies it; so do [DataDirSource] and [StatusSource], which also explain
// their failures with a [StateError].
type StateLoader interface {
	Load(ctx context.Context) (gitgate.State, error)
}

// Options configure one run of the pre-receive hook.
type Options struct {
	// Source is where the maintenance state comes from. Nil means the hook
	// was not told where to look, so the state cannot be read.
	Source StateLoader
	// FailOpen lets pushes through when the state cannot be read. The
	// default, fail closed, refuses them.
	FailOpen bool
	// Chained is the path of a pre-receive hook to run once the check has
	// passed: the repository's own hook, kept by [Installer.Install]. A path
	// that does not exist, or a file that is not executable, is ignored, as
	// git ignores such hooks.
	Chained string
}

// PreReceive runs the pre-receive check and returns the hook's exit status.
//
// In maintenance mode it prints [gitgate.MaintenanceMessage] on stderr and
// returns 1, so git refuses every ref update with "pre-receive hook
// declined". When the state cannot be read it prints StateUnreadableMessage
// with the reason and returns 1, or, with FailOpen, prints FailOpenWarning and
// goes on. Otherwise it runs the chained hook, if any, with stdin, stdout and
// stderr (stdin untouched: the chained hook reads every ref update line) and
// returns its exit status; without one it returns 0.
//
// The check never reads stdin: git ignores a hook that exits without
// reading its input.
func PreReceive(ctx context.Context, opts Options, stdin io.Reader, stdout, stderr io.Writer) int {
	st, err := loadState(ctx, opts.Source)
	switch {
	case err != nil && !opts.FailOpen:
		fmt.Fprintf(stderr, "%s: %s.\n", StateUnreadableMessage, err.Reason)
		return 1
	case err != nil:
		fmt.Fprintf(stderr, "%s: %s.\n", FailOpenWarning, err.Reason)
	case st.Enabled:
		fmt.Fprintln(stderr, gitgate.MaintenanceMessage)
		return 1
	}
	return runChained(ctx, opts.Chained, nil, ChainedHookFailedMessage, stdin, stdout, stderr)
}

// loadState reads the state from src and explains any failure.
func loadState(ctx context.Context, src StateLoader) (gitgate.State, *StateError) {
	if src == nil {
		return gitgate.State{}, &StateError{Reason: ReasonNotConfigured}
	}
	st, err := src.Load(ctx)
	if err == nil && ctx.Err() != nil {
		err = &StateError{Reason: ReasonInterrupted, Err: ctx.Err()} // a signal: do not go on
	}
	if err == nil {
		return st, nil
	}
	var se *StateError
	if !errors.As(err, &se) {
		se = &StateError{Reason: ReasonUnknown, Err: err}
	}
	return gitgate.State{}, se
}

// runChained runs the repository's own hook with args and returns its exit
// status. When stdin is an *os.File (git's pipe) the hook inherits it as is;
// otherwise os/exec streams it through.
func runChained(ctx context.Context, path string, args []string, failed string, stdin io.Reader, stdout, stderr io.Writer) int {
	if path == "" {
		return 0
	}
	// An absolute path, so that exec never looks the name up in PATH.
	path, err := filepath.Abs(path)
	if err != nil {
		fmt.Fprintln(stderr, failed)
		return 1
	}
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return 0
	case err != nil:
		fmt.Fprintln(stderr, failed)
		return 1
	case !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0:
		return 0 // git ignores a hook that is not an executable file
	}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit) && exit.ExitCode() > 0:
		return exit.ExitCode()
	case ctx.Err() != nil:
		fmt.Fprintf(stderr, "%s: %s.\n", InterruptedMessage, ReasonInterrupted)
		return 1 // the hook got a signal: the chained hook was killed
	case errors.As(err, &exit):
		return 1 // killed by a signal
	}
	fmt.Fprintln(stderr, failed)
	return 1
}
