package hooks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/gitgate/gitgate/gitgate"
)

// TxnHookName is the hook git runs at each step of a ref transaction:
// "prepared" (refs locked, not yet written: a non-zero exit aborts the
// transaction), then "committed" or "aborted".
const TxnHookName = "reference-transaction"

// States of a ref transaction, the hook's argument.
const (
	TxnPrepared  = "prepared"
	TxnCommitted = "committed"
	TxnAborted   = "aborted"
)

// TxnNotRegisteredMessage is printed when a push's ref update cannot be
// registered with the gate (the data dir's transaction directory is not
// writable): without that, enabling maintenance could not wait for it.
const TxnNotRegisteredMessage = "Git push is not allowed because the update cannot be registered with the maintenance gate."

// TxnChainedHookFailedMessage is printed when the repository's own
// reference-transaction hook exists but cannot be started; in "prepared"
// the update is then aborted, as git does when a hook cannot run.
const TxnChainedHookFailedMessage = "Git push is not allowed because the repository's own reference-transaction hook cannot be run."

// maxTxnInput bounds what the hook reads of the ref list git writes on its
// stdin when no chained hook takes it: the hook does not need it, but reads
// it so that git never blocks on a full pipe. Beyond this git sees a closed
// pipe, which it ignores for this hook.
const maxTxnInput = 64 << 20

// maxCmdline bounds what is read of the git process's command line.
const maxCmdline = 64 << 10

// TxnOptions configure one run of the reference-transaction hook.
type TxnOptions struct {
	// Source is where the maintenance state comes from; nil means not
	// configured (the state is unreadable).
	Source StateLoader
	// TxnDir is the gate's ref transaction directory (data dir/txn).
	// Empty with a status URL: the transaction is checked, but enabling
	// maintenance cannot wait for it.
	TxnDir string
	// FailOpen lets the update through when the state cannot be read or
	// the transaction cannot be registered.
	FailOpen bool
	// Chained is the repository's own reference-transaction hook, run
	// after the check with the same argument and stdin.
	Chained string
	// GitPID is the git process that runs the transaction: the hook's
	// parent, since the installed script execs the gitgate binary.
	GitPID int
	// Fenced says whether the transaction is checked at all: a push's
	// (git receive-pack), and not the gate's own replication. Local
	// commands (git gc, pack-refs, update-ref by an admin) go through in
	// maintenance. See [IsFenced].
	Fenced bool
	// Info describes the transaction in the marker (the repository).
	Info string
	// Registry, when set, registers the transaction and reads the state
	// in one step (the site's database, shared by every gate); Source and
	// TxnDir are then not used.
	Registry TxnRegistry
}

// TxnRegistry is a registry of ref transactions that reads the state in
// the same step as it registers one, so that a state change is ordered
// with every registration: package pgstore's, for a site on a database.
type TxnRegistry interface {
	// Register records the transaction and returns the state read with
	// it. A failure is best a *StateError (the reason is shown).
	Register(ctx context.Context) (gitgate.State, error)
	// Release removes one record of the transaction's git process.
	Release(ctx context.Context) error
}

// registerLoader makes Register a StateLoader.
type registerLoader struct{ r TxnRegistry }

func (l registerLoader) Load(ctx context.Context) (gitgate.State, error) { return l.r.Register(ctx) }

// ReferenceTransaction runs the reference-transaction hook for state and
// returns its exit status.
//
// In "prepared" a fenced transaction is first registered (a marker in
// TxnDir, or with Registry a row written in one step with the read), then
// the state is read: in maintenance mode, or when it cannot be
// read, the hook prints the refusal and returns 1, so git aborts the
// transaction (git then runs the hook again with "aborted", which removes
// the marker). In "committed" and "aborted" it removes one marker of the
// git process (or Registry's record). The chained hook, if any, runs after a successful check
// with the same argument and stdin, and its status is returned in
// "prepared" (git ignores it in the other states).
func ReferenceTransaction(ctx context.Context, opts TxnOptions, state string, stdin io.Reader, stdout, stderr io.Writer) int {
	if opts.Fenced {
		switch state {
		case TxnPrepared:
			if code := checkTxn(ctx, opts, stderr); code != 0 {
				io.CopyN(io.Discard, stdin, maxTxnInput)
				return code
			}
		case TxnCommitted, TxnAborted:
			if opts.Registry != nil {
				if err := opts.Registry.Release(ctx); err != nil {
					// The record expires, or goes stale with git.
					fmt.Fprintln(stderr, "warning: the gate's record of this ref update could not be removed.")
				}
			} else if opts.TxnDir != "" {
				if err := gitgate.ReleaseTxn(opts.TxnDir, opts.GitPID); err != nil {
					// The marker goes stale when git exits; enable then
					// stops waiting for it.
					fmt.Fprintln(stderr, "warning: the gate's record of this ref update could not be removed.")
				}
			}
		}
	}
	if opts.Chained != "" {
		return runChained(ctx, opts.Chained, []string{state}, TxnChainedHookFailedMessage, stdin, stdout, stderr)
	}
	io.CopyN(io.Discard, stdin, maxTxnInput)
	return 0
}

