package sshd_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/internal/leakcheck"
	"github.com/gitgate/gitgate/sshd"
)

// Exact texts users see.
const (
	maintenanceBox = "remote: \n" +
		"remote: ========================================================================\n" +
		"remote: \n" +
		"remote: Git push is not allowed because this GitLab instance is currently in (read-only) maintenance mode.\n" +
		"remote: \n" +
		"remote: ========================================================================\n" +
		"remote: \n"
	couldNotRead    = "fatal: Could not read from remote repository."
	notFoundLine    = "remote: ERROR: The project you were looking for could not be found or you don't have permission to view it.\n"
	pushDeniedLine  = "remote: ERROR: You are not allowed to push code to this project.\n"
	disallowedLine  = "remote: ERROR: Disallowed command. This server only runs git-upload-pack, git-receive-pack and git-upload-archive.\n"
	malformedLine   = "remote: ERROR: Malformed command. Expected a git command and a single-quoted repository path, like git-upload-pack 'group/project.git'.\n"
	invalidPathLine = "remote: ERROR: Invalid repository path. Paths look like group/project.git.\n"
	protocolLine    = "remote: ERROR: Invalid GIT_PROTOCOL. Expected version=0, version=1 or version=2.\n"
	keyRevokedLine  = "remote: ERROR: Your SSH key is no longer authorized on this server.\n"
	permDenied      = "Permission denied (publickey)"
)

