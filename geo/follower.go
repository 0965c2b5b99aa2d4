package geo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/gitgate/gitgate/gitgate"
)

// SecondaryStatusFileName is the secondary's view of the primary, for
// "gitgate maintenance status" (see ReadFollowerStatus).
const SecondaryStatusFileName = "geo-secondary-status.json"

// Defaults of SecondaryOptions.
const (
	// DefaultMinBackoff is the first wait before retrying the primary.
	DefaultMinBackoff = 100 * time.Millisecond
	// DefaultMaxBackoff is the longest wait between retries.
	DefaultMaxBackoff = 10 * time.Second
)

// pollMargin is added to the poll wait for the request's own deadline: a
// primary that does not answer by then is taken to be gone.
const pollMargin = 15 * time.Second

// maxStatusBody bounds a status answer read from the primary.
const maxStatusBody = 64 << 10

// Errors a status poll can end with (wrapped; see FollowerStatus.LastError).
var (
	errPrimaryRefused     = errors.New("the primary refused this site's token")
	errPrimaryUnavailable = errors.New("the primary is unavailable")
	errPrimaryStatus      = errors.New("unexpected answer from the primary")
)

// FollowerStatus is a secondary's view of the primary.
type FollowerStatus struct {
	// Node is this site's node name.
	Node string
	// Primary is the primary's URL.
	Primary string
	// Running is true while the follower runs (false in a status file left
	// by a server that has stopped).
	Running bool
	// Connected is true while the last status poll succeeded: the state
	// then follows the primary's within milliseconds.
	Connected bool
	// LastContact is when the primary last answered a status poll.
	LastContact time.Time
	// Version is the primary's state version this site last mirrored.
	Version uint64
	// Stale is zero while connected; otherwise how long the state may have
	// been out of date: the time since LastContact.
	Stale time.Duration
	// LastError says why the last poll failed, for admins.
	LastError string
	// Replication is this site's replication of the primary's
	// repositories and access data; nil when it does not replicate.
	Replication *ReplicationStatus
	// Elected is, on a site of several gates sharing a database, the
	// gate elected to follow the primary (empty otherwise).
	Elected string
}

// followerJSON is the JSON form of FollowerStatus.
type followerJSON struct {
	Role         string    `json:"role"`
	Node         string    `json:"node"`
	Primary      string    `json:"primary_url"`
	Running      bool      `json:"running"`
	Connected    bool      `json:"connected"`
	LastContact  time.Time `json:"last_contact,omitzero"`
	Version      uint64    `json:"version"`
	StaleSeconds float64   `json:"stale_seconds"`
	LastError    string    `json:"last_error,omitempty"`
	// Replication is the replication status.
	Replication *ReplicationStatus `json:"replication,omitempty"`
	Elected     string             `json:"elected_gate,omitempty"`
	// Written is set in the status file only.
	Written time.Time `json:"written,omitzero"`
}

// MarshalJSON writes the status with snake_case keys, role "secondary" and
// the staleness in seconds.
func (s FollowerStatus) MarshalJSON() ([]byte, error) { return json.Marshal(s.toJSON()) }

func (s FollowerStatus) toJSON() followerJSON {
	return followerJSON{
		Role: "secondary", Node: s.Node, Primary: s.Primary, Running: s.Running, Connected: s.Connected,
		LastContact: s.LastContact, Version: s.Version, StaleSeconds: s.Stale.Seconds(), LastError: s.LastError,
		Replication: s.Replication, Elected: s.Elected,
	}
}

// Follower is the secondary site's side of Geo. Run keeps this site's
// maintenance state equal to the primary's; the Proxy methods forward
// pushes to the primary.
type Follower struct {
	node    string
	secret  []byte
	primary *url.URL
	opts    SecondaryOptions
	mirror  StateMirror
	live    *gitgate.LiveState
	log     *slog.Logger
	client  *http.Client
	dataDir string
	now     func() time.Time

	// monotonic: the mirror is shared by several gates (a database), and
	// only the primary's own word (Reset) steps its version back.
	monotonic bool
	// site answers Status while this gate's follower does not run (see
	// NewSiteFollower).
	site func() (FollowerStatus, bool)

	// OnRoleChange, when set, is called once a planned failover has
	// switched this site's role (it was promoted and the old primary took
	// the new term, or it was told to follow a new primary); Run returns
	// then, and the gate restarts its Geo part in the role the role file
	// now holds. Set it before Run.
	OnRoleChange func()

	termMu sync.Mutex
	term   *Term // the highest failover term seen; nil before the first

	mu sync.Mutex
	st followerState
	// replica is the site's replication, when it runs (NewReplicator).
	replica *Replicator
	// statusChanged asks the status file writer to write now (the
	// connection came or went).
	statusChanged chan struct{}
}

