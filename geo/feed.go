package geo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/internal/filewatch"
)

// API paths of replication, served by the primary (scope "status", the
// channel the secondaries already hold).
const (
	// EventsPath is the long-poll on the primary's change log.
	EventsPath = "/api/v4/geo/events"
	// RepositoriesPath lists every repository with its RefState.
	RepositoriesPath = "/api/v4/geo/repositories"
	// AccessPath serves the access data snapshot.
	AccessPath = "/api/v4/geo/access"
	// ReportPath is where a secondary reports its replication status.
	ReportPath = "/api/v4/geo/report"
)

// Bounds of the change log.
const (
	// maxEvents is how many events the primary keeps; a secondary further
	// behind is told to reconcile.
	maxEvents = 4096
	// maxEventsPerAnswer bounds one answer of the events poll.
	maxEventsPerAnswer = 512
	// journalRotateSize is the journal size at which the primary starts a
	// new one.
	journalRotateSize = 1 << 20
	// maxJournalRead bounds one read of the journal.
	maxJournalRead = 1 << 20
	// defaultScanInterval is how often the primary lists its repositories
	// to see those created or removed without a ref transaction.
	defaultScanInterval = 10 * time.Second
	// checksumParallel bounds the git processes of a repository listing.
	checksumParallel = 4
)

// Event is one change on the primary, in the order the primary saw them.
type Event struct {
	// Seq grows by one per event, from 1, within one Epoch.
	Seq uint64 `json:"seq"`
	// Repo is the repository's canonical name; empty for an access data
	// change.
	Repo string `json:"repo,omitempty"`
	// State is the repository's refs after the change.
	State RefState `json:"state,omitzero"`
	// LFS is set when the repository's Git LFS objects changed.
	LFS bool `json:"lfs,omitempty"`
	// Deleted is set when the repository is gone from the primary.
	Deleted bool `json:"deleted,omitempty"`
	// Access is the access data version, for an access data change.
	Access string `json:"access,omitempty"`
	// Time is when the primary saw the change.
	Time time.Time `json:"time"`
}

// EventsResponse is the answer of the events long-poll.
type EventsResponse struct {
	// Epoch names this run of the primary's change log; sequence numbers
	// count within it.
	Epoch string `json:"epoch"`
	// Seq is the last sequence number (the secondary's next "after").
	Seq uint64 `json:"seq"`
	// Events are the events after the one asked for, oldest first.
	Events []Event `json:"events"`
	// Reconcile tells the secondary that events it has not seen are gone
	// (another epoch, or more than the log keeps): it must compare every
	// repository.
	Reconcile bool `json:"reconcile,omitempty"`
	// Access is the current access data version.
	Access string `json:"access"`
}

// RepoListing is the answer of RepositoriesPath.
type RepoListing struct {
	Epoch        string      `json:"epoch"`
	Seq          uint64      `json:"seq"`
	Access       string      `json:"access"`
	Repositories []RepoEntry `json:"repositories"`
}

// RepoEntry is one repository of a listing.
type RepoEntry struct {
	Name  string   `json:"name"`
	State RefState `json:"state"`
}

// AccessData is the access data of a site as replication sees it: a
// snapshot of bytes and its version, whatever store holds it. A primary
// exports it; a secondary imports the primary's.
type AccessData interface {
	// Export returns the current snapshot and its version (a checksum).
	Export(ctx context.Context) (data []byte, version string, err error)
	// Import replaces the site's access data with a snapshot, atomically.
	Import(ctx context.Context, data []byte) error
}

// Feed is the primary's change log: it reads the change journal that the
// repositories' hooks append to ([gitgate.ChangeJournalName]), lists the
// repositories now and then to catch those created or removed without a
// ref update, watches the access data, and turns each change into an
// [Event] that the secondaries long-poll for.
type Feed struct {
	ready    chan struct{} // closed once Run has taken stock and watches
	resolver *gitgate.Resolver
	git      string
	dataDir  string
	access   AccessData
	log      *slog.Logger
	now      func() time.Time
	// ScanInterval is how often the repositories are listed.
	ScanInterval time.Duration

	epoch string

	mu        sync.Mutex
	seq       uint64
	events    []Event // the last maxEvents, oldest first
	known     map[string]RefState
	accessVer string
	changed   chan struct{} // closed and replaced on every new event

	journalOff  int64
	previousOff int64 // read position in the rotated journal, -1 when done
}

