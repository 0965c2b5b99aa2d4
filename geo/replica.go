package geo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/lfs"
)

// Defaults of ReplicaOptions.
const (
	DefaultParallel          = 4
	DefaultReconcileInterval = 5 * time.Minute
	DefaultDeleteDelay       = 10 * time.Minute
	DefaultTrashRetention    = 7 * 24 * time.Hour
	DefaultFetchTimeout      = time.Hour
	defaultRetryMin          = time.Second
	defaultRetryMax          = 5 * time.Minute
)

// TrashDirName is the directory of a secondary's data dir where repositories
// removed on the primary are kept for the trash retention period.
const TrashDirName = "geo-trash"

// maxListingBody bounds a repository listing read from the primary.
const maxListingBody = 256 << 20

// Replication states of a repository on a secondary.
const (
	StateSynced  = "synced"
	StatePending = "pending"
	StateFailed  = "failed"
)

// ReplicaOptions configure a secondary's replication.
type ReplicaOptions struct {
	// Git is the git binary.
	Git string
	// Resolver is this site's repository root.
	Resolver *gitgate.Resolver
	// DataDir is this site's data dir (trash, access data).
	DataDir string
	// Access receives the primary's access data.
	Access AccessData
	// Prepare is called for a repository this site has just created
	// (to install the gate's hooks); nil: nothing.
	Prepare func(ctx context.Context, repo gitgate.Repo) error
	// Parallel bounds the fetches running at once (default 4).
	Parallel int
	// ReconcileInterval is how often every repository is compared with
	// the primary's (default 5 minutes).
	ReconcileInterval time.Duration
	// DeleteDelay is how long a repository must be missing on the primary
	// before this site moves its copy to the trash (default 10 minutes).
	DeleteDelay time.Duration
	// TrashRetention is how long the trash keeps a repository (default 7
	// days).
	TrashRetention time.Duration
	// FetchTimeout bounds one fetch (default 1 hour).
	FetchTimeout time.Duration
	// LFS is this site's Git LFS store; nil: LFS objects are not
	// replicated.
	LFS *lfs.Store
	// LFSMaxObjectSize is the largest LFS object copied (default
	// lfs.DefaultMaxObjectSize).
	LFSMaxObjectSize int64
	// RetryMin and RetryMax bound the backoff of a failing repository
	// (defaults 1 s and 5 min).
	RetryMin, RetryMax time.Duration
}

// ReplicationStatus is a secondary's replication as it reports it.
type ReplicationStatus struct {
	// Synced, Pending and Failed count the repositories in each state
	// (verified: a synced copy's checksum equals the primary's).
	Synced  int `json:"synced"`
	Pending int `json:"pending"`
	Failed  int `json:"failed"`
	// LFS counts the Git LFS objects of the repositories by state.
	LFS LFSCounts `json:"lfs"`
	// OldestUnsynced is when the oldest change not yet replicated was made
	// on the primary (zero when none).
	OldestUnsynced time.Time `json:"oldest_unsynced,omitzero"`
	// LagSeconds is the age of that change (0 when none).
	LagSeconds float64 `json:"lag_seconds"`
	// LastContact is the last answer of the primary's change log.
	LastContact time.Time `json:"last_contact,omitzero"`
	// AccessVersion is the access data version this site holds.
	AccessVersion string `json:"access_version,omitempty"`
	// Reconciled is when every repository was last compared; zero: not
	// yet, and the counts say nothing.
	Reconciled time.Time `json:"reconciled,omitzero"`
	// Epoch and Seq are the primary's change log position this site has
	// received.
	Epoch string `json:"epoch,omitempty"`
	Seq   uint64 `json:"seq,omitempty"`
	// Errors are some failed repositories and why (at most 20).
	Errors []RepoError `json:"errors,omitempty"`
	// Verified is VerifiedDigest of the primary's states this site holds
	// verified copies of; empty while any repository is not synced.
	Verified string `json:"verified,omitempty"`
	// GeoNodes are the node names in this site's own geo.yaml: the sites
	// that may follow it should it be promoted.
	GeoNodes []string `json:"geo_nodes,omitempty"`
	// Reported is when the secondary sent this (set on the primary).
	Reported time.Time `json:"reported,omitzero"`
}

