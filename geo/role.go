package geo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/internal/atomicfile"
)

// RoleFileName is the site's persisted Geo role and failover term, in the
// data dir (see RoleRecord).
const RoleFileName = "geo-role.json"

// maxRoleFileSize bounds what is read from the role file.
const maxRoleFileSize = 64 << 10

// Roles a site can hold.
const (
	RolePrimary   = "primary"
	RoleSecondary = "secondary"
)

// Term names the primary of one failover epoch. Epochs only grow: each
// promotion takes the highest epoch its site has seen plus one. The
// original primary holds epoch 0 with an empty name.
type Term struct {
	// Epoch is the failover epoch.
	Epoch uint64 `json:"epoch"`
	// Primary is the node name of the site that is primary in Epoch.
	Primary string `json:"primary"`
}

// MaxEpoch bounds the epochs a site accepts from another, so that a
// forged or corrupt term can never wrap the counter round.
const MaxEpoch = 1 << 40

// Validate checks a term received from another site: an epoch up to
// MaxEpoch, and an empty or valid node name.
func (t Term) Validate() error {
	if t.Epoch > MaxEpoch {
		return fmt.Errorf("failover epoch %d above %d", t.Epoch, uint64(MaxEpoch))
	}
	if t.Primary != "" {
		if err := ValidateNodeName(t.Primary); err != nil {
			return fmt.Errorf("failover term: %w", err)
		}
	}
	return nil
}

// String is "epoch N (primary NAME)".
func (t Term) String() string {
	name := t.Primary
	if name == "" {
		name = "the original primary"
	}
	return fmt.Sprintf("epoch %d (primary %s)", t.Epoch, name)
}

// RoleRecord is a site's persisted role: what it is, and the highest term
// it has seen. It is written (atomically, fsynced) before the site acts on
// a change, so a restart never forgets a demotion or a promotion.
type RoleRecord struct {
	Term
	// Role is RolePrimary or RoleSecondary.
	Role string `json:"role"`
	// Node is this site's node name ("" for an original primary that was
	// never given one).
	Node string `json:"node,omitempty"`
	// Updated is when the record was written.
	Updated time.Time `json:"updated"`
	// Reason says why the record was last changed.
	Reason string `json:"reason,omitempty"`
	// Follow, on a secondary that a planned failover repointed, is the
	// primary it follows now: it overrides the --geo-* flags at start.
	Follow *FollowTarget `json:"follow,omitempty"`
	// Reopen, on a primary promoted by a planned failover, says it
	// disables maintenance once every secondary has confirmed its term.
	Reopen bool `json:"reopen,omitempty"`
	// Handover, on a primary site whose gates share a database, is the
	// promotion a planned failover ordered (its step 4), so that every
	// gate of the site carries it to the target and announces it to the
	// other secondaries, whichever gate they poll.
	Handover *Handover `json:"handover,omitempty"`
}

// Handover is a planned failover's promotion order, as a primary site's
// gates carry it (Primary.OrderPromotion).
type Handover struct {
	// Term is the target's new term (its node is the target).
	Term Term `json:"term"`
	// Reopen says whether the new primary disables maintenance once every
	// secondary has confirmed Term.
	Reopen bool `json:"reopen,omitempty"`
	// URL is the target's base URL, announced to the other secondaries.
	URL string `json:"url"`
}

// FollowTarget is the primary a repointed secondary follows.
type FollowTarget struct {
	// URL is the primary's base URL.
	URL string `json:"url"`
	// SecretFile holds the secret shared with it.
	SecretFile string `json:"secret_file"`
}

// ReadRole reads <dataDir>/RoleFileName; ok is false when there is none.
func ReadRole(dataDir string) (rec RoleRecord, ok bool, err error) {
	path := filepath.Join(dataDir, RoleFileName)
	data, err := atomicfile.ReadBounded(path, maxRoleFileSize)
	if errors.Is(err, fs.ErrNotExist) {
		return RoleRecord{}, false, nil
	}
	if err != nil {
		return RoleRecord{}, false, fmt.Errorf("geo role: %w", err)
	}
	if err := json.Unmarshal(data, &rec); err != nil {
		return RoleRecord{}, false, fmt.Errorf("geo role %s: %w", path, err)
	}
	if rec.Role != RolePrimary && rec.Role != RoleSecondary {
		return RoleRecord{}, false, fmt.Errorf("geo role %s: role %q is neither %s nor %s", path, rec.Role, RolePrimary, RoleSecondary)
	}
	if err := ValidateRecord(rec); err != nil {
		return RoleRecord{}, false, fmt.Errorf("geo role %s: %w", path, err)
	}
	return rec, true, nil
}

