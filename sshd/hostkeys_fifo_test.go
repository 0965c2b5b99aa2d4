package sshd

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// A host key file that is a FIFO (or a link to one, or to a device) must not
// hang the server's start: it is refused at once, as the state file and
// access.yaml are.
func TestHostKeyFIFODoesNotBlock(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "extra_host_key")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Skip("mkfifo:", err)
	}
	os.Chmod(path, 0o600)
	done := make(chan error, 1)
	go func() {
		_, err := LoadOrCreateHostKeys(filepath.Join(dir, "data"), []string{path})
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a FIFO was accepted as a host key")
		}
	case <-time.After(10 * time.Second):
		if f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
		t.Fatal("LoadOrCreateHostKeys blocked on a FIFO host key file")
	}
}