// NewFeed returns the change log of the repositories under resolver, whose
// refs are read with gitBin and whose journal is in dataDir.
func NewFeed(resolver *gitgate.Resolver, gitBin, dataDir string, accessData AccessData, log *slog.Logger) *Feed {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := make([]byte, 8)
	rand.Read(b)
	return &Feed{
		resolver: resolver, git: gitBin, dataDir: dataDir, access: accessData,
		log: log.With("geo_role", "primary"), now: time.Now, ScanInterval: defaultScanInterval,
		epoch: hex.EncodeToString(b), known: map[string]RefState{}, changed: make(chan struct{}),
		previousOff: -1, ready: make(chan struct{}),
	}
}

// Run reads the journal, scans and watches until ctx ends. It first takes
// stock of every repository (no events for those), then reports changes.
func (f *Feed) Run(ctx context.Context) error {
	journal := filepath.Join(f.dataDir, gitgate.ChangeJournalName)
	// What is in the journal already happened before this run: the
	// secondaries reconcile against the listing instead.
	if fi, err := os.Stat(journal); err == nil {
		f.journalOff = fi.Size()
	}
	f.scan(ctx, false)
	f.checkAccess(ctx)
	wake := make(chan struct{}, 1)
	poke := func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	if err := filewatch.Watch(ctx, journal, time.Second, f.log, poke); err != nil {
		f.log.Warn("cannot watch the change journal; reading it every second", "err", err)
	}
	if p := f.accessPath(); p != "" {
		if err := filewatch.Watch(ctx, p, 5*time.Second, f.log, poke); err != nil {
			f.log.Warn("cannot watch the access file; reading it every few seconds", "err", err)
		}
	}
	close(f.ready)
	tick := time.NewTicker(f.ScanInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
			f.readJournal(ctx, journal)
			f.checkAccess(ctx)
		case <-tick.C:
			f.readJournal(ctx, journal)
			f.scan(ctx, true)
			f.checkAccess(ctx)
		}
	}
}

// accessPath is the access file to watch, when the access data is a file.
func (f *Feed) accessPath() string {
	if fa, ok := f.access.(*FileAccess); ok {
		return fa.path()
	}
	return ""
}

// readJournal reads the journal's new lines and records a change for each
// repository named. A journal grown past journalRotateSize is renamed and
// a new one begins; the renamed one is read to its end once more on the
// next wake-up, for a hook that opened it just before the rename.
func (f *Feed) readJournal(ctx context.Context, path string) {
	names := map[string]bool{}
	old := path + ".1"
	if f.previousOff >= 0 {
		f.previousOff = f.readLines(old, f.previousOff, names)
		f.previousOff = -1
	}
	f.journalOff = f.readLines(path, f.journalOff, names)
	if f.journalOff >= journalRotateSize {
		if err := os.Rename(path, old); err == nil {
			f.previousOff, f.journalOff = f.journalOff, 0
		} else {
			f.log.Warn("cannot rotate the change journal", "err", err)
		}
	}
	for name := range names {
		f.refresh(ctx, name)
	}
}

// readLines reads whole lines of path from off, adds the repositories they
// name, and returns the new offset. A file shorter than off was replaced:
// it is read from the start.
func (f *Feed) readLines(path string, off int64, names map[string]bool) int64 {
	fh, err := os.Open(path)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			f.log.Warn("cannot read the change journal", "err", err)
		}
		return 0
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return off
	}
	if fi.Size() < off {
		off = 0
	}
	for off < fi.Size() {
		buf := make([]byte, min(fi.Size()-off, maxJournalRead))
		n, err := fh.ReadAt(buf, off)
		data := buf[:n]
		end := strings.LastIndexByte(string(data), '\n')
		if end < 0 {
			if n == len(buf) { // one absurd line: skip it
				return off + int64(n)
			}
			return off
		}
		for _, line := range strings.Split(string(data[:end]), "\n") {
			if name, ok := f.repoName(line); ok {
				names[name] = true
			}
		}
		off += int64(end + 1)
		if err != nil || n < len(buf) {
			return off
		}
	}
	return off
}

