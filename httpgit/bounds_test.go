package httpgit_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/httpgit"
	"github.com/gitgate/gitgate/internal/gittest"
)

// pkt frames s as a pkt-line.
func pkt(s string) string { return fmt.Sprintf("%04x%s", 4+len(s), s) }

// rawRequest sends head (request line and headers, without the blank line)
// and then body exactly as given, and reads the answer.
func rawRequest(t *testing.T, g *testGate, head, body string) (*http.Response, string) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(g.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(60 * time.Second)) // a hang fails the test instead of blocking it
	fmt.Fprintf(conn, "%s\r\nHost: gate\r\nConnection: close\r\n\r\n%s", head, body)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%s: %v", head, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// A malformed chunked body is the client's error: 400, not 500.
func TestBadChunkSizeIsBadRequest(t *testing.T) {
	g := startGate(t, gateOptions{})
	gittest.BareRepoWithCommit(t, g.env, g.root, "repo")
	for _, body := range []string{
		"zz\r\nhello\r\n0\r\n\r\n",                // not hex
		"5\r\n0009d\r\nfffffffffffffffffffff\r\n", // size overflows
		"-1\r\nx\r\n0\r\n\r\n",                    // negative
	} {
		resp, got := rawRequest(t, g, "POST /repo.git/git-upload-pack HTTP/1.1\r\n"+
			"Content-Type: application/x-git-upload-pack-request\r\nTransfer-Encoding: chunked", body)
		if resp.StatusCode != http.StatusBadRequest || got != "Bad Request\n" {
			t.Errorf("body %q: %d %q, want 400", body, resp.StatusCode, got)
		}
	}
}

// A fetch whose body inflates past MaxRequestBody is refused with 413, and
// the gate does not inflate it further.
func TestInflatedBodyIsCapped(t *testing.T) {
	g := startGate(t, gateOptions{configure: func(c *httpgit.Config) { c.MaxRequestBody = 1 << 20 }})
	_, commit := gittest.BareRepoWithCommit(t, g.env, g.root, "repo")
	var zipped bytes.Buffer
	zw := gzip.NewWriter(&zipped)
	have := pkt("have " + strings.Repeat("1", 40) + "\n") // unknown: git answers nothing
	zw.Write([]byte(pkt("want "+commit+"\n") + "0000"))
	for i := 0; i < (8<<20)/len(have); i++ { // 8 MiB of haves
		io.WriteString(zw, have)
	}
	zw.Close()
	req, _ := http.NewRequest("POST", g.url+"/repo.git/git-upload-pack", &zipped)
	req.Header.Set("Content-Type", "application/x-git-upload-pack-request")
	req.Header.Set("Content-Encoding", "gzip")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d %.200q, want 413", resp.StatusCode, b)
	}
}

// A push refused in maintenance whose body is a gzip bomb of commands (that
// inflates to 64 MiB of commands) costs the gate a bounded amount of
// memory: it keeps no command, and reads a bounded part of the body.
func TestRefusedPushMemoryIsBounded(t *testing.T) {
	g := startGate(t, gateOptions{anonymousPush: true})
	bare, before := gittest.BareRepoWithCommit(t, g.env, g.root, "repo")
	g.setMaintenance(t, true)

	zero := strings.Repeat("0", 40)
	var zipped bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&zipped, gzip.BestSpeed)
	io.WriteString(zw, pkt(zero+" "+before+" refs/heads/main\x00report-status side-band-64k agent=git/2\n"))
	line := []byte(pkt(zero + " " + before + " refs/heads/" + strings.Repeat("x", 100) + "\n"))
	chunk := bytes.Repeat(line, (1<<20)/len(line))
	for i := 0; i < 64; i++ { // 64 MiB of commands
		zw.Write(chunk)
	}
	io.WriteString(zw, "0000")
	zw.Close()
	t.Logf("%d bytes of gzip", zipped.Len())

	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	req, _ := http.NewRequest("POST", g.url+"/repo.git/git-receive-pack", bytes.NewReader(zipped.Bytes()))
	req.Header.Set("Content-Type", "application/x-git-receive-pack-request")
	req.Header.Set("Content-Encoding", "gzip")
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !bytes.Contains(b, []byte(gitgate.MaintenanceMessage)) ||
			!bytes.Contains(b, []byte("ng refs/heads/main read-only maintenance mode")) {
			t.Errorf("answer %d %.300q", resp.StatusCode, b)
		}
	} // else: the gate closed the connection after its bound, which is allowed
	runtime.ReadMemStats(&m1)
	if alloc := m1.TotalAlloc - m0.TotalAlloc; alloc > 32<<20 {
		t.Errorf("refusing the push allocated %d MiB", alloc>>20)
	}
	if got := gittest.MustGit(t, g.env, bare, "rev-parse", "main"); got != before {
		t.Errorf("main moved to %s", got)
	}
}

