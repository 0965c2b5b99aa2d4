package yamlerr

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

type user struct {
	Name  string `yaml:"name"`
	Admin bool   `yaml:"admin"`
}

type file struct {
	Users []user `yaml:"users"`
}

func decode(t *testing.T, src string) []Problem {
	t.Helper()
	dec := yaml.NewDecoder(strings.NewReader(src))
	dec.KnownFields(true)
	var f file
	err := dec.Decode(&f)
	if err == nil {
		t.Fatalf("%q decoded without error", src)
	}
	return Problems(err, strings.NewReplacer("yamlerr.user", "a user", "[]yamlerr.user", "a list of users"))
}

func TestProblems(t *testing.T) {
	tests := []struct {
		src  string
		want []Problem
	}{
		{"users:\n  - name: a\n    colour: red\n", []Problem{{3, `unknown field "colour" in a user`}}},
		{"users:\n  - name: a\n    admin: maybe\n  - name: b\n    admin: often\n", []Problem{
			{3, "cannot unmarshal !!str `maybe` into bool"},
			{5, "cannot unmarshal !!str `often` into bool"},
		}},
		{"users:\n  name: a\n", []Problem{{2, "cannot unmarshal !!map into a list of users"}}},
		{"users:\n  - name: a\n    admin: true: x\n", []Problem{{3, "mapping values are not allowed in this context"}}},
	}
	for _, tt := range tests {
		got := decode(t, tt.src)
		if len(got) != len(tt.want) {
			t.Fatalf("%q: %+v, want %+v", tt.src, got, tt.want)
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("%q: problem %d = %+v, want %+v", tt.src, i, got[i], tt.want[i])
			}
		}
	}
}
