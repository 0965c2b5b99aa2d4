package lfs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gitgate/gitgate/gitgate"
)

// rules is a table of permissions: user → repository → permission.
type rules map[string]map[string]gitgate.Permission

func (r rules) Permission(u *gitgate.User, repo string) gitgate.Permission {
	return r[u.String()][repo]
}

type state struct{ on atomic.Bool }

func (s *state) Current() gitgate.Snapshot {
	return gitgate.Snapshot{State: gitgate.State{Enabled: s.on.Load()}}
}

// users signs in by the Basic user name alone (the test's stand-in for
// tokens, which have their own tests in access); each user's one
// credential is "token:<name>" while they are in the map.
type users map[string]*gitgate.User

func (u users) Authenticate(r *http.Request) (*gitgate.User, error) {
	name, _, ok := r.BasicAuth()
	if !ok {
		return nil, nil
	}
	if user, ok := u[name]; ok {
		return user, nil
	}
	return nil, errors.New("unknown user")
}

func (u users) UserByCredential(name, credential string) (*gitgate.User, error) {
	user, ok := u[name]
	if !ok || credential != user.Credential {
		return nil, errors.New("no such credential")
	}
	return user, nil
}

// gateAddr is the listener address requests arrive on in these tests.
var gateAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}

type fixture struct {
	srv   *Server
	state *state
	store *Store
}

func newFixture(t *testing.T, mutate func(*Config)) *fixture {
	t.Helper()
	root := t.TempDir()
	res, err := gitgate.NewResolver(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"proj", "secret"} {
		if _, err := res.Create(context.Background(), name); err != nil {
			t.Skipf("SKIPPED LOUDLY: cannot create a repository (is git installed?): %v", err)
		}
	}
	store, err := NewStore(filepath.Join(root, "lfs"))
	if err != nil {
		t.Fatal(err)
	}
	st := &state{}
	u := users{"alice": {Name: "alice", Credential: "token:alice"}, "rita": {Name: "rita", Credential: "token:rita"}}
	cfg := Config{
		Policy: &gitgate.Policy{State: st, Access: rules{
			"alice": {"proj": gitgate.PermissionWrite, "secret": gitgate.PermissionWrite},
			"rita":  {"proj": gitgate.PermissionRead},
		}},
		Resolver: res, Auth: u, Users: u, Store: store,
		Locks: NewLocks(filepath.Join(root, "lfs", "locks")), Signer: NewSigner(bytes.Repeat([]byte{1}, 32)),
		DefaultURL: func() string { return "http://127.0.0.1:8080" },
	}
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{srv: srv, state: st, store: store}
}

// call serves one request in process. auth is a user name (Basic) or a
// full Authorization header (with a space).
func (f *fixture) call(method, path, auth string, body io.Reader) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, "http://127.0.0.1:8080"+path, body)
	r = r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, gateAddr))
	switch {
	case strings.Contains(auth, " "):
		r.Header.Set("Authorization", auth)
	case auth != "":
		r.SetBasicAuth(auth, "token")
	}
	w := httptest.NewRecorder()
	f.srv.ServeHTTP(w, r)
	return w
}

type batchAnswer struct {
	Objects []struct {
		OID     string `json:"oid"`
		Actions map[string]struct {
			Href   string            `json:"href"`
			Header map[string]string `json:"header"`
		} `json:"actions"`
		Error *objectError `json:"error"`
	} `json:"objects"`
}