// WriteRole writes rec to <dataDir>/RoleFileName atomically and fsynced.
func WriteRole(dataDir string, rec RoleRecord) error {
	if rec.Updated.IsZero() {
		rec.Updated = time.Now().UTC()
	}
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return fmt.Errorf("encode Geo role: %w", err)
	}
	path := filepath.Join(dataDir, RoleFileName)
	if err := atomicfile.Write(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write Geo role %s: %w", path, err)
	}
	return nil
}

// ErrRoleBehind is returned by a RoleStore's SaveRole for a record whose
// epoch is lower than the stored one.
var ErrRoleBehind = errors.New("the stored Geo role has a higher failover epoch")

// RoleStore keeps a site's role record. A site on files keeps it in its
// data dir (FileRoleStore); the gates of a site sharing a database keep
// one record in it (package pgstore's RoleStore), so that every gate, and
// every restart, sees the same role. The Guard and the failover read and
// write the role only through it, and do not know which is in use.
type RoleStore interface {
	// LoadRole reads the record; ok is false when there is none yet.
	LoadRole(ctx context.Context) (rec RoleRecord, ok bool, err error)
	// SaveRole writes rec durably before returning. A store shared by
	// several gates refuses a record whose epoch is lower than the stored
	// one (an error wrapping ErrRoleBehind), so a demotion or a promotion
	// is never undone by a gate that saw less.
	SaveRole(ctx context.Context, rec RoleRecord) error
}

// FileRoleStore is the RoleStore of a site on files: RoleFileName in its
// data dir (ReadRole, WriteRole). One gate writes it.
type FileRoleStore struct{ DataDir string }

// LoadRole reads the data dir's role file.
func (f FileRoleStore) LoadRole(context.Context) (RoleRecord, bool, error) {
	return ReadRole(f.DataDir)
}

// SaveRole writes the data dir's role file.
func (f FileRoleStore) SaveRole(_ context.Context, rec RoleRecord) error {
	return WriteRole(f.DataDir, rec)
}

// ValidateRecord checks a role record read from a store.
func ValidateRecord(rec RoleRecord) error {
	if rec.Role != RolePrimary && rec.Role != RoleSecondary {
		return fmt.Errorf("role %q is neither %s nor %s", rec.Role, RolePrimary, RoleSecondary)
	}
	if rec.Node != "" {
		if err := ValidateNodeName(rec.Node); err != nil {
			return err
		}
	}
	if h := rec.Handover; h != nil {
		if err := h.Term.Validate(); err != nil || h.Term.Primary == "" {
			return fmt.Errorf("the handover's term %s is invalid: %v", h.Term, err)
		}
		if _, err := parsePrimaryURL(h.URL); err != nil {
			return fmt.Errorf("the handover's URL: %w", err)
		}
	}
	return rec.Term.Validate()
}

// Refusal texts of a site that may not act as primary.
const (
	// DemotedMessage is shown for a push to a site that was primary and
	// learnt that another site was promoted after it.
	DemotedMessage = "Git push is not allowed because this Geo site is no longer the primary site"
	// FencedMessage is shown for a push to a primary that has not yet
	// confirmed, since it started, that it is still the primary.
	FencedMessage = "Git push is not allowed because this Geo primary site has not yet confirmed with its secondaries that it is still the primary; try again shortly."
	// ConflictMessage is shown when two sites claim the same epoch.
	ConflictMessage = "Git push is not allowed because two Geo sites claim to be primary in the same failover epoch; an administrator must resolve it."
)

// Demoted returns DemotedMessage naming the term's primary.
func Demoted(t Term) string {
	return DemotedMessage + ": the primary is " + t.String() + "."
}

// Guard decides whether a primary site may accept pushes: only while it is
// the primary of the highest term it has seen, and (after a start) once
// every secondary in geo.yaml has confirmed that term. Every term another
// site presents on a Geo channel goes through Observe: a higher term naming
// another site demotes this one at once, persistently. It is safe for
// concurrent use.
type Guard struct {
	dataDir string
	store   RoleStore
	log     *slog.Logger

	mu       sync.Mutex
	rec      RoleRecord
	pending  map[string]bool // secondaries that have not confirmed rec.Term
	conflict *Term           // another site's claim on rec.Epoch
}

