package main

import (
	"bufio"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/gitgate/gitgate/audit"
)

// Every change to users, keys, tokens and rules made with the CLI is in the
// audit log, with who did it, and never a token secret or its hash.
func TestAccessChangesAudited(t *testing.T) {
	dir := t.TempDir()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key, line := sshKeyLine(t, pub, "bob@laptop")
	mustCLI(t, dir, "user", "add", "bob")
	mustCLI(t, dir, "user", "key", "add", "bob", line)
	secret := strings.TrimSpace(mustCLI(t, dir, "token", "create", "bob", "--name", "ci", "--scope", "read_repository"))
	id := strings.Fields(strings.Split(mustCLI(t, dir, "token", "list", "bob"), "\n")[1])[1]
	mustCLI(t, dir, "token", "revoke", "bob", id)
	mustCLI(t, dir, "access", "grant", "group/*", "--user", "bob", "--level", "write")
	mustCLI(t, dir, "access", "revoke", "group/*", "--user", "bob")
	mustCLI(t, dir, "access", "revoke", "group/*", "--all")
	mustCLI(t, dir, "user", "key", "remove", "bob", ssh.FingerprintSHA256(key))
	mustCLI(t, dir, "user", "remove", "bob")

	data, err := os.ReadFile(filepath.Join(dir, audit.FileName))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), secret) || strings.Contains(string(data), "sha256") {
		t.Fatalf("the audit log holds a token secret or hash:\n%s", data)
	}
	var actions []string
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for sc.Scan() {
		var ev audit.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("%v: %s", err, sc.Text())
		}
		if !strings.HasPrefix(ev.Actor, "cli") || ev.Transport != "cli" || ev.Time.IsZero() {
			t.Errorf("event without actor, transport or time: %s", sc.Text())
		}
		actions = append(actions, ev.Action)
	}
	want := []string{"user.add", "user.key.add", "token.create", "token.revoke", "access.grant",
		"access.revoke", "access.remove_rule", "user.key.remove", "user.remove"}
	if !slices.Equal(actions, want) {
		t.Errorf("audited %v, want %v", actions, want)
	}
	for _, s := range []string{`"scopes":"read_repository"`, `"id":"` + id + `"`, ssh.FingerprintSHA256(key), `"pattern":"group/*"`} {
		if !strings.Contains(string(data), s) {
			t.Errorf("the audit log lacks %s:\n%s", s, data)
		}
	}
}
