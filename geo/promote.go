package geo

import (
	"errors"
	"fmt"
	"time"
)

// ErrNotInSync refuses a promotion of a secondary that has not replicated
// and verified everything of the primary it follows.
var ErrNotInSync = errors.New("this secondary is not in sync with its primary")

// PromoteResult is what Promote did, or would lose.
type PromoteResult struct {
	// Record is the role written (epoch+1, this site primary).
	Record RoleRecord
	// Previous is the term this site knew before.
	Previous Term
	// Status is the secondary's status the decision was based on.
	Status FollowerStatus
	// Forced is set when the sync check failed and force was given; the
	// Status then says what may be lost.
	Forced bool
}

// Promote makes the secondary in dataDir the primary of a new failover
// term (the highest epoch it has seen plus one), persisting it in the role
// file. It refuses (ErrNotInSync, with the reasons) unless the running
// gate follows its primary live and its last comparison found every
// repository and the access data synced and verified (0 pending, 0
// failed); force promotes anyway, and the result says what may be lost.
// The running secondary then presents the new term to the old primary,
// which demotes itself at its next contact.
func Promote(dataDir string, now time.Time, force bool) (PromoteResult, error) {
	m, ok, err := ReadSecondaryMarker(dataDir)
	if err != nil {
		return PromoteResult{}, err
	}
	rec, hasRole, err := ReadRole(dataDir)
	if err != nil {
		return PromoteResult{}, err
	}
	if hasRole && rec.Role == RolePrimary && rec.Node == m.Node && rec.Primary == rec.Node {
		return PromoteResult{Record: rec, Previous: rec.Term}, nil // already done: promote again is a no-op
	}
	if !ok {
		return PromoteResult{}, errors.New("this data dir is not a Geo secondary's: only a secondary can be promoted")
	}
	if m.Node == "" {
		return PromoteResult{}, errors.New("the secondary marker names no node")
	}
	st, ok, err := ReadFollowerStatus(dataDir, now)
	if err != nil {
		return PromoteResult{}, err
	}
	res := PromoteResult{Previous: rec.Term, Status: st}
	if reasons := syncProblems(st, ok); len(reasons) > 0 {
		if !force {
			return res, fmt.Errorf("%w: %s (--force promotes anyway and may lose what is pending)", ErrNotInSync, joinReasons(reasons))
		}
		res.Forced = true
	}
	res.Record = RoleRecord{
		Term: Term{Epoch: rec.Epoch + 1, Primary: m.Node}, Role: RolePrimary, Node: m.Node,
		Updated: now.UTC(), Reason: "promoted from " + rec.Term.String(),
	}
	if res.Forced {
		res.Record.Reason += " (forced)"
	}
	if err := WriteRole(dataDir, res.Record); err != nil {
		return res, err
	}
	return res, nil
}

// syncProblems lists why a secondary is not fully in sync.
func syncProblems(st FollowerStatus, ok bool) []string {
	var out []string
	switch {
	case !ok:
		return []string{"no status file: the gate has not run as a secondary here"}
	case !st.Running:
		out = append(out, "the gate is not running")
	case !st.Connected:
		out = append(out, "not connected to the primary ("+st.LastError+")")
	}
	r := st.Replication
	switch {
	case r == nil:
		out = append(out, "replication is not running")
	case r.Reconciled.IsZero():
		out = append(out, "not compared with the primary yet")
	case r.Pending > 0 || r.Failed > 0:
		out = append(out, fmt.Sprintf("%d repositories pending, %d failed", r.Pending, r.Failed))
	}
	return out
}

func joinReasons(r []string) string {
	s := ""
	for i, x := range r {
		if i > 0 {
			s += "; "
		}
		s += x
	}
	return s
}
