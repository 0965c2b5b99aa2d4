package lfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/gitgate/gitgate/gitgate"
)

// pkts encodes a client's side of a git-lfs-transfer session: each string
// is a text pkt-line, "" a flush, "|" a delim, and a []byte raw data.
func pkts(items ...any) *bytes.Buffer {
	var b bytes.Buffer
	for _, it := range items {
		switch v := it.(type) {
		case string:
			switch v {
			case "":
				b.WriteString("0000")
			case "|":
				b.WriteString("0001")
			default:
				fmt.Fprintf(&b, "%04x%s\n", len(v)+5, v)
			}
		case []byte:
			fmt.Fprintf(&b, "%04x%s", len(v)+4, v)
		}
	}
	return &b
}

// transfer runs one session as user and returns what the server wrote.
func (f *fixture) transfer(t *testing.T, user *gitgate.User, operation string, in *bytes.Buffer) (string, error) {
	t.Helper()
	var out bytes.Buffer
	op := gitgate.Operation{Repo: "proj.git", User: user, Transport: gitgate.TransportSSH}
	err := f.srv.SSHTransfer(context.Background(), &op, operation, in, &out)
	return out.String(), err
}

// TestSSHTransferPolicy: over git-lfs-transfer, uploads and lock changes are
// decided when they come: in maintenance the batch and a put-object are
// refused with the message and nothing is stored; a wrong upload is
// rejected; a reader cannot upload; a credential revoked during the session
// stops it.
func TestSSHTransferPolicy(t *testing.T) {
	f := newFixture(t, nil)
	u := f.srv.cfg.Users.(users)
	content := []byte("over ssh\n")
	oid := oidOf(content)
	put := func(data []byte, size int) []any {
		return []any{"put-object " + oid, fmt.Sprintf("size=%d", size), "|", data, ""}
	}

	f.state.on.Store(true)
	in := pkts(append([]any{"version 1", "", "batch", "hash-algo=sha256", "|", oid + " 9", ""}, put(content, 9)...)...)
	in.Write(pkts("lock", "path=a.bin", "", "quit", "").Bytes())
	out, err := f.transfer(t, u["alice"], "upload", in)
	if err != nil || strings.Count(out, "status 403") != 3 || !strings.Contains(out, gitgate.MaintenanceMessage) || !strings.HasSuffix(out, "000fstatus 200\n0000") {
		t.Fatalf("upload session in maintenance: %v\n%q", err, out)
	}
	if _, ok := f.store.Stat("proj", oid); ok {
		t.Fatal("stored in maintenance")
	}
	f.state.on.Store(false)

	out, _ = f.transfer(t, u["rita"], "upload", pkts(put(content, 9)...))
	if !strings.Contains(out, "status 403") || !strings.Contains(out, gitgate.PushForbiddenMessage) {
		t.Fatalf("a reader's put-object: %q", out)
	}
	wrong := bytes.ToUpper(content)
	out, _ = f.transfer(t, u["alice"], "upload", pkts(append(put(wrong, 9), "quit", "")...))
	if !strings.Contains(out, "status 422") || !strings.Contains(out, "status 200") {
		t.Fatalf("a wrong upload: %q", out)
	}
	if _, ok := f.store.Stat("proj", oid); ok {
		t.Fatal("a wrong upload was stored")
	}
	out, _ = f.transfer(t, u["alice"], "upload", pkts(append(put(content, 9), "verify-object "+oid, "size=9", "")...))
	if strings.Count(out, "status 200") != 2 {
		t.Fatalf("upload and verify: %q", out)
	}
	out, _ = f.transfer(t, u["rita"], "download", pkts("get-object "+oid, ""))
	if !strings.Contains(out, "status 200\n000bsize=9\n0001000d"+string(content)+"0000") {
		t.Fatalf("download: %q", out)
	}

	// A credential that goes during the session stops it.
	alice := *u["alice"]
	in = pkts("lock", "path=b.bin", "")
	old := u["alice"]
	u["alice"] = &gitgate.User{Name: "alice", Credential: "token:other"}
	out, _ = f.transfer(t, &alice, "upload", in)
	u["alice"] = old
	if !strings.Contains(out, "status 401") {
		t.Fatalf("lock after the credential went: %q", out)
	}
}

// TestSSHTransferBounds: malformed or oversized input ends the session with
// an error or a 4xx, never a panic or an unbounded read.
func TestSSHTransferBounds(t *testing.T) {
	f := newFixture(t, nil)
	alice := f.srv.cfg.Users.(users)["alice"]
	many := []any{"batch"}
	for range maxTransferArgs + 1 {
		many = append(many, "k=v")
	}
	objs := []any{"batch", "|"}
	for range f.srv.cfg.MaxBatchObjects + 2 {
		objs = append(objs, strings.Repeat("a", 64)+" 1")
	}
	for name, tc := range map[string]struct {
		in      *bytes.Buffer
		want    string
		wantErr error
	}{
		"version without a number": {in: pkts("version", ""), want: "status 400"},
		"unknown command":          {in: pkts("frobnicate", ""), want: "status 400"},
		"bad length":               {in: bytes.NewBufferString("zzzz"), wantErr: errPktLine},
		"too long a pkt-line":      {in: bytes.NewBufferString("ffff"), wantErr: errPktLine},
		"too many arguments":       {in: pkts(append(many, "")...), wantErr: errTooLong},
		"too many objects":         {in: pkts(append(objs, "")...), wantErr: errTooLong},
		"data after a size":        {in: pkts("put-object "+oidOf([]byte("x")), "size=1", "|", []byte("xy"), ""), want: "status 422"},
		"bad oid":                  {in: pkts("get-object ../../etc/passwd", ""), want: "status 404"},
	} {
		out, err := f.transfer(t, alice, "upload", tc.in)
		if !errors.Is(err, tc.wantErr) || !strings.Contains(out, tc.want) {
			t.Errorf("%s: %v, %q", name, err, out)
		}
	}
}
