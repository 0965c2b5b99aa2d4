//go:build !linux

package packcache

import (
	"io"
	"net"
	"os"
)

// growPipe does nothing where pipes cannot be resized.
func growPipe(*os.File) {}

// sendGreeting writes the protocol's greeting; the pack comes back in
// frames on this system.
func sendGreeting(conn net.Conn, _ io.Writer) (bool, error) {
	_, err := io.WriteString(conn, protoMagic)
	return false, err
}

// recvGreeting passes no pipe on this system.
func recvGreeting(net.Conn) ([]byte, *pipeSink, error) { return nil, nil, nil }

// pipeSink is never made on this system.
type pipeSink struct{}

func (*pipeSink) Write(p []byte) (int, error)             { return 0, io.ErrClosedPipe }
func (*pipeSink) SendFile(*os.File, int64) (int64, error) { return 0, io.ErrClosedPipe }
func (*pipeSink) file() *os.File                          { return nil }
func (*pipeSink) cancel()                                 {}
func (*pipeSink) Close() error                            { return nil }

// spliceToFile is not available on this system.
func spliceToFile(_, _ *os.File, _ func(int64)) (bool, error) { return false, nil }

var errPipeRead = io.ErrUnexpectedEOF
