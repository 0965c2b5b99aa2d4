package sshd

import (
	"net"
	"syscall"
	"testing"
)

// An accepted TCP connection gets TCP_QUICKACK (re-armed as it reads);
// anything else passes through unwrapped.
func TestQuickAckOnAcceptedConnections(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	wrapped := withQuickAck(server)
	if _, ok := wrapped.(*quickAckConn); !ok {
		t.Fatalf("a TCP connection is not wrapped: %T", wrapped)
	}
	client.Write([]byte("SSH-2.0-test\r\n"))
	buf := make([]byte, 64)
	n, err := wrapped.Read(buf)
	if err != nil || n == 0 {
		t.Fatal(n, err)
	}
	if got := wrapped.(*quickAckConn).read; got != n {
		t.Fatalf("bytes counted %d, read %d", got, n)
	}
	raw, _ := server.(*net.TCPConn).SyscallConn()
	var v int
	raw.Control(func(fd uintptr) { v, _ = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK) })
	if v != 1 {
		t.Fatalf("TCP_QUICKACK = %d after a read", v)
	}
	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	if withQuickAck(p1) != p1 {
		t.Fatal("a non-TCP connection was wrapped")
	}
}