// repoName maps a repository directory from the journal to its canonical
// name; false when it is not a repository the gate serves.
func (f *Feed) repoName(dir string) (string, bool) {
	if dir == "" {
		return "", false
	}
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	rel, err := filepath.Rel(f.resolver.Root(), dir)
	if err != nil || strings.HasPrefix(rel, "..") {
		return "", false
	}
	name, ok := strings.CutSuffix(filepath.ToSlash(rel), ".git")
	if !ok {
		return "", false
	}
	canon, err := gitgate.CleanName(name)
	return canon, err == nil && canon == name
}

// refresh reads one repository's refs and records an event if they
// changed (or if it is gone).
func (f *Feed) refresh(ctx context.Context, name string) {
	repo, err := f.resolver.Resolve(name)
	if err != nil {
		f.forget(name)
		return
	}
	st, err := Checksum(ctx, f.git, repo.Path)
	if err != nil {
		f.log.Warn("cannot read a repository's refs for the Geo secondaries", "repo", name, "err", err)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if prev, ok := f.known[name]; ok && prev == st {
		return
	}
	f.known[name] = st
	f.appendLocked(Event{Repo: name, State: st})
}

// forget records that a repository is gone.
func (f *Feed) forget(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.known[name]; !ok {
		return
	}
	delete(f.known, name)
	f.appendLocked(Event{Repo: name, Deleted: true})
}

// scan lists the repositories: new ones get an event (when events is
// set), vanished ones a deletion.
func (f *Feed) scan(ctx context.Context, events bool) {
	repos, err := f.resolver.List(ctx)
	if err != nil {
		f.log.Warn("cannot list the repositories for the Geo secondaries", "err", err)
		return
	}
	seen := map[string]bool{}
	for _, r := range repos {
		seen[r.Name] = true
		f.mu.Lock()
		_, ok := f.known[r.Name]
		f.mu.Unlock()
		if ok {
			continue
		}
		if !events {
			if st, err := Checksum(ctx, f.git, r.Path); err == nil {
				f.mu.Lock()
				f.known[r.Name] = st
				f.mu.Unlock()
			}
			continue
		}
		f.refresh(ctx, r.Name)
	}
	f.mu.Lock()
	var gone []string
	for name := range f.known {
		if !seen[name] {
			gone = append(gone, name)
		}
	}
	f.mu.Unlock()
	for _, name := range gone {
		if _, err := f.resolver.Resolve(name); err != nil {
			f.forget(name)
		}
	}
}

// checkAccess records an event when the access data's version changed.
func (f *Feed) checkAccess(ctx context.Context) {
	if f.access == nil {
		return
	}
	_, v, err := f.access.Export(ctx)
	if err != nil {
		f.log.Warn("cannot read the access data for the Geo secondaries", "err", err)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if v == f.accessVer {
		return
	}
	first := f.accessVer == ""
	f.accessVer = v
	if !first {
		f.appendLocked(Event{Access: v})
	}
}

// appendLocked adds an event and wakes the polls; f.mu is held.
func (f *Feed) appendLocked(e Event) {
	f.seq++
	e.Seq, e.Time = f.seq, f.now().UTC()
	f.events = append(f.events, e)
	if len(f.events) > maxEvents {
		f.events = append(f.events[:0:0], f.events[len(f.events)-maxEvents:]...)
	}
	close(f.changed)
	f.changed = make(chan struct{})
	f.log.Debug("Geo change", "seq", e.Seq, "repo", e.Repo, "deleted", e.Deleted, "access", e.Access)
}

// Seq returns the epoch and the last sequence number.
func (f *Feed) Seq() (string, uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.epoch, f.seq
}

// since returns the events after seq in epoch, and whether the caller
// must reconcile instead.
func (f *Feed) since(epoch string, after uint64) (EventsResponse, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := EventsResponse{Epoch: f.epoch, Seq: f.seq, Access: f.accessVer, Events: []Event{}}
	switch {
	case epoch != f.epoch || after > f.seq:
		resp.Reconcile = true
		return resp, f.changed
	case after == f.seq:
		return resp, f.changed
	}
	first := f.seq - uint64(len(f.events)) + 1 // seq of f.events[0]
	if after+1 < first {
		resp.Reconcile = true
		return resp, f.changed
	}
	evs := f.events[after+1-first:]
	if len(evs) > maxEventsPerAnswer {
		evs = evs[:maxEventsPerAnswer]
	}
	resp.Events = append(resp.Events, evs...)
	resp.Seq = evs[len(evs)-1].Seq
	return resp, f.changed
}

// EventsHandler serves GET EventsPath?epoch=<epoch>&after=<seq>&wait=<d>:
// the events after seq, at once if there are any, else when the next one
// comes or wait runs out. Without epoch, or with another epoch, or when
// the events after seq are no longer kept, the answer says "reconcile".
func (p *Primary) EventsHandler(f *Feed) http.Handler {
	p.mu.Lock()
	p.feed = f
	p.mu.Unlock()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		claims, ok := p.verifyGet(w, r, ScopeStatus)
		if !ok {
			return
		}
		q := r.URL.Query()
		after, err := strconv.ParseUint(q.Get("after"), 10, 64)
		if q.Has("after") && err != nil {
			writeJSONMessage(w, http.StatusBadRequest, "400 Bad request - after is invalid")
			return
		}
		wait, err := parseWait(q.Get("wait"))
		if err != nil {
			writeJSONMessage(w, http.StatusBadRequest, "400 Bad request - wait is invalid")
			return
		}
		p.touch(claims.Node)
		timer := time.NewTimer(wait)
		defer timer.Stop()
		// Nothing is answered before the feed has taken stock and
		// watches the journal: a secondary's reconcile must not come
		// before a change the feed would then not report.
		select {
		case <-f.ready:
		case <-r.Context().Done():
			return
		case <-timer.C:
			writeJSONMessage(w, http.StatusServiceUnavailable, "503 Service Unavailable - the change log is starting")
			return
		}
		for {
			resp, changed := f.since(q.Get("epoch"), after)
			if len(resp.Events) > 0 || resp.Reconcile {
				p.touch(claims.Node)
				writeJSON(w, http.StatusOK, resp)
				return
			}
			select {
			case <-changed:
			case <-timer.C:
				p.touch(claims.Node)
				writeJSON(w, http.StatusOK, resp)
				return
			case <-p.closing:
				shuttingDown(w)
				return
			case <-r.Context().Done():
				return
			}
		}
	})
}

