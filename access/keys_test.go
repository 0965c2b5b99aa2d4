package access

import (
	"errors"
	"strings"
	"testing"
)

func TestParseKeyStrength(t *testing.T) {
	_, ed := newKey(t, "ed25519", "alice@laptop")
	_, ec256 := newKey(t, "ecdsa256", "")
	_, ec384 := newKey(t, "ecdsa384", "ci key")
	_, rsa2048 := newKey(t, "rsa2048", "old laptop")
	_, rsa1024 := newKey(t, "rsa1024", "ancient")
	edType, edData, _ := strings.Cut(ed, " ")
	edData, _, _ = strings.Cut(edData, " ")

	tests := []struct {
		name        string
		line        string
		wantComment string
		wantErr     string // substring; "" means valid
	}{
		{"ed25519", ed, "alice@laptop", ""},
		{"ecdsa p256 without comment", ec256, "", ""},
		{"ecdsa p384", ec384, "ci key", ""},
		{"rsa 2048", rsa2048, "old laptop", ""},
		{"surrounding spaces", "  " + ed + "  ", "alice@laptop", ""},
		{"tab separated", edType + "\t" + edData + "\tc", "c", ""},
		{"rsa 1024", rsa1024, "", "rsa key of 1024 bits, at least 2048 required"},
		{"empty", "", "", "empty key"},
		{"type only", edType, "", "without key data"},
		{"bad base64", edType + " !!!!", "", "not valid base64"},
		{"truncated data", edType + " " + edData[:20], "", "malformed ssh-ed25519 key"},
		{"type mismatch", "ecdsa-sha2-nistp256 " + edData, "", "key data is ssh-ed25519"},
		{"dsa", "ssh-dss AAAAB3NzaC1kc3M=", "", "too weak"},
		{"certificate", "ssh-ed25519-cert-v01@openssh.com AAAA", "", "certificates are not supported"},
		{"options", `no-pty,command="/bin/sh" ` + ed, "", "options"},
		{"unknown type", "ssh-foo AAAA", "", "unsupported key type"},
		{"two lines", ed + "\n" + ec256, "", "one key per line"},
		{"control character", ed + "\x00", "", "control characters"},
		{"invalid utf-8", ed + " \xff", "", "UTF-8"},
		{"huge", edType + " " + strings.Repeat("A", 20000), "", "at most"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key, comment, err := ParseKey(tt.line)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseKey error = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseKey: %v", err)
			}
			if comment != tt.wantComment {
				t.Errorf("comment = %q, want %q", comment, tt.wantComment)
			}
			if !strings.HasPrefix(Fingerprint(key), "SHA256:") {
				t.Errorf("Fingerprint = %q", Fingerprint(key))
			}
		})
	}
}

func TestKeyErrorsNameUserAndLine(t *testing.T) {
	_, ed := newKey(t, "ed25519", "")
	_, weak := newKey(t, "rsa1024", "")
	file := "users:\n" +
		"  - name: alice\n" +
		"    keys:\n" +
		"      - " + ed + "\n" +
		"  - name: bob\n" +
		"    keys:\n" +
		"      - " + ed + "\n" + // line 7: alice's key again
		"      - " + weak + "\n" // line 8
	_, err := ParseFile("/data/access.yaml", []byte(file))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		`/data/access.yaml:7: user "bob": ssh key 1: same key as user "alice"'s ssh key 1 (line 4)`,
		`/data/access.yaml:8: user "bob": ssh key 2: rsa key of 1024 bits, at least 2048 required`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error\n%v\nlacks\n%s", err, want)
		}
	}
	var fe *FileError
	if !errors.As(err, &fe) || fe.Line != 7 {
		t.Errorf("first FileError = %+v, want line 7", fe)
	}
}

func TestAddRemoveKey(t *testing.T) {
	key, line := newKey(t, "ed25519", "laptop")
	_, other := newKey(t, "ecdsa256", "laptop")
	f := &File{}
	for _, u := range []string{"alice", "bob"} {
		if err := f.AddUser(u, false); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.AddKey("alice", "  "+line+"  "); err != nil {
		t.Fatal(err)
	}
	if got := f.User("alice").Keys[0].Line; got != line {
		t.Errorf("stored %q, want the canonical %q", got, line)
	}
	if _, err := f.AddKey("bob", line); !errors.Is(err, ErrExists) {
		t.Errorf("same key for bob: %v, want ErrExists", err)
	}
	if _, err := f.AddKey("alice", other); err != nil {
		t.Fatal(err)
	}
	if _, err := f.RemoveKey("alice", "laptop"); err == nil || !strings.Contains(err.Error(), "2 keys match") {
		t.Errorf("ambiguous comment: %v", err)
	}
	removed, err := f.RemoveKey("alice", Fingerprint(key))
	if err != nil || removed.Line != line {
		t.Fatalf("RemoveKey by fingerprint = %v, %v", removed, err)
	}
	if _, err := f.RemoveKey("alice", "laptop"); err != nil {
		t.Errorf("RemoveKey by comment: %v", err)
	}
	if _, err := f.RemoveKey("alice", "laptop"); !errors.Is(err, ErrNotFound) {
		t.Errorf("RemoveKey of a removed key: %v", err)
	}
}