func TestCloneFetchPush(t *testing.T) {
	for _, version := range []string{"0", "2"} {
		t.Run("protocol v"+version, func(t *testing.T) {
			g := startGate(t)
			alice := g.addUser("alice", gitgate.PermissionWrite)
			g.createRepo("group/repo", map[string][]byte{"README": []byte("hello\n")})
			dir := t.TempDir()

			clone := g.git(&alice, dir, "-c", "protocol.version="+version, "clone", g.url("group/repo.git"), "a")
			clone.Env = append(clone.Env, "GIT_TRACE_PACKET=1")
			r := ok(t, clone)
			// GIT_TRACE_PACKET shows "packet: clone< version 2" for a v2 server.
			if usedV2 := strings.Contains(r.stderr, "< version 2\n"); usedV2 != (version == "2") {
				t.Errorf("protocol v2 used: %v, want %v", usedV2, version == "2")
			}
			if data, err := os.ReadFile(filepath.Join(dir, "a", "README")); err != nil || string(data) != "hello\n" {
				t.Fatalf("README = %q, %v", data, err)
			}
			ok(t, g.git(&alice, dir, "-c", "protocol.version="+version, "clone", "-q", g.url("group/repo.git"), "b"))

			// Push from a, fetch into b.
			a := filepath.Join(dir, "a")
			if err := os.WriteFile(filepath.Join(a, "NEW"), []byte("new\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			ok(t, g.git(nil, a, "add", "NEW"))
			ok(t, g.git(nil, a, "commit", "-q", "-m", "new"))
			ok(t, g.git(&alice, a, "push", "-q", "origin", "main"))
			pushed := strings.TrimSpace(ok(t, g.git(nil, a, "rev-parse", "HEAD")).stdout)
			if got := g.head("group/repo"); got != pushed {
				t.Fatalf("server main = %s, want the pushed %s", got, pushed)
			}
			b := filepath.Join(dir, "b")
			ok(t, g.git(&alice, b, "-c", "protocol.version="+version, "fetch", "-q", "origin"))
			if got := strings.TrimSpace(ok(t, g.git(nil, b, "rev-parse", "origin/main")).stdout); got != pushed {
				t.Errorf("fetched origin/main = %s, want %s", got, pushed)
			}
		})
	}
}

func TestSCPStyleAddress(t *testing.T) {
	g := startGate(t)
	alice := g.addUser("alice", gitgate.PermissionRead)
	want := g.createRepo("group/repo", map[string][]byte{"README": []byte("hi\n")})
	dir := t.TempDir()
	ok(t, g.git(&alice, dir, "clone", "-q", "git@127.0.0.1:group/repo.git", "c"))
	if got := strings.TrimSpace(ok(t, g.git(nil, filepath.Join(dir, "c"), "rev-parse", "HEAD")).stdout); got != want {
		t.Errorf("HEAD = %s, want %s", got, want)
	}
	// The "git upload-pack" spelling and a "~/" path.
	r := ok(t, g.git(&alice, dir, "ls-remote", "--upload-pack=git upload-pack", "ssh://git@127.0.0.1:"+g.port+"/~/group/repo.git"))
	if !strings.Contains(r.stdout, want+"\trefs/heads/main") {
		t.Errorf("ls-remote = %q", r.stdout)
	}
}

func TestPushInMaintenance(t *testing.T) {
	g := startGate(t)
	alice := g.addUser("alice", gitgate.PermissionWrite)
	before := g.createRepo("group/repo", map[string][]byte{"README": []byte("hello\n")})
	dir := t.TempDir()
	work := filepath.Join(dir, "w")
	ok(t, g.git(&alice, dir, "clone", "-q", g.url("group/repo.git"), "w"))
	ok(t, g.git(nil, work, "commit", "-q", "--allow-empty", "-m", "during maintenance"))

	g.setMaintenance(true)
	r := run(t, g.git(&alice, work, "push", "origin", "main"))
	if r.status == 0 {
		t.Fatal("push in maintenance succeeded")
	}
	if !strings.Contains(r.stderr, maintenanceBox+couldNotRead+"\n") {
		t.Errorf("push stderr lacks the box and git's fatal line:\n%s", r.stderr)
	}
	if got := g.head("group/repo"); got != before {
		t.Errorf("main moved to %s during maintenance", got)
	}

	// The session itself exits with status 1 and prints the box alone.
	direct := run(t, g.ssh([]clientKey{alice}, nil, "git-receive-pack 'group/repo.git'"))
	if direct.status != 1 || direct.stderr != maintenanceBox || direct.stdout != "" {
		t.Errorf("git-receive-pack in maintenance: status %d, stdout %q, stderr\n%s", direct.status, direct.stdout, direct.stderr)
	}

	// Reads stay allowed.
	ok(t, g.git(&alice, dir, "clone", "-q", g.url("group/repo.git"), "read"))
	ok(t, g.git(&alice, work, "fetch", "-q", "origin"))
	archive := ok(t, g.git(&alice, dir, "archive", "--remote="+g.url("group/repo.git"), "HEAD"))
	if names := tarNames(t, archive.stdout); !slices.Contains(names, "README") {
		t.Errorf("archive in maintenance holds %v", names)
	}

	g.setMaintenance(false)
	ok(t, g.git(&alice, work, "push", "-q", "origin", "main"))
	if g.head("group/repo") == before {
		t.Error("push after maintenance did not move main")
	}
}

func TestArchive(t *testing.T) {
	g := startGate(t)
	alice := g.addUser("alice", gitgate.PermissionRead)
	g.createRepo("group/repo", map[string][]byte{"README": []byte("hello\n"), "main.go": []byte("package main\n")})
	r := ok(t, g.git(&alice, t.TempDir(), "archive", "--remote="+g.url("group/repo.git"), "--format=tar", "HEAD"))
	if names := tarNames(t, r.stdout); !slices.Equal(names, []string{"README", "main.go"}) {
		t.Errorf("archive holds %v", names)
	}
}

func tarNames(t *testing.T, data string) []string {
	t.Helper()
	var names []string
	tr := tar.NewReader(strings.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatalf("archive: %v", err)
		}
		if h.Typeflag == tar.TypeReg {
			names = append(names, h.Name)
		}
	}
}

func TestRefusals(t *testing.T) {
	g := startGate(t)
	reader := g.addUser("reader", gitgate.PermissionRead)
	g.grants.set("reader", "group/secret", gitgate.PermissionNone)
	g.createRepo("group/repo", map[string][]byte{"README": []byte("x\n")})
	g.createRepo("group/secret", map[string][]byte{"README": []byte("x\n")})
	dir := t.TempDir()

	t.Run("push without write access", func(t *testing.T) {
		work := filepath.Join(dir, "w")
		ok(t, g.git(&reader, dir, "clone", "-q", g.url("group/repo.git"), "w"))
		ok(t, g.git(nil, work, "commit", "-q", "--allow-empty", "-m", "x"))
		r := run(t, g.git(&reader, work, "push", "origin", "main"))
		if r.status == 0 || !strings.Contains(r.stderr, pushDeniedLine+couldNotRead+"\n") {
			t.Errorf("push: status %d, stderr:\n%s", r.status, r.stderr)
		}
	})

	t.Run("not found and not visible look the same", func(t *testing.T) {
		for _, svc := range []string{"git-upload-pack", "git-receive-pack", "git-upload-archive"} {
			secret := run(t, g.ssh([]clientKey{reader}, nil, svc+" 'group/secret.git'"))
			missing := run(t, g.ssh([]clientKey{reader}, nil, svc+" 'group/missing.git'"))
			for _, r := range []result{secret, missing} {
				if r.status != 1 || r.stderr != notFoundLine || r.stdout != "" {
					t.Errorf("%s: status %d, stdout %q, stderr %q", svc, r.status, r.stdout, r.stderr)
				}
			}
		}
		r := run(t, g.git(&reader, dir, "clone", g.url("group/secret.git"), "s"))
		if r.status == 0 || !strings.Contains(r.stderr, notFoundLine+couldNotRead+"\n") {
			t.Errorf("clone: status %d, stderr:\n%s", r.status, r.stderr)
		}
	})
}

func TestHostileCommands(t *testing.T) {
	g := startGate(t)
	alice := g.addUser("alice", gitgate.PermissionWrite)
	g.createRepo("group/repo", map[string][]byte{"README": []byte("x\n")})
	marker := filepath.Join(t.TempDir(), "pwned")

	for _, tc := range []struct {
		command string
		opts    []string
		stderr  string
	}{
		{command: "sh -c id", stderr: disallowedLine},
		{command: "sh -c 'touch " + marker + "'", stderr: disallowedLine},
		{command: "touch " + marker, stderr: disallowedLine},
		{command: "scp -t /tmp", stderr: disallowedLine},
		{command: "git-upload-pack '--help'", stderr: invalidPathLine},
		{command: "git-upload-pack '--upload-pack=touch " + marker + "'", stderr: invalidPathLine},
		{command: "git-upload-pack '../x'", stderr: invalidPathLine},
		{command: "git-upload-pack '/group/../../etc'", stderr: invalidPathLine},
		{command: "git-upload-pack 'group/repo.git;touch " + marker + "'", stderr: invalidPathLine},
		{command: "git-upload-pack '$(touch " + marker + ")'", stderr: invalidPathLine},
		{command: "git-upload-pack 'group/repo.git'; touch " + marker, stderr: malformedLine},
		{command: "git-upload-pack group/repo.git", stderr: malformedLine},
		{command: "git-upload-pack", stderr: malformedLine},
		{command: "git-upload-pack 'group/repo.git'", opts: []string{"-o", "SetEnv=GIT_PROTOCOL=version=3"}, stderr: protocolLine},
	} {
		r := run(t, g.ssh([]clientKey{alice}, tc.opts, tc.command))
		if r.status != 128 || r.stderr != tc.stderr || r.stdout != "" {
			t.Errorf("%q: status %d, stdout %q, stderr %q; want 128 and %q", tc.command, r.status, r.stdout, r.stderr, tc.stderr)
		}
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a hostile command ran: %s exists", marker)
	}
}

func TestRefusedRequests(t *testing.T) {
	g := startGate(t)
	alice := g.addUser("alice", gitgate.PermissionWrite)
	head := g.createRepo("group/repo", map[string][]byte{"README": []byte("x\n")})

	t.Run("environment other than GIT_PROTOCOL is ignored", func(t *testing.T) {
		// Were it passed to git, the config would hide every branch.
		cmd := g.ssh([]clientKey{alice}, []string{"-o", "SetEnv=LANG=C GIT_CONFIG_PARAMETERS='uploadpack.hiderefs'='refs/heads'"}, "git-upload-pack 'group/repo.git'")
		cmd.Stdin = strings.NewReader("0000")
		r := ok(t, cmd)
		if !strings.Contains(r.stdout, head+" refs/heads/main") {
			t.Errorf("advertisement lacks main: %q", r.stdout)
		}
	})

	t.Run("pty", func(t *testing.T) {
		// From a terminal, plain "ssh git@host" goes on without a pty (as
		// with GitLab); forced with -tt, the refusal is fatal to ssh.
		r := run(t, g.ssh([]clientKey{alice}, []string{"-tt"}))
		if r.status != 255 || !strings.Contains(r.stderr, "PTY allocation request failed on channel 0") {
			t.Errorf("status %d, stderr %q", r.status, r.stderr)
		}
	})

	t.Run("subsystem", func(t *testing.T) {
		r := run(t, g.ssh([]clientKey{alice}, []string{"-s"}, "sftp"))
		if r.status == 0 {
			t.Errorf("subsystem accepted: %+v", r)
		}
	})

	t.Run("stdio forwarding", func(t *testing.T) {
		r := run(t, g.ssh([]clientKey{alice}, []string{"-W", "127.0.0.1:" + g.port}))
		if r.status != 255 || !strings.Contains(r.stderr, "stdio forwarding failed") {
			t.Errorf("status %d, stderr %q", r.status, r.stderr)
		}
	})

	t.Run("remote forwarding", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a hang bound, not a timing check
		defer cancel()
		cmd := g.ssh([]clientKey{alice}, []string{"-N", "-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:9"})
		cmd = exec.CommandContext(ctx, cmd.Path, cmd.Args[1:]...)
		cmd.Env = g.env()
		r := run(t, cmd)
		if r.status != 255 || !strings.Contains(r.stderr, "remote port forwarding failed") {
			t.Errorf("status %d, stderr %q", r.status, r.stderr)
		}
	})
}

