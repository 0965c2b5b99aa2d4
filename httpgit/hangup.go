package httpgit

import (
	"context"
	"net"
	"time"
)

// A request waiting for a git slot has not read its body, and net/http
// notices that a client hung up only once the body has been read (its
// background read starts then). So a fetch queued in the limiter would
// keep its place in the bounded queues until the queue timeout after its
// client had gone. While a request waits, the gate looks at the
// connection's TCP state instead: once the client has closed its side
// (or reset the connection), the wait ends. net/http's own rule is the
// same (an end of file from the client cancels the request).

// hangUpPoll is how often a waiting request's connection is looked at.
const hangUpPoll = 250 * time.Millisecond

// connKey is the context key of the request's connection.
type connKey struct{}

// withConn is the http.Server's ConnContext: it keeps the connection.
func withConn(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// watchHangUp returns a context that ends with ctx, or when the client of
// the request whose context is ctx hangs up; stop ends the watch (call it
// as soon as the wait is over).
func watchHangUp(ctx context.Context) (watched context.Context, hungUp func() bool, stop func()) {
	c, _ := ctx.Value(connKey{}).(net.Conn)
	watched, cancel := context.WithCancelCause(ctx)
	if c == nil || !canWatch(c) {
		return watched, func() bool { return false }, func() { cancel(nil) }
	}
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		tick := time.NewTicker(hangUpPoll)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-watched.Done():
				return
			case <-tick.C:
			}
			if peerClosed(c) {
				cancel(errClientGone)
				return
			}
		}
	}()
	return watched, func() bool { return context.Cause(watched) == errClientGone }, func() {
		close(done)
		<-exited
		cancel(nil)
	}
}