// RepoError is a failed repository.
type RepoError struct {
	Repo  string `json:"repo"`
	Error string `json:"error"`
}

// Done reports "0 pending, 0 failed" after a comparison of every
// repository: everything replicated and verified.
func (s ReplicationStatus) Done() bool {
	return !s.Reconciled.IsZero() && s.Pending == 0 && s.Failed == 0 && s.LFS.Pending == 0 && s.LFS.Failed == 0
}

type repoState struct {
	state    string
	want     RefState // the primary's, as last heard
	since    time.Time
	attempts int
	next     time.Time
	lastErr  string
	running  bool
	again    bool
	queued   bool
	missing  time.Time // when the primary was first seen without it
	lfs      LFSCounts // its LFS objects, as last synced
}

// Replicator keeps a secondary's repositories and access data equal to the
// primary's: it long-polls the primary's change log and fetches each
// changed repository at once, and reconciles every repository now and then.
type Replicator struct {
	f    *Follower
	opts ReplicaOptions
	log  *slog.Logger
	now  func() time.Time

	work chan string

	mu           sync.Mutex
	repos        map[string]*repoState
	epoch        string
	seq          uint64
	lastContact  time.Time
	accessVer    string
	reconciled   time.Time
	reconcileNow chan struct{}
	reportNow    chan struct{}
	lfsVerified  map[string]lfsStamp // oid → the file as it was when verified
}

// NewReplicator returns the replication of the secondary that f follows.
func NewReplicator(f *Follower, opts ReplicaOptions) *Replicator {
	if opts.Git == "" {
		opts.Git = "git"
	}
	if opts.Parallel <= 0 {
		opts.Parallel = DefaultParallel
	}
	if opts.ReconcileInterval <= 0 {
		opts.ReconcileInterval = DefaultReconcileInterval
	}
	if opts.DeleteDelay <= 0 {
		opts.DeleteDelay = DefaultDeleteDelay
	}
	if opts.TrashRetention <= 0 {
		opts.TrashRetention = DefaultTrashRetention
	}
	if opts.FetchTimeout <= 0 {
		opts.FetchTimeout = DefaultFetchTimeout
	}
	if opts.LFSMaxObjectSize <= 0 {
		opts.LFSMaxObjectSize = lfs.DefaultMaxObjectSize
	}
	if opts.RetryMin <= 0 {
		opts.RetryMin = defaultRetryMin
	}
	if opts.RetryMax < opts.RetryMin {
		opts.RetryMax = max(defaultRetryMax, opts.RetryMin)
	}
	r := &Replicator{
		f: f, opts: opts, log: f.log.With("geo_part", "replication"), now: time.Now,
		work: make(chan string, 1<<16), repos: map[string]*repoState{},
		reconcileNow: make(chan struct{}, 1), reportNow: make(chan struct{}, 1),
		lfsVerified: map[string]lfsStamp{},
	}
	if opts.Access != nil {
		if _, v, err := opts.Access.Export(context.Background()); err == nil {
			r.accessVer = v
		}
	}
	f.setReplica(r)
	return r
}

