package httpgit

import (
	"errors"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// errClientGone ends the wait of a request whose client hung up.
var errClientGone = errors.New("the client hung up while the request waited")

// canWatch reports whether peerClosed can look at c.
func canWatch(c net.Conn) bool {
	_, ok := c.(syscall.Conn)
	return ok
}

// peerClosed reports whether c's peer has closed its side (the socket is
// past ESTABLISHED: CLOSE_WAIT after the client's FIN, CLOSE after a
// reset), whatever unread bytes are still queued before that end.
func peerClosed(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var state uint8
	var serr error
	err = raw.Control(func(fd uintptr) {
		var info *unix.TCPInfo
		info, serr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		if serr == nil {
			state = info.State
		}
	})
	if err != nil || serr != nil {
		return false // not TCP (a Unix socket), or closed under us: net/http sees that
	}
	const tcpEstablished = 1
	return state != tcpEstablished
}
