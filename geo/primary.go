package geo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/internal/atomicfile"
)

// API paths served by the sites.
const (
	// StatusPath is the primary's status long-poll (scope "status").
	StatusPath = "/api/v4/geo/status"
	// NodesPath lists the secondaries on the primary (admin only), or shows
	// this site's view of the primary on a secondary.
	NodesPath = "/api/v4/geo/nodes"
)

// Long-poll timing.
const (
	// DefaultPollWait is how long the primary holds a status poll open when
	// nothing changes.
	DefaultPollWait = 25 * time.Second
	// MaxPollWait is the longest wait a secondary may ask for.
	MaxPollWait = 2 * time.Minute
	// connectedGrace is how long after its last answer a secondary still
	// counts as connected (the moment between two polls).
	connectedGrace = 5 * time.Second
)

// statusFileInterval is how often each side writes its status file.
const statusFileInterval = 5 * time.Second

// PrimaryStatusFileName is the primary's view of its secondaries, for
// "gitgate geo status" (see ReadPrimaryStatus).
const PrimaryStatusFileName = "geo-primary-status.json"

// StatusResponse is the answer of the status long-poll.
type StatusResponse struct {
	// State is the primary's maintenance state.
	State gitgate.State `json:"state"`
	// Reset is set when the primary's version is lower than the one the
	// secondary said it had: the primary's state was replaced by a lower
	// version (by hand; FileStore.Reset keeps versions growing), and the
	// secondary must replace its copy (FileStore.Mirror with force).
	Reset bool `json:"reset,omitempty"`
	// Term is the highest failover term the answering site knows, and
	// Node its own node name: a secondary whose answer names another
	// primary than the site it follows stops following it.
	Term *Term  `json:"term,omitempty"`
	Node string `json:"node,omitempty"`
	// Promote orders the secondary's promotion in a planned failover, and
	// Announce tells it the new primary after one: GL-Geo tokens signed
	// with the secret this site shares with the secondary (ScopePromote,
	// ScopeAnnounce).
	Promote  string `json:"promote,omitempty"`
	Announce string `json:"announce,omitempty"`
}

// NodeStatus is what the primary knows about one secondary.
type NodeStatus struct {
	// Name is the secondary's node name.
	Name string `json:"name"`
	// Connected is true while the secondary holds a status poll open (or
	// answered one in the last few seconds).
	Connected bool `json:"connected"`
	// LastContact is the secondary's last status request or answer; zero if
	// it never called.
	LastContact time.Time `json:"last_contact,omitzero"`
	// VersionSeen is the state version the secondary last said it had.
	VersionSeen uint64 `json:"version_seen"`
	// PrimaryVersion is the primary's state version.
	PrimaryVersion uint64 `json:"primary_version"`
	// Lag is how many versions the secondary is behind.
	Lag uint64 `json:"lag"`
	// Replication is what the secondary last reported of its replication
	// (nil before its first report).
	Replication *ReplicationStatus `json:"replication,omitempty"`
	// Gate, on a site of several gates sharing a database, is the gate
	// that heard the last contact (see Primary.ShareSite).
	Gate string `json:"gate,omitempty"`
}

// SiteContact is the newest contact a gate of a primary site heard from
// one secondary: a row of the site's shared registry (pgstore's
// geo_nodes), or what this gate records there (Primary.Contacts).
type SiteContact struct {
	Name        string
	LastContact time.Time
	// Gate is the gate that heard it.
	Gate        string
	VersionSeen uint64
	// Replication is the secondary's last report (nil: none yet).
	Replication *ReplicationStatus
}

// Primary serves the primary site's side of Geo: the status long-poll that
// secondaries follow, and the list of secondaries.
type Primary struct {
	live     *gitgate.LiveState
	verifier *Verifier
	log      *slog.Logger
	now      func() time.Time

	closing   chan struct{} // closed by Shutdown
	closeOnce sync.Once

	guard *Guard // nil: no failover term checks

	mu    sync.Mutex
	nodes map[string]*nodeRecord
	feed  *Feed // the change log, once EventsHandler serves it
	// handover is a planned failover's promotion in progress (nil: none);
	// kick is closed to answer held polls at once.
	handover  *handover
	kick      chan struct{}
	announced func(node string, t Term) // OnAnnounced

	// gate, site and siteGrace: the site's shared registry (ShareSite).
	gate      string
	site      map[string]SiteContact
	siteGrace time.Duration
}

type nodeRecord struct {
	lastContact time.Time
	seen        uint64
	openPolls   int
	report      *ReplicationStatus
}

