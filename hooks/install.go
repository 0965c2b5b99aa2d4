package hooks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/internal/atomicfile"
)

// Names and marks of an installed hook.
const (
	// HookName is the hook git runs before it updates any ref of a push.
	HookName = "pre-receive"
	// ChainedSuffix is appended to the hook's path for the repository's own
	// pre-receive hook, kept by [Installer.Install] and run after the check.
	ChainedSuffix = ".gitgate-chained"
	// Marker is the line that marks a hook script as gitgate's: install
	// rewrites and [Uninstall] removes only scripts that carry it.
	Marker = "# installed by gitgate: refuses pushes during read-only maintenance mode"
)

// hookMode is the mode of the hook script: executable, or git ignores it.
const hookMode = 0o755

// markerWindow is how much of an existing hook is read to look for Marker.
// Our script is far smaller; a foreign hook may be a large binary.
const markerWindow = 4 << 10

// Script is the configuration baked into the installed hook script. Git
// servers other than the gate (git daemon, git-shell, git-http-backend) do
// not set the gate's environment, so the script itself says where the
// maintenance state is.
type Script struct {
	// Binary is the absolute path of the gitgate binary.
	Binary string
	// DataDir is the gate's absolute data dir, used when StatusURL is empty.
	DataDir string
	// StatusURL, when set, is a running gate's settings endpoint, asked
	// instead of the data dir.
	StatusURL string
	// TokenFile is the absolute path of a file that holds the token for
	// StatusURL. The token itself is never written into the script.
	TokenFile string
	// FailOpen lets pushes through when the state cannot be read.
	FailOpen bool
}

// Render returns the hook script: a few lines of sh that exec the gitgate
// binary, which runs the repository's own hook (kept next to the script,
// with ChainedSuffix) after a successful check. Paths must be absolute and
// values free of control characters; each is single-quoted for sh.
func (s Script) Render() ([]byte, error) { return s.RenderHook(HookName) }

// RenderHook returns the script for the hook name: HookName or
// TxnHookName. The reference-transaction script passes git's argument (the
// transaction's state) on after "--".
func (s Script) RenderHook(name string) ([]byte, error) {
	if name != HookName && name != TxnHookName {
		return nil, fmt.Errorf("hook script: unknown hook %q", name)
	}
	if err := checkAbs("gitgate binary", s.Binary); err != nil {
		return nil, err
	}
	var args []string
	switch {
	case s.StatusURL != "":
		if err := checkScriptValue("status URL", s.StatusURL); err != nil {
			return nil, err
		}
		if err := ValidateStatusURL(s.StatusURL); err != nil {
			return nil, err
		}
		args = append(args, "--status-url", shQuote(s.StatusURL))
		if s.TokenFile != "" {
			if err := checkAbs("token file", s.TokenFile); err != nil {
				return nil, err
			}
			args = append(args, "--token-file", shQuote(s.TokenFile))
		}
	case s.DataDir != "":
		if err := checkAbs("data dir", s.DataDir); err != nil {
			return nil, err
		}
		args = append(args, "--data-dir", shQuote(s.DataDir))
	default:
		return nil, errors.New("hook script: neither a data dir nor a status URL is set")
	}
	if s.FailOpen {
		args = append(args, "--fail-open")
	}
	var b bytes.Buffer
	b.WriteString("#!/bin/sh\n")
	b.WriteString(Marker + "\n")
	b.WriteString("# \"gitgate hooks uninstall\" removes it and puts back the repository's own\n")
	b.WriteString("# hook, which runs after the check from " + name + ChainedSuffix + ".\n")
	tail := ""
	if name == TxnHookName {
		tail = ` -- "$@"`
		b.WriteString(s.releaseInShell())
	}
	fmt.Fprintf(&b, "exec %s hook %s %s --chained \"$0%s\"%s\n",
		shQuote(s.Binary), name, strings.Join(args, " "), ChainedSuffix, tail)
	return b.Bytes(), nil
}

// EnvDatabaseURL names the site's database in a hook's environment; with
// it, the records of ref updates are rows in the database, which only the
// gitgate binary removes.
const EnvDatabaseURL = "GITGATE_DATABASE_URL"