// Run replicates until ctx ends, and leaves nothing running. It may run
// again once it has returned (a gate of a database site elected again):
// each run starts from a clean slate, reconciling every repository, since
// another gate may have replicated meanwhile.
func (r *Replicator) Run(ctx context.Context) {
	r.mu.Lock()
	r.repos, r.epoch, r.seq, r.reconciled = map[string]*repoState{}, "", 0, time.Time{}
	r.mu.Unlock()
	for len(r.work) > 0 {
		<-r.work
	}
	if r.opts.Access != nil {
		if _, v, err := r.opts.Access.Export(ctx); err == nil {
			r.mu.Lock()
			r.accessVer = v
			r.mu.Unlock()
		}
	}
	// Copies a previous run left half made.
	os.RemoveAll(filepath.Join(r.opts.Resolver.Root(), stagingDirName))
	var wg sync.WaitGroup
	defer wg.Wait()
	for range r.opts.Parallel {
		wg.Add(1)
		go func() { defer wg.Done(); r.worker(ctx) }()
	}
	wg.Add(3)
	go func() { defer wg.Done(); r.reconcileLoop(ctx) }()
	go func() { defer wg.Done(); r.eventsLoop(ctx) }()
	go func() { defer wg.Done(); r.reportLoop(ctx) }()
}

func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// eventsLoop holds the long-poll on the primary's change log.
func (r *Replicator) eventsLoop(ctx context.Context) {
	failures := 0
	for ctx.Err() == nil {
		r.mu.Lock()
		epoch, after := r.epoch, r.seq
		r.mu.Unlock()
		var resp EventsResponse
		err := r.getJSON(ctx, EventsPath, url.Values{
			"epoch": {epoch}, "after": {strconv.FormatUint(after, 10)}, "wait": {r.f.opts.PollWait.String()},
		}, r.f.opts.PollWait+pollMargin, maxListingBody, &resp)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			failures++
			if failures == 1 || failures%20 == 0 {
				r.log.Warn("cannot read the Geo primary's change log; retrying", "failures", failures, "err", err)
			}
			if !sleep(ctx, r.f.backoff(failures)) {
				return
			}
			continue
		}
		failures = 0
		r.mu.Lock()
		r.lastContact = r.now()
		if resp.Reconcile || resp.Epoch != r.epoch {
			r.epoch, r.seq = resp.Epoch, resp.Seq
			r.mu.Unlock()
			poke(r.reconcileNow)
			continue
		}
		r.seq = resp.Seq
		for _, e := range resp.Events {
			if e.Repo != "" {
				r.wantLocked(e.Repo, e.State, e.Deleted, e.LFS, e.Time)
			}
		}
		accessStale := resp.Access != "" && resp.Access != r.accessVer
		r.mu.Unlock()
		if accessStale {
			r.syncAccess(ctx)
		}
		poke(r.reportNow)
	}
}

// wantLocked records the primary's state of a repository and queues it.
// An LFS change queues it even when its refs are already synced.
func (r *Replicator) wantLocked(name string, st RefState, deleted, lfsChanged bool, at time.Time) {
	if !canonical(name) {
		return
	}
	rs := r.repos[name]
	if rs == nil {
		rs = &repoState{state: StatePending}
		r.repos[name] = rs
	}
	if deleted {
		if rs.missing.IsZero() {
			rs.missing = r.now()
		}
		return
	}
	rs.missing = time.Time{}
	if rs.want == st && rs.state == StateSynced {
		if lfsChanged && r.opts.LFS != nil {
			r.queueLocked(name, rs)
		}
		return
	}
	rs.want = st
	if rs.state == StateSynced {
		rs.state = StatePending
	}
	if rs.since.IsZero() {
		if at.IsZero() {
			at = r.now()
		}
		rs.since = at
	}
	rs.attempts, rs.next = 0, time.Time{}
	r.queueLocked(name, rs)
}

func (r *Replicator) queueLocked(name string, rs *repoState) {
	switch {
	case rs.running:
		rs.again = true
	case !rs.queued:
		rs.queued = true
		select {
		case r.work <- name:
		default:
			rs.queued = false // full: the reconcile finds it
		}
	}
}

