package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/gitgate/gitgate/access"
	"github.com/gitgate/gitgate/gitgate"
)

// gitgateCLI runs the command line with --data-dir dir and returns its
// output and exit status.
func gitgateCLI(t *testing.T, dir string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runCLI(t, "", append([]string{"--data-dir", dir}, args...)...)
}

// mustCLI runs the command line and fails the test unless it succeeds.
func mustCLI(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, errOut, code := gitgateCLI(t, dir, args...)
	if code != 0 {
		t.Fatalf("gitgate %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

func sshKeyLine(t *testing.T, pub any, comment string) (ssh.PublicKey, string) {
	t.Helper()
	key, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return key, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key))) + " " + comment
}

func TestAccessCLI(t *testing.T) {
	dir := t.TempDir()
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edKey, edLine := sshKeyLine(t, edPub, "bob@laptop")
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	_, weakLine := sshKeyLine(t, &weak.PublicKey, "old")
	weakFile := filepath.Join(t.TempDir(), "weak.pub")
	if err := os.WriteFile(weakFile, []byte("# old keys\n\n"+weakLine+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	// Users. Flags after arguments, as documented, through the real entry point.
	var out, errb bytes.Buffer
	if err := run(context.Background(), &out, &errb, []string{"gitgate", "--data-dir", dir, "user", "add", "alice", "--admin"}); err != nil {
		t.Fatalf("user add alice --admin: %v\n%s", err, errb.String())
	}
	if got := out.String(); got != "added admin alice\n" {
		t.Errorf("user add --admin printed %q", got)
	}
	if got := mustCLI(t, dir, "user", "add", "bob"); got != "added user bob\n" {
		t.Errorf("user add printed %q", got)
	}
	if _, errOut, code := gitgateCLI(t, dir, "user", "add", "BOB"); code != 1 || !strings.Contains(errOut, `user "bob": already exists`) {
		t.Errorf("duplicate user: exit %d, %q", code, errOut)
	}

	// Keys.
	if got := mustCLI(t, dir, "user", "key", "add", "bob", edLine); got != "added ssh-ed25519 key "+ssh.FingerprintSHA256(edKey)+" to bob\n" {
		t.Errorf("key add printed %q", got)
	}
	_, errOut, code := gitgateCLI(t, dir, "user", "key", "add", "--file", weakFile, "bob")
	if want := weakFile + ":3: rsa key of 1024 bits, at least 2048 required"; code != 1 || !strings.Contains(errOut, want) {
		t.Errorf("weak key: exit %d, %q; want %q", code, errOut, want)
	}
	list := mustCLI(t, dir, "user", "key", "list", "bob")
	if !strings.Contains(list, ssh.FingerprintSHA256(edKey)) || !strings.Contains(list, "bob@laptop") {
		t.Errorf("key list:\n%s", list)
	}
	users := mustCLI(t, dir, "user", "list")
	if !regexp.MustCompile(`(?m)^alice\s+yes\s+0\s+0$`).MatchString(users) || !regexp.MustCompile(`(?m)^bob\s+no\s+1\s+0$`).MatchString(users) {
		t.Errorf("user list:\n%s", users)
	}

	// Tokens.
	out2, errOut, code := gitgateCLI(t, dir, "token", "create", "--name", "ci", "--expires", "2099-01-01", "bob")
	if code != 0 {
		t.Fatalf("token create: exit %d: %s", code, errOut)
	}
	secret := strings.TrimSpace(out2)
	if !strings.HasPrefix(secret, access.TokenPrefix) || strings.Count(out2, "\n") != 1 {
		t.Errorf("token create printed %q; want the secret alone", out2)
	}
	if !strings.Contains(errOut, "will not be shown again") {
		t.Errorf("token create warned %q", errOut)
	}
	tokens := mustCLI(t, dir, "token", "list", "bob")
	m := regexp.MustCompile(`(?m)^bob\s+([0-9a-f]{8})\s+ci\s+\S+\s+2099-01-01T00:00:00Z\s+all\s+active$`).FindStringSubmatch(tokens)
	if m == nil || strings.Contains(tokens, secret) {
		t.Fatalf("token list:\n%s", tokens)
	}
	id := m[1]

	// Rules.
	mustCLI(t, dir, "access", "grant", "--user", "bob", "--level", "write", "group/*")
	mustCLI(t, dir, "access", "grant", "--signed-in", "--level", "read", "**")
	mustCLI(t, dir, "access", "grant", "--anonymous", "--level", "read", "group/*")
	mustCLI(t, dir, "access", "grant", "--user", "bob", "--level", "read", "group/secret")
	rules := mustCLI(t, dir, "access", "list")
	for _, want := range []string{
		`(?m)^PATTERN\s+WHO\s+LEVEL$`,
		`(?m)^group/\*\s+bob\s+write$`,
		`(?m)^group/\*\s+\(anonymous\)\s+read$`,
		`(?m)^\*\*\s+\(signed in\)\s+read$`,
		`(?m)^group/secret\s+bob\s+read$`,
	} {
		if !regexp.MustCompile(want).MatchString(rules) {
			t.Errorf("access list lacks %s:\n%s", want, rules)
		}
	}

	// The file is what the server reads.
	snap := loadSnapshot(t, dir)
	bob := &gitgate.User{Name: "bob"}
	for repo, want := range map[string]gitgate.Permission{
		"group/app":    gitgate.PermissionWrite,
		"group/secret": gitgate.PermissionRead,
		"other/app":    gitgate.PermissionRead,
	} {
		if got := snap.Permission(bob, repo); got != want {
			t.Errorf("bob on %s: %v, want %v", repo, got, want)
		}
	}
	if got := snap.Permission(nil, "group/app"); got != gitgate.PermissionRead {
		t.Errorf("anonymous on group/app: %v", got)
	}
	if u, err := snap.AuthenticateToken(secret, time.Now()); err != nil || u.Name != "bob" {
		t.Errorf("AuthenticateToken = %v, %v", u, err)
	}
	if u, ok := snap.UserByKey(edKey); !ok || u.Name != "bob" {
		t.Errorf("UserByKey = %v, %v", u, ok)
	}
	data, err := os.ReadFile(access.FilePath(dir))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), secret) {
		t.Fatal("the access file holds the token secret")
	}

	// Revocations.
	if got := mustCLI(t, dir, "token", "revoke", "bob", id); !strings.HasPrefix(got, "revoked token "+id+" of bob") {
		t.Errorf("token revoke printed %q", got)
	}
	if _, err := loadSnapshot(t, dir).AuthenticateToken(secret, time.Now()); err == nil {
		t.Error("a revoked token still works")
	}
	if !regexp.MustCompile(`(?m)^bob\s+` + id + `\s+ci\s+.*revoked$`).MatchString(mustCLI(t, dir, "token", "list")) {
		t.Error("token list does not show the token as revoked")
	}
	if got := mustCLI(t, dir, "access", "revoke", "--user", "bob", "group/secret"); !strings.Contains(got, "now grants nothing") {
		t.Errorf("revoking the last grant printed %q", got)
	}
	mustCLI(t, dir, "access", "revoke", "--all", "group/secret")
	mustCLI(t, dir, "user", "key", "remove", "bob", "bob@laptop")
	mustCLI(t, dir, "user", "remove", "bob")
	f, err := access.NewStore(dir).Load()
	if err != nil {
		t.Fatal(err)
	}
	if f.User("bob") != nil || f.Rule("group/secret") != nil || len(f.Rule("group/*").Write) != 0 {
		t.Errorf("after removals: %+v", f)
	}
}

