package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/gitgate/gitgate/internal/gittest"
)

// The source-like repository of BenchmarkConcurrentClones, shaped like
// git's own: srcDirs directories of srcFilesPerDir C-like files of about
// srcLines lines, and srcCommits commits that each rewrite, insert or
// delete a few hunks in one to four files. Every line is new text drawn
// from a fixed vocabulary (so it compresses about as well as real source),
// the files keep their size, and git stores most blobs as deltas against
// their previous version: a deep, delta-heavy history, whose tip (about 36
// MiB of text) pack-objects must compress and delta again for a --depth 1
// clone. The packed size is over 100 MiB (README: the figures).
const (
	srcDirs        = 100
	srcFilesPerDir = 30
	srcLines       = 200
	srcCommits     = 14000
	// sourceRepoName is the generated repository's directory under
	// bench/out, kept between runs (generation is deterministic).
	sourceRepoName = "source-v1.git"
)

// sourceText makes source-like lines from a seeded generator.
type sourceText struct {
	rng   *rand.Rand
	words []string
}

func newSourceText(seed byte) *sourceText {
	rng := rand.New(rand.NewChaCha8([32]byte{seed}))
	syll := []string{"ob", "ject", "pack", "ref", "tree", "blob", "hash", "idx", "buf", "len", "str", "repo", "commit",
		"path", "mode", "read", "write", "fd", "opt", "arg", "cfg", "list", "map", "entry", "flag", "delta", "base", "off", "size", "name"}
	words := make([]string, 3000)
	for i := range words {
		var w strings.Builder
		for j := range 1 + rng.IntN(3) {
			if j > 0 && rng.IntN(3) == 0 {
				w.WriteByte('_')
			}
			w.WriteString(syll[rng.IntN(len(syll))])
		}
		words[i] = w.String()
	}
	return &sourceText{rng: rng, words: words}
}

func (s *sourceText) word() string { return s.words[s.rng.IntN(len(s.words))] }

// line returns one line of C-like code (without its newline).
func (s *sourceText) line() string {
	tabs := strings.Repeat("\t", 1+s.rng.IntN(3))
	switch s.rng.IntN(8) {
	case 0:
		return fmt.Sprintf("%sif (%s->%s == %s) {", tabs, s.word(), s.word(), s.word())
	case 1:
		return fmt.Sprintf("%s%s = %s(%s, %s, %d);", tabs, s.word(), s.word(), s.word(), s.word(), s.rng.IntN(4096))
	case 2:
		return fmt.Sprintf("static int %s(struct %s *%s, const char *%s)", s.word(), s.word(), s.word(), s.word())
	case 3:
		return fmt.Sprintf("%s/* %s %s the %s of %s */", tabs, s.word(), s.word(), s.word(), s.word())
	case 4:
		return tabs + "}"
	case 5:
		return fmt.Sprintf("%sreturn error(_(\"%s: %s %s\"), %s);", tabs, s.word(), s.word(), s.word(), s.word())
	case 6:
		return fmt.Sprintf("%sfor (i = 0; i < %s->%s; i++)", tabs, s.word(), s.word())
	default:
		return fmt.Sprintf("%s%s(%s, &%s);", tabs, s.word(), s.word(), s.word())
	}
}

// sourceRepo returns the source-like repository, made once and kept in
// bench/out.
func sourceRepo(b testing.TB, env []string) string {
	return importedRepo(b, env, sourceRepoName, func(w *bufio.Writer) {
		src := newSourceText(2)
		rng := src.rng
		files := make([][]string, srcDirs*srcFilesPerDir)
		name := func(i int) string { return fmt.Sprintf("src/d%02d/f%04d.c", i/srcFilesPerDir, i) }
		put := func(i int) {
			content := strings.Join(files[i], "\n") + "\n"
			fmt.Fprintf(w, "M 100644 inline %s\ndata %d\n%s\n", name(i), len(content), content)
		}
		commit := func(n int, msg string) {
			fmt.Fprintf(w, "commit refs/heads/main\ncommitter Bench <bench@example.com> %d +0000\ndata %d\n%s\n", 1600000000+n*60, len(msg), msg)
		}
		commit(0, "initial import")
		for i := range files {
			for range srcLines {
				files[i] = append(files[i], src.line())
			}
			put(i)
		}
		for c := 1; c <= srcCommits; c++ {
			touched := 1 + rng.IntN(4)
			msg := fmt.Sprintf("%s: %s %s when %s\n\n%s %s %s %s %s %s.\n", src.word(), src.word(), src.word(), src.word(),
				src.word(), src.word(), src.word(), src.word(), src.word(), src.word())
			commit(c, msg)
			for range touched {
				i := rng.IntN(len(files))
				lines := files[i]
				at := rng.IntN(len(lines))
				n := 1 + rng.IntN(40)
				fresh := make([]string, n)
				for k := range fresh {
					fresh[k] = src.line()
				}
				// Replace n lines; the file grows or shrinks by a few lines
				// towards srcLines.
				del := min(n+rng.IntN(7)-3+(len(lines)-srcLines)/8, len(lines)-at)
				del = max(del, 0)
				lines = append(lines[:at:at], append(fresh, lines[at+del:]...)...)
				files[i] = lines
				put(i)
			}
		}
	})
}

// importedRepo returns the repository name under bench/out, made once by
// feeding git fast-import what feed writes, then repacked; a "done" file
// marks it whole, so an interrupted generation starts again.
func importedRepo(b testing.TB, env []string, name string, feed func(w *bufio.Writer)) string {
	_, file, _, _ := runtime.Caller(0)
	out := filepath.Join(filepath.Dir(file), "out")
	path := filepath.Join(out, name)
	if fileExists(filepath.Join(path, "done")) {
		return path
	}
	os.RemoveAll(path)
	if err := os.MkdirAll(out, 0o755); err != nil {
		b.Fatal(err)
	}
	gittest.MustGit(b, env, "", "init", "-q", "--bare", path)
	cmd := exec.Command("git", "fast-import", "--quiet")
	cmd.Dir, cmd.Env = path, env
	pipe, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(pipe, 1<<20)
	feed(w)
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	pipe.Close()
	if err := cmd.Wait(); err != nil {
		b.Fatalf("fast-import: %v\n%s", err, stderr.String())
	}
	gittest.MustGit(b, env, path, "repack", "-adq")
	writeFile(b, filepath.Join(path, "done"), "", 0o644)
	return path
}

// TestGenerateSourceRepo makes the benchmark's source-like repository when
// GITGATE_BENCH_GENERATE=1 (make bench does it on its first run anyway).
func TestGenerateSourceRepo(t *testing.T) {
	if os.Getenv("GITGATE_BENCH_GENERATE") != "1" {
		t.Skip("set GITGATE_BENCH_GENERATE=1 to generate the benchmark repository (minutes, ~100 MiB)")
	}
	path := sourceRepo(t, gittest.Env(t))
	t.Log(gittest.MustGit(t, gittest.Env(t), path, "count-objects", "-vH"))
}
