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

	"github.com/gitgate/gitgate/gitgate"
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
// for gates B and C each, the time from the API's answer until they refuse
// a push (403); then disables it and waits for both to take pushes again.
// One operation is one toggle; p50 and p99 are over every (toggle, gate)
// pair.
//
// The probe is a push's POST to git-receive-pack with a wrong content
// type: it goes through the gate's decision like any push, and when the
// push is allowed it is answered 415 before git would start (when refused,
// with the maintenance message, counted as 403 here), so polling
// does not add a git run per probe to what is measured (polling with
// info/refs, as before, added up to one ref advertisement's time: a git
// process start, which dominated the tail on a loaded machine). Once a
// gate refuses, its info/refs for a push must answer 403 at once.
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
	// probe asks url's decision on a push without starting git: 415 when
	// allowed (the wrong content type is seen after the decision), 403 when
	// refused in maintenance (the refusal, in the Git protocol or as an
	// HTTP error, carries the maintenance message).
	probe := func(url string) int {
		req, _ := http.NewRequest("POST", url+"/proj.git/git-receive-pack", http.NoBody)
		req.Header.Set("Content-Type", "text/plain")
		req.SetBasicAuth("admin", token)
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if resp.StatusCode != 415 && strings.Contains(string(body), gitgate.MaintenanceMessage) {
			return 403
		}
		return resp.StatusCode
	}
	waitFor := func(url string, want int, start time.Time) time.Duration {
		got := 0
		for range 100000 {
			if got = probe(url); got == want {
				return time.Since(start)
			}
		}
		b.Fatalf("%s never answered %d (last %d)", url, want, got)
		return 0
	}
	var lat []time.Duration
	b.ResetTimer()
	for range b.N {
		put(true)
		start := time.Now() // the API has answered: the toggle is committed
		lat = append(lat, waitFor(urls[1], 403, start), waitFor(urls[2], 403, start))
		b.StopTimer()
		for _, u := range urls[1:] {
			if code := status(u); code != 403 {
				b.Fatalf("%s refuses a push's POST but its info/refs answers %d", u, code)
			}
		}
		b.StartTimer()
		put(false)
		waitFor(urls[1], 415, time.Now())
		waitFor(urls[2], 415, time.Now())
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
