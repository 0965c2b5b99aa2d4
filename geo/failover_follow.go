package geo

import "fmt"

// handover takes a planned failover's fields of a status answer from the
// primary this site follows, before anything else of the answer:
//
//   - a promotion order (ScopePromote, signed with this site's secret, for
//     the next epoch and this node) is persisted as this site's role
//     (primary, STILL in maintenance); the next poll presents the new term,
//     which demotes the old primary;
//   - once the old primary answers with this site's new term (it was
//     demoted), or tells the term and URL of another site promoted after
//     it (ScopeAnnounce, signed), the role switch is handed to
//     OnRoleChange and switched is true: the gate restarts its Geo part in
//     the new role.
//
// Anything that does not verify is ignored (logged): the answer is then
// an ordinary one.
func (f *Follower) handover(resp StatusResponse) (switched bool) {
	if f.OnRoleChange == nil || resp.Node == "" || ValidateNodeName(resp.Node) != nil {
		return false
	}
	v := NewVerifier(map[string][]byte{resp.Node: f.secret})
	rec, hasRole, err := ReadRole(f.dataDir)
	if err != nil {
		f.log.Error("Geo failover: cannot read the role", "err", err)
		return false
	}
	known := f.Term()
	if resp.Promote != "" {
		c, err := v.Verify(resp.Promote, ScopePromote, "")
		switch {
		case err != nil:
			f.log.Warn("Geo failover: promotion order refused", "err", err)
		case hasRole && rec.Role == RolePrimary && c.Term != nil && rec.Term == *c.Term:
			// already taken: the next poll presents it
		case c.Term == nil || c.Term.Validate() != nil || c.Term.Primary != f.node || (known != nil && c.Term.Epoch != known.Epoch+1):
			f.log.Warn("Geo failover: promotion order for another term refused", "term", fmt.Sprint(c.Term))
		case f.replica != nil && !f.replica.Status().Done():
			f.log.Warn("Geo failover: promotion order refused: this site is not in sync", "status", f.replica.Status())
		default:
			rec := RoleRecord{Term: *c.Term, Role: RolePrimary, Node: f.node, Updated: f.now().UTC(),
				Reason: "promoted by a planned failover from " + resp.Node, Reopen: c.Reopen}
			if err := WriteRole(f.dataDir, rec); err != nil {
				f.log.Error("Geo failover: cannot persist the promotion", "err", err)
				return false
			}
			f.log.Warn("Geo failover: this site is promoted; presenting the new term to the old primary", "term", rec.Term.String())
		}
		return false
	}
	if hasRole && rec.Role == RolePrimary && rec.Node == f.node && resp.Term != nil && *resp.Term == rec.Term {
		f.log.Warn("Geo failover: the old primary took the new term; this site becomes the primary", "term", rec.Term.String())
		f.OnRoleChange()
		return true
	}
	if resp.Announce == "" {
		return false
	}
	c, err := v.Verify(resp.Announce, ScopeAnnounce, "")
	if err != nil {
		f.log.Warn("Geo failover: announcement refused", "err", err)
		return false
	}
	u, uerr := parsePrimaryURL(c.URL)
	switch {
	case c.Term == nil || c.Term.Validate() != nil || c.Term.Primary == "" || c.Term.Primary == f.node || uerr != nil:
		f.log.Warn("Geo failover: invalid announcement refused", "term", fmt.Sprint(c.Term), "url", c.URL)
		return false
	case known != nil && c.Term.Epoch <= known.Epoch && *c.Term != *known:
		f.log.Warn("Geo failover: announcement of an old term refused", "term", c.Term.String(), "known", known.String())
		return false
	}
	next := RoleRecord{Term: *c.Term, Role: RoleSecondary, Node: f.node, Updated: f.now().UTC(),
		Reason: "repointed by " + resp.Node + " after a planned failover",
		Follow: &FollowTarget{URL: u.String(), SecretFile: f.opts.SecretFile}}
	if err := WriteRole(f.dataDir, next); err != nil {
		f.log.Error("Geo failover: cannot persist the new primary", "err", err)
		return false
	}
	f.log.Warn("Geo failover: following the new primary", "term", c.Term.String(), "url", u.String())
	f.OnRoleChange()
	return true
}