func (f *fixture) batch(t *testing.T, repo, user, op string, content []byte) batchAnswer {
	t.Helper()
	body := `{"operation":"` + op + `","objects":[{"oid":"` + oidOf(content) + `","size":` + itoa(len(content)) + `}]}`
	w := f.call("POST", "/"+repo+".git/info/lfs/objects/batch", user, strings.NewReader(body))
	if w.Code != http.StatusOK {
		t.Fatalf("batch %s %s as %s: %d %s", op, repo, user, w.Code, w.Body)
	}
	var a batchAnswer
	if err := json.Unmarshal(w.Body.Bytes(), &a); err != nil || len(a.Objects) != 1 {
		t.Fatalf("batch answer %s: %v", w.Body, err)
	}
	return a
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// TestGrantsAreBound: a signed action header works only for its own
// repository, object and operation.
func TestGrantsAreBound(t *testing.T) {
	f := newFixture(t, nil)
	a, b := []byte("object a\n"), []byte("object b\n")
	for _, c := range [][]byte{a, b} {
		up := f.batch(t, "proj", "alice", "upload", c).Objects[0].Actions["upload"]
		if !strings.HasPrefix(up.Href, "http://127.0.0.1:8080/proj.git/info/lfs/objects/") {
			t.Fatalf("href %q does not point at the request's own URL", up.Href)
		}
		if w := f.call("PUT", strings.TrimPrefix(up.Href, "http://127.0.0.1:8080"), up.Header["Authorization"], bytes.NewReader(c)); w.Code != http.StatusOK {
			t.Fatalf("upload: %d %s", w.Code, w.Body)
		}
	}
	// alice also pushes a to secret, so that the object is there too.
	up := f.batch(t, "secret", "alice", "upload", a).Objects[0].Actions["upload"]
	if w := f.call("PUT", "/secret.git/info/lfs/objects/"+oidOf(a), up.Header["Authorization"], bytes.NewReader(a)); w.Code != http.StatusOK {
		t.Fatalf("upload to secret: %d %s", w.Code, w.Body)
	}
	dl := f.batch(t, "proj", "rita", "download", a).Objects[0].Actions["download"].Header["Authorization"]
	upA := f.batch(t, "secret", "alice", "upload", []byte("new")).Objects[0].Actions["upload"].Header["Authorization"]
	for name, tc := range map[string]struct {
		method, path, auth string
		want               int
	}{
		"own object":             {"GET", "/proj.git/info/lfs/objects/" + oidOf(a), dl, http.StatusOK},
		"another object":         {"GET", "/proj.git/info/lfs/objects/" + oidOf(b), dl, http.StatusUnauthorized},
		"another repository":     {"GET", "/secret.git/info/lfs/objects/" + oidOf(a), dl, http.StatusNotFound},
		"the locks API":          {"GET", "/proj.git/info/lfs/locks", dl, http.StatusUnauthorized},
		"an upload":              {"PUT", "/proj.git/info/lfs/objects/" + oidOf(a), dl, http.StatusForbidden},
		"upload header to read":  {"GET", "/secret.git/info/lfs/objects/" + oidOf(a), upA, http.StatusUnauthorized},
		"tampered":               {"GET", "/proj.git/info/lfs/objects/" + oidOf(a), dl[:len(dl)-3] + "AAA", http.StatusUnauthorized},
		"rita on secret":         {"GET", "/secret.git/info/lfs/objects/" + oidOf(a), "rita", http.StatusNotFound},
		"anonymous":              {"GET", "/proj.git/info/lfs/objects/" + oidOf(a), "", http.StatusUnauthorized},
		"unknown path":           {"GET", "/proj.git/info/lfs/objects/" + strings.ToUpper(oidOf(a)), "alice", http.StatusNotFound},
		"dot dot":                {"GET", "/proj.git/info/lfs/objects/../../secret.git/info/lfs/objects/" + oidOf(a), "rita", http.StatusNotFound},
		"wrong method":           {"DELETE", "/proj.git/info/lfs/objects/" + oidOf(a), "alice", http.StatusMethodNotAllowed},
		"bob does not exist":     {"GET", "/proj.git/info/lfs/objects/" + oidOf(a), "bob", http.StatusUnauthorized},
		"rita cannot verify":     {"POST", "/proj.git/info/lfs/verify", "rita", http.StatusForbidden},
		"rita cannot put":        {"PUT", "/proj.git/info/lfs/objects/" + oidOf(b), "rita", http.StatusForbidden},
		"alice reads her object": {"GET", "/secret.git/info/lfs/objects/" + oidOf(a), "alice", http.StatusOK},
		"not linked to secret":   {"GET", "/secret.git/info/lfs/objects/" + oidOf(b), "alice", http.StatusNotFound},
	} {
		body := io.Reader(nil)
		if tc.method == "POST" {
			body = strings.NewReader(`{"path":"x.bin","oid":"` + oidOf(a) + `","size":9}`)
		} else if tc.method == "PUT" {
			body = bytes.NewReader(b)
		}
		if w := f.call(tc.method, tc.path, tc.auth, body); w.Code != tc.want {
			t.Errorf("%s: %s %s: %d %s, want %d", name, tc.method, tc.path, w.Code, w.Body, tc.want)
		} else if w.Code >= 400 && w.Header().Get("Content-Type") != MediaType {
			t.Errorf("%s: content type %q", name, w.Header().Get("Content-Type"))
		}
	}
}

// countingReader counts the bytes read from it.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// TestMaintenanceRefusesBeforeAnyByte: in maintenance an upload is refused
// with 403 and the message, and not one byte of its body is read; reads
// and lock listing go on.
func TestMaintenanceRefusesBeforeAnyByte(t *testing.T) {
	f := newFixture(t, nil)
	content := []byte("stored before maintenance\n")
	up := f.batch(t, "proj", "alice", "upload", content).Objects[0].Actions["upload"]
	f.state.on.Store(true)
	body := &countingReader{r: bytes.NewReader(content)}
	w := f.call("PUT", "/proj.git/info/lfs/objects/"+oidOf(content), up.Header["Authorization"], body)
	var e errorBody
	json.Unmarshal(w.Body.Bytes(), &e)
	if w.Code != http.StatusForbidden || e.Message != gitgate.MaintenanceMessage || w.Header().Get("Content-Type") != MediaType {
		t.Fatalf("PUT in maintenance: %d %q %s", w.Code, w.Header().Get("Content-Type"), w.Body)
	}
	if n := body.n.Load(); n != 0 {
		t.Fatalf("%d bytes of the refused upload were read", n)
	}
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/proj.git/info/lfs/objects/batch", `{"operation":"upload","objects":[]}`},
		{"POST", "/proj.git/info/lfs/locks", `{"path":"a.bin"}`},
		{"POST", "/proj.git/info/lfs/locks/0123456789abcdef0123456789abcdef/unlock", `{}`},
	} {
		w := f.call(c.method, c.path, "alice", strings.NewReader(c.body))
		if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), gitgate.MaintenanceMessage) {
			t.Errorf("%s %s in maintenance: %d %s", c.method, c.path, w.Code, w.Body)
		}
	}
	for _, c := range []struct{ method, path, body string }{
		{"GET", "/proj.git/info/lfs/locks", ""},
		{"POST", "/proj.git/info/lfs/locks/verify", `{}`},
		{"POST", "/proj.git/info/lfs/objects/batch", `{"operation":"download","objects":[]}`},
	} {
		if w := f.call(c.method, c.path, "alice", strings.NewReader(c.body)); w.Code != http.StatusOK {
			t.Errorf("%s %s in maintenance: %d %s", c.method, c.path, w.Code, w.Body)
		}
	}
	if _, ok := f.store.Stat("proj", oidOf(content)); ok {
		t.Fatalf("object stored in maintenance")
	}
}

