package sshd

import (
	"errors"
	"strings"
	"testing"

	"github.com/gitgate/gitgate/gitgate"
)

func TestParseCommand(t *testing.T) {
	valid := []struct {
		raw  string
		want Command
	}{
		{"git-upload-pack '/group/repo.git'", Command{gitgate.UploadPack, "group/repo.git", "group/repo"}},
		{"git-upload-pack 'group/repo.git'", Command{gitgate.UploadPack, "group/repo.git", "group/repo"}},
		{"git-upload-pack '~/group/repo.git'", Command{gitgate.UploadPack, "group/repo.git", "group/repo"}},
		{"git-receive-pack '/group/sub/repo'", Command{gitgate.ReceivePack, "group/sub/repo", "group/sub/repo"}},
		{"git-upload-archive '/repo.git'", Command{gitgate.UploadArchive, "repo.git", "repo"}},
		{"git upload-pack '/group/repo.git'", Command{gitgate.UploadPack, "group/repo.git", "group/repo"}},
		{"git receive-pack 'group/repo.git'", Command{gitgate.ReceivePack, "group/repo.git", "group/repo"}},
		{"git upload-archive '/g/r-1_x.y.git'", Command{gitgate.UploadArchive, "g/r-1_x.y.git", "g/r-1_x.y"}},
	}
	for _, tc := range valid {
		got, err := ParseCommand(tc.raw)
		if err != nil || got != tc.want {
			t.Errorf("ParseCommand(%q) = %+v, %v; want %+v", tc.raw, got, err, tc.want)
		}
	}

	invalid := []struct {
		raw  string
		want error
	}{
		{"", ErrDisallowedCommand},
		{"sh -c id", ErrDisallowedCommand},
		{"sh -c 'id'", ErrDisallowedCommand},
		{"scp -t /tmp", ErrDisallowedCommand},
		{"git-shell -c 'git-upload-pack x'", ErrDisallowedCommand},
		{"git git-upload-pack 'group/repo.git'", ErrDisallowedCommand},
		{"git-upload-packx 'group/repo.git'", ErrDisallowedCommand},
		{"git-upload-pack", ErrMalformedCommand},
		{"git upload-pack", ErrMalformedCommand},
		{"git-upload-pack group/repo.git", ErrMalformedCommand},
		{"git-upload-pack  'group/repo.git'", ErrMalformedCommand},
		{"git  upload-pack 'group/repo.git'", ErrMalformedCommand},
		{"git-upload-pack 'group/repo.git'; id", ErrMalformedCommand},
		{"git-upload-pack 'group/repo.git' ", ErrMalformedCommand},
		{"git-upload-pack 'group/repo.git'\n", ErrMalformedCommand},
		{"git-upload-pack 'a' 'b'", ErrMalformedCommand},
		{`git-upload-pack 'a'\''b'`, ErrMalformedCommand},
		{"git-upload-pack 'group/repo.git", ErrMalformedCommand},
		{"git-upload-pack --upload-pack=x 'a'", ErrMalformedCommand},
		{"git-upload-pack '" + strings.Repeat("a", maxCommandLength) + "'", ErrMalformedCommand},
		{"git-upload-pack ''", ErrInvalidPath},
		{"git-upload-pack '/'", ErrInvalidPath},
		{"git-upload-pack '--help'", ErrInvalidPath},
		{"git-upload-pack '-c'", ErrInvalidPath},
		{"git-upload-pack '../x'", ErrInvalidPath},
		{"git-upload-pack '/group/../../etc'", ErrInvalidPath},
		{"git-upload-pack '//etc/passwd'", ErrInvalidPath},
		{"git-upload-pack '/~/x'", ErrInvalidPath},
		{"git-upload-pack '~user/x'", ErrInvalidPath},
		{"git-upload-pack 'a/b;id'", ErrInvalidPath},
		{"git-upload-pack 'a/$(id)'", ErrInvalidPath},
		{"git-upload-pack 'a/b c'", ErrInvalidPath},
		{"git-upload-pack 'a/.git'", ErrInvalidPath},
		{"git-upload-pack 'a/\x00b'", ErrInvalidPath},
		{"git-upload-pack 'a/\nb'", ErrInvalidPath},
	}
	for _, tc := range invalid {
		got, err := ParseCommand(tc.raw)
		if !errors.Is(err, tc.want) {
			t.Errorf("ParseCommand(%q) = %+v, %v; want %v", tc.raw, got, err, tc.want)
		}
	}
}