type followerState struct {
	running     bool
	connected   bool
	lastContact time.Time
	version     uint64
	lastError   string
	since       time.Time // when the follower was made: staleness before any contact
}

// NewFollower returns the secondary side for the site whose state is kept
// in store and served from live (live must be over the same store). It
// validates opts and reads the secret file.
func NewFollower(opts SecondaryOptions, store *gitgate.FileStore, live *gitgate.LiveState, log *slog.Logger) (*Follower, error) {
	return newFollower(opts, store, filepath.Dir(store.Path()), live, log)
}

// StateMirror is where a follower writes the primary's state: Mirror
// writes st unless the stored version is not older (and force is not
// set), and reports whether it wrote (gitgate.FileStore, or a database).
type StateMirror interface {
	Mirror(ctx context.Context, st gitgate.State, force bool) (bool, error)
}

// NewSiteFollower returns the follower of one gate of a secondary site
// whose gates share their state in a database, and elect one of them to
// follow the primary (Run runs on that gate only). mirror is the elected
// gate's way to write the shared state; it is never stepped back to an
// older version unless the primary says its own went back (Reset). The
// follower's files (its status, the failover term) are in dataDir, the
// gate's own. While this gate's follower does not run, Status answers
// site's status when site says ok (the elected gate's, from the
// database), so that every gate of the site reports the site's follower.
func NewSiteFollower(opts SecondaryOptions, mirror StateMirror, dataDir string, live *gitgate.LiveState,
	site func() (FollowerStatus, bool), log *slog.Logger) (*Follower, error) {
	f, err := newFollower(opts, mirror, dataDir, live, log)
	if err != nil {
		return nil, err
	}
	f.monotonic, f.site = true, site
	return f, nil
}

func newFollower(opts SecondaryOptions, mirror StateMirror, dataDir string, live *gitgate.LiveState, log *slog.Logger) (*Follower, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	secret, err := ReadSecret(opts.SecretFile)
	if err != nil {
		return nil, err
	}
	primary, _ := parsePrimaryURL(opts.PrimaryURL) // checked by Validate
	if opts.PollWait == 0 {
		opts.PollWait = DefaultPollWait
	}
	if opts.MinBackoff == 0 {
		opts.MinBackoff = DefaultMinBackoff
	}
	if opts.MaxBackoff == 0 {
		opts.MaxBackoff = max(DefaultMaxBackoff, opts.MinBackoff)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &Follower{
		node: opts.NodeName, secret: secret, primary: primary, opts: opts,
		mirror: mirror, live: live, client: newClient(), statusChanged: make(chan struct{}, 1),
		log:     log.With("geo_role", "secondary", "node", opts.NodeName, "primary", primary.String()),
		dataDir: dataDir,
		now:     time.Now,
	}
	rec, ok, err := ReadRole(f.dataDir)
	switch {
	case err != nil:
		return nil, err
	case ok && rec.Role == RolePrimary:
		return nil, fmt.Errorf("this site was promoted to Geo primary in %s: start it with --geo-role primary", rec.Term)
	case ok:
		f.term = &rec.Term
	}
	f.st = followerState{since: f.now(), version: live.Current().State.Version}
	// Staleness survives a restart: start from the last contact recorded.
	if prev, ok, err := ReadFollowerStatus(f.dataDir, f.now()); err == nil && ok &&
		prev.Node == f.node && prev.Primary == primary.String() {
		f.st.lastContact = prev.LastContact
	}
	return f, nil
}

// newClient is the one HTTP client of a secondary: connection and TLS
// timeouts, no overall timeout (long-polls and pushes set their own through
// their contexts), no transparent compression (bodies are relayed as they
// are), and redirects not followed.
func newClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 15 * time.Second}).DialContext,
			ForceAttemptHTTP2:     true,
			TLSHandshakeTimeout:   10 * time.Second,
			ExpectContinueTimeout: time.Second,
			MaxIdleConnsPerHost:   16,
			IdleConnTimeout:       90 * time.Second,
			DisableCompression:    true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Primary returns the primary's URL.