// worker syncs queued repositories.
func (r *Replicator) worker(ctx context.Context) {
	for {
		var name string
		select {
		case <-ctx.Done():
			return
		case name = <-r.work:
		}
		r.mu.Lock()
		rs := r.repos[name]
		if rs == nil || rs.running {
			if rs != nil {
				rs.queued = false
				rs.again = true
			}
			r.mu.Unlock()
			continue
		}
		rs.queued, rs.running, rs.again = false, true, false
		want := rs.want
		r.mu.Unlock()

		err := r.sync(ctx, name, want)
		if err == nil {
			err = r.syncLFS(ctx, name)
		}
		if ctx.Err() != nil {
			return
		}
		r.mu.Lock()
		rs.running = false
		switch {
		case err == nil && !rs.again:
			rs.state, rs.since, rs.attempts, rs.lastErr = StateSynced, time.Time{}, 0, ""
		case err == nil: // changed again meanwhile
			r.queueLocked(name, rs)
		default:
			rs.state, rs.lastErr = StateFailed, err.Error()
			rs.attempts++
			delay := r.retryDelay(rs.attempts)
			rs.next = r.now().Add(delay)
			r.log.Warn("repository replication failed; retrying", "repo", name, "attempt", rs.attempts, "retry_in", delay.Round(time.Millisecond), "err", err)
			time.AfterFunc(delay, func() {
				r.mu.Lock()
				defer r.mu.Unlock()
				if ctx.Err() == nil && rs.state == StateFailed {
					r.queueLocked(name, rs)
				}
			})
			if rs.again {
				r.queueLocked(name, rs)
			}
		}
		r.mu.Unlock()
		poke(r.reportNow)
	}
}

func (r *Replicator) retryDelay(n int) time.Duration {
	d := r.opts.RetryMin
	for i := 1; i < n && d < r.opts.RetryMax; i++ {
		d *= 2
	}
	return min(d, r.opts.RetryMax)
}

// sync brings one repository to the primary's state and verifies it.
//
// A repository new to this site is made and fetched in a staging
// directory, and moved into place only once it holds the primary's refs:
// clients never see a half-made copy.
func (r *Replicator) sync(ctx context.Context, name string, want RefState) error {
	repo, err := r.opts.Resolver.Resolve(name)
	if errors.Is(err, gitgate.ErrRepoNotFound) {
		if repo, err = r.stage(ctx, name); err != nil {
			return err
		}
		defer os.RemoveAll(repo.Path) // nothing left once published
		if err := r.fetchVerified(ctx, repo, want); err != nil {
			return err
		}
		return r.publish(repo)
	} else if err != nil {
		return err
	}
	if got, err := Checksum(ctx, r.opts.Git, repo.Path); err == nil && got == want {
		return nil // already equal (a check of its LFS objects)
	}
	return r.fetchVerified(ctx, repo, want)
}

// fetchVerified fetches repo and checks its refs against the primary's.
func (r *Replicator) fetchVerified(ctx context.Context, repo gitgate.Repo, want RefState) error {
	name := repo.Name
	// A primary that moves on while this runs is fetched again, a few
	// times; a copy that still differs from a primary that stood still is
	// a failure (retried with backoff by the caller).
	for range 3 {
		if err := r.fetch(ctx, repo); err != nil {
			return err
		}
		if want.Head != "" {
			if err := setHead(ctx, r.opts.Git, repo.Path, want.Head); err != nil {
				return err
			}
		}
		got, err := Checksum(ctx, r.opts.Git, repo.Path)
		if err != nil {
			return err
		}
		if got == want {
			return nil
		}
		// Verify against the primary's refs as they are now.
		var l RepoListing
		if err := r.getJSON(ctx, RepositoriesPath, url.Values{"repo": {name}}, gitTimeout, maxListingBody, &l); err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		if len(l.Repositories) == 0 {
			return nil // gone on the primary: the deletion delay applies
		}
		cur := l.Repositories[0].State
		r.mu.Lock()
		if rs := r.repos[name]; rs != nil {
			rs.want = cur
		}
		r.mu.Unlock()
		if got == cur {
			return nil
		}
		if cur == want {
			return fmt.Errorf("checksum mismatch after fetch: have %.12s, primary has %.12s", got.Checksum, cur.Checksum)
		}
		want = cur
	}
	return fmt.Errorf("the primary's refs kept changing during the fetch")
}