// releaseInShell is the reference-transaction script's fast path for
// "committed" and "aborted" when the repository has no hook of its own to
// chain and no database is named in the environment: it removes one record
// of the git process ($PPID, as the gitgate hook would) without starting
// gitgate, which saves one start of the binary per push. With a status URL
// there is no record to remove.
func (s Script) releaseInShell() string {
	release, journal := "", ""
	if s.StatusURL == "" {
		release = "\t\tfor m in " + shQuote(filepath.Join(s.DataDir, gitgate.TxnDirName)) +
			"/\"$PPID\"-*; do rm -f -- \"$m\"; break; done\n"
		// Geo: note the changed repository for the primary's secondaries
		// (not for the gate's own replication fetches).
		journal = "\tif [ \"$1\" = committed ] && [ \"$" + gitgate.EnvReplication + "\" != 1 ]; then\n" +
			"\t\t{ printf '%s\\n' \"$PWD\" >>" + shQuote(filepath.Join(s.DataDir, gitgate.ChangeJournalName)) + "; } 2>/dev/null\n" +
			"\tfi\n"
	}
	return "# After the update (committed, aborted): drop its record, quickly.\n" +
		"case \"$1\" in\n" +
		"committed|aborted)\n" +
		journal +
		"\tif [ ! -e \"$0" + ChainedSuffix + "\" ] && [ -z \"$" + EnvDatabaseURL + "\" ]; then\n" +
		release +
		"\t\texit 0\n" +
		"\tfi\n" +
		"\t;;\n" +
		"esac\n"
}

// shQuote quotes s as one sh word.
func shQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// checkScriptValue refuses control characters (newlines above all), which
// have no business in a path or URL and would make the script hard to read.
func checkScriptValue(what, v string) error {
	if i := strings.IndexFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }); i >= 0 {
		return fmt.Errorf("hook script: %s %q holds a control character", what, v)
	}
	return nil
}

func checkAbs(what, path string) error {
	if !filepath.IsAbs(path) {
		return fmt.Errorf("hook script: %s %q is not an absolute path", what, path)
	}
	return checkScriptValue(what, path)
}

// Outcome says what Install or Uninstall did in one repository.
type Outcome string

// Outcomes of [Installer.Install] and [Uninstall].
const (
	Installed        Outcome = "installed"
	InstalledChained Outcome = "installed; the repository's own hook runs after the check"
	Updated          Outcome = "updated"
	Unchanged        Outcome = "already installed"
	Removed          Outcome = "removed"
	Restored         Outcome = "removed; the repository's own hook is restored"
	NotInstalled     Outcome = "not installed"
)

// HookState is what [Installer.Inspect] found in a repository's hooks dir.
type HookState int

// States of a repository's pre-receive hook.
const (
	// HookMissing: no pre-receive hook; pushes that bypass the gate are
	// not checked.
	HookMissing HookState = iota
	// HookForeign: a pre-receive hook that is not gitgate's.
	HookForeign
	// HookOutdated: gitgate's hook, but not as install would write it now
	// (another binary, state source or option, or not executable).
	HookOutdated
	// HookInstalled: gitgate's hook, up to date.
	HookInstalled
)

// String returns a one-word name for the state.
func (s HookState) String() string {
	switch s {
	case HookForeign:
		return "foreign"
	case HookOutdated:
		return "outdated"
	case HookInstalled:
		return "installed"
	}
	return "missing"
}

// Status is the hook's state in one repository.
type Status struct {
	State HookState
	// Chained is true when the repository's own hook is kept next to ours.
	Chained bool
}

// HookNames are the hooks an [Installer] installs: pre-receive refuses a
// push before any ref is touched; reference-transaction checks again when
// refs are committed, and lets enabling maintenance wait for updates that
// passed (see [ReferenceTransaction]).
var HookNames = []string{HookName, TxnHookName}

// Installer puts gitgate's hook scripts into repositories.
type Installer struct {
	scripts map[string][]byte // by hook name
	binary  string
}

// NewInstaller renders s once for every repository it installs into.
func NewInstaller(s Script) (*Installer, error) {
	in := &Installer{scripts: make(map[string][]byte), binary: s.Binary}
	for _, name := range HookNames {
		script, err := s.RenderHook(name)
		if err != nil {
			return nil, err
		}
		in.scripts[name] = script
	}
	return in, nil
}

// Script returns the pre-receive script the installer writes.
func (in *Installer) Script() []byte { return bytes.Clone(in.scripts[HookName]) }

// HookScript returns the script the installer writes for the hook name.
func (in *Installer) HookScript(name string) []byte { return bytes.Clone(in.scripts[name]) }

