package lfse2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gitgate/gitgate/gitgate"
)

// TestLFS drives one gate with the real git and git-lfs clients through
// what users do with LFS, in order: push and clone over HTTP and SSH, pull,
// locks, what readers and strangers cannot do, broken uploads, and then
// maintenance mode.
func TestLFS(t *testing.T) {
	requireTools(t)
	w := newWorld(t)
	for _, u := range []string{"alice", "rita", "bob"} {
		w.gitgate("user", "add", u)
	}
	for _, r := range []string{"proj", "secret", "bobs"} {
		w.gitgate("repo", "create", r)
	}
	w.gitgate("access", "grant", "proj", "-u", "alice", "--level", "write")
	w.gitgate("access", "grant", "proj", "-u", "rita", "--level", "read")
	w.gitgate("access", "grant", "secret", "-u", "alice", "--level", "write")
	w.gitgate("access", "grant", "bobs", "-u", "bob", "--level", "write")
	pub, err := os.ReadFile(filepath.Join(w.home, "id.pub"))
	if err != nil {
		t.Fatal(err)
	}
	w.gitgate("user", "key", "add", "alice", strings.TrimSpace(string(pub)))
	for _, u := range []string{"alice", "rita", "bob"} {
		w.token(u)
	}
	w.serve()

	work := w.workTree()
	var httpOIDs, sshOIDs map[string]string

	w.step(t, "PushAndCloneOverHTTP", func(t *testing.T) {
		httpOIDs = w.addFiles(work, "h", 3)
		w.mustRun(work, "git", "push", "-q", w.httpURL("alice", "proj"), "main")
		for _, oid := range httpOIDs {
			if !w.hasObject(oid) {
				t.Fatalf("object %s not stored", oid)
			}
		}
		clone := filepath.Join(w.root, "clone-http")
		w.mustRun("", "git", "clone", "-q", w.httpURL("rita", "proj"), clone)
		w.sameContent(clone, work, "h0.bin", "h1.bin", "h2.bin")
	})

	w.step(t, "PushAndCloneOverSSH", func(t *testing.T) {
		sshOIDs = w.addFiles(work, "s", 3)
		w.mustRun(work, "git", "push", "-q", w.sshURL("proj"), "main")
		for _, oid := range sshOIDs {
			if !w.hasObject(oid) {
				t.Fatalf("object %s not stored", oid)
			}
		}
		clone := filepath.Join(w.root, "clone-ssh")
		w.mustRun("", "git", "clone", "-q", w.sshURL("proj"), clone)
		w.sameContent(clone, work, "h0.bin", "s0.bin", "s1.bin", "s2.bin")
		log, _ := os.ReadFile(w.logPath)
		if !strings.Contains(string(log), "service=lfs-download") || !strings.Contains(string(log), "transport=ssh") {
			t.Fatalf("no git-lfs-authenticate session in the gate log")
		}
	})

	w.step(t, "Pull", func(t *testing.T) {
		clone := filepath.Join(w.root, "clone-pull")
		_, _, err := w.run("", []string{"GIT_LFS_SKIP_SMUDGE=1"}, "git", "clone", "-q", w.httpURL("rita", "proj"), clone)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(filepath.Join(clone, "h1.bin")); !bytes.HasPrefix(got, []byte("version https://git-lfs")) {
			t.Fatalf("with GIT_LFS_SKIP_SMUDGE the clone should hold pointers, got %q", firstLine(got))
		}
		w.mustRun(clone, "git", "lfs", "pull")
		w.sameContent(clone, work, "h0.bin", "h1.bin", "s2.bin")
	})

	w.step(t, "Locks", func(t *testing.T) {
		remote := []string{"--remote", w.httpURL("alice", "proj")}
		out := w.mustRun(work, "git", append([]string{"lfs", "lock", "h0.bin"}, remote...)...)
		if !strings.Contains(out, "Locked h0.bin") {
			t.Fatalf("lock: %q", out)
		}
		list := w.mustRun(work, "git", append([]string{"lfs", "locks"}, remote...)...)
		if !strings.Contains(list, "h0.bin") || !strings.Contains(list, "alice") {
			t.Fatalf("locks: %q", list)
		}
		// A reader cannot lock, nor unlock alice's lock.
		_, stderr, err := w.run(work, nil, "git", "lfs", "lock", "h1.bin", "--remote", w.httpURL("rita", "proj"))
		if err == nil || !strings.Contains(stderr, gitgate.PushForbiddenMessage) {
			t.Fatalf("rita lock: err %v, stderr %q", err, stderr)
		}
		_, stderr, err = w.run(work, nil, "git", "lfs", "unlock", "--force", "h0.bin", "--remote", w.httpURL("rita", "proj"))
		if err == nil || !strings.Contains(stderr, gitgate.PushForbiddenMessage) {
			t.Fatalf("rita unlock: err %v, stderr %q", err, stderr)
		}
		out = w.mustRun(work, "git", append([]string{"lfs", "unlock", "h0.bin"}, remote...)...)
		if !strings.Contains(out, "Unlocked h0.bin") {
			t.Fatalf("unlock: %q", out)
		}
		if list := w.mustRun(work, "git", append([]string{"lfs", "locks"}, remote...)...); list != "" {
			t.Fatalf("locks after unlock: %q", list)
		}
	})

	w.step(t, "ReaderCannotUpload", func(t *testing.T) {
		oids := w.addFiles(work, "r", 1)
		_, stderr, err := w.run(work, nil, "git", "lfs", "push", w.httpURL("rita", "proj"), "main")
		if err == nil || !strings.Contains(stderr, gitgate.PushForbiddenMessage) {
			t.Fatalf("rita lfs push: err %v, stderr %q", err, stderr)
		}
		if w.hasObject(oids["r0.bin"]) {
			t.Fatalf("a reader's object was stored")
		}
		// Straight to the object endpoint, with her own token: refused
		// before the body is read.
		content, _ := os.ReadFile(filepath.Join(work, "r0.bin"))
		status, body := w.api(t, "PUT", "rita", "/proj.git/info/lfs/objects/"+oids["r0.bin"], content)
		if status != http.StatusForbidden || !strings.Contains(body, gitgate.PushForbiddenMessage) {
			t.Fatalf("rita PUT: %d %s", status, body)
		}
		if w.hasObject(oids["r0.bin"]) {
			t.Fatalf("a reader's object was stored")
		}
	})

	w.step(t, "GuessedOIDOfUnreadableRepo", func(t *testing.T) {
		sec := w.workTree()
		oids := w.addFiles(sec, "secret", 1)
		oid := oids["secret0.bin"]
		w.mustRun(sec, "git", "push", "-q", w.httpURL("alice", "secret"), "main")
		if !w.hasObject(oid) {
			t.Fatalf("secret object not stored")
		}
		size := fileSize(t, filepath.Join(sec, "secret0.bin"))
		// bob may read and write his own repository, not "secret".
		for _, path := range []string{"/secret.git/info/lfs/objects/" + oid, "/bobs.git/info/lfs/objects/" + oid, "/proj.git/info/lfs/objects/" + oid} {
			status, body := w.api(t, "GET", "bob", path, nil)
			if status != http.StatusNotFound || strings.Contains(body, "secret ") {
				t.Fatalf("bob GET %s: %d %s", path, status, body)
			}
		}
		batch := `{"operation":"download","objects":[{"oid":"` + oid + `","size":` + itoa(size) + `}]}`
		status, body := w.api(t, "POST", "bob", "/bobs.git/info/lfs/objects/batch", []byte(batch))
		if status != http.StatusOK || !strings.Contains(body, `"code":404`) || strings.Contains(body, "href") {
			t.Fatalf("bob batch on his repository: %d %s", status, body)
		}
		status, body = w.api(t, "POST", "bob", "/secret.git/info/lfs/objects/batch", []byte(batch))
		if status != http.StatusNotFound || !strings.Contains(body, gitgate.NotFoundMessage) {
			t.Fatalf("bob batch on secret: %d %s", status, body)
		}
		// Asking to upload it to his own repository gets an upload action:
		// only the full content links it there.
		up := strings.Replace(batch, "download", "upload", 1)
		status, body = w.api(t, "POST", "bob", "/bobs.git/info/lfs/objects/batch", []byte(up))
		if status != http.StatusOK || !strings.Contains(body, `"upload"`) {
			t.Fatalf("bob upload batch: %d %s", status, body)
		}
		// The upload action's header is for that object in bobs only.
		var br struct {
			Objects []struct {
				Actions map[string]struct {
					Href   string            `json:"href"`
					Header map[string]string `json:"header"`
				} `json:"actions"`
			} `json:"objects"`
		}
		if err := json.Unmarshal([]byte(body), &br); err != nil || len(br.Objects) != 1 {
			t.Fatalf("batch answer %s: %v", body, err)
		}
		hdr := br.Objects[0].Actions["upload"].Header["Authorization"]
		for _, path := range []string{"/secret.git/info/lfs/objects/" + oid, "/bobs.git/info/lfs/objects/" + oid} {
			status, body = w.rawAPI(t, "GET", hdr, path, nil)
			if status == http.StatusOK {
				t.Fatalf("upload header read %s: %d %s", path, status, body)
			}
		}
	})

	w.step(t, "CorruptedUpload", func(t *testing.T) {
		before, _ := w.objectCount()
		content := []byte(strings.Repeat("corrupt me\n", 50))
		sum := sha256.Sum256(content)
		oid := hex.EncodeToString(sum[:])
		batch := `{"operation":"upload","objects":[{"oid":"` + oid + `","size":` + itoa(int64(len(content))) + `}]}`
		status, body := w.api(t, "POST", "alice", "/proj.git/info/lfs/objects/batch", []byte(batch))
		if status != http.StatusOK {
			t.Fatalf("batch: %d %s", status, body)
		}
		var br struct {
			Objects []struct {
				Actions map[string]struct {
					Href   string            `json:"href"`
					Header map[string]string `json:"header"`
				} `json:"actions"`
			} `json:"objects"`
		}
		json.Unmarshal([]byte(body), &br)
		up := br.Objects[0].Actions["upload"]
		path := strings.TrimPrefix(up.Href, "http://"+w.httpHost)
		wrong := bytes.Clone(content)
		wrong[0] = 'C'
		for name, payload := range map[string][]byte{
			"wrong hash": wrong,
			"short":      content[:len(content)-1],
			"long":       append(bytes.Clone(content), 'x'),
		} {
			status, body := w.rawAPI(t, "PUT", up.Header["Authorization"], path, payload)
			if status != http.StatusUnprocessableEntity {
				t.Errorf("%s upload: %d %s", name, status, body)
			}
		}
		// Without the signed header, with a token, a wrong hash too.
		if status, body := w.api(t, "PUT", "alice", path, wrong); status != http.StatusUnprocessableEntity {
			t.Errorf("token upload of a wrong hash: %d %s", status, body)
		}
		after, tmp := w.objectCount()
		if after != before || tmp != 0 || w.hasObject(oid) {
			t.Fatalf("broken uploads left objects %d→%d, temporary files %d", before, after, tmp)
		}
		// The right bytes are accepted, and verify says so.
		if status, body := w.rawAPI(t, "PUT", up.Header["Authorization"], path, content); status != http.StatusOK {
			t.Fatalf("good upload: %d %s", status, body)
		}
		if !w.hasObject(oid) {
			t.Fatalf("good upload not stored")
		}
	})

	w.step(t, "Maintenance", func(t *testing.T) {
		w.gitgate("maintenance", "enable")
		w.awaitMaintenance(t)
		head := w.mustRun("", "git", "--git-dir", filepath.Join(w.data, "repositories", "proj.git"), "rev-parse", "main")

		// Clones with LFS content work, over both transports.
		for name, url := range map[string]string{"http": w.httpURL("rita", "proj"), "ssh": w.sshURL("proj")} {
			clone := filepath.Join(w.root, "clone-maint-"+name)
			w.mustRun("", "git", "clone", "-q", url, clone)
			w.sameContent(clone, work, "h2.bin", "s1.bin")
		}

		// A push with a new LFS object is refused with the message, over
		// both transports, and neither the object nor the ref is stored.
		oids := w.addFiles(work, "m", 1)
		for _, url := range []string{w.httpURL("alice", "proj"), w.sshURL("proj")} {
			_, stderr, err := w.run(work, nil, "git", "push", url, "main")
			if err == nil || !strings.Contains(stderr, gitgate.MaintenanceMessage) {
				t.Fatalf("git push %s in maintenance: err %v, stderr %q", url, err, stderr)
			}
			// The LFS upload alone (as when maintenance starts between
			// git's ref advertisement and its pre-push hook).
			// Over SSH, git-lfs-transfer's batch answers 403 and git-lfs
			// prints the status with the message.
			_, stderr, err = w.run(work, nil, "git", "lfs", "push", url, "main")
			if err == nil || (!strings.Contains(stderr, "batch response: "+gitgate.MaintenanceMessage) &&
				!strings.Contains(stderr, "batch response: status 403 from server ("+gitgate.MaintenanceMessage+")")) {
				t.Fatalf("git lfs push %s in maintenance: err %v, stderr %q", url, err, stderr)
			}
		}
		if w.hasObject(oids["m0.bin"]) {
			t.Fatalf("an object was stored in maintenance")
		}
		if got := w.mustRun("", "git", "--git-dir", filepath.Join(w.data, "repositories", "proj.git"), "rev-parse", "main"); got != head {
			t.Fatalf("main moved in maintenance: %s → %s", head, got)
		}
		// Straight to the object endpoint: 403 with the message in the
		// LFS error format, before any byte is read.
		content, _ := os.ReadFile(filepath.Join(work, "m0.bin"))
		status, body := w.api(t, "PUT", "alice", "/proj.git/info/lfs/objects/"+oids["m0.bin"], content)
		if status != http.StatusForbidden || !strings.Contains(body, `"message":"`+gitgate.MaintenanceMessage+`"`) {
			t.Fatalf("PUT in maintenance: %d %s", status, body)
		}

		// Locks: listing works, create and unlock are refused.
		remote := []string{"--remote", w.httpURL("alice", "proj")}
		w.mustRun(work, "git", append([]string{"lfs", "locks"}, remote...)...)
		_, stderr, err := w.run(work, nil, "git", append([]string{"lfs", "lock", "h2.bin"}, remote...)...)
		if err == nil || !strings.Contains(stderr, gitgate.MaintenanceMessage) {
			t.Fatalf("lock in maintenance: err %v, stderr %q", err, stderr)
		}
	})

	w.step(t, "Metrics", func(t *testing.T) {
		res, err := http.Get("http://" + w.httpHost + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		for _, want := range []string{
			`gitgate_lfs_objects_total{direction="served"}`,
			`gitgate_lfs_objects_total{direction="stored"}`,
			`gitgate_lfs_bytes_total{direction="stored"}`,
			`gitgate_lfs_refusals_total{operation="lfs-upload",reason="maintenance"}`,
			`gitgate_lfs_refusals_total{operation="lfs-upload",reason="bad_object"}`,
			`gitgate_lfs_refusals_total{operation="lfs-upload",reason="forbidden"}`,
		} {
			if !strings.Contains(string(b), want) {
				t.Errorf("no %s in /metrics", want)
			}
		}
	})
}

// awaitMaintenance waits (bounded) until the gate refuses LFS writes.
func (w *world) awaitMaintenance(t *testing.T) {
	t.Helper()
	// An empty upload of a made-up oid: refused (403) in maintenance,
	// rejected as not matching its oid (422) otherwise; never stored.
	probe := "/proj.git/info/lfs/objects/" + strings.Repeat("0", 64)
	for range 500 {
		if status, _ := w.api(t, "PUT", "alice", probe, nil); status == http.StatusForbidden {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("the gate did not see maintenance mode")
}

// api calls the gate's LFS API as user (with their token).
func (w *world) api(t *testing.T, method, user, path string, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+w.httpHost+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(user, w.tokens[user])
	return do(t, req)
}

// rawAPI calls the gate with an Authorization header as given.
func (w *world) rawAPI(t *testing.T, method, auth, path string, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+w.httpHost+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", auth)
	return do(t, req)
}

func do(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	req.Header.Set("Accept", "application/vnd.git-lfs+json")
	if req.Method == "POST" {
		req.Header.Set("Content-Type", "application/vnd.git-lfs+json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	return res.StatusCode, string(b)
}

func fileSize(t *testing.T, path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