// stagingDirName is the hidden directory of the repository root where new
// copies are made; no client name reaches it.
const stagingDirName = ".geo-staging"

// stage makes an empty bare repository for name in the staging directory,
// with the gate's hooks.
func (r *Replicator) stage(ctx context.Context, name string) (gitgate.Repo, error) {
	dir := filepath.Join(r.opts.Resolver.Root(), stagingDirName)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return gitgate.Repo{}, fmt.Errorf("create the copy: %w", err)
	}
	tmp, err := os.MkdirTemp(dir, "repo-*.git")
	if err != nil {
		return gitgate.Repo{}, fmt.Errorf("create the copy: %w", err)
	}
	repo := gitgate.Repo{Name: name, Path: tmp}
	if _, err := runGit(ctx, r.opts.Git, tmp, nil, 4<<10, "init", "--quiet", "--bare", "--initial-branch=main", "."); err != nil {
		os.RemoveAll(tmp)
		return gitgate.Repo{}, fmt.Errorf("create the copy: %w", err)
	}
	if r.opts.Prepare != nil {
		if err := r.opts.Prepare(ctx, repo); err != nil {
			os.RemoveAll(tmp)
			return gitgate.Repo{}, fmt.Errorf("prepare the copy: %w", err)
		}
	}
	return repo, nil
}

// publish moves a staged copy to its place, <root>/<name>.git.
func (r *Replicator) publish(staged gitgate.Repo) error {
	dest := filepath.Join(r.opts.Resolver.Root(), filepath.FromSlash(staged.Name)+".git")
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return fmt.Errorf("publish the copy: %w", err)
	}
	if err := os.Rename(staged.Path, dest); err != nil {
		return fmt.Errorf("publish the copy: %w", err)
	}
	if _, err := r.opts.Resolver.Resolve(staged.Name); err != nil {
		return fmt.Errorf("publish the copy: %w", err)
	}
	r.log.Info("repository created from the Geo primary", "repo", staged.Name)
	return nil
}

// fetch runs git fetch --prune --atomic '+refs/*:refs/*' from the
// primary's smart HTTP, with a replicate token for this one repository in
// an extra header given through the environment (never on the command
// line or in the repository's config), and GITGATE_REPLICATION=1 so that
// this site's own hooks let the ref update through in maintenance mode.
func (r *Replicator) fetch(ctx context.Context, repo gitgate.Repo) error {
	token, err := Sign(r.f.secret, r.f.node, Claims{Scope: ScopeReplicate, Repo: repo.Name}, TokenTTL)
	if err != nil {
		return err
	}
	u := r.f.endpoint("/" + repo.Name + ".git")
	env := []string{
		"GIT_CONFIG_COUNT=1",
		"GIT_CONFIG_KEY_0=http.extraHeader",
		"GIT_CONFIG_VALUE_0=Authorization: " + token,
		gitgate.EnvReplication + "=1",
	}
	ctx, cancel := context.WithTimeout(ctx, r.opts.FetchTimeout)
	defer cancel()
	_, err = runGitNoTimeout(ctx, r.opts.Git, repo.Path, env, 64<<10,
		"-c", "protocol.version=2", "-c", "gc.autoDetach=false", "-c", "http.lowSpeedLimit=1000", "-c", "http.lowSpeedTime=60",
		"-c", "credential.helper=", "-c", "core.askPass=true",
		"fetch", "--quiet", "--prune", "--atomic", "--no-write-fetch-head", "--update-head-ok", "--no-tags",
		u.String(), "+refs/*:refs/*")
	if err != nil {
		return fmt.Errorf("fetch: %s", redact(err.Error(), token))
	}
	return nil
}

// redact removes a token from a message.
func redact(s, token string) string {
	if token == "" {
		return s
	}
	return strings.ReplaceAll(s, token, "GL-Geo <redacted>")
}

