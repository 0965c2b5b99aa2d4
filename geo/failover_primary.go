package geo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"sort"
)

// handover is a planned failover's promotion, as the old primary carries it
// out on its status answers.
type handover struct {
	target    Term
	reopen    bool
	url       string // the target's base URL, announced to the others
	announced map[string]bool
}

// OrderPromotion makes this primary's status answers to t.Primary carry a
// promotion order for term t (signed with the secret shared with it), and,
// once this site has been demoted by t (the target presented it, see
// Guard.Observe), the answers to every other secondary carry t and
// targetURL, signed, so that they repoint. Polls held open are answered at
// once.
func (p *Primary) OrderPromotion(t Term, reopen bool, targetURL string) error {
	if p.guard == nil || p.guard.Record().Node == "" {
		return fmt.Errorf("a failover needs a primary with a node name")
	}
	if _, ok := p.verifier.secrets[t.Primary]; !ok {
		return fmt.Errorf("%w: %q", ErrUnknownNode, t.Primary)
	}
	if _, err := parsePrimaryURL(targetURL); err != nil {
		return err
	}
	p.mu.Lock()
	if p.handover == nil || p.handover.target != t {
		p.handover = &handover{target: t, reopen: reopen, url: targetURL, announced: map[string]bool{}}
	}
	p.mu.Unlock()
	p.kickPolls()
	return nil
}

// OnAnnounced makes the primary call f each time it has told node of the
// new primary of t (a gate of a site of several records it for the
// others: the node may poll any gate). f must not block. Call it before
// serving.
func (p *Primary) OnAnnounced(f func(node string, t Term)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.announced = f
}

// Unannounced lists the secondaries (but t's primary) not yet told of t.
func (p *Primary) Unannounced(t Term) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, n := range p.verifier.Nodes() {
		if n != t.Primary && (p.handover == nil || p.handover.target != t || !p.handover.announced[n]) {
			out = append(out, n)
		}
	}
	return out
}

// kicked is closed when held polls must answer at once.
func (p *Primary) kicked() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.kick == nil {
		p.kick = make(chan struct{})
	}
	return p.kick
}

// kickPolls answers every held poll now.
func (p *Primary) kickPolls() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.kick != nil {
		close(p.kick)
	}
	p.kick = make(chan struct{})
}

// handoverDue says whether node has a promotion order or an announcement
// waiting, so that its poll is answered at once.
func (p *Primary) handoverDue(node string) bool {
	p.mu.Lock()
	h := p.handover
	p.mu.Unlock()
	if h == nil || p.guard == nil {
		return false
	}
	if node == h.target.Primary {
		return true // the order, or the acknowledgement that it was taken
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.guard.Term() == h.target && !h.announced[node]
}

// handoverFields adds the promotion order or the announcement to an
// answer to node.
func (p *Primary) handoverFields(node string, resp *StatusResponse) {
	p.mu.Lock()
	h := p.handover
	p.mu.Unlock()
	if h == nil || p.guard == nil {
		return
	}
	rec := p.guard.Record()
	secret := p.verifier.secrets[node]
	if secret == nil || rec.Node == "" {
		return
	}
	switch {
	case node == h.target.Primary && rec.Epoch < h.target.Epoch:
		t := h.target
		tok, err := Sign(secret, rec.Node, Claims{Scope: ScopePromote, Term: &t, Reopen: h.reopen}, 0)
		if err != nil {
			p.log.Error("Geo failover: cannot sign the promotion order", "node", node, "err", err)
			return
		}
		resp.Promote = tok
		p.log.Info("Geo failover: promotion order sent", "node", node, "term", t.String())
	case node != h.target.Primary && rec.Term == h.target:
		t := h.target
		tok, err := Sign(secret, rec.Node, Claims{Scope: ScopeAnnounce, Term: &t, URL: h.url}, 0)
		if err != nil {
			p.log.Error("Geo failover: cannot sign the announcement", "node", node, "err", err)
			return
		}
		resp.Announce = tok
		p.mu.Lock()
		h.announced[node] = true
		announced := p.announced
		p.mu.Unlock()
		if announced != nil {
			announced(node, t)
		}
		p.log.Info("Geo failover: new primary announced", "node", node, "term", t.String(), "url", h.url)
	}
}

// VerifiedDigest is the checksum of a set of repositories' ref states: sha256
// over one sorted "<name> <checksum> <head>\n" line each. A secondary
// whose synced copies give the primary's digest holds exactly the
// primary's repositories, verified.
func VerifiedDigest(entries []RepoEntry) string {
	lines := make([]string, 0, len(entries))
	for _, e := range entries {
		lines = append(lines, e.Name+" "+e.State.Checksum+" "+e.State.Head+"\n")
	}
	sort.Strings(lines)
	h := sha256.New()
	for _, l := range lines {
		h.Write([]byte(l))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// CheckTarget is step 3's decision for node: its last report must say 0
// pending and 0 failed (LFS objects included), a digest of its verified
// copies equal to this primary's repositories now, the same access data,
// and a geo.yaml that lists every site that will follow it; every other
// secondary must be connected (it learns of the new primary on its poll).
func (p *Primary) CheckTarget(ctx context.Context, feed *Feed, node string) (SyncCheck, error) {
	listing, err := feed.Listing(ctx, "")
	if err != nil {
		return SyncCheck{}, err
	}
	var c SyncCheck
	var rep *ReplicationStatus
	self := ""
	if p.guard != nil {
		self = p.guard.Record().Node
	}
	for _, n := range p.Nodes() {
		if n.Name == node {
			rep = n.Replication
			if !n.Connected {
				c.Blockers = append(c.Blockers, node+" is not connected")
			}
		} else if !n.Connected {
			c.Blockers = append(c.Blockers, "secondary "+n.Name+" is not connected (it would not learn of the new primary)")
		}
	}
	switch {
	case rep == nil:
		c.Blockers = append(c.Blockers, node+" has not reported its replication yet")
		return c, nil
	case rep.Reconciled.IsZero():
		c.Blockers = append(c.Blockers, node+" has not compared every repository yet")
	case rep.Pending > 0 || rep.Failed > 0:
		c.Blockers = append(c.Blockers, fmt.Sprintf("%s: %d repositories pending, %d failed", node, rep.Pending, rep.Failed))
	case rep.LFS.Pending > 0 || rep.LFS.Failed > 0:
		c.Blockers = append(c.Blockers, fmt.Sprintf("%s: %d LFS objects pending, %d failed", node, rep.LFS.Pending, rep.LFS.Failed))
	case rep.Verified != VerifiedDigest(listing.Repositories):
		c.Blockers = append(c.Blockers, fmt.Sprintf("%s has not verified the primary's final checksums yet (%d repositories here, %d synced there)",
			node, len(listing.Repositories), rep.Synced))
	}
	if rep.AccessVersion != listing.Access {
		c.Blockers = append(c.Blockers, node+" has not synced the access data yet")
	}
	for _, want := range append(p.verifier.Nodes(), self) {
		if want != node && want != "" && !slices.Contains(rep.GeoNodes, want) {
			c.Blockers = append(c.Blockers, fmt.Sprintf("%s's %s does not list %s, which will follow it", node, ConfigFileName, want))
		}
	}
	return c, nil
}
