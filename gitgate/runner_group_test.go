package gitgate

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeGit writes an executable script used as the git binary: it starts a
// helper that ignores SIGTERM and keeps git's stdout open (as a stuck
// pack-objects would), prints the helper's pid, and waits.
func fakeGit(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "git")
	script := "#!/bin/sh\n" +
		"sh -c 'trap \"\" TERM; echo $$; exec sleep 300' &\n" +
		"wait\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// processGone reports whether pid has exited (it may be a zombie waiting for
// its new parent to reap it).
func processGone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// The state follows the command name in parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] == 'Z'
}

// When the context ends, every process of git's group is gone by the time
// Run returns, including a helper that ignores SIGTERM.
func TestRunKillsTheWholeProcessGroup(t *testing.T) {
	r, err := NewRunner(fakeGit(t), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r.KillDelay = 200 * time.Millisecond
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- r.Run(ctx, Invocation{
			Op:     Operation{Service: UploadPack, Repo: "x"},
			Repo:   Repo{Name: "x", Path: t.TempDir()},
			Stdout: pw,
			Stderr: pw,
		})
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the helper's pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("helper pid %q: %v", line, err)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v, want context.Canceled", err)
	}
	// SIGKILL was sent before Run returned; the kernel may take a moment to
	// carry it out.
	for i := 0; !processGone(pid); i++ {
		if i == 500 {
			t.Fatalf("helper %d (ignores SIGTERM) survived its git", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// countWriter counts what is written to it; it is not an *os.File, so
// os/exec copies git's output through a pipe of its own.
type countWriter struct{ n int }

func (w *countWriter) Write(p []byte) (int, error) {
	w.n += len(p)
	return len(p), nil
}

// When git exits but a helper keeps its output open, Run returns after
// KillDelay and the helper is killed with the rest of the group.
func TestRunKillsHelpersThatOutliveGit(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	path := filepath.Join(dir, "git")
	// git exits once its helper, which keeps git's stdout, has started.
	script := "#!/bin/sh\n" +
		"sh -c 'trap \"\" TERM; echo $$ > " + pidFile + ".tmp; mv " + pidFile + ".tmp " + pidFile + "; exec sleep 300' &\n" +
		"i=0; while [ ! -s " + pidFile + " ] && [ $i -lt 3000 ]; do sleep 0.01; i=$((i+1)); done\n" +
		"exit 0\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	r, err := NewRunner(path, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r.KillDelay = 200 * time.Millisecond
	err = r.Run(context.Background(), Invocation{
		Op:     Operation{Service: UploadPack, Repo: "x"},
		Repo:   Repo{Name: "x", Path: t.TempDir()},
		Stdout: &countWriter{},
	})
	if !errors.Is(err, exec.ErrWaitDelay) {
		t.Errorf("Run = %v; want exec.ErrWaitDelay (output held open)", err)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	for i := 0; !processGone(pid); i++ {
		if i == 500 {
			t.Fatalf("helper %d outlived its git", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