// Install makes gitDir's hooks/pre-receive and hooks/reference-transaction
// gitgate's. A hook that is not gitgate's is kept under ChainedSuffix and
// run after the check; gitgate's own hook is rewritten only when it
// differs, so running Install again changes nothing. Install never
// overwrites a kept hook: when a foreign hook and a kept one both exist, it
// fails. The outcome sums up both hooks.
func (in *Installer) Install(gitDir string) (Outcome, error) {
	dir := filepath.Join(gitDir, "hooks")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create hooks dir: %w", err)
	}
	var outcomes []Outcome
	for _, name := range HookNames {
		o, err := in.installOne(gitDir, name)
		if err != nil {
			return "", err
		}
		outcomes = append(outcomes, o)
	}
	return sumOutcomes(outcomes), nil
}

// sumOutcomes is one repository's outcome for several hooks: chained if any
// hook was kept, unchanged or installed if all were, else updated.
func sumOutcomes(outs []Outcome) Outcome {
	all := func(o Outcome) bool {
		for _, x := range outs {
			if x != o {
				return false
			}
		}
		return true
	}
	switch {
	case slices.Contains(outs, InstalledChained):
		return InstalledChained
	case all(Unchanged):
		return Unchanged
	case all(Installed):
		return Installed
	}
	return Updated
}

func (in *Installer) installOne(gitDir, name string) (Outcome, error) {
	script := in.scripts[name]
	hook, chained := hookPaths(gitDir, name)
	cur, err := readHook(hook, in.binary)
	if err != nil {
		return "", err
	}
	outcome := Installed
	switch cur.kind {
	case hookOurs:
		if bytes.Equal(cur.data, script) && cur.mode&0o111 != 0 {
			return Unchanged, nil
		}
		outcome = Updated
	case hookOurBinary:
		outcome = Updated
	case hookForeign:
		// A hard link, not a rename: it fails rather than replace a hook
		// already kept (by a concurrent install, say), and the foreign
		// hook stays in place until ours replaces it atomically.
		if err := os.Link(hook, chained); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return "", fmt.Errorf("%s and %s both exist and neither is gitgate's hook: move one of them away first", hook, chained)
			}
			return "", fmt.Errorf("keep the existing %s hook: %w", name, err)
		}
		if err := atomicfile.Write(hook, script, hookMode); err != nil {
			os.Remove(chained) // the foreign hook is still in place
			return "", fmt.Errorf("write %s: %w", hook, err)
		}
		return InstalledChained, nil
	case hookNone:
		// A kept hook without ours is an install that was interrupted, or
		// an uninstall done by hand: run the kept hook again.
		if _, err := os.Lstat(chained); err == nil {
			outcome = InstalledChained
		}
	}
	if err := atomicfile.Write(hook, script, hookMode); err != nil {
		return "", fmt.Errorf("write %s: %w", hook, err)
	}
	return outcome, nil
}

// InstallAll installs the hook into every repository, as the gate does at
// start. It goes on after a failure, logs what changed, and returns the
// failures joined.
func (in *Installer) InstallAll(ctx context.Context, repos []gitgate.Repo, log *slog.Logger) error {
	var errs []error
	for _, r := range repos {
		if err := ctx.Err(); err != nil {
			return errors.Join(append(errs, err)...)
		}
		outcome, err := in.Install(r.Path)
		switch {
		case err != nil:
			log.Error("cannot install the pre-receive hook: pushes that bypass the gate are not checked", "repo", r.Name, "err", err)
			errs = append(errs, fmt.Errorf("%s: %w", r.Name, err))
		case outcome == Unchanged:
			log.Debug("pre-receive hook in place", "repo", r.Name)
		default:
			log.Info("pre-receive hook installed", "repo", r.Name, "outcome", string(outcome))
		}
	}
	return errors.Join(errs...)
}

// Inspect reports whether gitDir has the hooks this installer writes. The
// state is the pre-receive hook's, but an installed pre-receive hook
// without an up-to-date reference-transaction hook is outdated. Chained is
// true when either hook kept the repository's own.
func (in *Installer) Inspect(gitDir string) (Status, error) {
	st, err := in.inspectOne(gitDir, HookName)
	if err != nil {
		return Status{}, err
	}
	txn, err := in.inspectOne(gitDir, TxnHookName)
	if err != nil {
		return Status{}, err
	}
	if st.State == HookInstalled && txn.State != HookInstalled {
		st.State = HookOutdated
	}
	st.Chained = st.Chained || txn.Chained
	return st, nil
}

