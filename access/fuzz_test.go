package access

import (
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gitgate/gitgate/gitgate"
)

// FuzzParseFile checks that the access file parser never panics, that every
// error names the file, and that a file it accepts survives being written
// back and read again.
func FuzzParseFile(f *testing.F) {
	example, err := os.ReadFile("testdata/example.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	f.Add([]byte(""))
	f.Add([]byte(precedenceFile))
	f.Add([]byte("users:\n  - name: bob\n    colour: red\n"))
	f.Add([]byte("users: &a [*a]\n"))
	f.Add([]byte("rules:\n  - pattern: \"**\"\n    anonymous: write\n"))
	f.Add([]byte("users:\n  - &u {name: a}\n  - *u\n"))
	f.Add([]byte("users:\n  - name: a\n    tokens:\n      - {id: x, sha256: 00, expires: 2020-01-01}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := ParseFile("access.yaml", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "access.yaml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		snap, err := NewSnapshot(file)
		if err != nil {
			t.Fatalf("ParseFile accepted a file NewSnapshot refuses: %v", err)
		}
		snap.Permission(&gitgate.User{Name: "a"}, "a/b")
		snap.Permission(nil, "a")
		out, err := file.Marshal()
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		again, err := ParseFile("access.yaml", out)
		if err != nil {
			t.Fatalf("re-reading the marshalled file: %v\n%s", err, out)
		}
		out2, err := again.Marshal()
		if err != nil || string(out2) != string(out) {
			t.Fatalf("marshal not stable (%v):\n%s\n---\n%s", err, out, out2)
		}
	})
}

// FuzzParseCredentials checks that header parsing never panics and that a
// token it returns is a bounded run of visible ASCII.
func FuzzParseCredentials(f *testing.F) {
	f.Add("Basic b2F1dGgyOmdndF9hYmM=", "")
	f.Add("Bearer ggt_abc", "")
	f.Add("", "ggt_abc")
	f.Add("Basic !!!", "")
	f.Add("Basic "+basic("a\x00:b")[6:], "")
	f.Add("basic    Og==", "x")
	f.Fuzz(func(t *testing.T, authorization, privateToken string) {
		h := http.Header{}
		if authorization != "" {
			h.Set("Authorization", authorization)
		}
		if privateToken != "" {
			h.Set("Private-Token", privateToken)
		}
		c, err := ParseCredentials(h)
		if err != nil {
			if !errors.Is(err, ErrNoCredentials) && !errors.Is(err, ErrMalformedCredentials) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		if c.Token == "" || len(c.Token) > maxTokenLength || !utf8.ValidString(c.Token) {
			t.Fatalf("bad token %q", c.Token)
		}
		for _, b := range []byte(c.Token) {
			if b <= ' ' || b >= 0x7f {
				t.Fatalf("token %q holds byte %#x", c.Token, b)
			}
		}
		if strings.ContainsFunc(c.Username, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			t.Fatalf("user name %q holds control characters", c.Username)
		}
		// Whatever it returns is safe to hand to a snapshot.
		var snap Snapshot
		if _, err := snap.AuthenticateToken(c.Token, time.Time{}); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("AuthenticateToken on an empty snapshot = %v", err)
		}
	})
}
