package httpgit_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/internal/gittest"
)

// rawGet sends path exactly as given (no client-side cleaning) and returns
// the status and body.
func rawGet(t *testing.T, g *testGate, method, path string, header string) (int, string) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(g.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: gate\r\nConnection: close\r\n%s\r\n", method, path, header)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestHostilePathsLookLikeMissingRepos(t *testing.T) {
	g := startGate(t, gateOptions{})
	gittest.BareRepoWithCommit(t, g.env, g.root, "repo")
	if err := os.MkdirAll(filepath.Join(g.root, "group"), 0o755); err != nil {
		t.Fatal(err)
	}
	outside := t.TempDir()
	gittest.BareRepoWithCommit(t, g.env, outside, "secret")
	if err := os.Symlink(filepath.Join(outside, "secret.git"), filepath.Join(g.root, "group", "link.git")); err != nil {
		t.Fatal(err)
	}
	gittest.BareRepoWithCommit(t, g.env, g.root, ".hidden")
	gittest.BareRepoWithCommit(t, g.env, g.root, "-dash")

	const q = "/info/refs?service=git-upload-pack"
	if status, _ := rawGet(t, g, "GET", "/repo.git"+q, ""); status != http.StatusOK {
		t.Fatalf("control request: status %d", status)
	}
	// This gate has no users: an anonymous client is asked to sign in for
	// anything it cannot be shown, missing or refused alike.
	notFound := gitgate.UnauthenticatedMessage + "\n"
	for _, path := range []string{
		"/repo.git.git", // a second spelling of repo
		"/missing.git",
		"/group/link.git", // symlink leading outside the root
		"/group/link",     //
		"/../" + filepath.Base(outside) + "/secret.git", // .. out of the root
		"/group/../repo.git",
		"/%2e%2e/repo.git",
		"/.hidden.git",
		"/-dash.git",
		"/group/-dash.git",
		"/repo.git%00",
		"/re%0apo.git",
		"/a//repo.git",
		"/" + outside + "/secret.git", // absolute path
		"/repo.git/",
		"/" + strings.Repeat("a/", 20) + "repo.git",
		"/" + strings.Repeat("a", 2000) + ".git",
	} {
		status, body := rawGet(t, g, "GET", path+q, "")
		if status != http.StatusUnauthorized || body != notFound {
			t.Errorf("GET %s: %d %q, want 401 %q", path, status, body, notFound)
		}
	}
}

