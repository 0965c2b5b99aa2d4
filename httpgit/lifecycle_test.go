package httpgit_test

import (
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gitgate/gitgate/internal/gittest"
)

// bigRepo makes a repository whose pack is far larger than socket buffers,
// so that a clone of it is still streaming when the test acts.
func bigRepo(t *testing.T, g *testGate, name string) (path, commit string) {
	t.Helper()
	path = filepath.Join(g.root, name+".git")
	gittest.MustGit(t, g.env, g.root, "init", "-q", "--bare", path)
	work := t.TempDir()
	gittest.MustGit(t, g.env, work, "init", "-q")
	blob := make([]byte, 24<<20) // random: git cannot compress it
	rand.Read(blob)
	if err := os.WriteFile(filepath.Join(work, "blob.bin"), blob, 0o644); err != nil {
		t.Fatal(err)
	}
	gittest.MustGit(t, g.env, work, "add", ".")
	gittest.MustGit(t, g.env, work, "commit", "-q", "-m", "big")
	gittest.MustGit(t, g.env, work, "push", "-q", path, "main")
	return path, gittest.MustGit(t, g.env, work, "rev-parse", "HEAD")
}

// startFetch opens an upload-pack request for commit and reads the first
// bytes of the pack, so git is known to be streaming. The caller owns conn.
func startFetch(t *testing.T, g *testGate, repo, commit string) (net.Conn, io.Reader) {
	t.Helper()
	body := fmt.Sprintf("%04xwant %s\n0000%04xdone\n", 4+len("want \n")+len(commit), commit, 4+len("done\n"))
	conn, err := net.Dial("tcp", strings.TrimPrefix(g.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "POST /%s.git/git-upload-pack HTTP/1.1\r\nHost: gate\r\n"+
		"Content-Type: application/x-git-upload-pack-request\r\nContent-Length: %d\r\n\r\n%s", repo, len(body), body)
	buf := make([]byte, 64<<10)
	if _, err := io.ReadFull(conn, buf); err != nil {
		t.Fatalf("reading the start of the pack: %v", err)
	}
	return conn, conn
}

// waitNoGit polls (bounded) until no git process for path is left.
func waitNoGit(t *testing.T, path string) {
	t.Helper()
	var left []string
	for i := 0; i < 1000; i++ {
		if left = gittest.LeftoverGit(path); len(left) == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("git processes left behind: %v", left)
}

func TestClientDisconnectMidCloneEndsGit(t *testing.T) {
	g := startGate(t, gateOptions{})
	path, commit := bigRepo(t, g, "big")
	conn, _ := startFetch(t, g, "big", commit)
	if len(gittest.LeftoverGit(path)) == 0 {
		t.Fatal("expected git upload-pack to be running while the clone streams")
	}
	conn.Close()
	waitNoGit(t, path)
}

func TestGracefulShutdownLetsRunningClonesFinish(t *testing.T) {
	g := startGate(t, gateOptions{})
	path, commit := bigRepo(t, g, "big")
	conn, r := startFetch(t, g, "big", commit)
	defer conn.Close()

	g.stop() // SIGTERM: stop accepting, let the clone go on
	readiness := 0
	for i := 0; i < 1000 && readiness != http.StatusServiceUnavailable; i++ {
		if resp, err := http.Get(g.url + "/-/readiness"); err == nil {
			readiness = resp.StatusCode
			resp.Body.Close()
		} else {
			break // listener already closed: no new work accepted
		}
	}
	n, err := io.Copy(io.Discard, r)
	if err != nil || n < 20<<20 {
		t.Fatalf("clone cut short after %d more bytes: %v", n, err)
	}
	g.shutdown()
	if _, err := net.Dial("tcp", strings.TrimPrefix(g.url, "http://")); err == nil {
		t.Error("gate still accepts connections after shutdown")
	}
	waitNoGit(t, path)
}

func TestShutdownAfterGraceEndsStalledClones(t *testing.T) {
	g := startGate(t, gateOptions{grace: 100 * time.Millisecond})
	path, commit := bigRepo(t, g, "big")
	conn, _ := startFetch(t, g, "big", commit) // and then never read again
	defer conn.Close()
	g.shutdown()
	waitNoGit(t, path)
}
