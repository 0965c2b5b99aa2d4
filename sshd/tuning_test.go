package sshd_test

import (
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"

	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/sshd"
)

// The real OpenSSH client, with its default preferences (chacha20 first),
// ends up with the server's first cipher: AES-GCM on a CPU with AES
// instructions.
func TestOpenSSHClientNegotiatesFirstOfferedCipher(t *testing.T) {
	g := startGate(t)
	alice := g.addUser("alice", gitgate.PermissionRead)
	g.createRepo("repo", map[string][]byte{"README": []byte("hi\n")})
	r := run(t, g.ssh([]clientKey{alice}, []string{"-o", "LogLevel=DEBUG1"}, "git-upload-pack", "repo.git"))
	want := "kex: server->client cipher: " + sshd.DefaultCiphers()[0]
	if !strings.Contains(r.stderr, want) {
		t.Fatalf("ssh -v shows no %q:\n%s", want, r.stderr)
	}
	if hasAES := sshd.DefaultCiphers()[0] == gossh.CipherAES128GCM; hasAES {
		for _, c := range sshd.DefaultCiphers() {
			if !strings.Contains(c, "-gcm@") {
				t.Fatalf("with AES instructions the server offers %s, which OpenSSH's client would take before AES-GCM", c)
			}
		}
	}
}

func TestUnsupportedCipherIsRefused(t *testing.T) {
	_, err := sshd.New(sshd.Config{HostKeyDir: t.TempDir(), Keys: &keyring{}, Policy: &gitgate.Policy{},
		Resolver: &gitgate.Resolver{}, Runner: &gitgate.Runner{}, Ciphers: []string{"arcfour"}})
	if err == nil || !strings.Contains(err.Error(), `unsupported cipher "arcfour"`) {
		t.Fatalf("got %v", err)
	}
}
