package lfs

import (
	"errors"
	"path/filepath"
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

// TestSSHTransferHostileInput (held): negative, overflowing and malformed
// numbers, ids in the wrong form, reserved pkt lengths and an over-long
// lock path are refused without storing anything; a session cut in the
// middle of an object's data leaves neither the object nor a temporary
// file.
func TestSSHTransferHostileInput(t *testing.T) {
	f := newFixture(t, nil)
	alice := f.srv.cfg.Users.(users)["alice"]
	content := []byte("hostile\n")
	oid := oidOf(content)
	for name, tc := range map[string]struct {
		in      []any
		want    string
		wantErr error
	}{
		"negative size":         {in: []any{"put-object " + oid, "size=-1", "|", content, ""}, wantErr: errPktLine},
		"overflowing size":      {in: []any{"put-object " + oid, "size=99999999999999999999", "|", content, ""}, wantErr: errPktLine},
		"size in hex":           {in: []any{"put-object " + oid, "size=0x8", "|", content, ""}, wantErr: errPktLine},
		"upper-case oid":        {in: []any{"put-object " + strings.ToUpper(oid), "size=8", "|", content, ""}, wantErr: errPktLine},
		"path as oid":           {in: []any{"put-object ../../../" + oid[9:], "size=8", "|", content, ""}, wantErr: errPktLine},
		"batch negative size":   {in: []any{"batch", "|", oid + " -8", ""}, want: "status 422"},
		"batch overflowing":     {in: []any{"batch", "|", oid + " 99999999999999999999", ""}, want: "status 422"},
		"batch short oid":       {in: []any{"batch", "|", oid[:63] + " 8", ""}, want: "status 422"},
		"verify bad oid":        {in: []any{"verify-object ../" + oid, "size=8", ""}, want: "status 404"},
		"lock path too long":    {in: []any{"lock", "path=" + strings.Repeat("a", 5000), ""}, want: "status 422"},
		"lock without path":     {in: []any{"lock", ""}, want: "status 422"},
		"reserved pkt length 2": {in: []any{}, wantErr: errPktLine},
	} {
		in := pkts(tc.in...)
		if name == "reserved pkt length 2" {
			in.WriteString("0002")
		}
		out, err := f.transfer(t, alice, "upload", in)
		if !errors.Is(err, tc.wantErr) || !strings.Contains(out, tc.want) {
			t.Errorf("%s: %v, %q", name, err, out)
		}
	}
	// Cut in the middle of the data: the upload is refused (the end of the
	// input ends its data), nothing is left.
	in := pkts("put-object "+oid, "size=8")
	in.WriteString("0001")
	in.WriteString("0008" + string(content[:4])) // 4 of 8 bytes, then the end
	if out, err := f.transfer(t, alice, "upload", in); err == nil && !strings.Contains(out, "status 422") {
		t.Fatalf("a cut upload: %v, %q; want an error or a 422", err, out)
	}
	if _, ok := f.store.Stat("proj", oid); ok {
		t.Fatal("a cut upload was stored")
	}
	if left, _ := filepath.Glob(filepath.Join(f.store.dir, "tmp", "*")); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}
