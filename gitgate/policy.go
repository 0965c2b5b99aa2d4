package gitgate

import "errors"

// MaintenanceMessage is the text every door shows when a push is refused
// because the instance is in read-only maintenance mode. It matches GitLab's
// byte for byte, so runbooks and scripts that look for it keep working.
const MaintenanceMessage = "Git push is not allowed because this GitLab instance is currently in (read-only) maintenance mode."

// Texts of the other refusals. Transports show these words and nothing else.
const (
	// NotFoundMessage is shown for a repository that is missing or that the
	// user may not read; the two cases are indistinguishable on purpose.
	NotFoundMessage = "The project you were looking for could not be found or you don't have permission to view it."
	// PushForbiddenMessage is shown to a user who may read but not write.
	PushForbiddenMessage = "You are not allowed to push code to this project."
	// AnonymousPushMessage is shown when an anonymous client tries to push to
	// a gate that accepts no anonymous writes.
	AnonymousPushMessage = "Anonymous push is not allowed: sign in with a user that has write access."
	// UnauthenticatedMessage is shown when an anonymous client asks for a
	// repository that only signed-in users may see.
	UnauthenticatedMessage = "Authentication required: sign in with your user name and an access token."
	// StateUnavailableMessage is shown when the maintenance state cannot be
	// read. Pushes are refused until it can: the gate fails closed.
	StateUnavailableMessage = "Git push is not allowed because the maintenance state of this server cannot be read; an administrator has been alerted."
)

// RefusalKind classifies a refusal so that each transport can pick its status
// code (HTTP) or exit status (SSH) without comparing texts.
type RefusalKind int

// Kinds of refusal, in the order the policy checks them.
const (
	RefusedUnauthenticated  RefusalKind = iota + 1 // credentials are needed
	RefusedNotFound                                // missing or invisible repository
	RefusedMaintenance                             // read-only maintenance mode
	RefusedStateUnavailable                        // maintenance state unreadable: fail closed
	RefusedForbidden                               // visible, but the operation is not allowed
)

// Refusal is the error a [Decision] carries when it denies an operation. Its
// Error text is the exact message shown to the user.
type Refusal struct {
	Kind    RefusalKind
	Message string
	// Cause is the internal reason (for logs only, never on the wire).
	Cause error
}

// Error returns the user-facing message.
func (r *Refusal) Error() string { return r.Message }

// Unwrap returns the internal cause, if any.
func (r *Refusal) Unwrap() error { return r.Cause }

// Is makes errors.Is match refusals of the same kind and message, so callers
// can compare against the sentinel refusals below.
func (r *Refusal) Is(target error) bool {
	t, ok := target.(*Refusal)
	return ok && t.Kind == r.Kind && t.Message == r.Message
}

// Sentinel refusals. Compare with errors.Is.
var (
	ErrMaintenance     = &Refusal{Kind: RefusedMaintenance, Message: MaintenanceMessage}
	ErrNotFound        = &Refusal{Kind: RefusedNotFound, Message: NotFoundMessage}
	ErrPushForbidden   = &Refusal{Kind: RefusedForbidden, Message: PushForbiddenMessage}
	ErrAnonymousPush   = &Refusal{Kind: RefusedUnauthenticated, Message: AnonymousPushMessage}
	ErrUnauthenticated = &Refusal{Kind: RefusedUnauthenticated, Message: UnauthenticatedMessage}
)

// Permission is what a user may do on one repository.
type Permission int

// Permissions, each including the ones before it.
const (
	PermissionNone Permission = iota
	PermissionRead
	PermissionWrite
)

// String returns "none", "read" or "write".
func (p Permission) String() string {
	switch p {
	case PermissionRead:
		return "read"
	case PermissionWrite:
		return "write"
	}
	return "none"
}

// Authorizer answers what a user (nil: anonymous) may do on a repository. It is
// consulted on every request and must not do I/O: implementations hold their
// rules in memory.
type Authorizer interface {
	Permission(user *User, repo string) Permission
}

