package gitgate

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gitgate/gitgate/internal/atomicfile"
)

// The ref fence makes "maintenance enabled" mean "no ref changes from now
// on". The pre-receive check alone leaves a window: a push that passed it
// just before the switch still commits its refs afterwards. So git's
// reference-transaction hook (package hooks) checks the state again at the
// moment refs are committed, and registers every transaction it lets
// through in the data dir's TxnDirName directory:
//
//  1. In "prepared", the hook first creates a marker file named after the
//     git process that runs the transaction ([RegisterTxn]), then reads the
//     state. Enabled or unreadable: it exits 1, and git aborts the
//     transaction. Otherwise it exits 0, leaving the marker.
//  2. In "committed" or "aborted", it removes one marker of that git
//     process ([ReleaseTxn]). Git nests transactions (deleting a packed ref
//     runs a packed-refs transaction inside the loose one), so markers are
//     counted, never removed wholesale.
//  3. Enable writes the state, THEN waits until every marker present has
//     gone ([WaitTxns]); a marker whose process is dead is stale.
//
// A transaction either registered before enable's scan (and is waited for)
// or read the state after enable's write (and is aborted).
//
// That is one data dir's registry. Gates that share a database register
// in it instead (package pgstore's fence.go), ordered by PostgreSQL's
// locks; both are a [TxnWaiter] for [FencedStore].

// TxnDirName is the directory of the data dir that holds one marker per ref
// transaction in flight.
const TxnDirName = "txn"

// EnvReplication, set to "1" in a git process's environment, lets its ref
// transactions through in maintenance mode. It is the escape for the gate's
// own replication (a Geo secondary fetching from its primary must update
// refs while in maintenance). The runner never passes it to the git
// processes it starts for clients: it drops every GITGATE_ variable of the
// server's environment.
const EnvReplication = "GITGATE_REPLICATION"

// DefaultFenceTimeout bounds how long enabling maintenance waits for ref
// transactions already past the check.
const DefaultFenceTimeout = 30 * time.Second

// maxTxnMarker bounds what is read from a marker.
const maxTxnMarker = 4 << 10

// TxnMarker is one ref transaction in flight, as registered by the hook.
type TxnMarker struct {
	// Name is the marker's file name: "<pid>-<random>".
	Name string
	// PID is the git process that runs the transaction.
	PID int
	// Info is what the hook wrote in it (repository and start time).
	Info string
}

// RegisterTxn records that the git process pid is about to commit a ref
// transaction, in dir (the data dir's TxnDirName directory, created if
// needed). info (the repository, say) is kept for reports. It returns the
// marker's name.
func RegisterTxn(dir string, pid int, info string) (string, error) {
	if pid <= 0 {
		return "", fmt.Errorf("register ref transaction: bad pid %d", pid)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return "", fmt.Errorf("register ref transaction: %w", err)
	}
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return "", fmt.Errorf("register ref transaction: %w", err)
	}
	name := strconv.Itoa(pid) + "-" + hex.EncodeToString(rnd[:])
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return "", fmt.Errorf("register ref transaction: %w", err)
	}
	_, werr := fmt.Fprintf(f, "%s, since %s\n", strings.Map(printable, info), time.Now().UTC().Format(time.RFC3339Nano))
	if err := errors.Join(werr, f.Close()); err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("register ref transaction: %w", err)
	}
	return name, nil
}

func printable(r rune) rune {
	if r < 0x20 || r == 0x7f {
		return '?'
	}
	return r
}

// ReleaseTxn removes one marker of the git process pid: its transaction
// has been committed or aborted. No marker is not an error (the transaction
// was prepared before the hook was installed).
func ReleaseTxn(dir string, pid int) error {
	markers, err := listTxns(dir)
	if err != nil {
		return err
	}
	for _, m := range markers {
		if m.PID != pid {
			continue
		}
		err := os.Remove(filepath.Join(dir, m.Name))
		if err == nil || errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("release ref transaction: %w", err)
	}
	return nil
}

// listTxns returns the markers in dir. A missing dir holds none; names
// that are not markers are ignored.
func listTxns(dir string) ([]TxnMarker, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list ref transactions: %w", err)
	}
	var out []TxnMarker
	for _, e := range entries {
		pidText, _, ok := strings.Cut(e.Name(), "-")
		pid, err := strconv.Atoi(pidText)
		if !ok || err != nil || pid <= 0 || !e.Type().IsRegular() {
			continue
		}
		out = append(out, TxnMarker{Name: e.Name(), PID: pid})
	}
	return out, nil
}

// ProcessAlive reports whether pid names a running process on this host.
func ProcessAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// ErrFenceIncomplete is wrapped by the errors of [FencedStore.Apply] that
// come after the state was changed: maintenance is enabled, but the wait
// for the ref transactions in flight did not complete.
var ErrFenceIncomplete = errors.New("maintenance mode is enabled, but the wait for the ref updates in flight did not complete")

