package access

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/gitgate/gitgate/internal/atomicfile"
)

const (
	diffKeyA = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINAd/ZdNQX+7xgXI0O3dBj/U4r4u6Qku8lIDYTeKC3yO alice@laptop"
	diffKeyB = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDk0yTUiUG9+bQH0ffxmcFLa8X9NIs6NO7AgxkaOcVUx bob@ci"
	diffSum  = "2ca11652b57671aac374fac543b7d194be8ec614bbec96bebb8ba12c206dd900"
)

func mustParse(t *testing.T, text string) *File {
	t.Helper()
	f, _, err := parseSnapshot("access.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestDiff(t *testing.T) {
	old := mustParse(t, `users:
  - name: alice
    admin: true
    keys: ["`+diffKeyA+`"]
  - name: bob
    tokens:
      - {id: t1, sha256: `+diffSum+`}
  - name: carol
rules:
  - pattern: group/*
    read: [carol, bob]
  - pattern: "**"
    signed_in: read
`)
	// The same grants written differently: comments, order, list order.
	same := mustParse(t, `# reordered
users:
  - name: carol
  - name: bob
    tokens:
      - {id: t1, sha256: `+diffSum+`}
  - name: alice
    admin: true
    keys: ["`+diffKeyA+`"]
rules:
  - pattern: "**"
    signed_in: read
  - pattern: group/*
    read: [bob, carol]
`)
	if c := Diff(old, same); !c.Empty() {
		t.Errorf("a reordered file is a change: %s", c)
	}
	changed := mustParse(t, `users:
  - name: alice
    keys: ["`+diffKeyB+`"]
  - name: bob
    tokens:
      - {id: t1, sha256: `+diffSum+`, revoked: 2026-01-01T00:00:00Z}
  - name: dave
rules:
  - pattern: group/*
    read: [bob]
    write: [dave]
  - pattern: group/secret
    read: [dave]
`)
	got := Diff(old, changed).String()
	fpA, fpB := "SHA256:", "SHA256:"
	for _, want := range []string{"~user alice", "-user carol", "+user dave", "-key " + fpA, "(alice)", "+key " + fpB,
		"revoked token t1 (bob)", "-rule **", "~rule group/*", "+rule group/secret"} {
		if !strings.Contains(got, want) {
			t.Errorf("diff %q lacks %q", got, want)
		}
	}
	if strings.Contains(got, diffSum) {
		t.Errorf("diff shows a token digest: %q", got)
	}
	if c := Diff(changed, nil); !strings.Contains(c.String(), "-user alice") || !strings.Contains(c.String(), "-rule group/secret") {
		t.Errorf("removing the file: %s", c)
	}
}

// A file rewritten with thousands of users gives a bounded change.
func TestDiffIsBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString("users:\n")
	for i := range 5000 {
		fmt.Fprintf(&b, "  - name: u%d\n", i)
	}
	c := Diff(nil, mustParse(t, b.String()))
	if len(c.Items) != maxChangeItems || c.More != 5000-maxChangeItems {
		t.Fatalf("%d items, %d more", len(c.Items), c.More)
	}
	if n := len(c.String()); n > 2048 {
		t.Fatalf("change of %d bytes", n)
	}
}

// Every reload that changes the data in force is reported, hand edits
// included; the first load, unchanged content and an invalid file are not.
func TestLiveReportsChanges(t *testing.T) {
	dir := t.TempDir()
	write := func(content string) {
		t.Helper()
		if err := atomicfile.Write(FilePath(dir), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	var changes []string
	live := NewLive(dir, slog.New(slog.NewTextHandler(io.Discard, nil)))
	live.OnChange(func(c Change) {
		mu.Lock()
		changes = append(changes, c.String())
		mu.Unlock()
	})
	write("users:\n  - name: alice\n")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := live.Start(ctx); err != nil {
		t.Fatal(err)
	}
	steps := []struct{ content, want string }{
		{"users:\n  - name: alice\n", ""},                         // unchanged: not read again
		{"# a comment\nusers:\n  - name: alice\n", ""},            // same grants
		{"users: [\n", ""},                                        // invalid: the old data stays
		{"users:\n  - name: alice\n  - name: bob\n", "+user bob"}, // a hand edit
	}
	for _, s := range steps {
		write(s.content)
		_ = live.Reload()
	}
	mu.Lock()
	defer mu.Unlock()
	if len(changes) != 1 || changes[0] != "+user bob" {
		t.Fatalf("changes reported: %q", changes)
	}
}