func TestSessionRequests(t *testing.T) {
	g := startGate(t)
	sess, err := g.dial(g.addUser("alice", gitgate.PermissionRead)).NewSession()
	if err != nil {
		t.Fatal(err)
	}
	env := func(name, value string) []byte { return gossh.Marshal(struct{ Name, Value string }{name, value}) }
	for _, tc := range []struct {
		name    string
		payload []byte
		want    bool
	}{
		{"env", env("GIT_PROTOCOL", "version=2"), true},
		{"env", env("GIT_DIR", "/etc"), false},
		{"env", env("LD_PRELOAD", "/tmp/x.so"), false},
		{"pty-req", gossh.Marshal(struct {
			Term                  string
			Columns, Rows, Pw, Ph uint32
			Modes                 string
		}{Term: "xterm", Columns: 80, Rows: 24}), false},
		{"x11-req", gossh.Marshal(struct {
			Single        bool
			Proto, Cookie string
			Screen        uint32
		}{Proto: "MIT-MAGIC-COOKIE-1", Cookie: "00"}), false},
		{"auth-agent-req@openssh.com", nil, false},
		{"subsystem", gossh.Marshal(struct{ Name string }{"sftp"}), false},
	} {
		got, err := sess.SendRequest(tc.name, true, tc.payload)
		if err != nil || got != tc.want {
			t.Errorf("%s %q: accepted %v, %v; want %v", tc.name, tc.payload, got, err, tc.want)
		}
	}
}