// setHead points HEAD at head (a ref) as the primary's does.
func setHead(ctx context.Context, gitBin, path, head string) error {
	if !strings.HasPrefix(head, "refs/") || strings.ContainsAny(head, " \t\n\x00") {
		return nil // detached on the primary: leave ours
	}
	cur, err := runGit(ctx, gitBin, path, nil, 4<<10, "symbolic-ref", "--quiet", "HEAD")
	if err == nil && strings.TrimSpace(string(cur)) == head {
		return nil
	}
	if _, err := runGit(ctx, gitBin, path, []string{gitgate.EnvReplication + "=1"}, 4<<10, "symbolic-ref", "HEAD", head); err != nil {
		return fmt.Errorf("set HEAD: %w", err)
	}
	return nil
}

// reconcileLoop compares every repository now, every interval, and when
// the change log says events were lost.
func (r *Replicator) reconcileLoop(ctx context.Context) {
	tick := time.NewTicker(r.opts.ReconcileInterval)
	defer tick.Stop()
	failures := 0
	for {
		err := r.reconcile(ctx)
		if ctx.Err() != nil {
			return
		}
		var retry <-chan time.Time
		if err != nil {
			failures++
			d := r.f.backoff(failures)
			if failures == 1 || failures%20 == 0 {
				r.log.Warn("Geo reconcile failed; retrying", "retry_in", d.Round(time.Millisecond), "err", err)
			}
			retry = time.After(d)
		} else {
			failures = 0
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-r.reconcileNow:
		case <-retry:
		}
	}
}

