package httpgit_test

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/httpgit"
	"github.com/gitgate/gitgate/internal/gittest"
)

// waitFor polls cond every 10 ms, at most 1000 times (a bound, not a
// timing assertion: the condition is expected long before).
func waitFor(cond func() bool) bool {
	for range 1000 {
		if cond() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cond()
}

// A fetch POST that waits in the limiter's queue leaves it as soon as its
// client hangs up, whether or not its body was read: a waiter holds a
// place in the user's and the server's bounded queue.
// net/http cancels a request's context on a hang-up only once the body
// has been read, and the wait comes before the body: the gate watches the
// connection's TCP state while the request waits (hangup.go). Before that
// fix the POSTs stayed queued for QueueTimeout.
func TestQueuedFetchLeavesWhenClientHangsUp(t *testing.T) {
	l := gitgate.NewLimiter(gitgate.Limits{Global: 1, QueueTimeout: time.Hour})
	g := startGate(t, gateOptions{configure: func(c *httpgit.Config) { c.Limiter = l }})
	_, commit := gittest.BareRepoWithCommit(t, g.env, g.root, "repo")
	openFetch(t, g, l, commit, 1) // takes the only slot
	full := pkt("want "+commit+"\n") + "0000" + pkt("done\n")
	post := func(body string) string {
		return fmt.Sprintf("POST /repo.git/git-upload-pack HTTP/1.1\r\nHost: gate\r\n"+
			"Content-Type: application/x-git-upload-pack-request\r\nContent-Length: %d\r\n\r\n%s", len(full), body)
	}
	for name, request := range map[string]string{
		"GET info/refs":     "GET /repo.git/info/refs?service=git-upload-pack HTTP/1.1\r\nHost: gate\r\n\r\n",
		"POST, whole body":  post(full),
		"POST, body unsent": post(""),
	} {
		conn, err := net.Dial("tcp", strings.TrimPrefix(g.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		conn.Write([]byte(request))
		if !waitFor(func() bool { return l.Waiting() == 1 }) {
			t.Fatalf("%s: the fetch never queued", name)
		}
		conn.Close()
		if !waitFor(func() bool { return l.Waiting() == 0 }) {
			t.Errorf("%s: the client hung up, its fetch still waits in the queue", name)
		}
	}
}
