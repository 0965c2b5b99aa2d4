package access

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/internal/filewatch"
)

// Live is the server's view of the access file. It holds the current
// [Snapshot] behind an atomic pointer, so lookups take no lock and do no
// I/O, and swaps in a new one when the file changes.
//
// When a changed file is invalid, Live keeps the last good version and logs
// every problem with its file and line. A missing file means no users and no
// rules: every request that needs a signed-in user or a rule is denied.
type Live struct {
	path string
	doc  Document // nil: the file at path
	log  *slog.Logger
	now  func() time.Time
	cur  atomic.Pointer[Snapshot]

	mu       sync.Mutex   // serialises reloads
	seen     string       // what the last reload saw, to skip unchanged files
	seenErr  error        // the error of the last reload
	file     *File        // the data in force; nil: none (missing, or not read yet)
	onChange func(Change) // see OnChange
}

// OnChange makes every reload that puts different access data in force
// call fn with what changed, after the first load; the server audits it,
// so that an edit of the file by hand is on record like the CLI's. fn runs
// under the reload lock: it must not call Reload. Set it before Start.
func (l *Live) OnChange(fn func(Change)) { l.onChange = fn }

// changed tells OnChange's function about the move from l.file to f, and
// makes f the data in force. first is true for the first load.
func (l *Live) changed(f *File, first bool) {
	old := l.file
	l.file = f
	if first || l.onChange == nil {
		return
	}
	if c := Diff(old, f); !c.Empty() {
		l.onChange(c)
	}
}

// NewLive returns a Live for the access file in dataDir. It holds an empty
// Snapshot until [Live.Start] or [Live.Reload] reads the file.
func NewLive(dataDir string, log *slog.Logger) *Live {
	l := &Live{path: FilePath(dataDir), log: log, now: time.Now}
	l.cur.Store(&Snapshot{})
	return l
}

// NewLiveOn returns a Live for the access data in doc. Its owner calls
// [Live.Reload] when the document changes (the database store's watcher).
func NewLiveOn(doc Document, log *slog.Logger) *Live {
	l := &Live{path: doc.Name(), doc: doc, log: log, now: time.Now}
	l.cur.Store(&Snapshot{})
	return l
}

// Start reads the file, then watches it and reloads it on every change until
// ctx is done. It fails if the file exists but cannot be read or is invalid,
// since there is no good version to fall back on yet.
func (l *Live) Start(ctx context.Context) error {
	if err := l.Reload(); err != nil {
		return err
	}
	if l.doc != nil {
		return nil // the document's owner calls Reload on change
	}
	err := filewatch.Watch(ctx, l.path, filewatch.DefaultFallback, l.log, func() { _ = l.Reload() })
	if err != nil {
		l.log.Warn("cannot watch the access file; re-reading it periodically", "file", l.path, "err", err)
	}
	return nil
}

// Reload reads the file now. If it is unreadable or invalid, the current
// Snapshot stays in force and the problem is logged and returned. Reloading
// an unchanged file does nothing and logs nothing.
func (l *Live) Reload() error {
	l.mu.Lock()
	defer l.mu.Unlock()

	var data []byte
	var err error
	if l.doc != nil {
		data, err = l.doc.Read(context.Background())
	} else {
		data, err = readLimited(l.path)
	}
	first := l.seen == ""
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if l.seen == "missing" {
			return nil
		}
		l.seen, l.seenErr = "missing", nil
		l.cur.Store(&Snapshot{})
		l.changed(nil, first)
		l.log.Warn("access file not found: no users and no rules, so every request is denied", "file", l.path)
		return nil
	case err != nil:
		err = fmt.Errorf("read access file: %w", err)
		if seen := "error:" + err.Error(); l.seen != seen {
			l.seen, l.seenErr = seen, err
			l.log.Error("cannot read the access file; keeping the last good version", "file", l.path, "err", err)
		}
		return err
	}

	sum := sha256.Sum256(data)
	seen := "content:" + hex.EncodeToString(sum[:])
	if seen == l.seen {
		return l.seenErr
	}
	if len(bytes.TrimSpace(data)) == 0 && strings.HasPrefix(l.seen, "content:") {
		// An editor that saves in place truncates the file first: an empty
		// file after a good one is almost always a save in progress, and
		// taking it would lock every user out. The next event brings the
		// rest; to really remove everyone, remove the users.
		err := &FileError{File: l.path, Err: errors.New("the file is empty; keeping the last good version (remove the users and rules to deny everyone)")}
		l.log.Warn("access file is empty; keeping the last good version", "file", l.path)
		return err
	}
	l.seen = seen
	f, snap, err := parseSnapshot(l.path, data)
	l.seenErr = err
	if err != nil {
		l.log.Error("access file is invalid; keeping the last good version", "file", l.path, "err", err)
		return err
	}
	l.cur.Store(snap)
	l.changed(f, first)
	l.log.Info("access file loaded", "file", l.path, "users", len(snap.users), "tokens", len(snap.tokens))
	for _, w := range snap.warnings {
		l.log.Warn("access file warning", "file", l.path, "warning", w.Error())
	}
	return nil
}

func parseSnapshot(name string, data []byte) (*File, *Snapshot, error) {
	f, err := decode(name, data)
	if err != nil {
		return nil, nil, err
	}
	snap, err := compile(f)
	return f, snap, err
}

// Snapshot returns the current snapshot.
func (l *Live) Snapshot() *Snapshot { return l.cur.Load() }

// Permission answers what user may do on repo under the current snapshot;
// see [Snapshot.Permission].
func (l *Live) Permission(user *gitgate.User, repo string) gitgate.Permission {
	return l.cur.Load().Permission(user, repo)
}

// AuthenticateToken returns the owner of a token secret that is known, not
// revoked and not expired, or ErrBadCredentials.
func (l *Live) AuthenticateToken(secret string) (*gitgate.User, error) {
	return l.cur.Load().AuthenticateToken(secret, l.now())
}

// User returns the user with the given name in the current snapshot.
func (l *Live) User(name string) (*gitgate.User, bool) {
	return l.cur.Load().User(name)
}

// UserByCredential returns the user named name when the credential they
// signed in with is still valid; see [Snapshot.UserByCredential].
func (l *Live) UserByCredential(name, credential string) (*gitgate.User, error) {
	return l.cur.Load().UserByCredential(name, credential, l.now())
}

// UserByKey returns the user who owns an SSH public key.
func (l *Live) UserByKey(key ssh.PublicKey) (*gitgate.User, bool) {
	return l.cur.Load().UserByKey(key)
}