// reconcile compares every repository's refs with the primary's listing,
// queues those that differ, handles those gone from the primary, syncs the
// access data and empties the trash of what is past retention.
func (r *Replicator) reconcile(ctx context.Context) error {
	var l RepoListing
	if err := r.getJSON(ctx, RepositoriesPath, nil, gitTimeout, maxListingBody, &l); err != nil {
		return err
	}
	local, err := r.opts.Resolver.List(ctx)
	if err != nil {
		return err
	}
	localPath := map[string]string{}
	for _, repo := range local {
		localPath[repo.Name] = repo.Path
	}
	// Local checksums, a few at a time.
	type result struct {
		st  RefState
		err error
	}
	results := make([]result, len(l.Repositories))
	sem := make(chan struct{}, checksumParallel)
	var wg sync.WaitGroup
	for i, e := range l.Repositories {
		p, ok := localPath[e.Name]
		if !ok {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			results[i].st, results[i].err = Checksum(ctx, r.opts.Git, p)
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	now := r.now()
	onPrimary := map[string]bool{}
	var toTrash []string
	r.mu.Lock()
	for i, e := range l.Repositories {
		if !canonical(e.Name) {
			continue
		}
		onPrimary[e.Name] = true
		rs := r.repos[e.Name]
		if rs == nil {
			rs = &repoState{state: StatePending}
			r.repos[e.Name] = rs
		}
		rs.missing = time.Time{}
		_, have := localPath[e.Name]
		if have && results[i].err == nil && results[i].st == e.State {
			if !rs.running && rs.state != StateSynced && (r.opts.LFS == nil || rs.state != StateFailed) {
				rs.state, rs.since, rs.attempts, rs.lastErr = StateSynced, time.Time{}, 0, ""
			}
			rs.want = e.State
			if r.opts.LFS != nil && !(rs.state == StateFailed && now.Before(rs.next)) {
				r.queueLocked(e.Name, rs) // its LFS objects are checked too
			}
			continue
		}
		if have && rs.state == StateSynced && results[i].err == nil {
			r.log.Warn("repository differs from the Geo primary: repairing it", "repo", e.Name,
				"have", fmt.Sprintf("%.12s", results[i].st.Checksum), "primary", fmt.Sprintf("%.12s", e.State.Checksum))
		}
		rs.want = e.State
		if rs.state == StateSynced {
			rs.state = StatePending
		}
		if rs.since.IsZero() {
			rs.since = now
		}
		if rs.state == StateFailed && now.Before(rs.next) {
			continue // its retry timer queues it
		}
		r.queueLocked(e.Name, rs)
	}
	for name, rs := range r.repos {
		if onPrimary[name] {
			continue
		}
		if _, have := localPath[name]; !have {
			delete(r.repos, name)
			continue
		}
		if rs.missing.IsZero() {
			rs.missing = now
		}
		if now.Sub(rs.missing) >= r.opts.DeleteDelay && !rs.running {
			toTrash = append(toTrash, name)
		}
	}
	for name := range localPath {
		if !onPrimary[name] && r.repos[name] == nil {
			r.repos[name] = &repoState{state: StateSynced, missing: now}
		}
	}
	r.reconciled = now
	r.mu.Unlock()

	for _, name := range toTrash {
		if err := r.trash(name, localPath[name]); err != nil {
			r.log.Error("cannot move a repository removed on the primary to the trash", "repo", name, "err", err)
			continue
		}
		r.mu.Lock()
		delete(r.repos, name)
		r.mu.Unlock()
	}
	r.scheduleDeletion(ctx)
	if l.Access != "" && l.Access != r.accessVersion() {
		r.syncAccess(ctx)
	}
	r.emptyTrash()
	r.sweepLFS(ctx)
	poke(r.reportNow)
	return nil
}

// scheduleDeletion asks for a reconcile when the next missing repository's
// delay runs out, so that deletion does not wait for the interval.
func (r *Replicator) scheduleDeletion(ctx context.Context) {
	r.mu.Lock()
	var first time.Time
	for _, rs := range r.repos {
		if !rs.missing.IsZero() && (first.IsZero() || rs.missing.Before(first)) {
			first = rs.missing
		}
	}
	r.mu.Unlock()
	if first.IsZero() {
		return
	}
	d := first.Add(r.opts.DeleteDelay).Sub(r.now())
	if d < r.opts.ReconcileInterval {
		time.AfterFunc(max(d, 0)+10*time.Millisecond, func() {
			if ctx.Err() == nil {
				poke(r.reconcileNow)
			}
		})
	}
}

// trash moves a repository's copy to <data dir>/geo-trash/<name>.<unix>.git.
func (r *Replicator) trash(name, path string) error {
	dir := filepath.Join(r.opts.DataDir, TrashDirName)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	dest := filepath.Join(dir, strings.ReplaceAll(name, "/", "~")+"."+strconv.FormatInt(r.now().Unix(), 10)+".git")
	if err := os.Rename(path, dest); err != nil {
		return err
	}
	r.log.Warn("repository removed on the Geo primary: copy moved to the trash", "repo", name, "trash", dest,
		"retention", r.opts.TrashRetention)
	return nil
}

// emptyTrash removes trashed repositories older than the retention.
func (r *Replicator) emptyTrash() {
	dir := filepath.Join(r.opts.DataDir, TrashDirName)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		base := strings.TrimSuffix(e.Name(), ".git")
		i := strings.LastIndexByte(base, '.')
		if i < 0 {
			continue
		}
		ts, err := strconv.ParseInt(base[i+1:], 10, 64)
		if err != nil || r.now().Sub(time.Unix(ts, 0)) < r.opts.TrashRetention {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			r.log.Warn("cannot empty the Geo trash", "entry", e.Name(), "err", err)
		} else {
			r.log.Info("trashed repository removed after its retention", "entry", e.Name())
		}
	}
}

func (r *Replicator) accessVersion() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.accessVer
}