// checkTxn registers the transaction, then reads the state. The order is
// what makes the fence hold: see package gitgate's fence.go.
func checkTxn(ctx context.Context, opts TxnOptions, stderr io.Writer) int {
	if opts.GitPID <= 1 {
		// The hook was orphaned: git is gone, and a marker for pid 1
		// would never go stale.
		fmt.Fprintln(stderr, TxnNotRegisteredMessage)
		return 1
	}
	src := opts.Source
	if opts.Registry != nil {
		// One step: registered and read under the database's lock.
		src = registerLoader{opts.Registry}
	} else if opts.TxnDir != "" {
		_, err := gitgate.RegisterTxn(opts.TxnDir, opts.GitPID, opts.Info)
		switch {
		case err == nil:
		case !opts.FailOpen:
			fmt.Fprintln(stderr, TxnNotRegisteredMessage)
			return 1
		default:
			fmt.Fprintf(stderr, "%s: %s.\n", FailOpenWarning, "the update cannot be registered with the gate")
		}
	}
	st, serr := loadState(ctx, src)
	code := 0
	switch {
	case serr != nil && !opts.FailOpen:
		fmt.Fprintf(stderr, "%s: %s.\n", StateUnreadableMessage, serr.Reason)
		code = 1
	case serr != nil:
		fmt.Fprintf(stderr, "%s: %s.\n", FailOpenWarning, serr.Reason)
	case st.Enabled:
		fmt.Fprintln(stderr, gitgate.MaintenanceMessage)
		code = 1
	}
	// On refusal the marker stays: git runs the hook with "aborted" next,
	// which removes it (and dies right after, so it cannot go stale for
	// long). Removing it here too would count one release twice.
	return code
}

// IsFenced reports whether the ref transactions of the git process pid are
// checked: those of a push (git receive-pack, whatever server started it),
// unless env says it is the gate's own replication
// ([gitgate.EnvReplication]=1). When the process cannot be inspected it is
// taken for a push (fail closed). env is looked up like os.Getenv.
func IsFenced(pid int, env func(string) string) bool {
	if env(gitgate.EnvReplication) == "1" {
		return false
	}
	cmdline, err := readCmdline(pid)
	if err != nil {
		return true
	}
	return isReceivePack(cmdline)
}

func readCmdline(pid int) ([]string, error) {
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxCmdline))
	if err != nil {
		return nil, err
	}
	if len(data) == 0 {
		return nil, errors.New("empty command line")
	}
	return split0(data), nil
}

func split0(data []byte) []string {
	var out []string
	for _, a := range bytes.Split(bytes.TrimSuffix(data, []byte{0}), []byte{0}) {
		out = append(out, string(a))
	}
	return out
}

// isReceivePack reports whether a command line runs git receive-pack:
// "git-receive-pack ..." or "git [options] receive-pack ...".
func isReceivePack(args []string) bool {
	if len(args) == 0 {
		return true
	}
	switch base := filepath.Base(args[0]); {
	case base == "git-receive-pack":
		return true
	case base == "git":
	case strings.HasPrefix(base, "git-"):
		return false // another git program (git-upload-pack...)
	default:
		// Not git: the hook's parent is always the git process that runs
		// the transaction, so this is unexpected. Take it for a push.
		return true
	}
	for i := 1; i < len(args); i++ {
		a := args[i]
		switch a {
		case "-c", "-C", "--git-dir", "--work-tree", "--namespace", "--exec-path", "--super-prefix", "--config-env", "--list-cmds":
			i++ // the option's value
			continue
		}
		if len(a) > 0 && a[0] == '-' {
			continue
		}
		return a == "receive-pack"
	}
	return false
}