func (f *Follower) Primary() string { return f.primary.String() }

// Run follows the primary until ctx ends: it holds a status long-poll open
// on the primary, resuming from the last version seen, and mirrors every
// new state into this site's store and LiveState at once, so that pushes
// are refused the moment the primary enters maintenance. While the primary
// is unreachable the last state is kept, and polls are retried with
// exponential backoff and full jitter. It also keeps the status file in the
// data dir current. Run returns when ctx is done and leaves nothing running;
// it must not be called twice at the same time.
func (f *Follower) Run(ctx context.Context) {
	f.update(func(s *followerState) { s.running = true })
	stopWriter := make(chan struct{})
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		f.writeStatusFileLoop(stopWriter)
	}()
	defer func() {
		f.update(func(s *followerState) { s.running, s.connected = false, false })
		close(stopWriter)
		<-writerDone
		f.client.CloseIdleConnections()
	}()

	f.log.Info("following the Geo primary", "version", f.Status().Version)
	resync := true // the first poll asks for the state at once, and replaces ours
	failures := 0
	var lastLogged string
	var lastLogTime time.Time
	for ctx.Err() == nil {
		start := f.now()
		before := f.Status().Version
		f.reloadPromotion()
		resp, err := f.pollUntilPromoted(ctx, resync)
		if errors.Is(err, errPromoted) {
			continue // present the new term at once
		}
		if err == nil && f.handover(resp) {
			return
		}
		if err == nil {
			err = f.checkTerm(resp)
		}
		if err == nil {
			err = f.apply(ctx, resp, resync)
		}
		if err == nil {
			// Recorded before the stop check: a state this site has
			// mirrored is in its status, even when the stop came next.
			version := resp.State.Version
			if v := f.live.Current().State.Version; f.monotonic && v > version {
				// The shared state is newer than the primary's: the next
				// poll says so, and the primary answers Reset at once if
				// its version went back.
				version = v
			}
			f.update(func(s *followerState) {
				s.connected, s.lastError = true, ""
				s.lastContact, s.version = f.now(), version
			})
		}
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			failures++
			f.update(func(s *followerState) { s.connected, s.lastError = false, err.Error() })
			delay := f.backoff(failures)
			if msg := err.Error(); msg != lastLogged || f.now().Sub(lastLogTime) >= time.Minute {
				st := f.Status()
				f.log.Warn("cannot follow the Geo primary: keeping the last known maintenance state",
					"version", st.Version, "stale", st.Stale.Round(time.Millisecond), "retry_in", delay.Round(time.Millisecond),
					"failures", failures, "err", err)
				lastLogged, lastLogTime = msg, f.now()
			}
			if !sleep(ctx, delay) {
				return
			}
			continue
		}
		if failures > 0 {
			f.log.Info("Geo primary reachable again", "version", resp.State.Version, "failures", failures)
			failures, lastLogged = 0, ""
		}
		resync = false
		// A primary that answers "unchanged" at once (it should wait) must
		// not turn this loop into a busy one.
		if resp.State.Version == before && f.now().Sub(start) < f.opts.MinBackoff {
			if !sleep(ctx, f.opts.MinBackoff) {
				return
			}
		}
	}
}

