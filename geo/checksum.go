package geo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"
)

// RefState is what the sites compare of one repository: the checksum of
// its refs and HEAD, and HEAD itself.
type RefState struct {
	// Checksum is sha256 (hex) over "HEAD <target>\n" and one sorted
	// "<oid> <refname>\n" line per ref ([Checksum]).
	Checksum string `json:"checksum"`
	// Head is HEAD's target ("refs/heads/main"), or an object id when HEAD
	// is detached.
	Head string `json:"head"`
}

// gitTimeout bounds the small git commands of replication (ref listing,
// HEAD); fetches have their own bound.
const gitTimeout = 2 * time.Minute

// maxRefListing bounds the ref listing read from git (about a million refs).
const maxRefListing = 128 << 20

// errOutputTooLarge is returned when git writes more than a command may.
var errOutputTooLarge = errors.New("git output too large")

// Checksum computes a repository's RefState with the git binary gitBin.
// Both sites compute it the same way, so equal checksums mean equal refs
// (every ref under refs/, branches, tags, notes and the rest) and the same
// HEAD.
func Checksum(ctx context.Context, gitBin, repoPath string) (RefState, error) {
	out, err := runGit(ctx, gitBin, repoPath, nil, maxRefListing, "for-each-ref", "--format=%(objectname) %(refname)")
	if err != nil {
		return RefState{}, fmt.Errorf("list refs: %w", err)
	}
	head, err := runGit(ctx, gitBin, repoPath, nil, 4<<10, "symbolic-ref", "--quiet", "HEAD")
	if err != nil {
		// Detached: HEAD names an object.
		if head, err = runGit(ctx, gitBin, repoPath, nil, 4<<10, "rev-parse", "--verify", "--quiet", "HEAD"); err != nil {
			return RefState{}, fmt.Errorf("read HEAD: %w", err)
		}
	}
	return checksumOf(strings.TrimSpace(string(head)), out), nil
}

// checksumOf hashes HEAD and the "<oid> <ref>" lines of a listing.
func checksumOf(head string, listing []byte) RefState {
	lines := strings.Split(strings.TrimRight(string(listing), "\n"), "\n")
	if len(lines) == 1 && lines[0] == "" {
		lines = nil
	}
	slices.SortFunc(lines, func(a, b string) int {
		_, ra, _ := strings.Cut(a, " ")
		_, rb, _ := strings.Cut(b, " ")
		return strings.Compare(ra, rb)
	})
	h := sha256.New()
	io.WriteString(h, "HEAD "+head+"\n")
	for _, l := range lines {
		io.WriteString(h, l+"\n")
	}
	return RefState{Checksum: hex.EncodeToString(h.Sum(nil)), Head: head}
}

// gitEnv is the environment of the git processes replication starts: the
// server's, without git's own variables (GIT_DIR and the like) and without
// the gate's settings, plus extra. The system and global git config stay
// in force: that is where an admin sets a proxy or CA for the primary.
func gitEnv(extra []string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "GIT_") || strings.HasPrefix(k, "GITGATE_") {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "GIT_TERMINAL_PROMPT=0", "LC_ALL=C")
	return append(env, extra...)
}

// runGit runs git in dir with a deadline and returns its stdout, at most
// limit bytes. stderr is kept (bounded) for the error.
func runGit(ctx context.Context, gitBin, dir string, env []string, limit int64, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, gitTimeout)
	defer cancel()
	return runGitNoTimeout(ctx, gitBin, dir, env, limit, args...)
}

func runGitNoTimeout(ctx context.Context, gitBin, dir string, env []string, limit int64, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, gitBin, args...)
	cmd.Dir = dir
	cmd.Env = gitEnv(env)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stdout limitedBuffer
	stdout.limit = limit
	var stderr limitedBuffer
	stderr.limit = 8 << 10
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if stdout.over {
		return nil, errOutputTooLarge
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("git %s: %w", args[0], context.Cause(ctx))
		}
		return nil, fmt.Errorf("git %s: %w: %s", args[0], err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// limitedBuffer keeps at most limit bytes and remembers that it overflowed.
type limitedBuffer struct {
	bytes.Buffer
	limit int64
	over  bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.limit - int64(b.Len()); int64(len(p)) > room {
		b.over = true
		if room > 0 {
			b.Buffer.Write(p[:room])
		}
		return len(p), nil
	}
	return b.Buffer.Write(p)
}
