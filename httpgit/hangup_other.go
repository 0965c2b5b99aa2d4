//go:build !linux

package httpgit

import (
	"errors"
	"net"
)

// errClientGone ends the wait of a request whose client hung up.
var errClientGone = errors.New("the client hung up while the request waited")

// canWatch is false here: the TCP state is read on Linux only, and a
// queued request elsewhere waits until its queue timeout.
func canWatch(net.Conn) bool { return false }

func peerClosed(net.Conn) bool { return false }
