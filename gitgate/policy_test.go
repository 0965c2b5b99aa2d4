package gitgate

import (
	"errors"
	"testing"
)

type fixedState Snapshot

func (f fixedState) Current() Snapshot { return Snapshot(f) }

type permByUser map[string]Permission

func (p permByUser) Permission(u *User, _ string) Permission { return p[u.String()] }

func TestPolicyDecide(t *testing.T) {
	alice, bob, carol := &User{Name: "alice"}, &User{Name: "bob"}, &User{Name: "carol"}
	access := permByUser{"alice": PermissionWrite, "bob": PermissionRead, "anonymous": PermissionRead}
	open := fixedState{}
	maint := fixedState{State: State{Enabled: true, Version: 1}}
	broken := fixedState{Err: errors.New("parse: unexpected EOF")}
	tests := []struct {
		name  string
		state fixedState
		op    Operation
		want  error
	}{
		{"writer pushes", open, Operation{Service: ReceivePack, User: alice}, nil},
		{"reader clones", open, Operation{Service: UploadPack, User: bob}, nil},
		{"reader archives", open, Operation{Service: UploadArchive, User: bob}, nil},
		{"reader pushes", open, Operation{Service: ReceivePack, User: bob}, ErrPushForbidden},
		{"stranger clones", open, Operation{Service: UploadPack, User: carol}, ErrNotFound},
		{"stranger pushes", open, Operation{Service: ReceivePack, User: carol}, ErrNotFound},
		{"anonymous clones", open, Operation{Service: UploadPack}, nil},
		{"anonymous pushes", open, Operation{Service: ReceivePack}, ErrAnonymousPush},
		{"writer pushes in maintenance", maint, Operation{Service: ReceivePack, User: alice}, ErrMaintenance},
		{"reader pushes in maintenance", maint, Operation{Service: ReceivePack, User: bob}, ErrMaintenance},
		{"stranger pushes in maintenance", maint, Operation{Service: ReceivePack, User: carol}, ErrNotFound},
		{"anonymous pushes in maintenance", maint, Operation{Service: ReceivePack}, ErrAnonymousPush},
		{"clone in maintenance", maint, Operation{Service: UploadPack, User: bob}, nil},
		{"archive in maintenance", maint, Operation{Service: UploadArchive, User: bob}, nil},
		{"clone with broken state", broken, Operation{Service: UploadPack, User: bob}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &Policy{State: tt.state, Access: access}
			d := p.Decide(tt.op)
			if !errors.Is(d.Err, tt.want) && !(tt.want == nil && d.Err == nil) {
				t.Fatalf("Decide = %v, want %v", d.Err, tt.want)
			}
			if d.Allowed() != (tt.want == nil) {
				t.Fatalf("Allowed = %v", d.Allowed())
			}
		})
	}
}

func TestPolicyFailsClosedOnUnreadableState(t *testing.T) {
	cause := errors.New("parse: unexpected EOF")
	p := &Policy{State: fixedState{Err: cause}, Access: AnonymousAccess{Write: true}}
	d := p.Decide(Operation{Service: ReceivePack})
	r := d.Refusal()
	if r == nil || r.Kind != RefusedStateUnavailable || r.Message != StateUnavailableMessage || !errors.Is(d.Err, cause) {
		t.Fatalf("Decide = %#v", d.Err)
	}
}

func TestPolicyMissingRevealsNothing(t *testing.T) {
	p := &Policy{State: fixedState{}, Access: permByUser{"alice": PermissionWrite}}
	if d := p.Missing(Operation{Service: UploadPack, User: &User{Name: "alice"}}); !errors.Is(d.Err, ErrNotFound) {
		t.Errorf("signed in: %v", d.Err)
	}
	if d := p.Missing(Operation{Service: UploadPack}); !errors.Is(d.Err, ErrUnauthenticated) {
		t.Errorf("anonymous: %v", d.Err)
	}
	// Even where anonymous users may read, a missing repository asks an
	// anonymous client to sign in, as a hidden one does: a 404 there would
	// tell the two apart.
	p.Access = AnonymousAccess{}
	if d := p.Missing(Operation{Service: UploadPack}); !errors.Is(d.Err, ErrUnauthenticated) {
		t.Errorf("anonymous with public read: %v", d.Err)
	}
}

func TestMaintenanceMessageIsGitLabs(t *testing.T) {
	const gitlab = "Git push is not allowed because this GitLab instance is currently in (read-only) maintenance mode."
	if MaintenanceMessage != gitlab || ErrMaintenance.Error() != gitlab {
		t.Fatal("the maintenance message must match GitLab's byte for byte")
	}
}

// A Geo site's replication identity reads its one repository, whatever the
// rules say (no rule names it), in maintenance too, and can do nothing else.
func TestPolicySiteRepo(t *testing.T) {
	site := &User{Name: "geo-site:eu", SiteRepo: "group/p"}
	for _, st := range []fixedState{{}, {State: State{Enabled: true, Version: 1}}} {
		p := &Policy{State: st, Access: permByUser{}}
		if d := p.Decide(Operation{Service: UploadPack, Repo: "group/p", User: site}); d.Err != nil {
			t.Errorf("maintenance %v: fetch of its repository refused: %v", st.State.Enabled, d.Err)
		}
		if d := p.Decide(Operation{Service: UploadPack, Repo: "group/q", User: site}); !errors.Is(d.Err, ErrNotFound) {
			t.Errorf("maintenance %v: fetch of another repository: %v", st.State.Enabled, d.Err)
		}
		for _, repo := range []string{"group/p", "group/q"} {
			if d := p.Decide(Operation{Service: ReceivePack, Repo: repo, User: site}); d.Err == nil {
				t.Errorf("maintenance %v: push to %s allowed", st.State.Enabled, repo)
			}
		}
	}
}

type refusingRole struct{ r *Refusal }

func (f refusingRole) Refusal() *Refusal { return f.r }

// A site that may not write (a Geo site that is not the confirmed primary)
// refuses every push with its role's words, after maintenance, and still
// serves reads; a stranger still sees "not found".
func TestPolicyRoleRefusesWritesOnly(t *testing.T) {
	alice, carol := &User{Name: "alice"}, &User{Name: "carol"}
	access := permByUser{"alice": PermissionWrite}
	demoted := &Refusal{Kind: RefusedMaintenance, Message: "no longer the primary"}
	p := &Policy{State: fixedState{}, Access: access, Role: refusingRole{demoted}}
	if d := p.Decide(Operation{Service: ReceivePack, User: alice}); !errors.Is(d.Err, demoted) {
		t.Fatalf("push: %v", d.Err)
	}
	if d := p.Decide(Operation{Service: UploadPack, User: alice}); !d.Allowed() {
		t.Fatalf("clone: %v", d.Err)
	}
	if d := p.Decide(Operation{Service: ReceivePack, User: carol}); !errors.Is(d.Err, ErrNotFound) {
		t.Fatalf("stranger: %v", d.Err)
	}
	p.State = fixedState{State: State{Enabled: true, Version: 1}}
	if d := p.Decide(Operation{Service: ReceivePack, User: alice}); !errors.Is(d.Err, ErrMaintenance) {
		t.Fatalf("in maintenance: %v", d.Err)
	}
	p.Role, p.State = refusingRole{nil}, fixedState{}
	if d := p.Decide(Operation{Service: ReceivePack, User: alice}); !d.Allowed() {
		t.Fatalf("primary: %v", d.Err)
	}
}
