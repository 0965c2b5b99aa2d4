package sshd

import (
	"errors"
	"testing"
)

func TestParseLFSCommand(t *testing.T) {
	for _, tc := range []struct {
		raw   string
		isLFS bool
		want  LFSCommand
		err   error
	}{
		{"git-lfs-authenticate proj.git download", true, LFSCommand{Path: "proj.git", Name: "proj", Operation: "download"}, nil},
		{"git-lfs-authenticate '/group/proj.git' upload", true, LFSCommand{Path: "group/proj.git", Name: "group/proj", Operation: "upload"}, nil},
		{"git-lfs-authenticate ~/proj.git upload", true, LFSCommand{Path: "proj.git", Name: "proj", Operation: "upload"}, nil},
		{"git-lfs-authenticate proj.git delete", true, LFSCommand{}, ErrMalformedCommand},
		{"git-lfs-authenticate proj.git", true, LFSCommand{}, ErrMalformedCommand},
		{"git-lfs-authenticate", true, LFSCommand{}, ErrMalformedCommand},
		{"git-lfs-authenticate proj.git download extra", true, LFSCommand{}, ErrMalformedCommand},
		{"git-lfs-authenticate 'proj.git download", true, LFSCommand{}, ErrMalformedCommand},
		{"git-lfs-authenticate pr'oj.git download", true, LFSCommand{}, ErrMalformedCommand},
		{"git-lfs-authenticate ../etc.git download", true, LFSCommand{}, ErrInvalidPath},
		{"git-lfs-authenticate -proj.git download", true, LFSCommand{}, ErrInvalidPath},
		{"git-lfs-authenticate  proj.git download", true, LFSCommand{}, ErrMalformedCommand},
		{"git-upload-pack 'proj.git'", false, LFSCommand{}, nil},
		{"git-lfs-transfer proj.git upload", false, LFSCommand{}, nil},
		{"git-lfs-authenticateX proj.git upload", false, LFSCommand{}, nil},
	} {
		got, isLFS, err := ParseLFSCommand(tc.raw)
		if isLFS != tc.isLFS {
			t.Errorf("%q: isLFS %v, want %v", tc.raw, isLFS, tc.isLFS)
			continue
		}
		if !isLFS {
			continue
		}
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("%q: err %v, want %v", tc.raw, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: %+v, %v; want %+v", tc.raw, got, err, tc.want)
		}
	}
}

// FuzzParseLFSCommand: whatever the client sends, an accepted command has
// a clean repository name and one of the two operations.
func FuzzParseLFSCommand(f *testing.F) {
	for _, s := range []string{"git-lfs-authenticate proj.git download", "git-lfs-authenticate '/a/b.git' upload", "git-lfs-authenticate ../x upload"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		cmd, isLFS, err := ParseLFSCommand(raw)
		if !isLFS || err != nil {
			return
		}
		if cmd.Operation != "download" && cmd.Operation != "upload" {
			t.Fatalf("operation %q accepted", cmd.Operation)
		}
		if cmd.Name == "" || cmd.Name[0] == '-' || cmd.Name[0] == '/' {
			t.Fatalf("name %q accepted", cmd.Name)
		}
	})
}