func TestCommandString(t *testing.T) {
	c := Command{Service: gitgate.ReceivePack, Path: "group/repo.git", Name: "group/repo"}
	if got, want := c.String(), "git-receive-pack 'group/repo.git'"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

// FuzzParseCommand checks that whatever a client sends, an accepted command
// names a known service and a path that is a clean repository name made of
// harmless characters, which can be neither a shell construct nor a git
// option, and that it reads back the same.
func FuzzParseCommand(f *testing.F) {
	for _, seed := range []string{
		"git-upload-pack '/group/repo.git'",
		"git-receive-pack 'group/repo.git'",
		"git-upload-archive '~/repo.git'",
		"git upload-pack '/a/b/c'",
		"git-upload-pack '--help'",
		"git-upload-pack '../x'",
		"git-upload-pack 'a;id'",
		"git-upload-pack 'a'; id",
		"git-upload-pack 'a'\\''b'",
		"sh -c 'id'",
		"",
		"git-upload-pack",
		"git-upload-pack '//x'",
		"git upload-pack '~/~/x'",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		cmd, err := ParseCommand(raw)
		if err != nil {
			if !errors.Is(err, ErrDisallowedCommand) && !errors.Is(err, ErrMalformedCommand) && !errors.Is(err, ErrInvalidPath) {
				t.Fatalf("ParseCommand(%q): unexpected error kind %v", raw, err)
			}
			if cmd != (Command{}) {
				t.Fatalf("ParseCommand(%q): error %v with a non-zero command %+v", raw, err, cmd)
			}
			return
		}
		if _, err := gitgate.ParseService(string(cmd.Service)); err != nil {
			t.Fatalf("ParseCommand(%q): service %q", raw, cmd.Service)
		}
		if cmd.Path == "" || cmd.Path[0] == '-' || cmd.Path[0] == '/' || cmd.Path[0] == '.' {
			t.Fatalf("ParseCommand(%q): path %q", raw, cmd.Path)
		}
		for _, c := range []byte(cmd.Path) {
			ok := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("._-/", c) >= 0
			if !ok {
				t.Fatalf("ParseCommand(%q): path %q holds %q", raw, cmd.Path, c)
			}
		}
		for _, comp := range strings.Split(cmd.Path, "/") {
			if comp == "" || comp[0] == '.' || comp[0] == '-' {
				t.Fatalf("ParseCommand(%q): path %q has component %q", raw, cmd.Path, comp)
			}
		}
		if name, err := gitgate.CleanName(cmd.Path); err != nil || name != cmd.Name {
			t.Fatalf("ParseCommand(%q): name %q, CleanName(%q) = %q, %v", raw, cmd.Name, cmd.Path, name, err)
		}
		again, err := ParseCommand(cmd.String())
		if err != nil || again != cmd {
			t.Fatalf("ParseCommand(%q) = %+v, but its String %q parses as %+v, %v", raw, cmd, cmd.String(), again, err)
		}
	})
}

func TestBox(t *testing.T) {
	want := "remote: \n" +
		"remote: ========================================================================\n" +
		"remote: \n" +
		"remote: Git push is not allowed because this GitLab instance is currently in (read-only) maintenance mode.\n" +
		"remote: \n" +
		"remote: ========================================================================\n" +
		"remote: \n"
	if got := box(gitgate.MaintenanceMessage); got != want {
		t.Errorf("box() =\n%s\nwant\n%s", got, want)
	}
}