func TestGreeting(t *testing.T) {
	g := startGate(t)
	alice := g.addUser("alice", gitgate.PermissionNone)
	r := ok(t, g.ssh([]clientKey{alice}, nil))
	if r.stdout != "Welcome to gitgate, @alice!\n" || r.stderr != "" {
		t.Errorf("stdout %q, stderr %q", r.stdout, r.stderr)
	}
}

func TestAuthentication(t *testing.T) {
	g := startGate(t)
	alice := g.addUser("alice", gitgate.PermissionRead)
	bob := g.addUser("bob", gitgate.PermissionRead)
	stranger := newClientKey(t, "stranger")
	head := g.createRepo("group/repo", map[string][]byte{"README": []byte("x\n")})

	t.Run("unknown key", func(t *testing.T) {
		r := run(t, g.ssh([]clientKey{stranger}, nil, "git-upload-pack 'group/repo.git'"))
		if r.status != 255 || !strings.Contains(r.stderr, permDenied) {
			t.Errorf("status %d, stderr %q", r.status, r.stderr)
		}
		r = run(t, g.git(&stranger, t.TempDir(), "ls-remote", g.url("group/repo.git")))
		if r.status == 0 || !strings.Contains(r.stderr, permDenied) {
			t.Errorf("ls-remote: status %d, stderr %q", r.status, r.stderr)
		}
	})

	t.Run("the verified key names the user", func(t *testing.T) {
		for _, tc := range []struct {
			keys []clientKey
			want string
		}{
			{[]clientKey{stranger, alice}, "alice"},
			{[]clientKey{stranger, bob}, "bob"},
			{[]clientKey{alice, bob}, "alice"},
			{[]clientKey{bob, alice}, "bob"},
		} {
			r := ok(t, g.ssh(tc.keys, nil))
			if want := "Welcome to gitgate, @" + tc.want + "!\n"; r.stdout != want {
				t.Errorf("stdout %q, want %q", r.stdout, want)
			}
		}
	})

	t.Run("key removed while the server runs", func(t *testing.T) {
		carol := g.addUser("carol", gitgate.PermissionRead)
		r := ok(t, g.git(&carol, t.TempDir(), "ls-remote", g.url("group/repo.git")))
		if !strings.Contains(r.stdout, head) {
			t.Fatalf("ls-remote = %q", r.stdout)
		}
		g.keys.remove(carol.pub)
		r = run(t, g.git(&carol, t.TempDir(), "ls-remote", g.url("group/repo.git")))
		if r.status == 0 || !strings.Contains(r.stderr, permDenied) {
			t.Errorf("after removal: status %d, stderr %q", r.status, r.stderr)
		}
	})

	t.Run("key removed on an open connection", func(t *testing.T) {
		dave := g.addUser("dave", gitgate.PermissionRead)
		client := g.dial(dave)
		g.keys.remove(dave.pub)
		sess, err := client.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		var stdout, stderr bytes.Buffer
		sess.Stdout, sess.Stderr = &stdout, &stderr
		err = sess.Run("git-upload-pack 'group/repo.git'")
		var exit *gossh.ExitError
		if !errors.As(err, &exit) || exit.ExitStatus() != 1 || stderr.String() != keyRevokedLine || stdout.Len() != 0 {
			t.Errorf("err %v, stdout %q, stderr %q", err, stdout.String(), stderr.String())
		}
	})
}

