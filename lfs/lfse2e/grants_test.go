package lfse2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLFSGrantsFollowAccess: the gate's signed LFS headers point only at
// the gate, whatever Host a request names, and stop working the moment
// what they were issued on goes: the SSH key (git-lfs-authenticate's
// header), the access token (a batch answer's action headers), or the
// user's access to the repository.
func TestLFSGrantsFollowAccess(t *testing.T) {
	requireTools(t)
	t.Parallel()
	w := newWorld(t)
	for _, u := range []string{"alice", "rita"} {
		w.gitgate("user", "add", u)
	}
	w.gitgate("repo", "create", "proj")
	w.gitgate("access", "grant", "proj", "-u", "alice", "--level", "write")
	w.gitgate("access", "grant", "proj", "-u", "rita", "--level", "read")
	pub, err := os.ReadFile(filepath.Join(w.home, "id.pub"))
	if err != nil {
		t.Fatal(err)
	}
	w.gitgate("user", "key", "add", "alice", strings.TrimSpace(string(pub)))
	for _, u := range []string{"alice", "rita"} {
		w.token(u)
	}
	w.serve()

	stored := []byte("stored before the revocations\n")
	later := []byte("uploaded after the token is revoked\n")
	var sshHeader, laterHeader, laterPath, ritaHeader, ritaPath string

	w.step(t, "ForgedHost", func(t *testing.T) {
		// Over HTTP: a batch whose Host names another server.
		req, _ := http.NewRequest("POST", "http://"+w.httpHost+"/proj.git/info/lfs/objects/batch", bytes.NewReader(batchBody("upload", stored, later)))
		req.Host = "evil.example"
		req.SetBasicAuth("alice", w.tokens["alice"])
		status, body := do(t, req)
		if status != http.StatusOK || strings.Contains(body, "evil.example") {
			t.Fatalf("batch with a forged Host: %d %s", status, body)
		}
		acts := uploadActions(t, body)
		for _, a := range acts {
			if !strings.HasPrefix(a.Href, "http://"+w.httpHost+"/proj.git/info/lfs/objects/") {
				t.Fatalf("href %q is not the gate's own address %s", a.Href, w.httpHost)
			}
		}
		if status, body := w.rawAPI(t, "PUT", acts[0].Header["Authorization"], hrefPath(w, acts[0].Href), stored); status != http.StatusOK {
			t.Fatalf("upload: %d %s", status, body)
		}
		laterHeader, laterPath = acts[1].Header["Authorization"], hrefPath(w, acts[1].Href)

		// Over SSH: git-lfs-authenticate names the HTTP listener.
		answer := w.lfsAuthenticate(t, "proj", "upload")
		if answer.Href != "http://"+w.httpHost+"/proj.git/info/lfs" {
			t.Fatalf("git-lfs-authenticate href %q", answer.Href)
		}
		sshHeader = answer.Header["Authorization"]

		// rita's download header for the stored object.
		status, body = w.api(t, "POST", "rita", "/proj.git/info/lfs/objects/batch", batchBody("download", stored))
		var br batchReply
		if json.Unmarshal([]byte(body), &br); status != http.StatusOK || len(br.Objects) != 1 || br.Objects[0].Actions["download"] == nil {
			t.Fatalf("rita's download batch: %d %s", status, body)
		}
		ritaHeader, ritaPath = br.Objects[0].Actions["download"].Header["Authorization"], hrefPath(w, br.Objects[0].Actions["download"].Href)
		if status, _ := w.rawAPI(t, "GET", ritaHeader, ritaPath, nil); status != http.StatusOK {
			t.Fatalf("rita's download: %d", status)
		}
	})

	w.step(t, "KeyRemoved", func(t *testing.T) {
		if status, body := w.rawAPI(t, "GET", sshHeader, "/proj.git/info/lfs/locks", nil); status != http.StatusOK {
			t.Fatalf("the SSH header before: %d %s", status, body)
		}
		fp := strings.Fields(w.mustRun("", "ssh-keygen", "-lf", filepath.Join(w.home, "id.pub")))[1]
		w.accessChange(t, "user", "key", "remove", "alice", fp)
		if status, body := w.rawAPI(t, "GET", sshHeader, "/proj.git/info/lfs/locks", nil); status != http.StatusUnauthorized {
			t.Fatalf("the SSH header after its key was removed: %d %s", status, body)
		}
	})

	w.step(t, "TokenRevoked", func(t *testing.T) {
		id := tokenID(t, w.gitgate("token", "list", "alice"))
		w.accessChange(t, "token", "revoke", "alice", id)
		if status, body := w.rawAPI(t, "PUT", laterHeader, laterPath, later); status != http.StatusUnauthorized {
			t.Fatalf("an upload header after its token was revoked: %d %s", status, body)
		}
		if w.hasObject(oidOf(later)) {
			t.Fatal("stored with a revoked token's header")
		}
	})

	w.step(t, "AccessRevoked", func(t *testing.T) {
		w.accessChange(t, "access", "revoke", "proj", "-u", "rita")
		if status, body := w.rawAPI(t, "GET", ritaHeader, ritaPath, nil); status == http.StatusOK || strings.Contains(body, string(stored)) {
			t.Fatalf("a download header after its user lost access: %d %s", status, body)
		}
	})
}