// Listing returns every repository with its refs' state, read now.
func (f *Feed) Listing(ctx context.Context, only string) (RepoListing, error) {
	epoch, seq := f.Seq()
	f.mu.Lock()
	acc := f.accessVer
	f.mu.Unlock()
	out := RepoListing{Epoch: epoch, Seq: seq, Access: acc, Repositories: []RepoEntry{}}
	var repos []gitgate.Repo
	if only != "" {
		r, err := f.resolver.Resolve(only)
		if err != nil {
			return out, nil // gone: an empty listing
		}
		repos = []gitgate.Repo{r}
	} else {
		var err error
		if repos, err = f.resolver.List(ctx); err != nil {
			return out, err
		}
	}
	entries := make([]RepoEntry, len(repos))
	errs := make([]error, len(repos))
	sem := make(chan struct{}, checksumParallel)
	var wg sync.WaitGroup
	for i, r := range repos {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			st, err := Checksum(ctx, f.git, r.Path)
			entries[i], errs[i] = RepoEntry{Name: r.Name, State: st}, err
		}()
	}
	wg.Wait()
	for i, e := range entries {
		if errs[i] != nil {
			// Leave it out rather than fail the listing: a secondary keeps
			// what it has of a repository it does not see (for a while).
			f.log.Warn("cannot read a repository's refs for the listing", "repo", e.Name, "err", errs[i])
			continue
		}
		out.Repositories = append(out.Repositories, e)
	}
	return out, nil
}

