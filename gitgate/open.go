package gitgate

import (
	"context"
	"fmt"
)

// Open is the one resolve-and-decide step every door takes (HTTP, SSH, and
// through them Geo). op.Repo is the repository name as the client sent it.
// Open resolves it with res and sets op.Repo to the repository's canonical
// name, the one the access rules see; the decision is made on that name
// only. A name that resolves to nothing the gate serves (missing, refused,
// an alias of another repository, a repository that reaches outside the
// root) gets the same decision as a repository the user may not see, so
// that no answer reveals which it was; op.Repo then keeps the name as sent,
// for the log, and the refusal's Cause says why. The returned Repo is valid
// only when the decision allows the operation.
func (p *Policy) Open(ctx context.Context, res *Resolver, op *Operation) (Repo, Decision) {
	if err := ctx.Err(); err != nil {
		return Repo{}, p.unserved(*op, err)
	}
	repo, err := res.Resolve(op.Repo)
	if err != nil {
		return Repo{}, p.unserved(*op, fmt.Errorf("resolve %q: %w", op.Repo, err))
	}
	op.Repo = repo.Name
	return repo, p.Decide(*op)
}

// unserved is the decision for a name that resolves to no repository, with
// the internal cause attached for the log.
func (p *Policy) unserved(op Operation, cause error) Decision {
	d := p.Missing(op)
	if r := d.Refusal(); r != nil {
		d.Err = &Refusal{Kind: r.Kind, Message: r.Message, Cause: cause}
	}
	return d
}
