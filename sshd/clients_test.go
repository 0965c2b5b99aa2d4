package sshd_test

import (
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

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

	push := pushCommand(before)
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
		stdout, stderr, status := refusedPush(t, c, push, !strings.HasPrefix(v, "SSH-2.0-JSCH"))
		c.Close()
		if status != 1 {
			t.Errorf("version %q: exit status %d, want 1", v, status)
		}
		if stderr != maintenanceBox {
			t.Errorf("version %q: stderr %q, want the box", v, stderr)
		}
		want := ""
		if gitgate.RefusalChannelFor(gitgate.TransportSSH, strings.TrimRight(v, " ")) == gitgate.ChannelProtocol {
			want = errPacket
		}
		if stdout != want {
			t.Errorf("version %q: stdout %q, want %q", v, stdout, want)
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

// pushCommand is a push as a client sends it: one command for main with
// its capabilities, a flush, then (bogus) pack data.
func pushCommand(old string) []byte {
	cmd := fmt.Sprintf("%s %s refs/heads/main\x00report-status side-band-64k\n", old, strings.Repeat("1", 40))
	return []byte(fmt.Sprintf("%04x%s0000PACK\x00\x00\x00\x02\x00\x00\x00\x01junk", 4+len(cmd), cmd))
}

// refusedPush runs git-receive-pack on c with push as its input, as a
// client does: it reads stdout and stderr to their end and the exit
// status, then, with serverCloses, waits for the server to close the
// channel (as Go's Session.Run does) and else closes it (as JGit does).
func refusedPush(t *testing.T, c *gossh.Client, push []byte, serverCloses bool) (stdout, stderr string, status int) {
	t.Helper()
	ch, reqs, err := c.OpenChannel("session", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	if ok, err := ch.SendRequest("exec", true, gossh.Marshal(struct{ Command string }{"git-receive-pack 'group/repo.git'"})); !ok || err != nil {
		t.Fatalf("exec: %v %v", ok, err)
	}
	go func() {
		ch.Write(push)
		ch.CloseWrite()
	}()
	stderrc := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(ch.Stderr())
		stderrc <- b
	}()
	out, _ := io.ReadAll(ch) // ends at the server's EOF
	errOut := <-stderrc
	status = -1
	for req := range reqs { // the exit status follows EOF
		if req.Type == "exit-status" && len(req.Payload) == 4 {
			status = int(binary.BigEndian.Uint32(req.Payload))
			break
		}
	}
	if serverCloses {
		for range reqs { // bounded by the test's timeout
		}
	}
	return string(out), string(errOut), status
}

// A push from JSch refused with an ERR packet gets EOF and its exit status
// at once, but the server leaves the channel open for the client to close:
// JGit reports a channel closed before JSch looked as "connection failed",
// not the message (TestClients in package clienttest saw it under load).
// Other clients get the close at once (TestPushRefusalChannelBySSHVersion's
// Go clients wait for it).
func TestRefusedPushLeavesTheCloseToTheClient(t *testing.T) {
	g := startGate(t)
	alice := g.addUser("alice", gitgate.PermissionWrite)
	before := g.createRepo("group/repo", map[string][]byte{"README": []byte("x\n")})
	g.setMaintenance(true)
	c, err := gossh.Dial("tcp", "127.0.0.1:"+g.port, &gossh.ClientConfig{
		User:            "git",
		Auth:            []gossh.AuthMethod{gossh.PublicKeys(alice.signer)},
		HostKeyCallback: gossh.InsecureIgnoreHostKey(),
		ClientVersion:   "SSH-2.0-JSCH-0.1.54",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ch, reqs, err := c.OpenChannel("session", nil)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := ch.SendRequest("exec", true, gossh.Marshal(struct{ Command string }{"git-receive-pack 'group/repo.git'"})); !ok || err != nil {
		t.Fatalf("exec: %v %v", ok, err)
	}
	go func() {
		ch.Write(pushCommand(before))
		ch.CloseWrite()
	}()
	stderrc := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(ch.Stderr())
		stderrc <- b
	}()
	stdout, _ := io.ReadAll(ch) // ends at the server's EOF
	if want := fmt.Sprintf("%04xERR %s", 4+len("ERR ")+len(gitgate.MaintenanceMessage), gitgate.MaintenanceMessage); string(stdout) != want {
		t.Errorf("stdout %q, want %q", stdout, want)
	}
	if stderr := <-stderrc; string(stderr) != maintenanceBox {
		t.Errorf("stderr %q", stderr)
	}
	req, ok := <-reqs
	if !ok || req.Type != "exit-status" {
		t.Fatalf("after EOF: request %v (open %v), want exit-status", req, ok)
	}
	if status := binary.BigEndian.Uint32(req.Payload); status != 1 {
		t.Errorf("exit status %d", status)
	}
	// The channel stays open: the server does not close it before the
	// client does. (Only an absence can be checked: a short look.)
	select {
	case r, ok := <-reqs:
		t.Fatalf("the server closed the channel first (request %v, open %v)", r, ok)
	case <-time.After(200 * time.Millisecond):
	}
	ch.Close()
	for range reqs { // closed once the server has seen the close: bounded by the test's timeout
	}
	if got := g.head("group/repo"); got != before {
		t.Errorf("main moved to %s during maintenance", got)
	}
}
