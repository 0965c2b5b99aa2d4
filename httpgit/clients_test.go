package httpgit_test

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"

	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/internal/gittest"
)

// A push in maintenance is refused before any pack data whatever
// User-Agent the client sends; the User-Agent only picks the channel. git
// (and HTTP tools that read status codes) get GitLab's 403 text/plain
// answer; every other client a 200 advertisement that holds no ref, only
// "ERR <message>", which the Git libraries report. The push's POST, if a
// client sends it anyway, is refused in the protocol. No ref moves.
func TestPushRefusalChannelByUserAgent(t *testing.T) {
	g := startGate(t, gateOptions{anonymousPush: true})
	bare, before := gittest.BareRepoWithCommit(t, g.env, g.root, "repo")
	g.setMaintenance(t, true)

	agents := []string{
		"git/2.39.5", "git/2.0 (libgit2 1.5.0)", "git/dulwich/0.21.2", "JGit/4.11.9.201909030838-r",
		"go-git/5.x", "git/isomorphic-git@1.27.1", "curl/7.88.1", "Go-http-client/1.1", "", "Mozilla/5.0",
	}
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rnd := rand.New(rand.NewPCG(seed, 0))
	for range 40 {
		b := make([]byte, rnd.IntN(80))
		for i := range b {
			b[i] = byte(0x20 + rnd.IntN(0x7f-0x20))
		}
		prefix := [...]string{"", "git/", "git/2", "curl/"}[rnd.IntN(4)]
		agents = append(agents, strings.TrimSpace(prefix+string(b)))
	}

	advertisement := "001f# service=git-receive-pack\n0000" +
		fmt.Sprintf("%04xERR %s", 4+len("ERR ")+len(gitgate.MaintenanceMessage), gitgate.MaintenanceMessage)
	cmd := fmt.Sprintf("%s %s refs/heads/main\x00report-status side-band-64k\n", before, strings.Repeat("1", 40))
	push := fmt.Sprintf("%04x%s0000PACK\x00\x00\x00\x02\x00\x00\x00\x01junk", 4+len(cmd), cmd)

	for _, ua := range agents {
		req, _ := http.NewRequest(http.MethodGet, g.url+"/repo.git/info/refs?service=git-receive-pack", nil)
		req.Header.Set("User-Agent", ua) // "" sends none
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		ct := resp.Header.Get("Content-Type")
		switch gitgate.RefusalChannelFor(gitgate.TransportHTTP, ua) {
		case gitgate.ChannelGitLab:
			if resp.StatusCode != http.StatusForbidden || ct != "text/plain; charset=utf-8" || string(body) != gitgate.MaintenanceMessage+"\n" {
				t.Errorf("User-Agent %q: %d %q %q, want GitLab's 403", ua, resp.StatusCode, ct, body)
			}
		case gitgate.ChannelProtocol:
			if resp.StatusCode != http.StatusOK || ct != "application/x-git-receive-pack-advertisement" || string(body) != advertisement {
				t.Errorf("User-Agent %q: %d %q %q, want the ERR advertisement", ua, resp.StatusCode, ct, body)
			}
		}
		if bytes.Contains(body, []byte(before)) {
			t.Errorf("User-Agent %q: a ref was advertised: %q", ua, body)
		}

		req, _ = http.NewRequest(http.MethodPost, g.url+"/repo.git/git-receive-pack", strings.NewReader(push))
		req.Header.Set("User-Agent", ua)
		req.Header.Set("Content-Type", "application/x-git-receive-pack-request")
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if !bytes.Contains(body, []byte("ng refs/heads/main read-only maintenance mode")) {
			t.Errorf("User-Agent %q: POST answered %d %q", ua, resp.StatusCode, body)
		}
	}
	if got := gittest.MustGit(t, g.env, bare, "rev-parse", "main"); got != before {
		t.Errorf("main moved to %s", got)
	}
}
