package gitgate

import (
	"errors"
	"testing"
)

// A scoped token is a ceiling under the user's own rights: GitLab's
// read_repository reads, write_repository and api read and write; an
// unscoped user (SSH key, legacy token) keeps every right the rules give.
func TestPolicyScopes(t *testing.T) {
	access := permByUser{"writer": PermissionWrite, "reader": PermissionRead}
	open := fixedState{}
	maint := fixedState{State: State{Enabled: true, Version: 1}}
	user := func(name string, s Scopes) *User { return &User{Name: name, Scopes: s} }
	tests := []struct {
		name  string
		state fixedState
		op    Operation
		want  error
	}{
		{"unscoped writer pushes", open, Operation{Service: ReceivePack, User: user("writer", 0)}, nil},
		{"read_repository clones", open, Operation{Service: UploadPack, User: user("writer", ScopeReadRepository)}, nil},
		{"read_repository archives", open, Operation{Service: UploadArchive, User: user("writer", ScopeReadRepository)}, nil},
		{"read_repository pushes", open, Operation{Service: ReceivePack, User: user("writer", ScopeReadRepository)}, ErrPushForbidden},
		{"read_repository pushes in maintenance", maint, Operation{Service: ReceivePack, User: user("writer", ScopeReadRepository)}, ErrMaintenance},
		{"write_repository pushes", open, Operation{Service: ReceivePack, User: user("writer", ScopeWriteRepository)}, nil},
		{"write_repository clones", open, Operation{Service: UploadPack, User: user("writer", ScopeWriteRepository)}, nil},
		{"api pushes", open, Operation{Service: ReceivePack, User: user("writer", ScopeAPI)}, nil},
		{"api clones", open, Operation{Service: UploadPack, User: user("writer", ScopeAPI)}, nil},
		{"write_repository does not lift a reader", open, Operation{Service: ReceivePack, User: user("reader", ScopeWriteRepository|ScopeAPI)}, ErrPushForbidden},
		{"scopes do not reveal hidden repositories", open, Operation{Service: UploadPack, User: user("stranger", ScopeAPI)}, ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := (&Policy{State: tt.state, Access: access}).Decide(tt.op)
			if !errors.Is(d.Err, tt.want) && !(tt.want == nil && d.Err == nil) {
				t.Fatalf("Decide = %v, want %v", d.Err, tt.want)
			}
		})
	}
}

func TestScopesHas(t *testing.T) {
	if !Scopes(0).Has(ScopeAPI) || !Scopes(0).Has(ScopeReadRepository|ScopeWriteRepository) {
		t.Error("unscoped does not grant everything")
	}
	if ScopeReadRepository.Has(ScopeAPI) || ScopeWriteRepository.Has(ScopeAPI) {
		t.Error("a repository scope grants api")
	}
	if (ScopeReadRepository | ScopeAPI).Has(ScopeWriteRepository) {
		t.Error("Has(write) without write_repository")
	}
	if got := (ScopeReadRepository).RepositoryPermission(); got != PermissionRead {
		t.Errorf("read_repository: %s", got)
	}
}