// NewGuard loads the role of the primary in dataDir for the node name
// self ("" allowed for an original primary). secondaries are geo.yaml's
// nodes: each must present the guard's term before pushes are accepted,
// unless confirmed (the admin's explicit override) or this is the first
// start (no role file yet: the original term, epoch 0, is written). A role file that says this site is a
// secondary gives a guard that refuses every push.
func NewGuard(dataDir, self string, secondaries []string, confirmed bool, log *slog.Logger) (*Guard, error) {
	return NewGuardOn(context.Background(), FileRoleStore{DataDir: dataDir}, dataDir, self, secondaries, confirmed, log)
}

// NewGuardOn is NewGuard with the role kept in store (the data dir's file,
// or the site's database); dataDir gets the secondary marker when the
// site is demoted.
func NewGuardOn(ctx context.Context, store RoleStore, dataDir, self string, secondaries []string, confirmed bool, log *slog.Logger) (*Guard, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rec, ok, err := store.LoadRole(ctx)
	if err != nil {
		return nil, err
	}
	switch {
	case !ok:
		// The first start with failover terms: no site can have been
		// promoted over this one yet (promotion writes terms), so there is
		// nothing to confirm.
		rec = RoleRecord{Term: Term{Epoch: 0, Primary: self}, Role: RolePrimary, Node: self, Reason: "first start as primary"}
		if err := store.SaveRole(ctx, rec); errors.Is(err, ErrRoleBehind) {
			// Another gate of the site wrote a role meanwhile: take it.
			if rec, ok, err = store.LoadRole(ctx); err != nil || !ok {
				return nil, fmt.Errorf("geo role: reread after a concurrent write: %w", err)
			}
			break
		} else if err != nil {
			return nil, err
		}
		confirmed = true
	case self != "" && rec.Node != "" && rec.Node != self:
		return nil, fmt.Errorf("geo role: the site's role record names this site %q, not %q", rec.Node, self)
	}
	g := &Guard{dataDir: dataDir, store: store, log: log.With("geo_role", "primary"), rec: rec, pending: map[string]bool{}}
	if rec.Role == RolePrimary && !confirmed {
		for _, s := range secondaries {
			if s != rec.Primary {
				g.pending[s] = true
			}
		}
	}
	return g, nil
}