// TestBounds: batch bodies, object counts and object sizes are bounded.
func TestBounds(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxBatchBody = 4096; c.MaxBatchObjects = 2; c.MaxObjectSize = 100 })
	obj := `{"oid":"` + strings.Repeat("a", 64) + `","size":1}`
	for name, tc := range map[string]struct {
		body string
		want int
	}{
		"too many objects": {`{"operation":"download","objects":[` + obj + `,` + obj + `,` + obj + `]}`, http.StatusRequestEntityTooLarge},
		"too large":        {`{"operation":"download","objects":[],"x":"` + strings.Repeat("x", 5000) + `"}`, http.StatusRequestEntityTooLarge},
		"not JSON":         {`{"operation":`, http.StatusUnprocessableEntity},
		"bad operation":    {`{"operation":"delete","objects":[]}`, http.StatusUnprocessableEntity},
		"other hash":       {`{"operation":"download","hash_algo":"sha512","objects":[]}`, http.StatusConflict},
	} {
		if w := f.call("POST", "/proj.git/info/lfs/objects/batch", "alice", strings.NewReader(tc.body)); w.Code != tc.want {
			t.Errorf("%s: %d %s, want %d", name, w.Code, w.Body, tc.want)
		}
	}
	big := `{"operation":"upload","objects":[{"oid":"` + strings.Repeat("b", 64) + `","size":101},{"oid":"x","size":1}]}`
	w := f.call("POST", "/proj.git/info/lfs/objects/batch", "alice", strings.NewReader(big))
	var a batchAnswer
	json.Unmarshal(w.Body.Bytes(), &a)
	if w.Code != http.StatusOK || len(a.Objects) != 2 || a.Objects[0].Error == nil || a.Objects[1].Error == nil || a.Objects[0].Actions != nil {
		t.Fatalf("oversized and invalid objects: %d %s", w.Code, w.Body)
	}
	if w := f.call("PUT", "/proj.git/info/lfs/objects/"+strings.Repeat("b", 64), "alice", strings.NewReader(strings.Repeat("b", 101))); w.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized PUT: %d %s", w.Code, w.Body)
	}
}