// NewPrimary returns the primary side for the state in live, accepting the
// secondaries verifier knows.
func NewPrimary(live *gitgate.LiveState, verifier *Verifier, log *slog.Logger) *Primary {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Primary{
		live: live, verifier: verifier, log: log.With("geo_role", "primary"), now: time.Now,
		nodes: map[string]*nodeRecord{}, closing: make(chan struct{}),
	}
}

// SetGuard makes the primary check the failover term every secondary
// presents on the status poll (Guard.Observe) and tell its own in every
// answer. Call it before serving.
func (p *Primary) SetGuard(g *Guard) { p.guard = g }

// Shutdown makes every open status poll, and every later one, answer 503
// at once: a server that is shutting down then need not wait for the
// long-polls, and the secondaries retry (with backoff) until the primary
// is back. Call it when the server begins to shut down; calling it again
// does nothing.
func (p *Primary) Shutdown() { p.closeOnce.Do(func() { close(p.closing) }) }

// shuttingDown answers a poll on a primary that is shutting down.
func shuttingDown(w http.ResponseWriter) {
	w.Header().Set("Retry-After", "5")
	writeJSONMessage(w, http.StatusServiceUnavailable, "503 Service Unavailable: the primary is shutting down")
}

// StatusHandler serves GET StatusPath?after=<version>&wait=<duration>.
//
// Without after, or when the state's version differs from after, it
// answers at once with the state (Reset set if the version is lower than
// after). Otherwise it waits for the next change, up to wait (default
// DefaultPollWait, at most MaxPollWait; a number is seconds, or a Go
// duration such as "25s"), and then answers with the state, changed or not.
// A state the primary cannot read is answered with 503, never as "not in
// maintenance". Tokens need scope "status".
func (p *Primary) StatusHandler() http.Handler { return http.HandlerFunc(p.serveStatus) }

func (p *Primary) serveStatus(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeJSONMessage(w, http.StatusMethodNotAllowed, "405 Method Not Allowed")
		return
	}
	claims, err := p.verifier.VerifyRequest(r, ScopeStatus, "")
	if err != nil {
		p.log.Warn("Geo status request refused", "remote_addr", r.RemoteAddr, "err", err)
		WriteUnauthorized(w, err)
		return
	}
	node := claims.Node
	if p.guard != nil && claims.Term != nil {
		before := p.guard.Term()
		p.guard.Observe(node, *claims.Term)
		if p.guard.Term() != before {
			p.kickPolls() // the others hear of the new term at once
		}
	}
	q := r.URL.Query()
	var after uint64
	hasAfter := q.Has("after")
	if hasAfter {
		if after, err = strconv.ParseUint(q.Get("after"), 10, 64); err != nil {
			writeJSONMessage(w, http.StatusBadRequest, "400 Bad request - after is invalid")
			return
		}
	}
	wait, err := parseWait(q.Get("wait"))
	if err != nil {
		writeJSONMessage(w, http.StatusBadRequest, "400 Bad request - wait is invalid")
		return
	}

	p.pollStarted(node, after, hasAfter)
	defer p.pollEnded(node)
	timer := time.NewTimer(wait)
	defer timer.Stop()
	timedOut := false
	for {
		changed := p.live.Changed() // before Current, so no change is missed
		kicked := p.kicked()
		snap := p.live.Current()
		select {
		case <-p.closing:
			shuttingDown(w)
			return
		default:
		}
		if snap.Err != nil {
			p.log.Warn("Geo status: maintenance state unreadable; secondaries keep their last state", "node", node, "err", snap.Err)
			w.Header().Set("Retry-After", "5")
			writeJSONMessage(w, http.StatusServiceUnavailable, "503 Service Unavailable: the primary cannot read its maintenance state")
			return
		}
		v := snap.State.Version
		if !hasAfter || v != after || timedOut || p.handoverDue(node) {
			reset := hasAfter && v < after
			if reset {
				p.log.Warn("Geo secondary is ahead of the primary: state was reset on the primary", "node", node, "version", v, "secondary_version", after)
			}
			p.answer(w, node, StatusResponse{State: snap.State, Reset: reset})
			return
		}
		select {
		case <-changed:
		case <-kicked:
		case <-timer.C:
			timedOut = true // answer with the state as it is now
		case <-p.closing:
		case <-r.Context().Done():
			return
		}
	}
}

