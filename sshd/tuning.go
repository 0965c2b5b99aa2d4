package sshd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"slices"
	"strings"
	"time"

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
// it takes AES-GCM only when the server offers neither of the others. An
// OpenSSH built without OpenSSL has no AES-GCM, and a user may leave it out
// (ssh -c, Ciphers): only a client whose KEXINIT offers it gets this list
// (see ciphersFor). In Go, ChaCha20 has no assembly on amd64
// and AES-CTR needs a separate HMAC, so AES-GCM costs far less CPU.
var openSSHCiphers = []string{gossh.CipherAES128GCM, gossh.CipherAES256GCM}

// ciphersFor decides the ciphers offered to a client from its SSH version
// string and the ciphers its KEXINIT offers (nil when it was not read),
// when the admin has not set them (--ssh-ciphers). The client only changes
// which cipher it ends up with, never whether it may connect: AES-GCM alone
// is offered only to a client that offers AES-GCM in both directions.
func ciphersFor(configured []string, clientVersion string, offered *clientCiphers) []string {
	switch {
	case len(configured) > 0:
		return configured
	case wantsKexInit(clientVersion) && offered.hasAESGCM():
		return openSSHCiphers
	default:
		return DefaultCiphers()
	}
}

// wantsKexInit reports whether the ciphers offered to this client depend on
// its KEXINIT, which exchangeVersions then reads.
func wantsKexInit(clientVersion string) bool {
	return hasAESGCMInstructions() && strings.HasPrefix(clientVersion, "SSH-2.0-OpenSSH_")
}

// clientCiphers are the ciphers a client's KEXINIT offers.
type clientCiphers struct{ toServer, toClient []string }

func (c *clientCiphers) hasAESGCM() bool {
	if c == nil {
		return false
	}
	gcm := func(l []string) bool {
		return slices.Contains(l, gossh.CipherAES128GCM) || slices.Contains(l, gossh.CipherAES256GCM)
	}
	return gcm(c.toServer) && gcm(c.toClient)
}

// Bounds of the read of a client's KEXINIT.
const (
	// kexInitWait is how long the server waits for it; OpenSSH sends it as
	// soon as it has the server's identification, which goes out first.
	kexInitWait = 2 * time.Second
	// maxPacketBytes is RFC 4253's bound on a packet (section 6.1).
	maxPacketBytes = 35000
	msgKexInit     = 20
)

// parseKexInit reads the ciphers from pkt, the client's first binary
// packet (uint32 length, padding length, payload): a KEXINIT or nothing.
func parseKexInit(pkt []byte) (*clientCiphers, bool) {
	if len(pkt) < 6 {
		return nil, false
	}
	length := binary.BigEndian.Uint32(pkt)
	if length > maxPacketBytes || uint64(len(pkt)) < 4+uint64(length) {
		return nil, false
	}
	payload := pkt[5 : 4+length]
	if len(payload) < 17 || payload[0] != msgKexInit {
		return nil, false
	}
	rest := payload[17:] // the message type and the cookie
	var lists [4][]string
	for i := range lists {
		if len(rest) < 4 {
			return nil, false
		}
		n := binary.BigEndian.Uint32(rest)
		if uint64(len(rest)-4) < uint64(n) {
			return nil, false
		}
		lists[i] = strings.Split(string(rest[4:4+n]), ",")
		rest = rest[4+n:]
	}
	// kex, host key, then encryption client to server and server to client.
	return &clientCiphers{toServer: lists[2], toClient: lists[3]}, true
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
	sent    []byte         // our identification, dropped from x/crypto's first write
	replay  []byte         // read from the client, handed to x/crypto first
	version string         // the client's identification, "" when none was read
	ciphers *clientCiphers // what the client's KEXINIT offers, nil when not read
}

// exchangeVersions sends the server's identification and reads the
// client's from nc. Reading stops at the end of the first line starting
// with "SSH-" or after maxVersionBytes; the caller's deadlines bound it (the
// login grace time closes the connection). When the ciphers offered depend
// on it (wantsKexInit), it then reads the client's KEXINIT too, for at most
// kexInitWait. Errors are left to x/crypto, which meets them again on the
// same connection.
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
	if c.version != "" && wantsKexInit(c.version) {
		buf, c.ciphers = readKexInit(nc, buf)
	}
	c.replay = buf
	return c
}

// readKexInit reads, after the identification line in buf, the client's
// KEXINIT packet, waiting at most kexInitWait for it, and returns all that
// was read and the ciphers it offers (nil when it could not be read).
func readKexInit(nc net.Conn, buf []byte) ([]byte, *clientCiphers) {
	_, i, _ := findIdentification(buf)
	nc.SetReadDeadline(time.Now().Add(kexInitWait))
	defer nc.SetReadDeadline(time.Time{})
	chunk := make([]byte, 4096)
	for {
		pkt := buf[i:]
		if cc, ok := parseKexInit(pkt); ok {
			return buf, cc
		}
		if len(pkt) >= 4 {
			if n := binary.BigEndian.Uint32(pkt); n > maxPacketBytes || uint64(len(pkt)) >= 4+uint64(n) {
				return buf, nil // not a KEXINIT: x/crypto answers it
			}
		}
		n, err := nc.Read(chunk)
		buf = append(buf, chunk[:n]...)
		if err != nil {
			return buf, nil
		}
	}
}

// identification finds the client's identification line in buf: the
// first complete line that starts with "SSH-", without its line end.
func identification(buf []byte) (string, bool) {
	v, _, ok := findIdentification(buf)
	return v, ok
}

// findIdentification is identification that also returns where the line
// ends in buf (after its newline).
func findIdentification(buf []byte) (version string, end int, ok bool) {
	for end < len(buf) {
		i := bytes.IndexByte(buf[end:], '\n')
		if i < 0 {
			return "", 0, false
		}
		line := bytes.TrimSuffix(buf[end:end+i], []byte("\r"))
		end += i + 1
		if bytes.HasPrefix(line, []byte("SSH-")) {
			return string(line), end, true
		}
	}
	return "", 0, false
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
