package access

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/gitgate/gitgate/gitgate"
)

func TestParseFileErrorsNameFileAndLine(t *testing.T) {
	const hash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	tests := []struct {
		name string
		yaml string
		want []string // each must appear in the error
	}{
		{"unknown top-level field",
			"users: []\ngroups: []\n",
			[]string{`access.yaml:2: unknown field "groups" in the access file`}},
		{"unknown user field",
			"users:\n  - name: bob\n    colour: red\n",
			[]string{`access.yaml:3: unknown field "colour" in a user`}},
		{"unknown rule field",
			"rules:\n  - pattern: a/*\n    readers: [bob]\n",
			[]string{`access.yaml:3: unknown field "readers" in a rule`}},
		{"unknown token field",
			"users:\n  - name: bob\n    tokens:\n      - id: a\n        sha256: " + hash + "\n        secret: x\n",
			[]string{`access.yaml:6: unknown field "secret" in a token`}},
		{"wrong type",
			"users:\n  - name: bob\n    admin: maybe\n",
			[]string{`access.yaml:3: cannot unmarshal`}},
		{"users is a map",
			"users: {bob: {}}\n",
			[]string{`access.yaml:1: cannot unmarshal !!map into a list of users`}},
		{"duplicate key",
			"users:\n  - name: bob\n    name: eve\n",
			[]string{`access.yaml:3: mapping key "name" already defined at line 2`}},
		{"syntax error",
			"users:\n  - name: bob\n    keys: [a\n",
			[]string{`access.yaml:2: did not find expected ',' or ']'`}},
		{"unquoted star",
			"rules:\n  - pattern: **\n",
			[]string{`access.yaml:2: did not find expected alphabetic or numeric character (quote patterns that start with '*': pattern: "**")`}},
		{"bad time",
			"users:\n  - name: bob\n    tokens:\n      - id: a\n        sha256: " + hash + "\n        expires: next week\n",
			[]string{`access.yaml:6: expires: "next week" is not a time`}},
		{"two documents",
			"users: []\n---\nrules: []\n",
			[]string{`access.yaml: more than one YAML document`}},
		{"key is a map",
			"users:\n  - name: bob\n    keys:\n      - {type: ed25519}\n",
			[]string{`access.yaml:4: ssh key must be a string`}},
		{"bad and duplicate user names",
			"users:\n  - name: bob\n  - name: 'bad name'\n  - name: BOB\n  - name: ''\n",
			[]string{
				`access.yaml:3: user 2: user name "bad name" holds ' '`,
				`access.yaml:4: user "BOB": defined twice (also as "bob" at line 2)`,
				`access.yaml:5: user 4: empty user name`,
			}},
		{"bad tokens",
			"users:\n  - name: bob\n    tokens:\n" +
				"      - id: a\n        sha256: " + hash + "\n" +
				"      - id: a\n        sha256: " + strings.Replace(hash, "9", "8", 1) + "\n" +
				"      - id: b\n        sha256: " + strings.ToUpper(hash) + "\n" +
				"      - id: 'no spaces'\n        sha256: " + hash + "\n" +
				"  - name: eve\n    tokens:\n      - id: a\n        sha256: " + hash + "\n",
			[]string{
				`access.yaml:6: user "bob": token "a": id used twice`,
				`access.yaml:8: user "bob": token "b": sha256 must be 64 lower-case hex digits`,
				`access.yaml:10: user "bob": token 4: id "no spaces"`,
				`access.yaml:14: user "eve": token "a": same sha256 as user "bob"'s token "a" (line 4)`,
			}},
		{"bad rules",
			"users:\n  - name: bob\n  - name: eve\nrules:\n" +
				"  - pattern: group/*/x\n" + // 5
				"  - pattern: group/app.git\n" + // 6
				"  - pattern: ok/*\n    read: [bob]\n    write: [bob]\n" + // 7
				"  - pattern: ok/*\n" + // 10
				"  - pattern: level\n    signed_in: admin\n" + // 11
				"  - pattern: star\n    read: ['*']\n" + // 13
				"  - pattern: case\n    write: [Eve]\n" + // 15
				"  - pattern: ../x\n", // 17
			[]string{
				`access.yaml:5: rule 1: pattern "group/*/x": wildcards must be a whole last segment`,
				`access.yaml:6: rule 2: pattern "group/app.git": path segment "app.git" ends in .git`,
				`access.yaml:7: rule "ok/*": user "bob" listed under both read and write`,
				`access.yaml:10: rule "ok/*": pattern used twice (also at line 7)`,
				`access.yaml:11: rule "level": signed_in: want "read" or "write", not "admin"`,
				`access.yaml:13: rule "star": read: "*" is not a user name: use "signed_in: read"`,
				`access.yaml:15: rule "case": write: user "Eve" is defined as "eve"`,
				`access.yaml:17: rule 8: pattern "../x": ".." is not a repository path segment`,
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := ParseFile("access.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatalf("no error; parsed %+v", f)
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error\n%v\nlacks\n%s", err, want)
				}
			}
			var fe *FileError
			if !errors.As(err, &fe) || fe.File != "access.yaml" {
				t.Errorf("error is not a *FileError naming the file: %#v", err)
			}
		})
	}
}

