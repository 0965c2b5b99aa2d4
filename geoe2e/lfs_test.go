package geoe2e

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gitgate/gitgate/geo"
	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/internal/gittest"
	"github.com/gitgate/gitgate/lfs"
)

// TestGeoLFS starts one primary and one secondary and checks that Git LFS
// objects replicate with their repositories and that LFS writes sent to the
// secondary are carried out (and decided) by the primary, with the real
// git-lfs client: content pushed to the primary is cloned from the
// secondary, a push through the secondary lands on the primary and comes
// back, a corrupted copy is repaired, and in maintenance an upload through
// the secondary is refused with the maintenance message.
func TestGeoLFS(t *testing.T) {
	if _, err := exec.LookPath("git-lfs"); err != nil {
		t.Skip("SKIPPING the Geo LFS end-to-end test LOUDLY: git-lfs is not installed (.ci/run installs it)")
	}
	t.Parallel()
	work := t.TempDir()
	env := gittest.Env(t)
	gittest.MustGit(t, env, work, "lfs", "install", "--skip-repo")
	P, S := filepath.Join(work, "primary"), filepath.Join(work, "eu")
	os.MkdirAll(filepath.Join(P, "secrets"), 0o750)
	b := make([]byte, 32)
	rand.Read(b)
	secret := []byte(hex.EncodeToString(b))
	for _, f := range []string{filepath.Join(P, "secrets", "eu.key"), filepath.Join(work, "eu.key")} {
		if err := os.WriteFile(f, secret, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(P, "geo.yaml"), []byte("secondaries:\n  - name: eu\n    secret_file: secrets/eu.key\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, env, P, "repo", "create", "group/media", "--readme")
	mustCLI(t, env, P, "user", "add", "dev")
	mustCLI(t, env, P, "access", "grant", "group/*", "--user", "dev", "--level", "write")
	dev := mustCLI(t, env, P, "token", "create", "dev")

	primary := &gate{t: t, name: "primary", data: P, env: env, logPath: filepath.Join(work, "primary.log"),
		args: []string{"--geo-role", "primary", "--geo-scan-interval", "300ms"}}
	startGate(t, primary)
	t.Cleanup(primary.stop)
	// The secondary reaches the primary through a proxy that can damage
	// the LFS objects it downloads.
	damage := startDamageProxy(t, primary.url())
	sec := &gate{t: t, name: "eu", data: S, env: env, logPath: filepath.Join(work, "eu.log"),
		args: []string{"--geo-role", "secondary", "--geo-primary-url", "http://" + damage.addr, "--geo-node-name", "eu",
			"--geo-secret-file", filepath.Join(work, "eu.key"), "--geo-reconcile-interval", "1s",
			"--geo-trash-retention", "1s"}}
	startGate(t, sec)
	t.Cleanup(sec.stop)
	t.Cleanup(func() {
		for _, g := range []*gate{primary, sec} {
			if strings.Contains(readFile(g.logPath), "DATA RACE") { // GEOE2E_RACE=1
				t.Errorf("%s: the race detector reported a data race", g.name)
			}
		}
		if t.Failed() {
			for _, g := range []*gate{primary, sec} {
				t.Logf("%s log:\n%s", g.name, readFile(g.logPath))
			}
		}
	})

	userURL := func(g *gate) string { return "http://dev:" + dev + "@" + g.http + "/group/media.git" }
	objectPath := func(data, oid string) string { return filepath.Join(data, "lfs", "objects", oid[:2], oid[2:4], oid) }
	// intact reports whether data holds the object oid with its content.
	intact := func(data, oid string) bool {
		b, err := os.ReadFile(objectPath(data, oid))
		sum := sha256.Sum256(b)
		return err == nil && hex.EncodeToString(sum[:]) == oid
	}
	// addFiles commits n new .bin files named prefix<i>.bin in dir and
	// returns their oids.
	addFiles := func(dir, prefix string, n int) []string {
		var oids []string
		for i := range n {
			content := bytes.Repeat([]byte(fmt.Sprintf("%s %d geo lfs\n", prefix, i)), 200+i)
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s%d.bin", prefix, i)), content, 0o644); err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(content)
			oids = append(oids, hex.EncodeToString(sum[:]))
		}
		gittest.MustGit(t, env, dir, "add", ".")
		gittest.MustGit(t, env, dir, "commit", "-q", "-m", "add "+prefix)
		return oids
	}
	replicated := func(what string, oids []string) {
		t.Helper()
		want := lsRemote(t, env, userURL(primary))
		await(t, what, func() bool {
			for _, oid := range oids {
				if !intact(S, oid) {
					return false
				}
			}
			return lsRemote(t, env, userURL(sec)) == want
		})
	}

	clone := filepath.Join(work, "work")
	gittest.MustGit(t, env, work, "clone", "-q", userURL(primary), clone)
	gittest.MustGit(t, env, clone, "lfs", "track", "*.bin")
	first := addFiles(clone, "a", 2)

	t.Run("objects pushed to the primary are cloned from the secondary", func(t *testing.T) {
		gittest.MustGit(t, env, clone, "push", "-q", "origin", "main")
		replicated("LFS objects on the secondary", first)
		fromSec := filepath.Join(work, "from-eu")
		gittest.MustGit(t, env, work, "clone", "-q", userURL(sec), fromSec)
		for _, name := range []string{"a0.bin", "a1.bin"} {
			got, _ := os.ReadFile(filepath.Join(fromSec, name))
			want, _ := os.ReadFile(filepath.Join(clone, name))
			if !bytes.Equal(got, want) || bytes.HasPrefix(got, []byte("version https://git-lfs")) {
				t.Fatalf("%s cloned from the secondary is not the content: %.60q", name, got)
			}
		}
		await(t, "the secondary counts its LFS objects", func() bool {
			out, _, _ := cli(t, env, S, "geo", "status")
			return strings.Contains(out, "lfs objects:      2 synced, 0 pending, 0 failed")
		})
		out, _, _ := cli(t, env, S, "geo", "status")
		t.Logf("gitgate geo status on the secondary:\n%s", out)
	})

	t.Run("a push through the secondary lands on the primary and comes back", func(t *testing.T) {
		oids := addFiles(clone, "b", 1)
		gittest.MustGit(t, env, clone, "push", "-q", userURL(sec), "main")
		if !intact(P, oids[0]) {
			t.Fatalf("the object pushed through the secondary is not on the primary")
		}
		if got, want := gittest.MustGit(t, env, "", "--git-dir", filepath.Join(P, "repositories", "group", "media.git"), "rev-parse", "main"),
			gittest.MustGit(t, env, clone, "rev-parse", "HEAD"); got != want {
			t.Fatalf("the primary's main is %s, pushed %s", got, want)
		}
		replicated("the object pushed through the secondary replicated back", oids)
		if !strings.Contains(readFile(sec.logPath), "LFS request proxied to the Geo primary") {
			t.Fatalf("the secondary did not proxy the LFS upload")
		}
	})

	t.Run("a corrupted copy is detected and repaired", func(t *testing.T) {
		p := objectPath(S, first[0])
		size := len(readFile(p))
		os.Chmod(p, 0o640)
		if err := os.WriteFile(p, bytes.Repeat([]byte("x"), size), 0o640); err != nil {
			t.Fatal(err)
		}
		await(t, "the corrupted object repaired", func() bool { return intact(S, first[0]) })
		if !strings.Contains(readFile(sec.logPath), "LFS object does not match its oid on this site") {
			t.Fatalf("the repair was not logged")
		}
	})

	t.Run("a wrong copy from the primary never becomes an object and is retried", func(t *testing.T) {
		damage.armed.Store(true)
		oids := addFiles(clone, "w", 1)
		gittest.MustGit(t, env, clone, "push", "-q", "origin", "main")
		await(t, "a damaged download", func() bool { return damage.damaged.Load() > 0 })
		await(t, "the secondary counts the object failed", func() bool {
			out, _, _ := cli(t, env, S, "geo", "status")
			return regexp.MustCompile(`(?m)^lfs objects:\s+\d+ synced, 0 pending, [1-9]\d* failed$`).MatchString(out)
		})
		damage.armed.Store(false)
		if _, err := os.Stat(objectPath(S, oids[0])); !os.IsNotExist(err) {
			t.Fatalf("a damaged copy became an object: %v", err)
		}
		if tmp, _ := os.ReadDir(filepath.Join(S, "lfs", "tmp")); len(tmp) != 0 {
			t.Fatalf("temporary files left: %d", len(tmp))
		}
		replicated("the object copied on a retry", oids)
		await(t, "the secondary counts no failure", func() bool {
			out, _, _ := cli(t, env, S, "geo", "status")
			return strings.Contains(out, "lfs objects:      4 synced, 0 pending, 0 failed")
		})
	})

	// linkPath is where data links oid to group/media.
	linkPath := func(data, oid string) string {
		id := strings.TrimSpace(readFile(filepath.Join(data, "repositories", "group", "media.git", lfs.RepoIDFile)))
		key := sha256.Sum256([]byte("group/media\x00" + id))
		return filepath.Join(data, "lfs", "links", hex.EncodeToString(key[:]), oid[:2], oid)
	}
	exists := func(p string) bool { _, err := os.Stat(p); return err == nil }

	t.Run("an object unlinked on the primary is unlinked on the secondary and removed after the trash retention", func(t *testing.T) {
		oids := addFiles(clone, "u", 1)
		gittest.MustGit(t, env, clone, "rm", "-q", "u0.bin")
		gittest.MustGit(t, env, clone, "commit", "-q", "-m", "remove u0.bin")
		gittest.MustGit(t, env, clone, "push", "-q", "origin", "main")
		replicated("the object to unlink on the secondary", oids)
		if !exists(linkPath(S, oids[0])) {
			t.Fatalf("the secondary has not linked the object")
		}
		// The primary stops linking it (as a repository made again does).
		if err := os.Remove(linkPath(P, oids[0])); err != nil {
			t.Fatal(err)
		}
		await(t, "the object unlinked on the secondary", func() bool { return !exists(linkPath(S, oids[0])) })
		req, _ := http.NewRequest("GET", sec.url()+"/group/media.git/info/lfs/objects/"+oids[0], nil)
		req.SetBasicAuth("dev", dev)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusNotFound {
			t.Fatalf("the unlinked object from the secondary: %s", res.Status)
		}
		await(t, "the unlinked object trashed on the secondary", func() bool {
			return !exists(objectPath(S, oids[0])) && exists(filepath.Join(S, "lfs", "trash", oids[0]))
		})
		await(t, "the trashed object removed after the retention", func() bool {
			return !exists(filepath.Join(S, "lfs", "trash", oids[0]))
		})
		for _, oid := range first {
			if !intact(S, oid) {
				t.Fatalf("a linked object was swept: %s", oid)
			}
		}
	})

	t.Run("a clone from the secondary gets the objects it has not copied yet from the primary", func(t *testing.T) {
		damage.holdListings.Store(true) // the secondary copies no LFS object
		defer damage.holdListings.Store(false)
		oids := addFiles(clone, "f", 2)
		gittest.MustGit(t, env, clone, "push", "-q", "origin", "main")
		want := lsRemote(t, env, userURL(primary))
		await(t, "the commit on the secondary", func() bool { return lsRemote(t, env, userURL(sec)) == want })
		for _, oid := range oids {
			if exists(objectPath(S, oid)) {
				t.Fatalf("the secondary copied %s while the listings were held", oid)
			}
		}
		fromSec := filepath.Join(work, "from-eu-early")
		gittest.MustGit(t, env, work, "clone", "-q", userURL(sec), fromSec)
		for _, name := range []string{"f0.bin", "f1.bin"} {
			got, _ := os.ReadFile(filepath.Join(fromSec, name))
			want, _ := os.ReadFile(filepath.Join(clone, name))
			if !bytes.Equal(got, want) {
				t.Fatalf("%s cloned from the secondary before it was copied: %.60q", name, got)
			}
		}
		for _, oid := range oids {
			if !intact(S, oid) || !exists(linkPath(S, oid)) {
				t.Fatalf("the object fetched from the primary is not stored and linked on the secondary: %s", oid)
			}
		}
		if !strings.Contains(readFile(sec.logPath), "lfs object fetched from the Geo primary and served") {
			t.Fatalf("the secondary did not log the fetch")
		}
	})

	t.Run("in maintenance an upload through the secondary is refused", func(t *testing.T) {
		mustCLI(t, env, P, "maintenance", "enable")
		// Whether or not the secondary has heard of it yet, the upload
		// is refused: by the secondary, or by the primary it goes to.
		oids := addFiles(clone, "m", 1)
		r := gittest.Git(t, env, clone, "lfs", "push", userURL(sec), "main")
		if r.Err == nil || !strings.Contains(r.Stderr, "batch response: "+gitgate.MaintenanceMessage) {
			t.Fatalf("git lfs push through the secondary in maintenance: %v %q", r.Err, r.Stderr)
		}
		t.Logf("git lfs push through the secondary in maintenance:\n%s", r.Stderr)
		r = gittest.Git(t, env, clone, "push", userURL(sec), "main")
		if r.Err == nil || !strings.Contains(r.Stderr, gitgate.MaintenanceMessage) {
			t.Fatalf("git push through the secondary in maintenance: %v %q", r.Err, r.Stderr)
		}
		if intact(P, oids[0]) || intact(S, oids[0]) {
			t.Fatalf("an object was stored in maintenance")
		}
	})
}

// damageProxy forwards to the primary and, while armed, changes the first
// byte of every LFS object the secondary downloads (same size, wrong hash).
type damageProxy struct {
	// holdListings, while set, answers the secondary's LFS listings 404
	// (as a primary without LFS would), so it copies no LFS object.
	holdListings atomic.Bool
	armed        atomic.Bool
	damaged      atomic.Int32
	addr         string
}

func startDamageProxy(t testing.TB, target string) *damageProxy {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &damageProxy{}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1
	rp.ErrorLog = log.New(io.Discard, "", 0)
	rp.ModifyResponse = func(resp *http.Response) error {
		if resp.Request.URL.Path == geo.LFSObjectPath && resp.StatusCode == http.StatusOK && p.armed.Load() {
			p.damaged.Add(1)
			resp.Body = &damagedBody{ReadCloser: resp.Body}
		}
		return nil
	}
	ln := listenLoopback(t)
	p.addr = ln.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == geo.LFSObjectsPath && p.holdListings.Load() {
			http.NotFound(w, r)
			return
		}
		rp.ServeHTTP(w, r)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return p
}

type damagedBody struct {
	io.ReadCloser
	done bool
}

func (b *damagedBody) Read(q []byte) (int, error) {
	n, err := b.ReadCloser.Read(q)
	if n > 0 && !b.done {
		q[0] ^= 0xff
		b.done = true
	}
	return n, err
}