func TestRoutesMethodsAndHeaders(t *testing.T) {
	g := startGate(t, gateOptions{})
	gittest.BareRepoWithCommit(t, g.env, g.root, "repo")
	tests := []struct {
		method, path, header string
		status               int
		body                 string
	}{
		{"GET", "/repo.git/HEAD", "", 404, "Not Found\n"},
		{"GET", "/repo.git/objects/info/packs", "", 404, "Not Found\n"},
		{"GET", "/repo.git/info/refs", "", 404, "Not Found\n"}, // dumb HTTP
		{"GET", "/repo.git/info/refs?service=git-upload-archive", "", 403, "Unsupported service\n"},
		{"GET", "/repo.git/info/refs?service=upload-pack", "", 403, "Unsupported service\n"},
		{"POST", "/repo.git/info/refs?service=git-upload-pack", "", 405, "Method Not Allowed\n"},
		{"GET", "/repo.git/git-upload-pack", "", 405, "Method Not Allowed\n"},
		{"PUT", "/repo.git/git-receive-pack", "", 405, "Method Not Allowed\n"},
		{"POST", "/repo.git/git-upload-pack", "Content-Type: text/plain\r\nContent-Length: 0\r\n", 415, "Unsupported Media Type\n"},
		{"GET", "/repo.git/info/refs?service=git-upload-pack", "Git-Protocol: version=3\r\n", 400, "Invalid Git-Protocol header\n"},
		{"GET", "/repo.git/info/refs?service=git-upload-pack", "Git-Protocol: version=2 x\r\n", 400, "Invalid Git-Protocol header\n"},
		{"GET", "/-/health", "", 200, "gitgate OK\n"},
		{"GET", "/-/readiness", "", 200, "{\"status\":\"ok\"}\n"},
	}
	for _, tt := range tests {
		status, body := rawGet(t, g, tt.method, tt.path, tt.header)
		if status != tt.status || body != tt.body {
			t.Errorf("%s %s: %d %q, want %d %q", tt.method, tt.path, status, body, tt.status, tt.body)
		}
	}

	resp, err := http.Get(g.url + "/repo.git/info/refs?service=git-upload-pack")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for k, want := range map[string]string{
		"Content-Type":  "application/x-git-upload-pack-advertisement",
		"Cache-Control": "no-cache, max-age=0, must-revalidate",
		"Pragma":        "no-cache",
		"Expires":       "Fri, 01 Jan 1980 00:00:00 GMT",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	req, _ := http.NewRequest("PUT", g.url+"/repo.git/git-receive-pack", nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("Allow"); got != "POST" {
		t.Errorf("Allow: %q, want POST", got)
	}
}

func TestRefusedAdvertisementIsPlainText(t *testing.T) {
	g := startGate(t, gateOptions{anonymousPush: true})
	gittest.BareRepoWithCommit(t, g.env, g.root, "repo")
	g.setMaintenance(t, true)
	resp, err := http.Get(g.url + "/repo.git/info/refs?service=git-receive-pack")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 403 || string(body) != gitgate.MaintenanceMessage+"\n" ||
		resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Fatalf("got %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
}

// A push whose ref advertisement was allowed but whose POST arrives after
// maintenance was switched on is refused, the message reaches the user, and
// no ref changes. A proxy in front of the gate flips the switch exactly
// between the two requests.
func TestPushRacingTheSwitchIsRefusedInProtocol(t *testing.T) {
	g := startGate(t, gateOptions{anonymousPush: true})
	bare, before := gittest.BareRepoWithCommit(t, g.env, g.root, "repo")
	target, _ := url.Parse(g.url)
	proxy := httputil.NewSingleHostReverseProxy(target)
	front := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/git-receive-pack") {
			g.setMaintenance(t, true)
		}
		proxy.ServeHTTP(w, r)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go front.Serve(ln)
	defer front.Close()

	work := t.TempDir()
	gittest.MustGit(t, g.env, work, "clone", "-q", "http://"+ln.Addr().String()+"/repo.git", ".")
	if err := os.WriteFile(filepath.Join(work, "big"), bytes.Repeat([]byte("data "), 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	gittest.MustGit(t, g.env, work, "add", "big")
	gittest.MustGit(t, g.env, work, "commit", "-q", "-m", "racing")
	res := gittest.Git(t, g.env, work, "push", "origin", "main")
	if res.Err == nil {
		t.Fatalf("push succeeded:\n%s", res.Stderr)
	}
	// git pads remote progress lines with spaces; the words are exact.
	for _, line := range []string{
		"remote: " + gitgate.MaintenanceMessage,
		" ! [remote rejected] main -> main (read-only maintenance mode)\n",
	} {
		if !strings.Contains(res.Stderr, line) {
			t.Errorf("stderr lacks %q:\n%s", line, res.Stderr)
		}
	}
	if got := gittest.MustGit(t, g.env, bare, "rev-parse", "main"); got != before {
		t.Errorf("main moved to %s", got)
	}
}

// A push larger than http.postBuffer (1 MiB) starts with a probe POST
// holding only "0000". When maintenance is switched on between the ref
// advertisement and the probe, the probe is answered as git-http-backend
// answers it (200, empty result), so that git sends the real request and
// the user sees the message and the rejected ref, not "RPC failed; HTTP
// 403" and "Everything up-to-date".
func TestLargePushRacingTheSwitchShowsTheMessage(t *testing.T) {
	g := startGate(t, gateOptions{anonymousPush: true})
	bare, before := gittest.BareRepoWithCommit(t, g.env, g.root, "repo")
	target, _ := url.Parse(g.url)
	proxy := httputil.NewSingleHostReverseProxy(target)
	var mu sync.Mutex
	var posts []int64 // Content-Length of each POST (-1: chunked)
	front := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/git-receive-pack") {
			mu.Lock()
			posts = append(posts, r.ContentLength)
			mu.Unlock()
			g.setMaintenance(t, true)
		}
		proxy.ServeHTTP(w, r)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go front.Serve(ln)
	defer front.Close()

	work := t.TempDir()
	gittest.MustGit(t, g.env, work, "clone", "-q", "http://"+ln.Addr().String()+"/repo.git", ".")
	big := make([]byte, 2<<20) // incompressible: the pack stays over 1 MiB
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "big"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	gittest.MustGit(t, g.env, work, "add", "big")
	gittest.MustGit(t, g.env, work, "commit", "-q", "-m", "large and racing")
	res := gittest.Git(t, g.env, work, "push", "origin", "main")
	if res.Err == nil {
		t.Fatalf("push succeeded:\n%s", res.Stderr)
	}
	mu.Lock()
	if len(posts) != 2 || posts[0] != int64(len("0000")) {
		t.Errorf("POST content lengths %v, want a 4-byte probe then the push", posts)
	}
	mu.Unlock()
	for _, line := range []string{
		"remote: " + gitgate.MaintenanceMessage,
		" ! [remote rejected] main -> main (read-only maintenance mode)\n",
	} {
		if !strings.Contains(res.Stderr, line) {
			t.Errorf("stderr lacks %q:\n%s", line, res.Stderr)
		}
	}
	for _, bad := range []string{"RPC failed", "Everything up-to-date"} {
		if strings.Contains(res.Stderr, bad) {
			t.Errorf("stderr has %q:\n%s", bad, res.Stderr)
		}
	}
	if got := gittest.MustGit(t, g.env, bare, "rev-parse", "main"); got != before {
		t.Errorf("main moved to %s", got)
	}
}

// The probe alone, in maintenance and out of it: what git-http-backend
// answers (200, no-cache, the result content type, no body). It is not a
// refused push, so the refusal metrics do not count it; the push that
// follows it in maintenance is counted, once.
func TestProbeAnsweredAsGitHTTPBackend(t *testing.T) {
	rec := &gittest.Recorder{}
	g := startGate(t, gateOptions{anonymousPush: true, tracker: gitgate.NewTracker(rec)})
	bare, _ := gittest.BareRepoWithCommit(t, g.env, g.root, "repo")
	for _, on := range []bool{false, true} {
		g.setMaintenance(t, on)
		req, _ := http.NewRequest("POST", g.url+"/repo.git/git-receive-pack", strings.NewReader("0000"))
		req.Header.Set("Content-Type", "application/x-git-receive-pack-request")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || len(body) != 0 ||
			resp.Header.Get("Content-Type") != "application/x-git-receive-pack-result" ||
			resp.Header.Get("Cache-Control") != "no-cache, max-age=0, must-revalidate" {
			t.Errorf("maintenance %v: %d %v %q", on, resp.StatusCode, resp.Header, body)
		}
	}
	if got := len(rec.Refused()); got != 0 {
		t.Errorf("the probe was counted as %d refusal(s)", got)
	}
	push, _ := pushRequest(t, g.env, bare)
	resp, err := http.Post(g.url+"/repo.git/git-receive-pack", "application/x-git-receive-pack-request", bytes.NewReader(push))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if got := len(rec.Refused()); got != 1 {
		t.Errorf("a refused push was counted %d times, want once", got)
	}
}

func TestGzipRequestBody(t *testing.T) {
	g := startGate(t, gateOptions{})
	_, commit := gittest.BareRepoWithCommit(t, g.env, g.root, "repo")
	var raw, zipped bytes.Buffer
	fmt.Fprintf(&raw, "%04x%s", 4+len("want "+commit+"\n"), "want "+commit+"\n")
	raw.WriteString("0000")
	fmt.Fprintf(&raw, "%04x%s", 4+len("done\n"), "done\n")
	zw := gzip.NewWriter(&zipped)
	zw.Write(raw.Bytes())
	zw.Close()
	req, _ := http.NewRequest("POST", g.url+"/repo.git/git-upload-pack", &zipped)
	req.Header.Set("Content-Type", "application/x-git-upload-pack-request")
	req.Header.Set("Content-Encoding", "gzip")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte("PACK")) {
		t.Fatalf("status %d, body %.80q", resp.StatusCode, body)
	}
	if got := resp.Header.Get("Content-Type"); got != "application/x-git-upload-pack-result" {
		t.Errorf("Content-Type %q", got)
	}
}
