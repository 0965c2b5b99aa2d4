package geo_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gitgate/gitgate/geo"
)

// A secret file that is a FIFO is refused at once, as the README says of
// the Geo files, instead of blocking the start or a reload forever.
func TestReadSecretFIFODoesNotBlock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "eu-west.key")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Skip("mkfifo:", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := geo.ReadSecret(path)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Fatalf("ReadSecret(FIFO) = %v; want a refusal saying it is not a regular file", err)
		}
	case <-time.After(10 * time.Second):
		if f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
		t.Fatal("ReadSecret blocked on a FIFO")
	}
}