func (p *Primary) answer(w http.ResponseWriter, node string, resp StatusResponse) {
	p.touch(node)
	if p.guard != nil {
		rec := p.guard.Record()
		resp.Term, resp.Node = &rec.Term, rec.Node
		p.handoverFields(node, &resp)
	}
	writeJSON(w, http.StatusOK, resp)
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	p.log.Debug("Geo status sent", "node", node, "version", resp.State.Version, "enabled", resp.State.Enabled)
}

// parseWait reads the wait parameter: empty (default), seconds, or a Go
// duration; capped at MaxPollWait.
func parseWait(s string) (time.Duration, error) {
	if s == "" {
		return DefaultPollWait, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		n, nerr := strconv.ParseUint(s, 10, 32)
		if nerr != nil {
			return 0, fmt.Errorf("wait %q: %w", s, err)
		}
		d = time.Duration(n) * time.Second
	}
	if d < 0 {
		return 0, fmt.Errorf("wait %q: negative", s)
	}
	return min(d, MaxPollWait), nil
}

func (p *Primary) record(node string) *nodeRecord {
	n := p.nodes[node]
	if n == nil {
		n = &nodeRecord{}
		p.nodes[node] = n
	}
	return n
}

func (p *Primary) pollStarted(node string, after uint64, hasAfter bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.record(node)
	if n.lastContact.IsZero() {
		p.log.Info("Geo secondary connected", "node", node, "version", after)
	}
	n.lastContact = p.now()
	if hasAfter {
		n.seen = after
	}
	n.openPolls++
}

func (p *Primary) pollEnded(node string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.record(node).openPolls--
}

func (p *Primary) touch(node string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.record(node).lastContact = p.now()
}

// ShareSite makes this primary one gate (gateID) of a site whose gates
// share a registry of contacts: Nodes then shows, for each secondary, the
// newest contact any gate heard (SetSiteContacts), not only this gate's;
// a contact another gate heard within grace counts as connected (grace
// covers the registry's delay: the other gate's write and this gate's
// read). Call it before serving.
func (p *Primary) ShareSite(gateID string, grace time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.gate, p.siteGrace = gateID, max(grace, connectedGrace)
}

// SetSiteContacts replaces the site's registry as this gate last read it.
func (p *Primary) SetSiteContacts(contacts []SiteContact) {
	m := make(map[string]SiteContact, len(contacts))
	for _, c := range contacts {
		m[c.Name] = c
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.site = m
}

// Contacts returns this gate's own contacts, for the site's registry: a
// poll held open counts as a contact now.
func (p *Primary) Contacts() []SiteContact {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []SiteContact
	for _, name := range p.verifier.Nodes() {
		n := p.nodes[name]
		if n == nil || n.lastContact.IsZero() {
			continue
		}
		c := SiteContact{Name: name, LastContact: n.lastContact, Gate: p.gate, VersionSeen: n.seen}
		if n.openPolls > 0 {
			c.LastContact = now
		}
		if n.report != nil {
			rep := *n.report
			c.Replication = &rep
		}
		out = append(out, c)
	}
	return out
}

// Nodes returns the status of every secondary the primary knows, sorted by
// name, including those that never called. On a site of several gates
// (ShareSite) each secondary's contact, version seen and replication
// report are the newest any gate of the site heard.
func (p *Primary) Nodes() []NodeStatus {
	cur := p.live.Current().State.Version
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	names := p.verifier.Nodes()
	out := make([]NodeStatus, 0, len(names))
	for _, name := range names {
		s := NodeStatus{Name: name, PrimaryVersion: cur}
		var report *ReplicationStatus
		if n := p.nodes[name]; n != nil {
			s.LastContact = n.lastContact
			s.VersionSeen = n.seen
			s.Connected = n.openPolls > 0 || (!n.lastContact.IsZero() && now.Sub(n.lastContact) < connectedGrace)
			report = n.report
			if !n.lastContact.IsZero() {
				s.Gate = p.gate
			}
		}
		if c, ok := p.site[name]; ok {
			if c.LastContact.After(s.LastContact) {
				s.LastContact, s.VersionSeen, s.Gate = c.LastContact, c.VersionSeen, c.Gate
				s.Connected = s.Connected || now.Sub(c.LastContact) < p.siteGrace
			}
			if c.Replication != nil && (report == nil || c.Replication.Reported.After(report.Reported)) {
				report = c.Replication
			}
		}
		if cur > s.VersionSeen {
			s.Lag = cur - s.VersionSeen
		}
		if report != nil {
			rep := *report
			// Changes the secondary has not even received count too
			// (a secondary that stopped reporting falls behind here).
			if t := p.feed.oldestAfter(rep.Epoch, rep.Seq); !t.IsZero() &&
				(rep.OldestUnsynced.IsZero() || t.Before(rep.OldestUnsynced)) {
				rep.OldestUnsynced = t
			}
			if !rep.OldestUnsynced.IsZero() { // the age as of now
				rep.LagSeconds = max(now.Sub(rep.OldestUnsynced).Seconds(), 0)
			}
			s.Replication = &rep
		}
		out = append(out, s)
	}
	return out
}

// NodesHandler serves GET NodesPath on the primary: a JSON list of
// NodeStatus. It does no authentication of its own: wrap it with the admin
// check.
func (p *Primary) NodesHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeJSONMessage(w, http.StatusMethodNotAllowed, "405 Method Not Allowed")
			return
		}
		writeJSON(w, http.StatusOK, p.Nodes())
	})
}

