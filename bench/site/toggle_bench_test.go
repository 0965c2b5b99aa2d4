package site

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gitgate/gitgate/internal/gittest"
	"github.com/gitgate/gitgate/internal/pgtest"
)

var httpLine = regexp.MustCompile(`http: listening on (http://\S+)`)

// startCluster starts a throwaway PostgreSQL cluster for one benchmark (not
// in TestMain, so that "make test" pays nothing for this package).
func startCluster(b *testing.B) *pgtest.Cluster {
	c, err := pgtest.Start(context.Background())
	if errors.Is(err, pgtest.ErrNotInstalled) {
		b.Skip("!!! SKIPPED: PostgreSQL is not installed (initdb/pg_ctl not found) !!!")
	}
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Stop)
	return c
}

// BenchmarkSiteToggle enables maintenance through gate A's API and measures,
// for gates B and C each, the time from the API's answer until their
// info/refs for a push answers 403 (each request before that one runs git
// for a ref advertisement, which adds up to one such request's time); then disables it and waits for both to take pushes again. One
// operation is one toggle; p50 and p99 are over every (toggle, gate) pair.
func BenchmarkSiteToggle(b *testing.B) {
	cluster := startCluster(b)
	ctx := context.Background()
	dir := b.TempDir()
	_, file, _, _ := runtime.Caller(0)
	bin := filepath.Join(dir, "gitgate")
	build := exec.Command("go", "build", "-o", bin, "./cmd/gitgate")
	build.Dir = filepath.Join(filepath.Dir(file), "..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	dbURL, err := cluster.NewDatabase(ctx)
	if err != nil {
		b.Fatal(err)
	}
	env := append(os.Environ(), "GITGATE_DATABASE_URL="+dbURL)
	cli := func(args ...string) string {
		cmd := exec.Command(bin, append([]string{"--data-dir", filepath.Join(dir, "cli")}, args...)...)
		cmd.Env = env
		out, err := cmd.Output()
		if err != nil {
			b.Fatalf("gitgate %s: %v", strings.Join(args, " "), err)
		}
		return strings.TrimSpace(string(out))
	}
	cli("db", "migrate")
	cli("user", "add", "admin", "--admin")
	cli("access", "grant", "proj", "--user", "admin", "--level", "write")
	token := cli("token", "create", "admin")
	repos := filepath.Join(dir, "repos")
	os.Mkdir(repos, 0o755)
	gittest.BareRepoWithCommit(b, gittest.Env(b), repos, "proj")

	var urls []string
	for _, name := range []string{"A", "B", "C"} {
		cmd := exec.Command(bin, "--data-dir", filepath.Join(dir, name), "--log-level", "error", "serve", "--repos", repos,
			"--http-listen", "127.0.0.1:0", "--ssh-listen", "", "--gate-id", name, "--no-hooks")
		cmd.Env = env
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := httpLine.FindStringSubmatch(sc.Text()); m != nil {
				urls = append(urls, m[1])
				break
			}
		}
		go io.Copy(io.Discard, out)
		b.Cleanup(func() {
			cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				<-done
			}
		})
	}
	if len(urls) != 3 {
		b.Fatal("the gates did not start")
	}
	client := &http.Client{Timeout: 5 * time.Second}
	status := func(url string) int {
		req, _ := http.NewRequest("GET", url+"/proj.git/info/refs?service=git-receive-pack", nil)
		req.SetBasicAuth("admin", token)
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	put := func(on bool) {
		req, _ := http.NewRequest("PUT", fmt.Sprintf("%s/api/v4/application/settings?maintenance_mode=%v", urls[0], on), nil)
		req.Header.Set("PRIVATE-TOKEN", token)
		resp, err := client.Do(req)
		if err != nil || resp.StatusCode != 200 {
			b.Fatalf("PUT: %v %v", err, resp)
		}
		resp.Body.Close()
	}
	waitFor := func(url string, want int, start time.Time) time.Duration {
		for range 100000 {
			if status(url) == want {
				return time.Since(start)
			}
		}
		b.Fatalf("%s never answered %d", url, want)
		return 0
	}
	var lat []time.Duration
	b.ResetTimer()
	for range b.N {
		put(true)
		start := time.Now() // the API has answered: the toggle is committed
		lat = append(lat, waitFor(urls[1], 403, start), waitFor(urls[2], 403, start))
		put(false)
		waitFor(urls[1], 200, time.Now())
		waitFor(urls[2], 200, time.Now())
	}
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
}