// syncAccess copies the primary's access data.
func (r *Replicator) syncAccess(ctx context.Context) {
	if r.opts.Access == nil {
		return
	}
	req, err := r.request(ctx, AccessPath, nil)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, gitTimeout)
	defer cancel()
	resp, err := r.f.client.Do(req.WithContext(ctx))
	if err != nil {
		r.log.Warn("cannot fetch the access data from the Geo primary", "err", err)
		return
	}
	defer resp.Body.Close()
	data, err := readAllLimit(resp.Body, maxListingBody)
	if err != nil || resp.StatusCode != http.StatusOK {
		r.log.Warn("cannot fetch the access data from the Geo primary", "status", resp.Status, "err", err)
		return
	}
	v := AccessVersion(data)
	if hv := resp.Header.Get(AccessVersionHeader); hv != v {
		r.log.Warn("the access data from the Geo primary does not match its version; ignored")
		return
	}
	if err := r.opts.Access.Import(ctx, data); err != nil {
		r.log.Error("cannot store the access data from the Geo primary", "err", err)
		return
	}
	r.mu.Lock()
	r.accessVer = v
	r.mu.Unlock()
	r.log.Info("access data replicated from the Geo primary", "version", v[:12])
}

// request builds a GET of the primary's path with a status token.
func (r *Replicator) request(ctx context.Context, path string, q url.Values) (*http.Request, error) {
	u := r.f.endpoint(path)
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	if err := r.f.authorize(req, Claims{Scope: ScopeStatus}); err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	return req, nil
}

// getJSON GETs a path of the primary within timeout and decodes its JSON.
func (r *Replicator) getJSON(ctx context.Context, path string, q url.Values, timeout time.Duration, limit int64, v any) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := r.request(ctx, path, q)
	if err != nil {
		return err
	}
	resp, err := r.f.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := readAllLimit(resp.Body, limit)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %w: %s", path, errPrimaryStatus, jsonMessage(body, resp.Status))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// Status returns this site's replication status now.
func (r *Replicator) Status() ReplicationStatus {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	s := ReplicationStatus{LastContact: r.lastContact, AccessVersion: r.accessVer, Reconciled: r.reconciled,
		Epoch: r.epoch, Seq: r.seq}
	names := make([]string, 0, len(r.repos))
	for name := range r.repos {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		rs := r.repos[name]
		s.LFS.Synced += rs.lfs.Synced
		s.LFS.Pending += rs.lfs.Pending
		s.LFS.Failed += rs.lfs.Failed
		switch rs.state {
		case StateSynced:
			s.Synced++
		case StateFailed:
			s.Failed++
			if len(s.Errors) < 20 {
				s.Errors = append(s.Errors, RepoError{Repo: name, Error: rs.lastErr})
			}
		default:
			s.Pending++
		}
		if rs.state != StateSynced && !rs.since.IsZero() && (s.OldestUnsynced.IsZero() || rs.since.Before(s.OldestUnsynced)) {
			s.OldestUnsynced = rs.since
		}
	}
	if !s.OldestUnsynced.IsZero() {
		s.LagSeconds = max(now.Sub(s.OldestUnsynced).Seconds(), 0)
	}
	if s.Pending == 0 && s.Failed == 0 {
		entries := make([]RepoEntry, 0, len(names))
		for _, name := range names {
			entries = append(entries, RepoEntry{Name: name, State: r.repos[name].want})
		}
		s.Verified = VerifiedDigest(entries)
	}
	return s
}

// reportLoop sends the status to the primary when it changes (at most
// every 200 ms) and every few seconds.
func (r *Replicator) reportLoop(ctx context.Context) {
	tick := time.NewTicker(statusFileInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-r.reportNow:
		}
		r.report(ctx)
		select { // the status file shows it too
		case r.f.statusChanged <- struct{}{}:
		default:
		}
		if !sleep(ctx, 200*time.Millisecond) {
			return
		}
	}
}

func (r *Replicator) report(ctx context.Context) {
	st := r.Status()
	if cfg, err := LoadConfig(r.opts.DataDir); err == nil {
		for _, s := range cfg.Secondaries {
			st.GeoNodes = append(st.GeoNodes, s.Name)
		}
	}
	body, err := json.Marshal(st)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.f.endpoint(ReportPath).String(), bytes.NewReader(body))
	if err != nil {
		return
	}
	if err := r.f.authorize(req, Claims{Scope: ScopeStatus}); err != nil {
		return
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := r.f.client.Do(req)
	if err != nil {
		return
	}
	resp.Body.Close()
}