// Reload re-reads the role from the store (another gate of the site may
// have written it: a demotion, a failover's step) and takes it when its
// epoch is not lower than the one held. It reports whether the role
// changed. A store that cannot be read changes nothing (logged): the last
// role known stays in force, and a demotion held in memory is never
// undone.
func (g *Guard) Reload(ctx context.Context) (changed bool) {
	rec, ok, err := g.store.LoadRole(ctx)
	if err != nil {
		g.log.Error("Geo: cannot re-read the site's role; keeping the last known", "err", err)
		return false
	}
	if !ok {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.adopt(rec)
}

// adopt takes rec as the site's role when its epoch is not lower than the
// one held and it differs; g.mu is held.
func (g *Guard) adopt(rec RoleRecord) bool {
	if rec.Epoch < g.rec.Epoch || rolesEqual(rec, g.rec) {
		return false
	}
	before := g.rec
	g.rec = rec
	if rec.Epoch > before.Epoch {
		g.conflict = nil
	}
	if rec.Role != RolePrimary || rec.Primary != rec.Node {
		clear(g.pending)
		if err := WriteSecondaryMarker(g.dataDir, "", rec.Node); err != nil {
			g.log.Error("Geo: demoted, but the secondary marker could not be written", "err", err)
		}
	}
	g.log.Warn("Geo: the site's role changed (written by another gate of the site)", "old_term", before.Term.String(),
		"new_term", rec.Term.String(), "role", rec.Role, "reason", rec.Reason)
	return true
}

// rolesEqual compares two records but for when they were written.
func rolesEqual(a, b RoleRecord) bool {
	a.Updated, b.Updated = time.Time{}, time.Time{}
	ja, erra := json.Marshal(a)
	jb, errb := json.Marshal(b)
	return erra == nil && errb == nil && string(ja) == string(jb)
}

// Save writes rec as the site's role (a failover's step) and holds it.
func (g *Guard) Save(ctx context.Context, rec RoleRecord) error {
	if rec.Updated.IsZero() {
		rec.Updated = time.Now().UTC()
	}
	if err := g.store.SaveRole(ctx, rec); err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.adopt(rec)
	return nil
}

// Record returns the role as the guard holds it.
func (g *Guard) Record() RoleRecord {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.rec
}

// Term is the highest term this site knows, for its Geo answers.
func (g *Guard) Term() Term { return g.Record().Term }

// Pending lists the secondaries that have not confirmed the term yet.
func (g *Guard) Pending() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]string, 0, len(g.pending))
	for n := range g.pending {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Observe takes the term the secondary node presented (signed in its
// token). A higher epoch naming another site demotes this one, persisted
// before Observe returns; this site's own term confirms it for node; the
// same epoch naming another site is a conflict that refuses every push
// until an administrator resolves it. A lower epoch changes nothing: the
// answer tells the secondary the current term.
func (g *Guard) Observe(node string, t Term) {
	if err := t.Validate(); err != nil {
		g.log.Warn("Geo: a secondary presented an invalid failover term; ignored", "node", node, "err", err)
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case t.Epoch > g.rec.Epoch && (t.Primary != g.rec.Node || g.rec.Node == ""):
		before := g.rec
		g.rec.Term, g.rec.Role = t, RoleSecondary
		g.rec.Updated, g.rec.Reason = time.Now().UTC(), "demoted: node "+node+" presented "+t.String()
		// Demoted in memory whatever the write does: fail closed.
		if err := g.store.SaveRole(context.Background(), g.rec); errors.Is(err, ErrRoleBehind) {
			// Another gate of the site stored a later term: take it.
			if rec, ok, err := g.store.LoadRole(context.Background()); err == nil && ok && rec.Epoch > g.rec.Epoch {
				g.rec = rec
			}
		} else if err != nil {
			g.log.Error("Geo: demoted, but the role could not be persisted", "err", err)
		}
		if err := WriteSecondaryMarker(g.dataDir, "", g.rec.Node); err != nil {
			g.log.Error("Geo: demoted, but the secondary marker could not be written", "err", err)
		}
		g.log.Warn("Geo: another site was promoted; this site is demoted and refuses pushes",
			"node", node, "old_term", before.Term.String(), "new_term", t.String())
	case g.rec.Role == RolePrimary && t.Epoch == g.rec.Epoch && t.Primary != g.rec.Primary:
		if g.conflict == nil {
			g.log.Error("Geo: two sites claim the same failover epoch; refusing pushes", "node", node,
				"ours", g.rec.Term.String(), "theirs", t.String())
		}
		g.conflict = &t
	case t == g.rec.Term && g.pending[node]:
		delete(g.pending, node)
		if len(g.pending) == 0 && g.rec.Role == RolePrimary {
			g.log.Info("Geo: every secondary confirmed this primary's term; pushes accepted", "term", t.String())
		}
	}
}

// Confirm lifts the start-up fence without waiting for the secondaries
// (the admin's override).
func (g *Guard) Confirm() {
	g.mu.Lock()
	defer g.mu.Unlock()
	clear(g.pending)
}

// Refusal is nil while this site may accept pushes as the primary, and
// otherwise the refusal every door shows.
func (g *Guard) Refusal() *gitgate.Refusal {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.rec.Role != RolePrimary || g.rec.Primary != g.rec.Node:
		return &gitgate.Refusal{Kind: gitgate.RefusedMaintenance, Message: Demoted(g.rec.Term)}
	case g.conflict != nil:
		return &gitgate.Refusal{Kind: gitgate.RefusedMaintenance, Message: ConflictMessage}
	case len(g.pending) > 0:
		return &gitgate.Refusal{Kind: gitgate.RefusedMaintenance, Message: FencedMessage}
	}
	return nil
}

// ReadOnly says whether this site refuses local maintenance and access
// changes (it was demoted), and with which words.
func (g *Guard) ReadOnly() (string, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.rec.Role == RolePrimary && g.rec.Primary == g.rec.Node {
		return "", false
	}
	return ChangeOnPrimary("") + " This site was demoted: the primary is " + g.rec.Term.String() + ".", true
}

// ClearReopen records that a primary promoted by a planned failover has
// reopened (RoleRecord.Reopen is cleared).
func (g *Guard) ClearReopen() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.rec.Reopen, g.rec.Updated = false, time.Now().UTC()
	return g.store.SaveRole(context.Background(), g.rec)
}