// FenceTimeoutError is returned when ref transactions that passed the
// check before maintenance was enabled were still running at the deadline.
// The state change itself was made. It matches [ErrFenceIncomplete].
type FenceTimeoutError struct {
	Timeout time.Duration
	Pending []TxnMarker
}

// Summary says how many transactions are still running, without naming
// them: the text for API clients.
func (e *FenceTimeoutError) Summary() string {
	return fmt.Sprintf("maintenance mode is enabled, but %d ref update(s) that began before the switch were still running after %s", len(e.Pending), e.Timeout)
}

// Is makes the error match ErrFenceIncomplete.
func (e *FenceTimeoutError) Is(target error) bool { return target == ErrFenceIncomplete }

// Error says how many transactions are still running, and where.
func (e *FenceTimeoutError) Error() string {
	var b strings.Builder
	b.WriteString(e.Summary())
	for _, m := range e.Pending {
		fmt.Fprintf(&b, "\n  git process %d: %s", m.PID, strings.TrimSpace(m.Info))
	}
	return b.String()
}

// WaitTxns waits until every marker in dir at the time of the call has
// gone, or its git process has died (the marker is then removed as stale).
// It gives up after timeout with a *FenceTimeoutError, or when ctx ends.
func WaitTxns(ctx context.Context, dir string, timeout time.Duration) error {
	pending, err := listTxns(dir)
	if err != nil || len(pending) == 0 {
		return err
	}
	if timeout <= 0 {
		timeout = DefaultFenceTimeout
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	delay := time.Millisecond
	for {
		left := pending[:0]
		for _, m := range pending {
			path := filepath.Join(dir, m.Name)
			if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if !ProcessAlive(m.PID) {
				os.Remove(path) // stale: git died without the last hook run
				continue
			}
			left = append(left, m)
		}
		pending = left
		if len(pending) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for ref updates in flight: %w", context.Cause(ctx))
		case <-deadline.C:
			for i := range pending {
				if data, err := atomicfile.ReadBounded(filepath.Join(dir, pending[i].Name), maxTxnMarker); err == nil {
					pending[i].Info = string(data)
				}
			}
			sort.Slice(pending, func(i, j int) bool { return pending[i].Name < pending[j].Name })
			return &FenceTimeoutError{Timeout: timeout, Pending: pending}
		case <-time.After(delay):
		}
		delay = min(2*delay, 50*time.Millisecond)
	}
}

// TxnWaiter waits until the ref transactions registered at the time of the
// call, and let through because maintenance mode was off, have finished;
// after timeout it fails with a *FenceTimeoutError. [DirTxns] is the data
// dir's registry; a shared database (package pgstore) is the site's.
type TxnWaiter interface {
	WaitTxns(ctx context.Context, timeout time.Duration) error
}

// DirTxns is the registry of a data dir's TxnDirName directory.
type DirTxns string

// WaitTxns waits for the markers in the directory (see [WaitTxns]).
func (d DirTxns) WaitTxns(ctx context.Context, timeout time.Duration) error {
	return WaitTxns(ctx, string(d), timeout)
}

// FencedStore is a Store whose Apply, when it enables maintenance mode,
// returns only once the ref transactions that passed the hook's check
// before the switch have finished (see [WaitTxns]). The CLI and the API
// change the state through it.
type FencedStore struct {
	Store
	// TxnDir is the data dir's TxnDirName directory, waited for unless
	// Txns is set.
	TxnDir string
	// Txns, when set, is the registry waited for instead of TxnDir (the
	// site's database).
	Txns TxnWaiter
	// Timeout bounds the wait; zero means DefaultFenceTimeout.
	Timeout time.Duration
	// Written, when set, is called after a change was written and before
	// the wait (the server reloads its live state there).
	Written func()
}

// NewFencedStore returns a fenced store for the data dir's state file.
func NewFencedStore(dataDir string, timeout time.Duration) *FencedStore {
	return &FencedStore{Store: NewFileStore(dataDir), TxnDir: filepath.Join(dataDir, TxnDirName), Timeout: timeout}
}

// Apply makes the change, then, when it enables maintenance, waits for the
// ref transactions in flight. When the wait fails (a *FenceTimeoutError, or
// ctx ended) it returns the new state with an error that matches
// ErrFenceIncomplete: the state did change.
func (f *FencedStore) Apply(ctx context.Context, c Change) (State, error) {
	st, err := f.Store.Apply(ctx, c)
	if err != nil {
		return st, err
	}
	if f.Written != nil {
		f.Written()
	}
	if c.Enabled == nil || !*c.Enabled || !st.Enabled {
		return st, nil
	}
	err = f.waiter().WaitTxns(ctx, f.Timeout)
	var timeout *FenceTimeoutError
	if err != nil && !errors.As(err, &timeout) {
		err = fmt.Errorf("%w: %w", ErrFenceIncomplete, err)
	}
	return st, err
}

// waiter is the registry Apply waits for.
func (f *FencedStore) waiter() TxnWaiter {
	if f.Txns != nil {
		return f.Txns
	}
	return DirTxns(f.TxnDir)
}