func (in *Installer) inspectOne(gitDir, name string) (Status, error) {
	hook, chained := hookPaths(gitDir, name)
	cur, err := readHook(hook, in.binary)
	if err != nil {
		return Status{}, err
	}
	var st Status
	switch cur.kind {
	case hookNone:
		st.State = HookMissing
	case hookForeign:
		st.State = HookForeign
	case hookOurBinary:
		st.State = HookOutdated
	case hookOurs:
		st.State = HookOutdated
		if bytes.Equal(cur.data, in.scripts[name]) && cur.mode&0o111 != 0 {
			st.State = HookInstalled
		}
	}
	switch _, err := os.Lstat(chained); {
	case err == nil:
		st.Chained = true
	case !errors.Is(err, fs.ErrNotExist):
		return Status{}, fmt.Errorf("inspect kept hook: %w", err)
	}
	return st, nil
}

// Uninstall removes gitgate's hooks from gitDir and puts the repository's
// own hooks back, if they were kept. A hook that is not gitgate's is left
// alone.
func Uninstall(gitDir string) (Outcome, error) {
	outcome := NotInstalled
	for _, name := range HookNames {
		o, err := uninstallOne(gitDir, name)
		if err != nil {
			return "", err
		}
		if o == Restored || (o == Removed && outcome == NotInstalled) {
			outcome = o
		}
	}
	return outcome, nil
}

func uninstallOne(gitDir, name string) (Outcome, error) {
	hook, chained := hookPaths(gitDir, name)
	cur, err := readHook(hook, "")
	if err != nil {
		return "", err
	}
	hasChained := false
	switch _, err := os.Lstat(chained); {
	case err == nil:
		hasChained = true
	case !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("inspect kept hook: %w", err)
	}
	ours := cur.kind == hookOurs
	switch {
	case (ours || cur.kind == hookNone) && hasChained:
		if err := os.Rename(chained, hook); err != nil {
			return "", fmt.Errorf("restore the repository's own hook: %w", err)
		}
		if err := atomicfile.SyncDir(filepath.Dir(hook)); err != nil {
			return "", err
		}
		return Restored, nil
	case ours:
		if err := os.Remove(hook); err != nil {
			return "", fmt.Errorf("remove hook: %w", err)
		}
		if err := atomicfile.SyncDir(filepath.Dir(hook)); err != nil {
			return "", err
		}
		return Removed, nil
	}
	return NotInstalled, nil
}

// hookPaths returns the paths of the hook name and of the kept one.
// core.hooksPath is not consulted: the gate's repositories use hooks/.
func hookPaths(gitDir, name string) (hook, chained string) {
	hook = filepath.Join(gitDir, "hooks", name)
	return hook, hook + ChainedSuffix
}

type hookKind int

const (
	hookNone      hookKind = iota
	hookOurs               // a script that carries Marker
	hookOurBinary          // the gitgate binary itself, linked or copied in by hand
	hookForeign            // anything else
)

type existingHook struct {
	kind hookKind
	data []byte      // hookOurs: the script
	mode fs.FileMode // hookOurs: its mode
}

// readHook finds out what is at path. binary, when set, is the gitgate
// binary: a hook that is the same file is ours too.
func readHook(path, binary string) (existingHook, error) {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return existingHook{kind: hookNone}, nil
	}
	if err != nil {
		return existingHook{}, fmt.Errorf("inspect hook: %w", err)
	}
	if fi.IsDir() {
		return existingHook{}, fmt.Errorf("%s is a directory", path)
	}
	if fi.Mode().IsRegular() && fi.Size() <= markerWindow {
		data, err := readSmall(path)
		if err != nil {
			return existingHook{}, err
		}
		if isOurScript(data) {
			return existingHook{kind: hookOurs, data: data, mode: fi.Mode()}, nil
		}
	}
	if binary != "" {
		if bi, err := os.Stat(binary); err == nil {
			if hi, err := os.Stat(path); err == nil && os.SameFile(bi, hi) {
				return existingHook{kind: hookOurBinary}, nil
			}
		}
	}
	return existingHook{kind: hookForeign}, nil
}

func readSmall(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read hook: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, markerWindow))
	if err != nil {
		return nil, fmt.Errorf("read hook: %w", err)
	}
	return data, nil
}

// isOurScript reports whether data is a hook script written by gitgate.
func isOurScript(data []byte) bool {
	return bytes.HasPrefix(data, []byte("#!/bin/sh\n")) && bytes.Contains(data, []byte("\n"+Marker+"\n"))
}
