package sshd_test

import (
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/sys/cpu"

	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/sshd"
)

// The real OpenSSH client, with its default preferences (chacha20 first),
// ends up with AES-GCM on a CPU with AES instructions, where the server
// offers it AES-GCM alone; without them, with its own first choice.
func TestOpenSSHClientNegotiatesAESGCM(t *testing.T) {
	g := startGate(t)
	alice := g.addUser("alice", gitgate.PermissionRead)
	g.createRepo("repo", map[string][]byte{"README": []byte("hi\n")})
	r := run(t, g.ssh([]clientKey{alice}, []string{"-o", "LogLevel=DEBUG1"}, "git-upload-pack", "repo.git"))
	want := "kex: server->client cipher: " + gossh.CipherChaCha20Poly1305
	if (cpu.X86.HasAES && cpu.X86.HasPCLMULQDQ) || (cpu.ARM64.HasAES && cpu.ARM64.HasPMULL) {
		want = "kex: server->client cipher: " + gossh.CipherAES128GCM
	}
	if !strings.Contains(r.stderr, want) {
		t.Fatalf("ssh -v shows no %q:\n%s", want, r.stderr)
	}
	if !strings.Contains(r.stderr, "Remote protocol version 2.0, remote software version gitgate") {
		t.Fatalf("the server's identification is not gitgate's:\n%s", r.stderr)
	}
}

// Clients that know only AES-CTR (JSch, libssh2 before 1.11: JGit and
// libgit2) or only one cipher still connect: the AES-GCM-only offer is
// for OpenSSH's client alone.
func TestClientsWithOtherCiphersConnect(t *testing.T) {
	g := startGate(t)
	alice := g.addUser("alice", gitgate.PermissionRead)
	g.createRepo("repo", map[string][]byte{"README": []byte("hi\n")})
	for _, tc := range []struct{ version, cipher string }{
		{"SSH-2.0-JSCH-0.1.54", gossh.CipherAES128CTR},
		{"SSH-2.0-libssh2_1.10.0", gossh.CipherAES256CTR},
		{"SSH-2.0-Go", gossh.CipherChaCha20Poly1305},
		{"SSH-2.0-OpenSSH_9.2p1", gossh.CipherAES128GCM},
	} {
		t.Run(tc.version, func(t *testing.T) {
			cfg := &gossh.ClientConfig{
				User:            "git",
				Auth:            []gossh.AuthMethod{gossh.PublicKeys(alice.signer)},
				HostKeyCallback: gossh.InsecureIgnoreHostKey(),
				ClientVersion:   tc.version,
				Config:          gossh.Config{Ciphers: []string{tc.cipher}},
				Timeout:         10 * time.Second,
			}
			c, err := gossh.Dial("tcp", "127.0.0.1:"+g.port, cfg)
			if err != nil {
				t.Fatalf("%s offering only %s: %v", tc.version, tc.cipher, err)
			}
			defer c.Close()
			if got := string(c.ServerVersion()); got != "SSH-2.0-gitgate" {
				t.Fatalf("server version %q", got)
			}
		})
	}
}

// The SSH version string changes which cipher a client gets, never
// whether it connects: an OpenSSH client that does not offer AES-GCM (built
// without OpenSSL, or "ssh -c chacha20-poly1305@openssh.com", or a
// "Ciphers" line in its ssh_config) still connects.
func TestOpenSSHClientWithoutAESGCMConnects(t *testing.T) {
	g := startGate(t)
	alice := g.addUser("alice", gitgate.PermissionRead)
	g.createRepo("repo", map[string][]byte{"README": []byte("hi\n")})
	for _, cipher := range []string{gossh.CipherChaCha20Poly1305, gossh.CipherAES256CTR} {
		t.Run(cipher, func(t *testing.T) {
			cfg := &gossh.ClientConfig{
				User:            "git",
				Auth:            []gossh.AuthMethod{gossh.PublicKeys(alice.signer)},
				HostKeyCallback: gossh.InsecureIgnoreHostKey(),
				ClientVersion:   "SSH-2.0-OpenSSH_9.2p1",
				Config:          gossh.Config{Ciphers: []string{cipher}},
				Timeout:         10 * time.Second,
			}
			c, err := gossh.Dial("tcp", "127.0.0.1:"+g.port, cfg)
			if err != nil {
				t.Fatalf("OpenSSH offering only %s: %v", cipher, err)
			}
			c.Close()
		})
	}
	r := run(t, g.ssh([]clientKey{alice}, []string{"-c", gossh.CipherChaCha20Poly1305}, "git-upload-pack", "repo.git"))
	if r.status == 255 { // ssh's own failure, not upload-pack's
		t.Fatalf("ssh -c %s: status %d\n%s", gossh.CipherChaCha20Poly1305, r.status, r.stderr)
	}
}

func TestUnsupportedCipherIsRefused(t *testing.T) {
	_, err := sshd.New(sshd.Config{HostKeyDir: t.TempDir(), Keys: &keyring{}, Policy: &gitgate.Policy{},
		Resolver: &gitgate.Resolver{}, Runner: &gitgate.Runner{}, Ciphers: []string{"arcfour"}})
	if err == nil || !strings.Contains(err.Error(), `unsupported cipher "arcfour"`) {
		t.Fatalf("got %v", err)
	}
}
