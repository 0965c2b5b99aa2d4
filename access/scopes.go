package access

import (
	"fmt"
	"strings"

	"github.com/gitgate/gitgate/gitgate"
)

// Scope names, spelt as GitLab spells its personal access token scopes.
const (
	ScopeReadRepository  = "read_repository"
	ScopeWriteRepository = "write_repository"
	ScopeAPI             = "api"
)

// scopeNames lists the scopes in the order they are written.
var scopeNames = []struct {
	name  string
	scope gitgate.Scopes
}{
	{ScopeAPI, gitgate.ScopeAPI},
	{ScopeReadRepository, gitgate.ScopeReadRepository},
	{ScopeWriteRepository, gitgate.ScopeWriteRepository},
}

// ParseScopes reads scope names; each item may also be a comma-separated
// list ("read_repository,write_repository"). Unknown names are an error;
// repeats are harmless. No names at all gives the zero (unscoped) set.
func ParseScopes(items []string) (gitgate.Scopes, error) {
	var s gitgate.Scopes
	for _, item := range items {
		for _, name := range strings.Split(item, ",") {
			name = strings.TrimSpace(name)
			sc, ok := scopeByName(name)
			if !ok {
				return 0, fmt.Errorf("unknown scope %q: want %s, %s or %s", truncate(name, 40),
					ScopeReadRepository, ScopeWriteRepository, ScopeAPI)
			}
			s |= sc
		}
	}
	return s, nil
}

func scopeByName(name string) (gitgate.Scopes, bool) {
	for _, n := range scopeNames {
		if n.name == name {
			return n.scope, true
		}
	}
	return 0, false
}

// ScopeNames returns the names of the scopes in s, in a fixed order; nil for
// the unscoped set.
func ScopeNames(s gitgate.Scopes) []string {
	var names []string
	for _, n := range scopeNames {
		if s&n.scope != 0 {
			names = append(names, n.name)
		}
	}
	return names
}
