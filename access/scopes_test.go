package access

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gitgate/gitgate/gitgate"
)

func TestParseScopes(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want gitgate.Scopes
		err  string
	}{
		{nil, 0, ""},
		{[]string{"read_repository"}, gitgate.ScopeReadRepository, ""},
		{[]string{"read_repository,write_repository", "api"}, gitgate.ScopeReadRepository | gitgate.ScopeWriteRepository | gitgate.ScopeAPI, ""},
		{[]string{" api , api"}, gitgate.ScopeAPI, ""},
		{[]string{"sudo"}, 0, `unknown scope "sudo"`},
		{[]string{"read_repository,"}, 0, `unknown scope ""`},
		{[]string{"API"}, 0, `unknown scope "API"`},
	} {
		got, err := ParseScopes(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	if got := ScopeNames(gitgate.ScopeWriteRepository | gitgate.ScopeAPI); !slices.Equal(got, []string{"api", "write_repository"}) {
		t.Errorf("ScopeNames: %v", got)
	}
}

// Scopes survive the file: written by CreateToken, read back by the server;
// an unknown scope in a hand-edited file is an error with its line.
func TestTokenScopesInFile(t *testing.T) {
	f := &File{}
	if err := f.AddUser("bob", false); err != nil {
		t.Fatal(err)
	}
	secret, _, err := f.CreateToken("bob", TokenOptions{Scopes: gitgate.ScopeReadRepository}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	data, err := f.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), "scopes: [read_repository]") {
		t.Errorf("file:\n%s", data)
	}
	_, snap, err := parseSnapshot("access.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	u, err := snap.AuthenticateToken(secret, testNow.Add(time.Minute))
	if err != nil || u.Scopes != gitgate.ScopeReadRepository {
		t.Fatalf("read back: %+v, %v", u, err)
	}
	bad := strings.Replace(string(data), "[read_repository]", "[read_repository, sudo]", 1)
	if _, err := ParseFile("access.yaml", []byte(bad)); err == nil || !strings.Contains(err.Error(), `scopes: unknown scope "sudo"`) || !strings.Contains(err.Error(), "access.yaml:") {
		t.Errorf("unknown scope in the file: %v", err)
	}
}