// RepositoriesHandler serves GET RepositoriesPath[?repo=<name>].
func (p *Primary) RepositoriesHandler(f *Feed) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		claims, ok := p.verifyGet(w, r, ScopeStatus)
		if !ok {
			return
		}
		p.touch(claims.Node)
		only := r.URL.Query().Get("repo")
		if only != "" && !canonical(only) {
			writeJSONMessage(w, http.StatusBadRequest, "400 Bad request - repo is invalid")
			return
		}
		l, err := f.Listing(r.Context(), only)
		if err != nil {
			p.log.Warn("Geo repository listing failed", "err", err)
			writeJSONMessage(w, http.StatusServiceUnavailable, "503 Service Unavailable: cannot list the repositories")
			return
		}
		writeJSON(w, http.StatusOK, l)
	})
}

// AccessVersionHeader carries the version of the access data answered.
const AccessVersionHeader = "X-Gitgate-Access-Version"

// AccessHandler serves GET AccessPath: the access data snapshot, with its
// version in AccessVersionHeader.
func (p *Primary) AccessHandler(a AccessData) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		claims, ok := p.verifyGet(w, r, ScopeStatus)
		if !ok {
			return
		}
		p.touch(claims.Node)
		data, v, err := a.Export(r.Context())
		if err != nil {
			p.log.Warn("cannot export the access data", "err", err)
			writeJSONMessage(w, http.StatusServiceUnavailable, "503 Service Unavailable: cannot read the access data")
			return
		}
		h := w.Header()
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Cache-Control", "no-store")
		h.Set(AccessVersionHeader, v)
		h.Set("Content-Length", strconv.Itoa(len(data)))
		w.WriteHeader(http.StatusOK)
		w.Write(data)
	})
}

// verifyGet checks the method (GET or HEAD) and the site token.
func (p *Primary) verifyGet(w http.ResponseWriter, r *http.Request, scope Scope) (*Claims, bool) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeJSONMessage(w, http.StatusMethodNotAllowed, "405 Method Not Allowed")
		return nil, false
	}
	c, err := p.verifier.VerifyRequest(r, scope, "")
	if err != nil {
		p.log.Warn("Geo request refused", "path", r.URL.Path, "remote_addr", r.RemoteAddr, "err", err)
		WriteUnauthorized(w, err)
		return nil, false
	}
	return c, true
}

// readAllLimit reads at most limit bytes of r; more is an error.
func readAllLimit(r io.Reader, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("answer larger than %d bytes", limit)
	}
	return data, nil
}

// TrimChangeJournal keeps the change journal of a site that does not read
// it (no Geo, or a secondary) from growing: every few minutes, until ctx
// ends, a journal larger than journalRotateSize is emptied.
func TrimChangeJournal(ctx context.Context, dataDir string) {
	path := filepath.Join(dataDir, gitgate.ChangeJournalName)
	tick := time.NewTicker(5 * time.Minute)
	defer tick.Stop()
	for {
		if fi, err := os.Stat(path); err == nil && fi.Size() > journalRotateSize {
			os.Truncate(path, 0)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// oldestAfter returns the time of the first repository event after seq in
// epoch; zero when there is none, or when it cannot be told (another
// epoch, or a nil feed). It takes the feed's lock; callers may hold the
// Primary's (the feed never takes the Primary's).
func (f *Feed) oldestAfter(epoch string, seq uint64) time.Time {
	if f == nil {
		return time.Time{}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if epoch != f.epoch || seq >= f.seq || len(f.events) == 0 {
		return time.Time{}
	}
	first := f.seq - uint64(len(f.events)) + 1
	i := 0
	if seq+1 > first {
		i = int(seq + 1 - first)
	}
	for ; i < len(f.events); i++ {
		if f.events[i].Repo != "" {
			return f.events[i].Time
		}
	}
	return time.Time{}
}