// A request body that stops arriving ends the request and its git after the
// idle timeout.
func TestIdleBodyEndsGit(t *testing.T) {
	g := startGate(t, gateOptions{configure: func(c *httpgit.Config) { c.BodyIdleTimeout = 300 * time.Millisecond }})
	path, commit := gittest.BareRepoWithCommit(t, g.env, g.root, "repo")
	want := pkt("want " + commit + "\n")
	resp, got := rawRequest(t, g, "POST /repo.git/git-upload-pack HTTP/1.1\r\n"+
		"Content-Type: application/x-git-upload-pack-request\r\nTransfer-Encoding: chunked",
		fmt.Sprintf("%x\r\n%s\r\n", len(want), want)) // then nothing, the connection open
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("%d %q, want 408", resp.StatusCode, got)
	}
	if left := gittest.LeftoverGit(path); len(left) > 0 {
		t.Fatalf("git still running after the answer: %v", left)
	}
}

// openFetch starts an upload-pack POST whose body never ends, and waits
// until its git holds a slot of limiter.
func openFetch(t *testing.T, g *testGate, l *gitgate.Limiter, commit string, want int) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(g.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	w := pkt("want " + commit + "\n")
	fmt.Fprintf(conn, "POST /repo.git/git-upload-pack HTTP/1.1\r\nHost: gate\r\n"+
		"Content-Type: application/x-git-upload-pack-request\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n", len(w), w)
	for i := 0; ; i++ {
		if n, _, _ := l.InUse(gitgate.Operation{}); n == want {
			return conn
		}
		if i == 1000 {
			t.Fatalf("git for the open fetch never started (%d in use, want %d)", func() int { n, _, _ := l.InUse(gitgate.Operation{}); return n }(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A flood of fetches with unfinished bodies holds at most the limiter's
// slots; the others are refused at once with the busy message, never held.
func TestFloodOfUnfinishedBodiesIsBounded(t *testing.T) {
	l := gitgate.NewLimiter(gitgate.Limits{Global: 4, PerRepo: 4, PerUser: 4, QueueTimeout: 50 * time.Millisecond})
	g := startGate(t, gateOptions{configure: func(c *httpgit.Config) { c.Limiter = l }})
	path, commit := gittest.BareRepoWithCommit(t, g.env, g.root, "repo")
	var open []net.Conn
	for i := 1; i <= 4; i++ {
		open = append(open, openFetch(t, g, l, commit, i))
	}
	for i := 0; i < 20; i++ {
		w := pkt("want " + commit + "\n")
		resp, got := rawRequest(t, g, "POST /repo.git/git-upload-pack HTTP/1.1\r\n"+
			"Content-Type: application/x-git-upload-pack-request\r\nTransfer-Encoding: chunked",
			fmt.Sprintf("%x\r\n%s\r\n", len(w), w)) // unfinished too
		if want := pkt("ERR " + gitgate.BusyMessage + "\n"); resp.StatusCode != 200 || got != want {
			t.Fatalf("fetch over the limit: %d %q, want 200 %q", resp.StatusCode, got, want)
		}
	}
	if left := gittest.LeftoverGit(path); len(left) > 4 {
		t.Fatalf("%d git processes for 4 slots: %v", len(left), left)
	}
	// The advertisement is refused with 503 and the text git shows.
	resp, got := rawRequest(t, g, "GET /repo.git/info/refs?service=git-upload-pack HTTP/1.1", "")
	if resp.StatusCode != http.StatusServiceUnavailable || got != gitgate.BusyMessage+"\n" ||
		resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Fatalf("advertisement over the limit: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), got)
	}
	res := gittest.Git(t, g.env, t.TempDir(), "clone", g.url+"/repo.git", "clone")
	if res.Err == nil || !strings.Contains(res.Stderr, "remote: "+gitgate.BusyMessage) {
		t.Fatalf("clone over the limit: %v\n%s", res.Err, res.Stderr)
	}
	for _, c := range open {
		c.Close()
	}
	waitNoGit(t, path)
	for i := 0; ; i++ {
		if n, _, _ := l.InUse(gitgate.Operation{}); n == 0 {
			break
		}
		if i == 1000 {
			t.Fatal("slots not released after the clients left")
		}
		time.Sleep(10 * time.Millisecond)
	}
	gittest.MustGit(t, g.env, t.TempDir(), "clone", "-q", g.url+"/repo.git", "clone")
}

// A fetch whose advertisement was served but whose POST finds the server
// full shows the busy message: git prints the ERR packet.
func TestBusyFetchPostShowsTheMessage(t *testing.T) {
	l := gitgate.NewLimiter(gitgate.Limits{Global: 1, QueueTimeout: 50 * time.Millisecond})
	g := startGate(t, gateOptions{configure: func(c *httpgit.Config) { c.Limiter = l }})
	_, commit := gittest.BareRepoWithCommit(t, g.env, g.root, "repo")
	target, _ := url.Parse(g.url)
	proxy := httputil.NewSingleHostReverseProxy(target)
	front := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			openFetch(t, g, l, commit, 1) // takes the only slot
		}
		proxy.ServeHTTP(w, r)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go front.Serve(ln)
	defer front.Close()
	res := gittest.Git(t, g.env, t.TempDir(), "-c", "protocol.version=0", "clone", "http://"+ln.Addr().String()+"/repo.git", "c")
	if res.Err == nil || !strings.Contains(res.Stderr, "fatal: remote error: "+gitgate.BusyMessage+"\n") {
		t.Fatalf("clone: %v\n%s", res.Err, res.Stderr)
	}
}

// git's probe meeting a full server is answered as allowed and not counted
// as refused; the push that follows is refused as busy and counted once.
func TestBusyProbeIsNotARefusal(t *testing.T) {
	l := gitgate.NewLimiter(gitgate.Limits{Global: 1, QueueTimeout: 50 * time.Millisecond})
	rec := &gittest.Recorder{}
	g := startGate(t, gateOptions{anonymousPush: true, tracker: gitgate.NewTracker(rec),
		configure: func(c *httpgit.Config) { c.Limiter = l }})
	bare, commit := gittest.BareRepoWithCommit(t, g.env, g.root, "repo")
	push, _ := pushRequest(t, g.env, bare)
	openFetch(t, g, l, commit, 1) // takes the only slot
	for i, body := range [][]byte{[]byte("0000"), push} {
		resp, err := http.Post(g.url+"/repo.git/git-receive-pack", "application/x-git-receive-pack-request", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: status %d", i, resp.StatusCode)
		}
		if i == 0 && (len(got) != 0 || len(rec.Refused()) != 0) {
			t.Fatalf("probe: body %q, counted %d refusal(s)", got, len(rec.Refused()))
		}
		if i == 1 && (!bytes.Contains(got, []byte(gitgate.BusyMessage)) || len(rec.Refused()) != 1) {
			t.Fatalf("push: body %q, counted %d refusal(s)", got, len(rec.Refused()))
		}
	}
}
