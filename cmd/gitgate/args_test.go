package main

import (
	"slices"
	"testing"
)

func TestInterspersed(t *testing.T) {
	app := newApp(nil, nil)
	tests := []struct {
		in, want []string
	}{
		{
			[]string{"gitgate", "repo", "create", "example", "--readme"},
			[]string{"gitgate", "repo", "create", "--readme", "example"},
		},
		{
			[]string{"gitgate", "--data-dir", "d", "maintenance", "enable", "--message", "up grade"},
			[]string{"gitgate", "--data-dir", "d", "maintenance", "enable", "--message", "up grade"},
		},
		{ // a value that looks like a command name stays a value
			[]string{"gitgate", "--data-dir", "repo", "repo", "list"},
			[]string{"gitgate", "--data-dir", "repo", "repo", "list"},
		},
		{ // an argument that names a command is not taken for one
			[]string{"gitgate", "repo", "create", "list", "--if-missing"},
			[]string{"gitgate", "repo", "create", "--if-missing", "list"},
		},
		{ // "--" ends flags
			[]string{"gitgate", "repo", "create", "--", "--readme"},
			[]string{"gitgate", "repo", "create", "--", "--readme"},
		},
		{
			[]string{"gitgate", "repo", "--repos=x", "create", "a", "--readme=true"},
			[]string{"gitgate", "repo", "--repos=x", "create", "--readme=true", "a"},
		},
	}
	for _, tt := range tests {
		if got := interspersed(app, tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("interspersed(%q)\n got %q\nwant %q", tt.in, got, tt.want)
		}
	}
}
