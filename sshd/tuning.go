package sshd

import (
	"net"
	"slices"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/sys/cpu"
)

// hasAESGCMInstructions reports whether this CPU has the instructions that
// make Go's AES-GCM fast (AES and carry-less multiplication); Go has no
// assembly for ChaCha20 on amd64, so there AES-GCM costs far less CPU.
func hasAESGCMInstructions() bool {
	return (cpu.X86.HasAES && cpu.X86.HasPCLMULQDQ) || (cpu.ARM64.HasAES && cpu.ARM64.HasPMULL)
}

// DefaultCiphers are the ciphers the server offers when Config.Ciphers is
// empty. In SSH the client's order decides: OpenSSH's client lists
// chacha20-poly1305 first, then aes*-ctr, then aes*-gcm, so it takes
// AES-GCM only when the server offers neither of the others. With AES
// instructions the server therefore offers AES-GCM alone (every OpenSSH
// since 6.2, PuTTY 0.76, libssh2 1.11, JGit/MINA and Go's client have it);
// without them it offers x/crypto's defaults, ChaCha20 included.
func DefaultCiphers() []string {
	if hasAESGCMInstructions() {
		return []string{gossh.CipherAES128GCM, gossh.CipherAES256GCM}
	}
	return []string{gossh.CipherChaCha20Poly1305, gossh.CipherAES128GCM, gossh.CipherAES256GCM,
		gossh.CipherAES128CTR, gossh.CipherAES192CTR, gossh.CipherAES256CTR}
}

// SupportedCiphers are the cipher names Config.Ciphers may hold.
func SupportedCiphers() []string {
	return []string{gossh.CipherAES128GCM, gossh.CipherAES256GCM, gossh.CipherChaCha20Poly1305,
		gossh.CipherAES128CTR, gossh.CipherAES192CTR, gossh.CipherAES256CTR}
}

// validCiphers reports the first name that x/crypto does not support.
func validCiphers(names []string) (bad string, ok bool) {
	for _, n := range names {
		if !slices.Contains(SupportedCiphers(), n) {
			return n, false
		}
	}
	return "", true
}

// quickAckBytes is how much of what a client sends re-arms TCP_QUICKACK:
// the handshake, authentication and the session's start. (x/crypto reads
// the version line a byte at a time, so a count of reads would not do.)
const quickAckBytes = 16 << 10

// quickAckConn acknowledges the client's first packets at once. OpenSSH's
// client sends two small packets in a row twice in a handshake (KEXINIT then
// KEX_ECDH_INIT; NEWKEYS then SERVICE_REQUEST) with Nagle's algorithm on,
// so the second waits for the ACK of the first, which Linux delays by up to
// 40 ms when the server has nothing to send back: two 40 ms stalls in every
// connection. TCP_QUICKACK on the server's socket (re-armed after each
// read, as Linux clears it) removes them; Go already sets TCP_NODELAY on
// accepted connections, so the server's own writes are not held.
type quickAckConn struct {
	net.Conn
	read int
}

// withQuickAck wraps nc when it is (or wraps) a TCP connection.
func withQuickAck(nc net.Conn) net.Conn {
	if tcpConn(nc) == nil {
		return nc
	}
	setQuickAck(tcpConn(nc))
	return &quickAckConn{Conn: nc}
}

func (c *quickAckConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.read < quickAckBytes {
		c.read += n
		setQuickAck(tcpConn(c.Conn))
	}
	return n, err
}

// tcpConn finds the TCP connection under nc (a PROXY protocol wrapper
// keeps it as Raw).
func tcpConn(nc net.Conn) *net.TCPConn {
	for range 4 {
		switch c := nc.(type) {
		case *net.TCPConn:
			return c
		case interface{ Raw() net.Conn }:
			nc = c.Raw()
		default:
			return nil
		}
	}
	return nil
}
