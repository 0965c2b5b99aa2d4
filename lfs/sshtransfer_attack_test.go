package lfs

import (
	"errors"
	"strings"
	"testing"
)

// TestSSHTransferBoundsBytesLikeHTTP: a command's argument lines and a
// batch's object lines are bounded in bytes by MaxBatchBody, as the same
// requests are over HTTP; within the line counts, long lines (an object
// line padded with blanks that strings.Fields ignores, an argument of 64
// KiB) would otherwise make one session hold about 65 MB per batch.
func TestSSHTransferBoundsBytesLikeHTTP(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxBatchBody = 4 << 10 })
	alice := f.srv.cfg.Users.(users)["alice"]
	oid := oidOf([]byte("x"))
	pad := strings.Repeat(" ", 1000)

	padded := []any{"batch", "hash-algo=sha256", "|"}
	for range 10 { // 10 objects, well under MaxBatchObjects; 10 KB
		padded = append(padded, oid+" 1"+pad)
	}
	longArgs := []any{"lock"}
	for range 10 { // 10 arguments, under maxTransferArgs; 10 KB
		longArgs = append(longArgs, "path=a"+pad)
	}
	for name, in := range map[string][]any{
		"batch lines over the byte bound":    append(padded, ""),
		"argument lines over the byte bound": append(longArgs, ""),
	} {
		out, err := f.transfer(t, alice, "upload", pkts(in...))
		if !errors.Is(err, errTooLong) || strings.Contains(out, "status 200") {
			t.Errorf("%s: %v, %q; want the session ended (errTooLong)", name, err, out)
		}
	}

	// Within the bound, the same requests are answered.
	out, err := f.transfer(t, alice, "upload", pkts("batch", "hash-algo=sha256", "|", oid+" 1"+pad, "", "quit", ""))
	if err != nil || !strings.Contains(out, "status 200") {
		t.Fatalf("a batch within the bound: %v, %q", err, out)
	}
}