// accessChange runs a gitgate command that edits the access data and waits
// (bounded) until the running gate has loaded the change.
func (w *world) accessChange(t *testing.T, args ...string) {
	t.Helper()
	loads := func() int {
		log, _ := os.ReadFile(w.logPath)
		return strings.Count(string(log), "access file loaded")
	}
	before := loads()
	w.gitgate(args...)
	for range 1000 {
		if loads() > before {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("the gate did not reload the access file after %v", args)
}

type lfsAction struct {
	Href   string            `json:"href"`
	Header map[string]string `json:"header"`
}

type batchReply struct {
	Objects []struct {
		Actions map[string]*lfsAction `json:"actions"`
	} `json:"objects"`
}

func oidOf(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func batchBody(op string, contents ...[]byte) []byte {
	var objs []string
	for _, c := range contents {
		objs = append(objs, `{"oid":"`+oidOf(c)+`","size":`+itoa(int64(len(c)))+`}`)
	}
	return []byte(`{"operation":"` + op + `","objects":[` + strings.Join(objs, ",") + `]}`)
}

// uploadActions returns each object's upload action, failing without one.
func uploadActions(t *testing.T, body string) []*lfsAction {
	t.Helper()
	var br batchReply
	if err := json.Unmarshal([]byte(body), &br); err != nil {
		t.Fatalf("batch answer %s: %v", body, err)
	}
	var out []*lfsAction
	for _, o := range br.Objects {
		if o.Actions["upload"] == nil {
			t.Fatalf("no upload action in %s", body)
		}
		out = append(out, o.Actions["upload"])
	}
	return out
}

func hrefPath(w *world, href string) string { return strings.TrimPrefix(href, "http://"+w.httpHost) }

// lfsAuthenticate runs git-lfs-authenticate over SSH with alice's key.
func (w *world) lfsAuthenticate(t *testing.T, repo, op string) lfsAction {
	t.Helper()
	out := w.mustRun("", "ssh", "-i", filepath.Join(w.home, "id"), "-F", "/dev/null", "-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes", "-p", w.sshPort,
		"git@127.0.0.1", "git-lfs-authenticate", repo, op)
	var a lfsAction
	if err := json.Unmarshal([]byte(out), &a); err != nil {
		t.Fatalf("git-lfs-authenticate answered %q: %v", out, err)
	}
	return a
}

// tokenID is the id of the one token in a "gitgate token list" table.
func tokenID(t *testing.T, table string) string {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if len(lines) != 2 {
		t.Fatalf("token list: %q", table)
	}
	return strings.Fields(lines[1])[1]
}
