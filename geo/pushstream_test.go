package geo

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gitgate/gitgate/internal/gittest"
)

func pkt(s string) string { return fmt.Sprintf("%04x%s", len(s)+4, s) }

// repoWithHistory makes a repository whose pack has deltas: one large file
// changed a little in each of a few commits. It returns the repo and the
// ids of its first and last commits.
func repoWithHistory(t *testing.T, env []string, format string) (dir, first, last string) {
	t.Helper()
	dir = t.TempDir()
	gittest.MustGit(t, env, dir, "init", "-q", "--object-format="+format)
	var big strings.Builder
	for i := range 2000 {
		fmt.Fprintf(&big, "line %d of a file that compresses and deltas well\n", i)
	}
	for i := range 4 {
		content := big.String() + strings.Repeat(fmt.Sprintf("change %d\n", i), i+1)
		if err := os.WriteFile(filepath.Join(dir, "big.txt"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		gittest.MustGit(t, env, dir, "add", "big.txt")
		gittest.MustGit(t, env, dir, "commit", "-q", "-m", fmt.Sprintf("commit %d", i))
		if i == 0 {
			first = gittest.MustGit(t, env, dir, "rev-parse", "HEAD")
		}
	}
	return dir, first, gittest.MustGit(t, env, dir, "rev-parse", "HEAD")
}

func packObjects(t *testing.T, env []string, dir string, args []string, revs string) []byte {
	t.Helper()
	cmd := exec.Command("git", append([]string{"pack-objects", "--stdout", "--revs", "-q"}, args...)...)
	cmd.Dir, cmd.Env = dir, env
	cmd.Stdin = strings.NewReader(revs)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("pack-objects: %v\n%s", err, stderr.String())
	}
	return out
}

// runPump feeds input and then extra on a stream that is never closed, as
// an SSH client's stdin, and returns what the pump passed on.
func runPump(t *testing.T, input, extra []byte) (out []byte, pushing bool, err error) {
	t.Helper()
	inR, inW := io.Pipe()
	defer inR.Close()
	go func() {
		inW.Write(input)
		inW.Write(extra)
		// and then nothing: the client waits for the report
	}()
	pr, pw := io.Pipe()
	push := make(chan bool, 1)
	done := make(chan error, 1)
	go func() {
		err := pumpPush(inR, pw, push)
		done <- err
		pw.CloseWithError(err)
	}()
	out, rerr := io.ReadAll(pr)
	err = <-done
	if err == nil && rerr != nil {
		t.Fatalf("reading the pump: %v", rerr)
	}
	select {
	case pushing = <-push:
	default:
		t.Fatal("the pump did not say whether there is something to push")
	}
	return out, pushing, err
}

func TestPumpEndsWhereThePushEnds(t *testing.T) {
	env := gittest.Env(t)
	for _, format := range []string{"sha1", "sha256"} {
		dir, first, last := repoWithHistory(t, env, format)
		zero := strings.Repeat("0", len(first))
		caps := " report-status side-band-64k quiet agent=git/2\n"
		if format == "sha256" {
			caps = " report-status side-band-64k object-format=sha256 agent=git/2\n"
		}
		for _, tt := range []struct {
			name  string
			input string
		}{
			{"create, ofs-delta pack", pkt(zero+" "+last+" refs/heads/main\x00"+caps) + "0000" +
				string(packObjects(t, env, dir, []string{"--delta-base-offset"}, last+"\n"))},
			{"update, ref-delta thin pack", pkt(first+" "+last+" refs/heads/main\x00"+caps) + "0000" +
				string(packObjects(t, env, dir, []string{"--thin"}, last+"\n^"+first+"\n"))},
			{"push options", pkt(first+" "+last+" refs/heads/main\x00 report-status push-options"+strings.TrimPrefix(caps, " report-status")) + "0000" +
				pkt("ci.skip\n") + pkt("merge_request.create\n") + "0000" +
				string(packObjects(t, env, dir, nil, last+"\n^"+first+"\n"))},
			{"shallow client, two refs", pkt("shallow "+first+"\n") + pkt(zero+" "+last+" refs/heads/a\x00"+caps) +
				pkt(zero+" "+first+" refs/heads/b\n") + "0000" + string(packObjects(t, env, dir, nil, last+"\n"))},
			{"empty pack (ref to an object the server has)", pkt(zero+" "+first+" refs/heads/c\x00"+caps) + "0000" +
				string(packObjects(t, env, dir, nil, "^"+first+"\n"))},
			{"deletes only: no pack", pkt(last+" "+zero+" refs/heads/old\x00"+caps) + pkt(first+" "+zero+" refs/heads/older\n") + "0000"},
		} {
			t.Run(format+"/"+tt.name, func(t *testing.T) {
				out, pushing, err := runPump(t, []byte(tt.input), []byte("AFTER THE PUSH"))
				if err != nil || !pushing {
					t.Fatalf("pump: %v, pushing %v", err, pushing)
				}
				if !bytes.Equal(out, []byte(tt.input)) {
					t.Fatalf("passed on %d bytes, want exactly the %d of the push", len(out), len(tt.input))
				}
			})
		}
	}
}

func TestPumpNothingToPush(t *testing.T) {
	out, pushing, err := runPump(t, []byte("0000"), []byte("more"))
	if err != nil || pushing || len(out) != 0 {
		t.Fatalf("flush only: out %q, pushing %v, err %v", out, pushing, err)
	}
}

func TestPumpBrokenPushes(t *testing.T) {
	env := gittest.Env(t)
	dir, first, last := repoWithHistory(t, env, "sha1")
	pack := packObjects(t, env, dir, nil, last+"\n^"+first+"\n")
	cmds := pkt(first+" "+last+" refs/heads/main\x00 report-status\n") + "0000"
	for name, input := range map[string]string{
		"bad pkt length":         "zzzz",
		"short pkt":              "0003",
		"commands cut":           pkt(first + " " + last + " refs/heads/main\n"),
		"no PACK":                cmds + "JUNK" + string(pack[4:]),
		"bad pack version":       cmds + "PACK\x00\x00\x00\x09" + string(pack[8:]),
		"pack cut in an object":  cmds + string(pack[:len(pack)/2]),
		"pack without checksum":  cmds + string(pack[:len(pack)-10]),
		"corrupt zlib data":      cmds + string(pack[:14]) + strings.Repeat("\xff", 64),
		"client hung up at once": "",
	} {
		t.Run(name, func(t *testing.T) {
			inR, inW := io.Pipe()
			go func() {
				inW.Write([]byte(input))
				inW.Close() // the client hangs up
			}()
			pr, pw := io.Pipe()
			done := make(chan error, 1)
			go func() {
				err := pumpPush(inR, pw, make(chan bool, 1))
				done <- err
				pw.CloseWithError(err)
			}()
			_, rerr := io.ReadAll(pr)
			if err := <-done; err == nil || rerr == nil {
				t.Fatalf("pump: %v; body read: %v; want errors on both sides", err, rerr)
			}
		})
	}
}

func FuzzPumpPush(f *testing.F) {
	f.Add([]byte("0000"))
	f.Add([]byte(pkt(strings.Repeat("0", 40)+" "+strings.Repeat("1", 40)+" refs/heads/x\x00 report-status\n") + "0000PACK\x00\x00\x00\x02\x00\x00\x00\x00" + strings.Repeat("\x00", 20)))
	f.Add([]byte(pkt(strings.Repeat("1", 40)+" "+strings.Repeat("0", 40)+" refs/heads/x\x00 push-options\n") + "0000" + pkt("o") + "0000"))
	f.Fuzz(func(t *testing.T, input []byte) {
		pr, pw := io.Pipe()
		done := make(chan error, 1)
		go func() {
			err := pumpPush(bytes.NewReader(input), pw, make(chan bool, 1))
			done <- err
			pw.CloseWithError(err)
		}()
		out, _ := io.ReadAll(pr)
		err := <-done
		if len(out) > len(input) || !bytes.Equal(out, input[:len(out)]) {
			t.Fatalf("passed on bytes that were not read: %q from %q", out, input)
		}
		if errors.Is(err, io.ErrClosedPipe) {
			t.Fatalf("pump: %v", err)
		}
	})
}
