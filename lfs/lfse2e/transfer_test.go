package lfse2e

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gitgate/gitgate/gitgate"
)

// TestLFSTransfer drives the pure-SSH protocol (git-lfs-transfer, which
// git-lfs tries before git-lfs-authenticate) with the real git-lfs client:
// push 3 files, clone, lock and unlock, and in maintenance a push refused
// with the maintenance message and nothing stored.
func TestLFSTransfer(t *testing.T) {
	requireTools(t)
	t.Parallel()
	w := newWorld(t)
	w.gitgate("user", "add", "alice")
	w.gitgate("repo", "create", "proj")
	w.gitgate("access", "grant", "proj", "-u", "alice", "--level", "write")
	pub, err := os.ReadFile(filepath.Join(w.home, "id.pub"))
	if err != nil {
		t.Fatal(err)
	}
	w.gitgate("user", "key", "add", "alice", strings.TrimSpace(string(pub)))
	w.serve()
	// Every LFS request goes through git-lfs-transfer: the gate's
	// git-lfs-authenticate is not used (the log shows it), and git-lfs
	// has no HTTP URL to fall back to.
	transferOnly := func(t *testing.T) {
		t.Helper()
		log, _ := os.ReadFile(w.logPath)
		if strings.Contains(string(log), "transport=http") || !strings.Contains(string(log), `lfs="transfer upload"`) {
			t.Fatalf("LFS did not go through git-lfs-transfer alone:\n%s", log)
		}
	}

	work := w.workTree()
	var oids map[string]string
	w.step(t, "Push", func(t *testing.T) {
		oids = w.addFiles(work, "t", 3)
		w.mustRun(work, "git", "push", "-q", w.sshURL("proj"), "main")
		for _, oid := range oids {
			if !w.hasObject(oid) {
				t.Fatalf("object %s not stored", oid)
			}
		}
		transferOnly(t)
	})

	w.step(t, "Clone", func(t *testing.T) {
		clone := filepath.Join(w.root, "clone-transfer")
		w.mustRun("", "git", "clone", "-q", w.sshURL("proj"), clone)
		w.sameContent(clone, work, "t0.bin", "t1.bin", "t2.bin")
		if log, _ := os.ReadFile(w.logPath); !strings.Contains(string(log), `lfs="transfer download"`) {
			t.Fatal("the clone's LFS download did not go through git-lfs-transfer")
		}
	})

	w.step(t, "Locks", func(t *testing.T) {
		remote := []string{"--remote", w.sshURL("proj")}
		out := w.mustRun(work, "git", append([]string{"lfs", "lock", "t0.bin"}, remote...)...)
		if !strings.Contains(out, "Locked t0.bin") {
			t.Fatalf("lock: %q", out)
		}
		list := w.mustRun(work, "git", append([]string{"lfs", "locks"}, remote...)...)
		if !strings.Contains(list, "t0.bin") || !strings.Contains(list, "alice") {
			t.Fatalf("locks: %q", list)
		}
		_, stderr, err := w.run(work, nil, "git", append([]string{"lfs", "lock", "t0.bin"}, remote...)...)
		if err == nil || !strings.Contains(stderr, "already created lock") {
			t.Fatalf("second lock: err %v, stderr %q", err, stderr)
		}
		out = w.mustRun(work, "git", append([]string{"lfs", "unlock", "t0.bin"}, remote...)...)
		if !strings.Contains(out, "Unlocked t0.bin") {
			t.Fatalf("unlock: %q", out)
		}
		if list := w.mustRun(work, "git", append([]string{"lfs", "locks"}, remote...)...); list != "" {
			t.Fatalf("locks after unlock: %q", list)
		}
		transferOnly(t)
	})

	w.step(t, "Maintenance", func(t *testing.T) {
		w.gitgate("maintenance", "enable")
		w.awaitMaintenanceSSH(t)
		more := w.addFiles(work, "m", 1)
		_, stderr, err := w.run(work, nil, "git", "lfs", "push", w.sshURL("proj"), "main")
		if err == nil || !strings.Contains(stderr, gitgate.MaintenanceMessage) {
			t.Fatalf("git lfs push in maintenance: err %v, stderr %q", err, stderr)
		}
		t.Logf("git lfs push over git-lfs-transfer in maintenance prints:\n%s", stderr)
		if w.hasObject(more["m0.bin"]) {
			t.Fatal("an object was stored in maintenance")
		}
		_, stderr, err = w.run(work, nil, "git", "lfs", "lock", "t1.bin", "--remote", w.sshURL("proj"))
		if err == nil || !strings.Contains(stderr, gitgate.MaintenanceMessage) {
			t.Fatalf("lock in maintenance: err %v, stderr %q", err, stderr)
		}
		t.Logf("git lfs lock over git-lfs-transfer in maintenance prints:\n%s", stderr)
		// Downloads go on.
		clone := filepath.Join(w.root, "clone-transfer-maint")
		w.mustRun("", "git", "clone", "-q", w.sshURL("proj"), clone)
		w.sameContent(clone, filepath.Join(w.root, "clone-transfer"), "t0.bin", "t2.bin")
		transferOnly(t)
	})
}

// awaitMaintenanceSSH waits (bounded) until the running gate is in
// maintenance, as its metrics say (no LFS request over HTTP).
func (w *world) awaitMaintenanceSSH(t *testing.T) {
	t.Helper()
	for range 500 {
		res, err := http.Get("http://" + w.httpHost + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if strings.Contains(string(b), "\ngitgate_maintenance_enabled 1\n") {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the gate did not see maintenance mode")
}