func TestAccessCLIUsageErrors(t *testing.T) {
	dir := t.TempDir()
	mustCLI(t, dir, "user", "add", "alice")
	for _, args := range [][]string{
		{"user", "add"},
		{"user", "add", "a", "b"},
		{"user", "list", "extra"},
		{"user", "key", "add", "alice"},
		{"user", "key", "add", "--file", "x", "alice", "ssh-ed25519", "AAAA"},
		{"token", "create", "--expires", "tomorrow", "alice"},
		{"token", "revoke", "alice"},
		{"access", "grant", "--level", "read", "group/*"},
		{"access", "grant", "--user", "alice", "group/*"},
		{"access", "grant", "--user", "alice", "--level", "admin", "group/*"},
		{"access", "revoke", "group/*"},
		{"access", "revoke", "--all", "--user", "alice", "group/*"},
		{"access", "grant", "--bogus", "group/*"},
	} {
		out, errOut, code := gitgateCLI(t, dir, args...)
		if code != 2 || strings.Count(errOut, "\n") != 1 || !strings.HasPrefix(errOut, "gitgate: ") {
			t.Errorf("gitgate %s: exit %d, stderr %q, stdout %q; want exit 2 and one line", strings.Join(args, " "), code, errOut, out)
		}
	}
}

func TestAccessCLIAnonymousWriteWarns(t *testing.T) {
	dir := t.TempDir()
	_, errOut, code := gitgateCLI(t, dir, "access", "grant", "--anonymous", "--level", "write", "sandbox/*")
	if code != 0 || !strings.Contains(errOut, "warning: anyone who can reach the gate can now push to sandbox/*") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}

func TestAccessCLIRefusesInvalidFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(access.FilePath(dir), []byte("users:\n  - name: a\n    role: admin\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := gitgateCLI(t, dir, "user", "add", "b")
	if want := access.FilePath(dir) + `:3: unknown field "role" in a user`; code != 1 || !strings.Contains(errOut, want) {
		t.Errorf("exit %d, stderr %q; want %q", code, errOut, want)
	}
}

func loadSnapshot(t *testing.T, dir string) *access.Snapshot {
	t.Helper()
	f, err := access.NewStore(dir).Load()
	if err != nil {
		t.Fatal(err)
	}
	snap, err := access.NewSnapshot(f)
	if err != nil {
		t.Fatal(err)
	}
	return snap
}