func TestDisconnectMidCloneEndsGit(t *testing.T) {
	g := startGate(t)
	alice := g.addUser("alice", gitgate.PermissionRead)
	big := make([]byte, 16<<20) // random, so it neither compresses nor fits in the buffers
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	head := g.createRepo("group/big", map[string][]byte{"blob": big})
	repoPath := filepath.Join(g.root, "group/big.git")

	// Speak upload-pack v0 as git clone does, but never read the pack, so
	// that the transfer stalls mid-way with git's processes still running.
	cmd := g.ssh([]clientKey{alice}, nil, "git-upload-pack '/group/big.git'")
	want := "want " + head + "\n"
	cmd.Stdin = strings.NewReader(fmt.Sprintf("%04x%s0000%04xdone\n", 4+len(want), want, 4+len("done\n")))
	stdoutR, stdoutW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdoutR.Close()
	cmd.Stdout = stdoutW
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stdoutW.Close()
	packing := func() bool {
		for _, p := range gitProcesses(t, repoPath) {
			if strings.Contains(p, "pack-objects") {
				return true
			}
		}
		return false
	}
	if !waitFor(packing) {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("pack-objects never started; processes: %v", gitProcesses(t, repoPath))
	}

	cmd.Process.Kill() // the client vanishes mid-clone
	cmd.Wait()
	if !waitFor(func() bool { return len(gitProcesses(t, repoPath)) == 0 }) {
		t.Fatalf("git processes left after the client disconnected: %v", gitProcesses(t, repoPath))
	}
}

