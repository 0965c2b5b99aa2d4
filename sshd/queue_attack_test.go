package sshd_test

import (
	"testing"
	"time"

	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/sshd"
)

// waitUntil polls cond every 10 ms, at most 1000 times (a bound, not a
// timing assertion).
func waitUntil(cond func() bool) bool {
	for range 1000 {
		if cond() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cond()
}

// A session waiting in the limiter's queue leaves it at once when its
// client closes the channel (the connection stays) or drops the
// connection: a waiter holds a place in bounded queues.
func TestQueuedSessionLeavesWhenClientGoes(t *testing.T) {
	l := gitgate.NewLimiter(gitgate.Limits{Global: 1, QueueTimeout: time.Hour})
	g := startGate(t, func(c *sshd.Config) { c.Limiter = l })
	g.createRepo("repo", map[string][]byte{"a": []byte("a")})
	key := g.addUser("alice", gitgate.PermissionRead)
	holder := g.dial(key)
	openUploadPack(t, holder, "repo.git") // takes the only slot

	for _, how := range []string{"channel closed", "connection dropped"} {
		client := g.dial(key)
		sess, err := client.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sess.StdinPipe(); err != nil {
			t.Fatal(err)
		}
		if err := sess.Start("git-upload-pack 'repo.git'"); err != nil {
			t.Fatal(err)
		}
		if !waitUntil(func() bool { return l.Waiting() == 1 }) {
			t.Fatalf("%s: the session never queued", how)
		}
		if how == "channel closed" {
			sess.Close()
		} else {
			client.Close()
		}
		if !waitUntil(func() bool { return l.Waiting() == 0 }) {
			t.Fatalf("%s: the client went, its session still waits in the queue", how)
		}
		client.Close()
	}
}
