package sshd

import (
	"bytes"
	"errors"
	"net"
	"slices"
	"strings"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/sys/cpu"
)

// hasAESGCMInstructions reports whether this CPU has the instructions that
// make Go's AES-GCM fast (AES and carry-less multiplication); Go has no
// assembly for ChaCha20 on amd64, so there AES-GCM costs far less CPU.
func hasAESGCMInstructions() bool {
	return (cpu.X86.HasAES && cpu.X86.HasPCLMULQDQ) || (cpu.ARM64.HasAES && cpu.ARM64.HasPMULL)
}

// DefaultCiphers are the ciphers the server offers a client that is not
// OpenSSH's when Config.Ciphers is empty: x/crypto's own list with AES-GCM
// first. In SSH the client's order decides, so this keeps every client
// working (JSch and libssh2 before 1.11, used by JGit and libgit2, know
// only AES-CTR) while clients that prefer AES-GCM get it.
func DefaultCiphers() []string {
	return []string{gossh.CipherAES128GCM, gossh.CipherAES256GCM, gossh.CipherChaCha20Poly1305,
		gossh.CipherAES128CTR, gossh.CipherAES192CTR, gossh.CipherAES256CTR}
}

// openSSHCiphers are the ciphers offered to OpenSSH's client on a CPU with
// AES instructions. Its order is chacha20-poly1305, aes*-ctr, aes*-gcm, so
// it takes AES-GCM only when the server offers neither of the others; every
// OpenSSH since 6.2 has AES-GCM. In Go, ChaCha20 has no assembly on amd64
// and AES-CTR needs a separate HMAC, so AES-GCM costs far less CPU.
var openSSHCiphers = []string{gossh.CipherAES128GCM, gossh.CipherAES256GCM}

// ciphersFor decides the ciphers offered to a client from its SSH version
// string, when the admin has not set them (--ssh-ciphers). The version
// string only changes which cipher a client ends up with, never whether
// it may connect: every list holds ciphers the client supports.
func ciphersFor(configured []string, clientVersion string) []string {
	switch {
	case len(configured) > 0:
		return configured
	case hasAESGCMInstructions() && strings.HasPrefix(clientVersion, "SSH-2.0-OpenSSH_"):
		return openSSHCiphers
	default:
		return DefaultCiphers()
	}
}

// serverVersion is the identification line the server sends
// (gliderlabs/ssh's "SSH-2.0-" + Server.Version).
const serverVersion = "SSH-2.0-" + serverSoftware

// maxVersionBytes bounds the client's identification, as RFC 4253 (255
// bytes) and x/crypto do.
const maxVersionBytes = 255

// versionConn lets the server read the client's identification line before
// x/crypto's handshake starts, so that the algorithms offered can depend on
// the client. The server sends its own identification first (both sides
// send theirs at once, RFC 4253 section 4.2, so no client waits on it);
// x/crypto's identical write is then dropped, and what was read from the
// client is given back to x/crypto's first reads.
type versionConn struct {
	net.Conn
	sent    []byte // our identification, dropped from x/crypto's first write
	replay  []byte // read from the client, handed to x/crypto first
	version string // the client's identification, "" when none was read
}

// exchangeVersions sends the server's identification and reads the
// client's from nc. Reading stops at the end of the first line starting
// with "SSH-" or after maxVersionBytes; the caller's deadlines bound it (the
// login grace time closes the connection). Errors are left to x/crypto,
// which meets them again on the same connection.
func exchangeVersions(nc net.Conn) *versionConn {
	c := &versionConn{Conn: nc, sent: []byte(serverVersion + "\r\n")}
	if _, err := nc.Write(c.sent); err != nil {
		c.sent = nil
		return c
	}
	buf := make([]byte, 0, maxVersionBytes+1)
	chunk := make([]byte, maxVersionBytes)
	for len(buf) < maxVersionBytes {
		n, err := nc.Read(chunk[:maxVersionBytes-len(buf)])
		buf = append(buf, chunk[:n]...)
		if v, ok := identification(buf); ok {
			c.version = v
			break
		}
		if err != nil {
			break
		}
	}
	c.replay = buf
	return c
}

// identification finds the client's identification line in buf: the
// first complete line that starts with "SSH-", without its line end.
func identification(buf []byte) (string, bool) {
	for len(buf) > 0 {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			return "", false
		}
		line := bytes.TrimSuffix(buf[:i], []byte("\r"))
		if bytes.HasPrefix(line, []byte("SSH-")) {
			return string(line), true
		}
		buf = buf[i+1:]
	}
	return "", false
}

func (c *versionConn) Read(p []byte) (int, error) {
	if len(c.replay) > 0 {
		n := copy(p, c.replay)
		c.replay = c.replay[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

func (c *versionConn) Write(p []byte) (int, error) {
	if c.sent != nil {
		sent := c.sent
		c.sent = nil
		if bytes.Equal(p, sent) {
			return len(p), nil // already sent by exchangeVersions
		}
		return 0, errors.New("sshd: unexpected first write of the SSH handshake")
	}
	return c.Conn.Write(p)
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