// PrimaryStatus is the primary's status file: its view of the secondaries,
// for "gitgate geo status".
type PrimaryStatus struct {
	// Version is the primary's state version.
	Version uint64 `json:"version"`
	// Nodes are the secondaries, as Primary.Nodes lists them.
	Nodes []NodeStatus `json:"nodes"`
	// Written is when the server wrote the file.
	Written time.Time `json:"written"`
	// Running is false when the file is older than a running server would
	// leave it: Connected is then false for every node.
	Running bool `json:"-"`
}

// WriteStatusFile keeps <dataDir>/geo-primary-status.json current (every
// few seconds, and at once when the state changes) until ctx ends, so that "gitgate geo status" can show the
// secondaries without asking the server. It returns when ctx is done.
func (p *Primary) WriteStatusFile(ctx context.Context, dataDir string) {
	path := filepath.Join(dataDir, PrimaryStatusFileName)
	write := func() {
		st := PrimaryStatus{Version: p.live.Current().State.Version, Nodes: p.Nodes(), Written: p.now().UTC()}
		if err := writeStatusFile(path, st); err != nil {
			p.log.Warn("cannot write the Geo status file", "file", path, "err", err)
		}
	}
	tick := time.NewTicker(statusFileInterval)
	defer tick.Stop()
	for {
		changed := p.live.Changed()
		write()
		select {
		case <-ctx.Done():
			return
		case <-changed: // a toggle shows at once, not at the next tick
		case <-tick.C:
		}
	}
}

// ReadPrimaryStatus reads the primary's status file as of now; ok is false
// when there is none (never served as a primary).
func ReadPrimaryStatus(dataDir string, now time.Time) (st PrimaryStatus, ok bool, err error) {
	ok, err = readStatusFile(filepath.Join(dataDir, PrimaryStatusFileName), &st)
	if !ok || err != nil {
		return PrimaryStatus{}, ok, err
	}
	st.Running = now.Sub(st.Written) < 3*statusFileInterval
	if !st.Running {
		for i := range st.Nodes {
			st.Nodes[i].Connected = false
		}
	}
	return st, true, nil
}

// writeStatusFile writes v as JSON to path, atomically.
func writeStatusFile(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, append(data, '\n'), 0o644)
}

// readStatusFile reads a status file into v; false if it does not exist.
func readStatusFile(path string, v any) (bool, error) {
	data, err := atomicfile.ReadBounded(path, maxConfigFileSize)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return false, fmt.Errorf("geo status file: %w", err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return false, fmt.Errorf("geo status file %s: %w", path, err)
	}
	return true, nil
}

// maxReportBody bounds a secondary's replication report.
const maxReportBody = 64 << 10

// ReportHandler serves POST ReportPath: a secondary's [ReplicationStatus],
// shown in Nodes.
func (p *Primary) ReportHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			writeJSONMessage(w, http.StatusMethodNotAllowed, "405 Method Not Allowed")
			return
		}
		c, err := p.verifier.VerifyRequest(r, ScopeStatus, "")
		if err != nil {
			WriteUnauthorized(w, err)
			return
		}
		body, err := readAllLimit(r.Body, maxReportBody)
		var rep ReplicationStatus
		if err == nil {
			err = json.Unmarshal(body, &rep)
		}
		if err != nil || rep.Synced < 0 || rep.Pending < 0 || rep.Failed < 0 {
			writeJSONMessage(w, http.StatusBadRequest, "400 Bad request - invalid report")
			return
		}
		if len(rep.Errors) > 20 {
			rep.Errors = rep.Errors[:20]
		}
		rep.Reported = p.now().UTC()
		p.mu.Lock()
		n := p.record(c.Node)
		n.lastContact = p.now()
		n.report = &rep
		p.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
}