// StateSource gives the maintenance state as last seen, without I/O.
type StateSource interface {
	Current() Snapshot
}

// Decision is the policy's answer for one operation.
type Decision struct {
	// Err is nil when the operation may proceed, otherwise a *Refusal.
	Err error
	// State is the maintenance state the decision was based on.
	State Snapshot
}

// Allowed reports whether the operation may proceed.
func (d Decision) Allowed() bool { return d.Err == nil }

// Refusal returns the refusal, or nil when the operation is allowed.
func (d Decision) Refusal() *Refusal {
	var r *Refusal
	if errors.As(d.Err, &r) {
		return r
	}
	return nil
}

// Policy decides whether an operation may run. It reads only in-memory state,
// so it is cheap to call on every request.
type Policy struct {
	State  StateSource
	Access Authorizer
	// Role, when set, says whether this site may accept writes at all: a
	// Geo site that is not the confirmed primary may not (nil: it may).
	Role WriteRole
}

// WriteRole is the site's standing as a writer, apart from maintenance.
type WriteRole interface {
	// Refusal is nil when the site may accept writes, else the refusal.
	Refusal() *Refusal
}

// Decide answers allow or deny for op. The checks follow GitLab's order: a
// repository the user cannot see is "not found" (or, for an anonymous client,
// "sign in") before anything else is said about it; an anonymous push is
// refused before maintenance is mentioned; then any write is refused while in
// maintenance, whatever the user's permissions, so every pusher sees the same
// banner; last, a user who may read but not write is refused.
func (p *Policy) Decide(op Operation) Decision {
	snap := p.State.Current()
	perm := p.permission(op)
	d := Decision{State: snap}
	switch {
	case perm < PermissionRead:
		d.Err = invisible(op)
	case !op.Service.IsWrite():
	case op.User == nil && perm < PermissionWrite:
		d.Err = ErrAnonymousPush
	case snap.Err != nil:
		d.Err = &Refusal{Kind: RefusedStateUnavailable, Message: StateUnavailableMessage, Cause: snap.Err}
	case snap.State.Enabled:
		d.Err = ErrMaintenance
	case p.Role != nil && p.Role.Refusal() != nil:
		d.Err = p.Role.Refusal()
	case perm < PermissionWrite:
		d.Err = ErrPushForbidden
	}
	return d
}

// permission is what op's user may do on op's repository: a Geo site's
// replication identity reads its one repository and nothing else; anyone
// else gets what the access rules give, under a scoped token's ceiling.
func (p *Policy) permission(op Operation) Permission {
	switch {
	case op.User == nil:
		return p.Access.Permission(nil, op.Repo)
	case op.User.SiteRepo != "":
		if op.User.SiteRepo == op.Repo {
			return PermissionRead
		}
		return PermissionNone
	}
	return min(p.Access.Permission(op.User, op.Repo), op.User.Scopes.RepositoryPermission())
}

// Missing is the decision for a repository that does not exist. It is the
// same as for one the user may not see, so that the gate reveals nothing.
func (p *Policy) Missing(op Operation) Decision {
	return Decision{State: p.State.Current(), Err: invisible(op)}
}

// invisible is the refusal for a repository that cannot be shown, whether it
// is missing or hidden from the user: an anonymous client is asked to sign
// in, anyone else is told it was not found. It depends on nothing but who
// asks, so the answer for a hidden repository is the answer for a missing
// one, whatever anonymous users may read next to it (as GitLab does).
func invisible(op Operation) error {
	if op.User == nil {
		return ErrUnauthenticated
	}
	return ErrNotFound
}

// AnonymousAccess is the authorizer for a gate without users: everyone may
// read every repository; anonymous writes only when Write is set explicitly.
type AnonymousAccess struct {
	Write bool
}

// Permission gives read to everyone, and write when a.Write is set.
func (a AnonymousAccess) Permission(*User, string) Permission {
	if a.Write {
		return PermissionWrite
	}
	return PermissionRead
}