func TestParseFileEmpty(t *testing.T) {
	for _, in := range []string{"", "\n", "# only a comment\n", "users: []\nrules: []\n", "---\n"} {
		f, err := ParseFile("access.yaml", []byte(in))
		if err != nil {
			t.Errorf("ParseFile(%q): %v", in, err)
			continue
		}
		if len(f.Users) != 0 || len(f.Rules) != 0 {
			t.Errorf("ParseFile(%q) = %+v, want empty", in, f)
		}
	}
}

func TestParseFileTooLarge(t *testing.T) {
	_, err := ParseFile("access.yaml", make([]byte, MaxFileSize+1))
	if err == nil || !strings.Contains(err.Error(), "at most") {
		t.Errorf("err = %v", err)
	}
}

func TestWarnings(t *testing.T) {
	snap := mustSnapshot(t, "users:\n  - name: bob\nrules:\n"+
		"  - pattern: a/*\n    read: [ghost]\n"+
		"  - pattern: open/**\n    anonymous: write\n")
	var got []string
	for _, w := range snap.Warnings() {
		got = append(got, w.Error())
	}
	want := []string{
		`access.yaml:4: rule "a/*": read: user "ghost" is not defined in this file; the grant has no effect`,
		`access.yaml:6: rule "open/**": anonymous: write lets anyone push to open/** without signing in`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if p := snap.Permission(&gitgate.User{Name: "ghost"}, "a/x"); p != gitgate.PermissionNone {
		t.Errorf("undefined user got %v", p)
	}
}

// TestExampleFile checks the example shipped in testdata, which the package
// documentation shows.
func TestExampleFile(t *testing.T) {
	data, err := os.ReadFile("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f, err := ParseFile("testdata/example.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := NewSnapshot(f)
	if err != nil {
		t.Fatal(err)
	}
	bob := &gitgate.User{Name: "bob"}
	for repo, want := range map[string]gitgate.Permission{
		"group/app":    gitgate.PermissionWrite,
		"group/secret": gitgate.PermissionRead,
		"other/thing":  gitgate.PermissionRead,
	} {
		if got := snap.Permission(bob, repo); got != want {
			t.Errorf("bob on %s: %v, want %v", repo, got, want)
		}
	}
	if got := snap.Permission(nil, "group/secret"); got != gitgate.PermissionNone {
		t.Errorf("anonymous on group/secret: %v", got)
	}
	if got := snap.Permission(nil, "group/app"); got != gitgate.PermissionRead {
		t.Errorf("anonymous on group/app: %v", got)
	}
}

// TestMarshalRoundTrip checks that what the CLI writes reads back the same.
func TestMarshalRoundTrip(t *testing.T) {
	data, err := os.ReadFile("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f, err := ParseFile("a.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	out, err := f.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	g, err := ParseFile("b.yaml", out)
	if err != nil {
		t.Fatalf("re-reading the marshalled file: %v\n%s", err, out)
	}
	again, err := g.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != string(again) {
		t.Errorf("marshal is not stable:\n%s\n---\n%s", out, again)
	}
	if !strings.HasPrefix(string(out), "# gitgate access file") {
		t.Errorf("no header comment:\n%s", out)
	}
}