// TestSSHAuthenticate: git-lfs-authenticate answers the repository's LFS
// URL and a header that works over HTTP, decided like every other door.
func TestSSHAuthenticate(t *testing.T) {
	f := newFixture(t, nil)
	alice, rita := &gitgate.User{Name: "alice", Credential: "token:alice"}, &gitgate.User{Name: "rita", Credential: "token:rita"}
	op := gitgate.Operation{Repo: "proj.git", User: rita, Transport: gitgate.TransportSSH}
	// A reader gets a header (the write is decided per request, with the
	// maintenance state of that moment), but an upload with it is refused.
	raw, err := f.srv.SSHAuthenticate(context.Background(), &op, "upload")
	if err != nil || op.Repo != "proj" {
		t.Fatalf("rita: %v (repo %q)", err, op.Repo)
	}
	var ritas struct {
		Header map[string]string `json:"header"`
	}
	json.Unmarshal(raw, &ritas)
	w := f.call("POST", "/proj.git/info/lfs/objects/batch", ritas.Header["Authorization"], strings.NewReader(`{"operation":"upload","objects":[]}`))
	if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), gitgate.PushForbiddenMessage) {
		t.Fatalf("rita's upload batch: %d %s", w.Code, w.Body)
	}
	op = gitgate.Operation{Repo: "secret.git", User: rita, Transport: gitgate.TransportSSH}
	_, err = f.srv.SSHAuthenticate(context.Background(), &op, "download")
	if !errors.Is(err, gitgate.ErrNotFound) {
		t.Fatalf("rita on secret: %v, want not found", err)
	}
	op = gitgate.Operation{Repo: "proj.git", User: alice, Transport: gitgate.TransportSSH}
	raw, err = f.srv.SSHAuthenticate(context.Background(), &op, "upload")
	if err != nil {
		t.Fatal(err)
	}
	var ans struct {
		Href      string            `json:"href"`
		Header    map[string]string `json:"header"`
		ExpiresIn int               `json:"expires_in"`
	}
	if err := json.Unmarshal(raw, &ans); err != nil || ans.Href != "http://127.0.0.1:8080/proj.git/info/lfs" || ans.ExpiresIn <= 0 {
		t.Fatalf("answer %s: %v", raw, err)
	}
	content := []byte("pushed over ssh\n")
	body := `{"operation":"upload","objects":[{"oid":"` + oidOf(content) + `","size":` + itoa(len(content)) + `}]}`
	w = f.call("POST", "/proj.git/info/lfs/objects/batch", ans.Header["Authorization"], strings.NewReader(body))
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"upload"`) {
		t.Fatalf("batch with the SSH header: %d %s", w.Code, w.Body)
	}
	if w := f.call("POST", "/secret.git/info/lfs/objects/batch", ans.Header["Authorization"], strings.NewReader(body)); w.Code != http.StatusUnauthorized {
		t.Fatalf("the proj header on secret: %d %s", w.Code, w.Body)
	}

	ext := newFixture(t, func(c *Config) { c.ExternalURL = "https://git.example.com/" })
	op = gitgate.Operation{Repo: "proj", User: alice, Transport: gitgate.TransportSSH}
	raw, _ = ext.srv.SSHAuthenticate(context.Background(), &op, "download")
	if !strings.Contains(string(raw), `"href":"https://git.example.com/proj.git/info/lfs"`) {
		t.Fatalf("with an external URL: %s", raw)
	}
	// Over HTTP too, the configured URL wins over the request's Host.
	a := ext.batch(t, "proj", "alice", "upload", content)
	if h := a.Objects[0].Actions["upload"].Href; !strings.HasPrefix(h, "https://git.example.com/proj.git/") {
		t.Fatalf("href %q ignores the external URL", h)
	}
}

// recordingPrimary is a PrimaryProxy that records what it was given.
type recordingPrimary struct {
	calls []string
}

func (p *recordingPrimary) ProxyLFS(w http.ResponseWriter, r *http.Request, rest string, body io.Reader, n int64, user *gitgate.User, repo string) {
	b, _ := io.ReadAll(body)
	p.calls = append(p.calls, r.Method+" "+repo+" "+rest+" "+user.String()+" "+string(b))
	w.WriteHeader(http.StatusTeapot)
}

// TestSecondarySendsWritesToPrimary: on a Geo secondary, the LFS writes
// its own policy allows and every lock request go to the primary, with the
// request body as it came; downloads are served here, and a write the
// secondary's policy refuses never reaches the primary.
func TestSecondarySendsWritesToPrimary(t *testing.T) {
	p := &recordingPrimary{}
	f := newFixture(t, func(c *Config) { c.Primary = p })
	upload := `{"operation":"upload","objects":[],"ref":{"name":"refs/heads/main"}}`
	if w := f.call("POST", "/proj.git/info/lfs/objects/batch", "alice", strings.NewReader(upload)); w.Code != http.StatusTeapot {
		t.Fatalf("upload batch on a secondary: %d %s", w.Code, w.Body)
	}
	if w := f.call("GET", "/proj.git/info/lfs/locks", "alice", nil); w.Code != http.StatusTeapot {
		t.Fatalf("lock listing on a secondary: %d %s", w.Code, w.Body)
	}
	if w := f.call("POST", "/proj.git/info/lfs/objects/batch", "alice", strings.NewReader(`{"operation":"download","objects":[]}`)); w.Code != http.StatusOK {
		t.Fatalf("download on a secondary: %d %s", w.Code, w.Body)
	}
	want := []string{"POST proj objects/batch alice " + upload, "GET proj locks alice "}
	if !slices.Equal(p.calls, want) {
		t.Fatalf("proxied:\n%q\nwant\n%q", p.calls, want)
	}
	f.state.on.Store(true)
	w := f.call("POST", "/proj.git/info/lfs/objects/batch", "alice", strings.NewReader(upload))
	if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), gitgate.MaintenanceMessage) || len(p.calls) != 2 {
		t.Fatalf("upload on a secondary in maintenance: %d %s, proxied %d", w.Code, w.Body, len(p.calls))
	}
}

// TestMaintenanceDuringUpload: an upload that was coming in when
// maintenance began is refused at its end and stores nothing.
func TestMaintenanceDuringUpload(t *testing.T) {
	f := newFixture(t, nil)
	content := bytes.Repeat([]byte("slow upload\n"), 10000)
	up := f.batch(t, "proj", "alice", "upload", content).Objects[0].Actions["upload"]
	pr, pw := io.Pipe()
	go func() {
		pw.Write(content[:len(content)/2])
		f.state.on.Store(true) // the handler has read the first half
		pw.Write(content[len(content)/2:])
		pw.Close()
	}()
	w := f.call("PUT", "/proj.git/info/lfs/objects/"+oidOf(content), up.Header["Authorization"], pr)
	if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), gitgate.MaintenanceMessage) {
		t.Fatalf("upload across the switch: %d %s", w.Code, w.Body)
	}
	if _, ok := f.store.Stat("proj", oidOf(content)); ok {
		t.Fatalf("the object was stored after maintenance began")
	}
	if tmp := files(t, filepath.Join(filepath.Dir(f.store.dir), "lfs"), "tmp"); len(tmp) != 0 {
		t.Fatalf("temporary files left: %v", tmp)
	}
}

// TestGrantKeepsTokenScopes: a header issued on a read_repository token
// does not become an unscoped sign-in for its user.
func TestGrantKeepsTokenScopes(t *testing.T) {
	f := newFixture(t, nil)
	g := f.srv.cfg.Signer.Sign(Grant{User: "alice", Cred: "token:alice", Repo: "proj", Op: "upload", Scopes: gitgate.ScopeReadRepository}, time.Minute)
	w := f.call("POST", "/proj.git/info/lfs/objects/batch", g, strings.NewReader(`{"operation":"upload","objects":[]}`))
	if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), gitgate.PushForbiddenMessage) {
		t.Fatalf("upload on a read-scoped grant: %d %s", w.Code, w.Body)
	}
	if w := f.call("POST", "/proj.git/info/lfs/objects/batch", g, strings.NewReader(`{"operation":"download","objects":[]}`)); w.Code != http.StatusOK {
		t.Fatalf("download on a read-scoped grant: %d %s", w.Code, w.Body)
	}
}

// TestGrantDiesWithItsCredential: a signed header (git-lfs-authenticate's
// and a batch action's alike) is checked against the credential it was
// issued on at every use, so it stops when that credential goes; a header
// that names no credential is refused.
func TestGrantDiesWithItsCredential(t *testing.T) {
	f := newFixture(t, nil)
	u := f.srv.cfg.Users.(users)
	content := []byte("revoked soon\n")
	up := f.batch(t, "proj", "alice", "upload", content).Objects[0].Actions["upload"]
	op := gitgate.Operation{Repo: "proj", User: u["alice"], Transport: gitgate.TransportSSH}
	raw, err := f.srv.SSHAuthenticate(context.Background(), &op, "upload")
	if err != nil {
		t.Fatal(err)
	}
	var ssh struct {
		Header map[string]string `json:"header"`
	}
	json.Unmarshal(raw, &ssh)
	list := "/proj.git/info/lfs/locks"
	if w := f.call("GET", list, ssh.Header["Authorization"], nil); w.Code != http.StatusOK {
		t.Fatalf("the SSH header before revocation: %d %s", w.Code, w.Body)
	}
	u["alice"] = &gitgate.User{Name: "alice", Credential: "token:alice-new"} // the old one is revoked
	if w := f.call("GET", list, ssh.Header["Authorization"], nil); w.Code != http.StatusUnauthorized {
		t.Fatalf("the SSH header after revocation: %d %s", w.Code, w.Body)
	}
	w := f.call("PUT", "/proj.git/info/lfs/objects/"+oidOf(content), up.Header["Authorization"], bytes.NewReader(content))
	if w.Code != http.StatusUnauthorized {
		t.Fatalf("the upload action's header after revocation: %d %s", w.Code, w.Body)
	}
	if _, ok := f.store.Stat("proj", oidOf(content)); ok {
		t.Fatal("stored with a revoked credential's header")
	}
	bare := f.srv.cfg.Signer.Sign(Grant{User: "alice", Repo: "proj", Op: "download"}, time.Minute)
	if w := f.call("GET", list, bare, nil); w.Code != http.StatusUnauthorized {
		t.Fatalf("a header without a credential: %d %s", w.Code, w.Body)
	}
}
