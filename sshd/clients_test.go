package sshd_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"

	"github.com/gitgate/gitgate/gitgate"
)

// A push in maintenance is refused before any pack data whatever SSH
// version string the client sends; only the channel changes. The SSH
// clients git runs get GitLab's box on stderr and nothing on stdout (git's
// output stays as it was); every other client gets the box and an ERR
// packet on stdout, where the ref advertisement would start, which libraries
// that do not show stderr (JGit, go-git) report. No ref moves.
func TestPushRefusalChannelBySSHVersion(t *testing.T) {
	g := startGate(t)
	alice := g.addUser("alice", gitgate.PermissionWrite)
	before := g.createRepo("group/repo", map[string][]byte{"README": []byte("x\n")})
	g.setMaintenance(true)

	versions := []string{
		"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3",
		"SSH-2.0-PuTTY_Release_0.78",
		"SSH-2.0-JSCH-0.1.54",
		"SSH-2.0-Go",
		"SSH-2.0-libssh2_1.10.0",
		"SSH-2.0-paramiko_3.1.0",
		"SSH-2.0-OpenSSH",
		"SSH-2.0-",
	}
	// And random ones (seed logged, count bounded): printable ASCII and
	// spaces, as a version line may carry.
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rnd := rand.New(rand.NewPCG(seed, 0))
	for range 24 {
		b := make([]byte, rnd.IntN(60))
		for i := range b {
			b[i] = byte(0x20 + rnd.IntN(0x7f-0x20))
		}
		prefix := "SSH-2.0-"
		if rnd.IntN(4) == 0 {
			prefix = "SSH-2.0-OpenSSH_"
		}
		versions = append(versions, prefix+string(b))
	}

	// A push as a client sends it: one command with its capabilities, a
	// flush, then (bogus) pack data.
	var push bytes.Buffer
	cmd := fmt.Sprintf("%s %s refs/heads/main\x00report-status side-band-64k\n", before, strings.Repeat("1", 40))
	fmt.Fprintf(&push, "%04x%s0000PACK\x00\x00\x00\x02\x00\x00\x00\x01junk", 4+len(cmd), cmd)
	errPacket := fmt.Sprintf("%04xERR %s", 4+len("ERR ")+len(gitgate.MaintenanceMessage), gitgate.MaintenanceMessage)

	for _, v := range versions {
		c, err := gossh.Dial("tcp", "127.0.0.1:"+g.port, &gossh.ClientConfig{
			User:            "git",
			Auth:            []gossh.AuthMethod{gossh.PublicKeys(alice.signer)},
			HostKeyCallback: gossh.InsecureIgnoreHostKey(),
			ClientVersion:   strings.TrimRight(v, " "),
		})
		if err != nil {
			t.Errorf("version %q: dial: %v", v, err)
			continue
		}
		sess, err := c.NewSession()
		if err != nil {
			c.Close()
			t.Fatalf("version %q: session: %v", v, err)
		}
		var stdout, stderr bytes.Buffer
		sess.Stdin, sess.Stdout, sess.Stderr = bytes.NewReader(push.Bytes()), &stdout, &stderr
		err = sess.Run("git-receive-pack 'group/repo.git'")
		c.Close()
		var exit *gossh.ExitError
		if !errors.As(err, &exit) || exit.ExitStatus() != 1 {
			t.Errorf("version %q: push ended with %v, want exit status 1", v, err)
		}
		if stderr.String() != maintenanceBox {
			t.Errorf("version %q: stderr %q, want the box", v, stderr.String())
		}
		want := ""
		if gitgate.RefusalChannelFor(gitgate.TransportSSH, strings.TrimRight(v, " ")) == gitgate.ChannelProtocol {
			want = errPacket
		}
		if stdout.String() != want {
			t.Errorf("version %q: stdout %q, want %q", v, stdout.String(), want)
		}
	}
	if got := g.head("group/repo"); got != before {
		t.Errorf("main moved to %s during maintenance", got)
	}
	// The ones git runs keep GitLab's channel; the others do not.
	if gitgate.RefusalChannelFor(gitgate.TransportSSH, versions[0]) != gitgate.ChannelGitLab ||
		gitgate.RefusalChannelFor(gitgate.TransportSSH, versions[2]) != gitgate.ChannelProtocol {
		t.Error("OpenSSH and JSch share a channel")
	}
}