func TestRestartKeepsHostKey(t *testing.T) {
	g := startGate(t)
	alice := g.addUser("alice", gitgate.PermissionRead)
	knownHosts := filepath.Join(t.TempDir(), "known_hosts")
	first := g.srv.HostKeyFingerprints()
	ok(t, g.ssh([]clientKey{alice}, []string{"-o", "HostKeyAlias=gitgate", "-o", "UserKnownHostsFile=" + knownHosts, "-o", "StrictHostKeyChecking=accept-new"}))
	g.stop()

	// A new server on the same data dir presents the same keys.
	again, err := sshd.New(sshd.Config{
		Addr:       "127.0.0.1:0",
		HostKeyDir: g.dataDir,
		Keys:       g.keys,
		Policy:     &gitgate.Policy{State: g.live, Access: g.grants},
		Resolver:   mustResolver(t, g.root),
		Runner:     mustRunner(t, g.dataDir),
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := again.HostKeyFingerprints(); !slices.Equal(got, first) || len(got) != 2 {
		t.Fatalf("host keys after restart %v, before %v", got, first)
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- again.ListenAndServe(context.Background()) }()
	defer func() {
		again.Close()
		if err := <-serveErr; err != nil {
			t.Error(err)
		}
	}()
	if !waitFor(func() bool { return again.Addr() != nil }) {
		t.Fatal("the server never listened")
	}
	_, g.port, _ = net.SplitHostPort(again.Addr().String())
	r := ok(t, g.ssh([]clientKey{alice}, []string{"-o", "HostKeyAlias=gitgate", "-o", "UserKnownHostsFile=" + knownHosts, "-o", "StrictHostKeyChecking=yes"}))
	if r.stdout != "Welcome to gitgate, @alice!\n" {
		t.Errorf("stdout %q", r.stdout)
	}
}

func TestNewChecksConfig(t *testing.T) {
	if _, err := sshd.New(sshd.Config{HostKeyDir: t.TempDir()}); err == nil {
		t.Error("New without dependencies: no error")
	}
}

func mustResolver(t *testing.T, root string) *gitgate.Resolver {
	r, err := gitgate.NewResolver(root)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mustRunner(t *testing.T, dataDir string) *gitgate.Runner {
	r, err := gitgate.NewRunner("git", dataDir)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestSessionLimits(t *testing.T) {
	t.Run("per connection", func(t *testing.T) {
		g := startGate(t, func(c *sshd.Config) { c.MaxSessionsPerConn = 1 })
		client := g.dial(g.addUser("alice", gitgate.PermissionRead))
		if _, err := client.NewSession(); err != nil {
			t.Fatal(err)
		}
		_, err := client.NewSession()
		if err == nil || !strings.Contains(err.Error(), `resource shortage ("too many sessions on this connection (limit 1)")`) {
			t.Errorf("second session: %v", err)
		}
	})
	t.Run("total", func(t *testing.T) {
		g := startGate(t, func(c *sshd.Config) { c.MaxSessions = 1 })
		alice := g.addUser("alice", gitgate.PermissionRead)
		if _, err := g.dial(alice).NewSession(); err != nil {
			t.Fatal(err)
		}
		_, err := g.dial(alice).NewSession()
		if err == nil || !strings.Contains(err.Error(), `resource shortage ("the server is busy: too many sessions (limit 1); try again later")`) {
			t.Errorf("second session: %v", err)
		}
	})
}

func TestConnectionTimeouts(t *testing.T) {
	t.Run("login grace time", func(t *testing.T) {
		g := startGate(t, func(c *sshd.Config) { c.LoginGraceTime = 50 * time.Millisecond })
		nc, err := net.Dial("tcp", "127.0.0.1:"+g.port)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		// Say nothing after the version exchange: the server hangs up.
		readUntilClosed(t, nc)
	})

	t.Run("idle timeout despite keepalives", func(t *testing.T) {
		g := startGate(t, func(c *sshd.Config) {
			c.IdleTimeout = 200 * time.Millisecond
			c.KeepAliveInterval = 20 * time.Millisecond
		})
		client := g.dial(g.addUser("alice", gitgate.PermissionRead))
		waitClosed(t, client)
	})

	t.Run("unanswered keepalives", func(t *testing.T) {
		g := startGate(t, func(c *sshd.Config) {
			c.IdleTimeout = -1
			c.KeepAliveInterval = 20 * time.Millisecond
			c.KeepAliveCountMax = 2
		})
		alice := g.addUser("alice", gitgate.PermissionRead)
		nc, err := net.Dial("tcp", "127.0.0.1:"+g.port)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		conn, chans, reqs, err := gossh.NewClientConn(nc, "127.0.0.1", &gossh.ClientConfig{
			User:            "git",
			Auth:            []gossh.AuthMethod{gossh.PublicKeys(alice.signer)},
			HostKeyCallback: gossh.InsecureIgnoreHostKey(),
		})
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for range chans {
			}
		}()
		var held []*gossh.Request
		go func() {
			for r := range reqs {
				held = append(held, r) // a client that never answers
			}
		}()
		waitClosed(t, conn)
	})
}

// waitClosed waits until the server has closed the connection (bounded, as
// a hang guard).
func waitClosed(t *testing.T, conn interface{ Wait() error }) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		conn.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("the server never closed the connection")
	}
}

func TestShutdown(t *testing.T) {
	t.Run("graceful", func(t *testing.T) {
		g := startGate(t)
		alice := g.addUser("alice", gitgate.PermissionRead)
		g.createRepo("group/repo", map[string][]byte{"README": []byte("x\n")})
		sess, stdin, stdout := startUploadPack(t, g, alice)

		shutdownErr := make(chan error, 1)
		go func() { shutdownErr <- g.srv.Shutdown(context.Background()) }()
		// New connections are refused once the listener is closed.
		if !waitFor(func() bool {
			c, err := net.Dial("tcp", "127.0.0.1:"+g.port)
			if err == nil {
				c.Close()
			}
			return err != nil
		}) {
			t.Fatal("the server still accepts connections")
		}
		// The running session may finish.
		stdin.Write([]byte("0000"))
		stdin.Close()
		io.Copy(io.Discard, stdout)
		if err := sess.Wait(); err != nil {
			t.Errorf("session ended with %v", err)
		}
		if err := <-shutdownErr; err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-g.serveErr; err != nil {
			t.Errorf("Serve: %v", err)
		}
		g.stopped = true
		if err := leakcheck.Check(serverMarkers...); err != nil {
			t.Errorf("after Shutdown: %v", err)
		}
	})

	t.Run("grace period over", func(t *testing.T) {
		g := startGate(t)
		alice := g.addUser("alice", gitgate.PermissionRead)
		g.createRepo("group/repo", map[string][]byte{"README": []byte("x\n")})
		sess, _, _ := startUploadPack(t, g, alice)
		if len(gitProcesses(t, filepath.Join(g.root, "group/repo.git"))) == 0 {
			t.Fatal("no git process while the session runs")
		}

		ctx, cancel := context.WithCancel(context.Background())
		cancel() // no grace at all
		if err := g.srv.Shutdown(ctx); !errors.Is(err, context.Canceled) {
			t.Errorf("Shutdown = %v, want context.Canceled", err)
		}
		if left := gitProcesses(t, filepath.Join(g.root, "group/repo.git")); len(left) != 0 {
			t.Errorf("git processes left after Shutdown: %v", left)
		}
		if err := sess.Wait(); err == nil {
			t.Error("the cut session reported success")
		}
		if err := <-g.serveErr; err != nil {
			t.Errorf("Serve: %v", err)
		}
		g.stopped = true
		if err := leakcheck.Check(serverMarkers...); err != nil {
			t.Errorf("after Shutdown: %v", err)
		}
	})
}

// startUploadPack starts git-upload-pack over a Go client session and waits
// for the start of the ref advertisement, so that git is running.
func startUploadPack(t *testing.T, g *gate, k clientKey) (*gossh.Session, io.WriteCloser, io.Reader) {
	t.Helper()
	sess, err := g.dial(k).NewSession()
	if err != nil {
		t.Fatal(err)
	}
	stdin, err := sess.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := sess.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.Start("git-upload-pack 'group/repo.git'"); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(stdout, make([]byte, 4)); err != nil {
		t.Fatalf("no advertisement: %v", err)
	}
	return sess, stdin, stdout
}
