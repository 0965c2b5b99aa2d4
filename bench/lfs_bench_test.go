package bench

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// lfsBenchSize is the object BenchmarkLFSRoundTrip moves: 1 GiB, or
// GITGATE_BENCH_LFS_SIZE bytes.
func lfsBenchSize(b *testing.B) int64 {
	if s := os.Getenv("GITGATE_BENCH_LFS_SIZE"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 {
			b.Fatalf("GITGATE_BENCH_LFS_SIZE=%q: not a byte count", s)
		}
		return n
	}
	return 1 << 30
}

// maxGateRSS is the bound on the gate's peak resident memory while it
// moves the object: it streams, so the size of the object does not show.
const maxGateRSS = 64 << 20

// BenchmarkLFSRoundTrip uploads one large LFS object through a real gate
// and downloads it again, each byte checked, and reports the gate's peak
// resident memory (VmHWM), which must stay under 64 MiB. It moves gigabytes,
// so it runs only with GITGATE_BENCH_LFS=1 ("make bench-lfs"), once.
func BenchmarkLFSRoundTrip(b *testing.B) {
	if os.Getenv("GITGATE_BENCH_LFS") != "1" {
		b.Skip("set GITGATE_BENCH_LFS=1 (make bench-lfs) to move a 1 GiB LFS object through the gate")
	}
	size := lfsBenchSize(b)
	dir := b.TempDir()
	_, file, _, _ := runtime.Caller(0)
	bin := filepath.Join(dir, "gitgate")
	build := exec.Command("go", "build", "-o", bin, "./cmd/gitgate")
	build.Dir = filepath.Join(filepath.Dir(file), "..")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	data := filepath.Join(dir, "data")
	gitgate := func(args ...string) string {
		cmd := exec.Command(bin, append([]string{"--data-dir", data}, args...)...)
		out, err := cmd.Output()
		if err != nil {
			b.Fatalf("gitgate %s: %v", strings.Join(args, " "), err)
		}
		return strings.TrimSpace(string(out))
	}
	gitgate("user", "add", "bench")
	gitgate("repo", "create", "bench")
	gitgate("access", "grant", "bench", "--user", "bench", "--level", "write")
	token := gitgate("token", "create", "bench")
	d := startDaemon(b, "gitgate", filepath.Join(dir, "gitgate.log"), exec.Command(bin,
		"--data-dir", data, "--log-level", "warn", "serve", "--http-listen", "127.0.0.1:0", "--ssh-listen", ""))
	var base string
	d.waitUntil(b, "its listening line", func() bool {
		m := gateHTTPLine.FindStringSubmatch(d.output())
		if m != nil {
			base = m[1]
		}
		return m != nil
	})
	pid := d.cmd.Process.Pid

	h := sha256.New()
	io.Copy(h, content(size))
	oid := hex.EncodeToString(h.Sum(nil))

	b.SetBytes(2 * size)
	b.ResetTimer()
	for i := range b.N {
		repo := "bench"
		if i > 0 {
			// Later rounds upload again through a fresh link.
			repo = fmt.Sprintf("bench%d", i)
			gitgate("repo", "create", repo)
			gitgate("access", "grant", repo, "--user", "bench", "--level", "write")
		}
		up := lfsAction(b, base, repo, "bench", token, "upload", oid, size)
		req, _ := http.NewRequest("PUT", up.Href, content(size))
		req.ContentLength = size
		for k, v := range up.Header {
			req.Header.Set(k, v)
		}
		if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != http.StatusOK {
			b.Fatalf("upload: %v %v", err, res)
		} else {
			res.Body.Close()
		}
		down := lfsAction(b, base, repo, "bench", token, "download", oid, size)
		req, _ = http.NewRequest("GET", down.Href, nil)
		for k, v := range down.Header {
			req.Header.Set(k, v)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil || res.StatusCode != http.StatusOK {
			b.Fatalf("download: %v %v", err, res)
		}
		h := sha256.New()
		n, err := io.Copy(h, res.Body)
		res.Body.Close()
		if err != nil || n != size || hex.EncodeToString(h.Sum(nil)) != oid {
			b.Fatalf("download: %d of %d bytes, %v, hash matches: %v", n, size, err, hex.EncodeToString(h.Sum(nil)) == oid)
		}
	}
	b.StopTimer()
	rss := peakRSS(b, pid)
	b.ReportMetric(float64(rss)/(1<<20), "gate-peak-RSS-MiB")
	if rss > maxGateRSS {
		b.Fatalf("gate peak RSS %d MiB, want under %d MiB", rss>>20, maxGateRSS>>20)
	}
}

// content is the benchmark object: size pseudo-random bytes, the same on
// every call, generated as they are read (never held whole).
func content(size int64) io.Reader {
	r := rand.NewChaCha8([32]byte{'g', 'i', 't', 'g', 'a', 't', 'e'})
	return io.LimitReader(r, size)
}

type lfsHref struct {
	Href   string            `json:"href"`
	Header map[string]string `json:"header"`
}

// lfsAction asks the batch API for the object's upload or download action.
func lfsAction(b *testing.B, base, repo, user, token, op, oid string, size int64) lfsHref {
	body := fmt.Sprintf(`{"operation":%q,"objects":[{"oid":%q,"size":%d}]}`, op, oid, size)
	req, _ := http.NewRequest("POST", base+"/"+repo+".git/info/lfs/objects/batch", bytes.NewReader([]byte(body)))
	req.SetBasicAuth(user, token)
	req.Header.Set("Content-Type", "application/vnd.git-lfs+json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer res.Body.Close()
	var ans struct {
		Objects []struct {
			Actions map[string]lfsHref `json:"actions"`
		} `json:"objects"`
	}
	if err := json.NewDecoder(res.Body).Decode(&ans); err != nil || len(ans.Objects) != 1 {
		b.Fatalf("batch %s: %d %v", op, res.StatusCode, err)
	}
	a, ok := ans.Objects[0].Actions[op]
	if !ok {
		b.Fatalf("batch %s: no %s action", op, op)
	}
	return a
}