// poll asks the primary for its state: at once when sync is set, otherwise
// as soon as it differs from the version this site has.
func (f *Follower) poll(ctx context.Context, sync bool) (StatusResponse, error) {
	q := url.Values{"wait": {f.opts.PollWait.String()}}
	if !sync {
		q.Set("after", strconv.FormatUint(f.Status().Version, 10))
	}
	u := f.endpoint(StatusPath)
	u.RawQuery = q.Encode()
	ctx, cancel := context.WithTimeout(ctx, f.opts.PollWait+pollMargin)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return StatusResponse{}, fmt.Errorf("status request: %w", err)
	}
	if err := f.authorize(req, Claims{Scope: ScopeStatus, Term: f.Term()}); err != nil {
		return StatusResponse{}, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := f.client.Do(req)
	if err != nil {
		return StatusResponse{}, fmt.Errorf("status poll: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxStatusBody+1))
	if err != nil {
		return StatusResponse{}, fmt.Errorf("status poll: %w", err)
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return StatusResponse{}, fmt.Errorf("%w: %s", errPrimaryRefused, jsonMessage(body, resp.Status))
	case resp.StatusCode == http.StatusServiceUnavailable:
		return StatusResponse{}, fmt.Errorf("%w: %s", errPrimaryUnavailable, jsonMessage(body, resp.Status))
	case resp.StatusCode != http.StatusOK:
		return StatusResponse{}, fmt.Errorf("%w: %s", errPrimaryStatus, resp.Status)
	case len(body) > maxStatusBody:
		return StatusResponse{}, fmt.Errorf("%w: answer larger than %d bytes", errPrimaryStatus, maxStatusBody)
	}
	return decodeStatus(body)
}

// decodeStatus parses a status answer; the state strictly.
func decodeStatus(body []byte) (StatusResponse, error) {
	var raw struct {
		State    json.RawMessage `json:"state"`
		Reset    bool            `json:"reset"`
		Term     *Term           `json:"term"`
		Node     string          `json:"node"`
		Promote  string          `json:"promote"`
		Announce string          `json:"announce"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return StatusResponse{}, fmt.Errorf("%w: %w", errPrimaryStatus, err)
	}
	if raw.State == nil {
		return StatusResponse{}, fmt.Errorf("%w: no state", errPrimaryStatus)
	}
	st, err := gitgate.DecodeState(raw.State)
	if err != nil {
		return StatusResponse{}, fmt.Errorf("%w: state: %w", errPrimaryStatus, err)
	}
	return StatusResponse{State: st, Reset: raw.Reset, Term: raw.Term, Node: raw.Node, Promote: raw.Promote, Announce: raw.Announce}, nil
}

// errNotPrimary: the site this secondary follows is not the primary of
// the highest failover term.
var errNotPrimary = errors.New("the followed site is not the Geo primary")

// Term returns the highest failover term this site has seen (nil before
// the first answer of a primary that tells one).
func (f *Follower) Term() *Term {
	f.termMu.Lock()
	defer f.termMu.Unlock()
	if f.term == nil {
		return nil
	}
	t := *f.term
	return &t
}

// promotionCheck is how often a held status poll checks the role file for
// a promotion of this site.
const promotionCheck = 200 * time.Millisecond

// errPromoted ends a held poll: this site was promoted meanwhile.
var errPromoted = errors.New("this site was promoted")

// pollUntilPromoted is poll, cut short when the role file says this site
// was promoted to a newer term than it presents, so that the old primary
// hears of the promotion within promotionCheck rather than at the end of a
// long-poll.
func (f *Follower) pollUntilPromoted(ctx context.Context, sync bool) (StatusResponse, error) {
	pctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	done := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		t := time.NewTicker(promotionCheck)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if f.promotionPending() {
					cancel(errPromoted)
					return
				}
			}
		}
	}()
	resp, err := f.poll(pctx, sync)
	close(done)
	<-watched
	if err != nil && ctx.Err() == nil && errors.Is(context.Cause(pctx), errPromoted) {
		return resp, errPromoted
	}
	return resp, err
}

// promotionPending reports whether the role file holds a promotion of this
// site to a term newer than the one it presents.
func (f *Follower) promotionPending() bool {
	rec, ok, err := ReadRole(f.dataDir)
	if err != nil || !ok || rec.Role != RolePrimary {
		return false
	}
	t := f.Term()
	return t == nil || rec.Epoch > t.Epoch
}

// reloadPromotion picks up a promotion of this site ("gitgate geo
// promote" writes the role file): from then on every poll presents the new
// term, so the site it still follows demotes itself at its next contact.
func (f *Follower) reloadPromotion() {
	rec, ok, err := ReadRole(f.dataDir)
	if err != nil || !ok || rec.Role != RolePrimary {
		return
	}
	f.termMu.Lock()
	defer f.termMu.Unlock()
	if f.term == nil || rec.Epoch > f.term.Epoch {
		f.log.Warn("Geo: this site was promoted; presenting the new term to the old primary", "term", rec.Term.String())
		t := rec.Term
		f.term = &t
	}
}

// checkTerm takes the term of a status answer: a higher one is persisted
// before anything else; an answer from a site that is not the primary of
// the highest term known is refused, so its state is not mirrored.
func (f *Follower) checkTerm(resp StatusResponse) error {
	if resp.Term == nil {
		return nil // a primary without failover terms
	}
	t := *resp.Term
	if err := t.Validate(); err != nil {
		return fmt.Errorf("%w: %w", errPrimaryStatus, err)
	}
	f.termMu.Lock()
	defer f.termMu.Unlock()
	switch {
	case f.term == nil || t.Epoch > f.term.Epoch:
		rec := RoleRecord{Term: t, Role: RoleSecondary, Node: f.node, Reason: "learnt from the followed site"}
		if err := WriteRole(f.dataDir, rec); err != nil {
			return fmt.Errorf("persist the failover term: %w", err)
		}
		if f.term != nil {
			f.log.Warn("Geo: a newer failover term", "old_term", f.term.String(), "new_term", t.String())
		}
		f.term = &t
	case t.Epoch < f.term.Epoch:
		return fmt.Errorf("%w: it is at %s, this site knows %s", errNotPrimary, t, f.term)
	case t.Primary != f.term.Primary:
		return fmt.Errorf("%w: it claims %s, this site knows %s", errNotPrimary, t, f.term)
	}
	if t.Primary != resp.Node {
		return fmt.Errorf("%w: it says the primary is %s; repoint this site (--geo-primary-url)", errNotPrimary, t)
	}
	return nil
}

// jsonMessage returns the "message" of a JSON error body, or fallback.
func jsonMessage(body []byte, fallback string) string {
	var m struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &m) == nil && m.Message != "" {
		return m.Message
	}
	return fallback
}

// apply mirrors the primary's state into this site's store, and makes the
// LiveState see it before returning.
func (f *Follower) apply(ctx context.Context, resp StatusResponse, force bool) error {
	force = force && !f.monotonic || resp.Reset
	wrote, err := f.mirror.Mirror(ctx, resp.State, force)
	if err != nil {
		return fmt.Errorf("mirror the primary's state: %w", err)
	}
	if !wrote {
		return nil
	}
	f.live.Reload()
	st := resp.State
	if snap := f.live.Current(); snap.Err != nil {
		return fmt.Errorf("mirrored state unreadable: %w", snap.Err)
	}
	f.log.Info("maintenance state mirrored from the Geo primary", "version", st.Version, "enabled", st.Enabled,
		"by", st.By, "reset", resp.Reset)
	return nil
}

// backoff is the wait before retry n (from 1): full jitter between
// MinBackoff and an exponentially growing ceiling capped at MaxBackoff.
func (f *Follower) backoff(n int) time.Duration {
	lo, hi := f.opts.MinBackoff, f.opts.MaxBackoff
	ceil := hi
	if n-1 < 30 {
		if c := lo << (n - 1); c > 0 && c < hi {
			ceil = c
		}
	}
	if ceil <= lo {
		return lo
	}
	return lo + rand.N(ceil-lo+1)
}

// sleep waits for d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// authorize signs a token for this site with c and sets it on req.
func (f *Follower) authorize(req *http.Request, c Claims) error {
	h, err := Sign(f.secret, f.node, c, TokenTTL)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", h)
	req.Header.Set("User-Agent", "gitgate-geo/"+f.node)
	return nil
}

// endpoint returns the primary's URL for path (which starts with '/').
func (f *Follower) endpoint(path string) *url.URL {
	u := *f.primary
	u.Path = f.primary.Path + path
	u.RawPath = ""
	return &u
}

// update changes the status; a change of connection or error is written
// to the status file at once.
func (f *Follower) update(change func(*followerState)) {
	f.mu.Lock()
	before := f.st
	change(&f.st)
	after := f.st
	f.mu.Unlock()
	if before.connected != after.connected || before.lastError != after.lastError || before.running != after.running {
		select {
		case f.statusChanged <- struct{}{}:
		default:
		}
	}
}

// Status returns this site's view of the primary now.
func (f *Follower) Status() FollowerStatus {
	now := f.now()
	f.mu.Lock()
	st, replica := f.st, f.replica
	f.mu.Unlock()
	if !st.running && f.site != nil {
		if s, ok := f.site(); ok {
			return s
		}
	}
	s := FollowerStatus{
		Node: f.node, Primary: f.primary.String(), Running: st.running, Connected: st.connected,
		LastContact: st.lastContact, Version: st.version, LastError: st.lastError,
	}
	if replica != nil {
		rs := replica.Status()
		s.Replication = &rs
	}
	if !s.Connected {
		from := st.lastContact
		if from.IsZero() {
			from = st.since
		}
		s.Stale = max(now.Sub(from), 0)
	}
	return s
}

// SelfHandler serves GET NodesPath on a secondary: its Status as JSON.
func (f *Follower) SelfHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeJSONMessage(w, http.StatusMethodNotAllowed, "405 Method Not Allowed")
			return
		}
		writeJSON(w, http.StatusOK, f.Status())
	})
}

// writeStatusFileLoop writes the status file every few seconds, when the
// connection comes or goes, and once more when stop is closed.
func (f *Follower) writeStatusFileLoop(stop <-chan struct{}) {
	path := filepath.Join(f.dataDir, SecondaryStatusFileName)
	tick := time.NewTicker(statusFileInterval)
	defer tick.Stop()
	for {
		v := f.Status().toJSON()
		v.Written = f.now().UTC()
		if err := writeStatusFile(path, v); err != nil {
			f.log.Warn("cannot write the Geo status file", "file", path, "err", err)
		}
		select {
		case <-stop:
			v := f.Status().toJSON()
			v.Written = f.now().UTC()
			writeStatusFile(path, v)
			return
		case <-tick.C:
		case <-f.statusChanged:
		}
	}
}

// KeepStatusFile writes the status file every interval (0: every few
// seconds) until ctx ends, whenever this gate's follower does not run (Run
// writes it then): on a
// gate of a database site that is not elected, the site's status (see
// NewSiteFollower), so that "gitgate maintenance status" there tells the
// site's truth.
func (f *Follower) KeepStatusFile(ctx context.Context, interval time.Duration) {
	if interval <= 0 || interval > statusFileInterval {
		interval = statusFileInterval
	}
	path := filepath.Join(f.dataDir, SecondaryStatusFileName)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		f.mu.Lock()
		running := f.st.running
		f.mu.Unlock()
		if !running {
			v := f.Status().toJSON()
			v.Written = f.now().UTC()
			if err := writeStatusFile(path, v); err != nil {
				f.log.Warn("cannot write the Geo status file", "file", path, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// ReadFollowerStatus reads a secondary's status file as of now, for the CLI;
// ok is false when there is none. When the file is older than a running
// server leaves it, Running and Connected are false and Stale counts from
// the last contact.
func ReadFollowerStatus(dataDir string, now time.Time) (s FollowerStatus, ok bool, err error) {
	var v followerJSON
	ok, err = readStatusFile(filepath.Join(dataDir, SecondaryStatusFileName), &v)
	if !ok || err != nil {
		return FollowerStatus{}, ok, err
	}
	fresh := now.Sub(v.Written) < 3*statusFileInterval
	s = FollowerStatus{
		Node: v.Node, Primary: v.Primary, Running: v.Running && fresh, Connected: v.Connected && fresh,
		LastContact: v.LastContact, Version: v.Version, LastError: v.LastError, Replication: v.Replication,
		Elected: v.Elected,
	}
	if !s.Connected {
		from := v.LastContact
		if from.IsZero() {
			from = v.Written
		}
		s.Stale = max(now.Sub(from), 0)
	}
	if !s.Running && s.LastError == "" {
		s.LastError = "the server of this site is not running"
	}
	return s, true, nil
}

// setReplica records the site's replication (NewReplicator).
func (f *Follower) setReplica(r *Replicator) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.replica = r
}
