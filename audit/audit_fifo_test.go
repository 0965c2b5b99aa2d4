package audit

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// An audit log that is a FIFO (or another special file) is refused at once:
// Record runs after a change was applied, and blocking there would hang the
// API request or CLI command that made it.
func TestRecordFIFODoesNotBlock(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Skip("mkfifo:", err)
	}
	for _, reader := range []bool{false, true} {
		if reader { // someone reads the FIFO: open would succeed, writes would go there
			r, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
		}
		done := make(chan error, 1)
		go func() { done <- Open(dir).Record(Event{Action: "maintenance.update", Actor: "root"}) }()
		select {
		case err := <-done:
			if err == nil {
				t.Fatalf("reader=%v: an event was written to a FIFO", reader)
			}
		case <-time.After(10 * time.Second):
			if r, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0); err == nil {
				defer r.Close()
			}
			t.Fatalf("reader=%v: Record blocked on a FIFO audit log", reader)
		}
	}
}
