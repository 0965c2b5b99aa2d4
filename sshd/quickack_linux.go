package sshd

import (
	"net"
	"syscall"
)

// setQuickAck turns on TCP_QUICKACK: the next ACKs are not delayed.
func setQuickAck(c *net.TCPConn) {
	if c == nil {
		return
	}
	raw, err := c.SyscallConn()
	if err != nil {
		return
	}
	raw.Control(func(fd uintptr) {
		syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
	})
}
