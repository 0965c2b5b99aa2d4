package sshd

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestIdentification(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
		ok   bool
	}{
		{"SSH-2.0-OpenSSH_9.2p1\r\n", "SSH-2.0-OpenSSH_9.2p1", true},
		{"SSH-2.0-Go\n", "SSH-2.0-Go", true},
		{"SSH-2.0-OpenSSH_9.2p1", "", false},
		{"hello\r\nSSH-2.0-x\r\n", "SSH-2.0-x", true},
		{"", "", false},
	} {
		got, ok := identification([]byte(tc.in))
		if got != tc.want || ok != tc.ok {
			t.Errorf("identification(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestCiphersFor(t *testing.T) {
	if got := ciphersFor([]string{"aes256-ctr"}, "SSH-2.0-OpenSSH_9.2p1", nil); !slices.Equal(got, []string{"aes256-ctr"}) {
		t.Fatalf("configured ciphers not kept: %v", got)
	}
	for _, v := range []string{"SSH-2.0-JSCH-0.1.54", "SSH-2.0-libssh2_1.10.0", "", "SSH-2.0-OpenSSH"} {
		if got := ciphersFor(nil, v, nil); !slices.Equal(got, DefaultCiphers()) {
			t.Fatalf("%q offered %v", v, got)
		}
	}
}

// A client that sends more than the version line before the server's
// answer, or a version line that never ends, is handed on to x/crypto
// unchanged and bounded.
func TestExchangeVersionsReplaysWhatItRead(t *testing.T) {
	for _, sent := range []string{
		"SSH-2.0-OpenSSH_9.2p1\r\nKEXINIT-bytes",
		strings.Repeat("x", 400),
	} {
		server, client := net.Pipe()
		go func() {
			buf := make([]byte, 64)
			client.Read(buf) // the server's identification
			client.Write([]byte(sent))
		}()
		vc := exchangeVersions(server)
		got := make([]byte, 0, len(sent))
		buf := make([]byte, 1000)
		for len(got) < min(len(sent), maxVersionBytes) {
			n, err := vc.Read(buf)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, buf[:n]...)
		}
		if !strings.HasPrefix(sent, string(got)) {
			t.Fatalf("replayed %q of %q", got, sent)
		}
		if n, err := vc.Write([]byte(serverVersion + "\r\n")); err != nil || n != len(serverVersion)+2 {
			t.Fatalf("x/crypto's identification write: %d %v", n, err)
		}
		server.Close()
		client.Close()
	}
}

// kexInit builds a client's KEXINIT packet offering ciphers both ways.
func kexInit(ciphers string) []byte {
	payload := append([]byte{msgKexInit}, make([]byte, 16)...)
	for _, l := range []string{"curve25519-sha256", "ssh-ed25519", ciphers, ciphers, "hmac-sha2-256", "hmac-sha2-256", "none", "none", "", ""} {
		payload = binary.BigEndian.AppendUint32(payload, uint32(len(l)))
		payload = append(payload, l...)
	}
	payload = append(payload, 0, 0, 0, 0, 0)
	pad := 8 - (len(payload)+5)%8
	if pad < 4 {
		pad += 8
	}
	pkt := binary.BigEndian.AppendUint32(nil, uint32(1+len(payload)+pad))
	pkt = append(pkt, byte(pad))
	pkt = append(pkt, payload...)
	return append(pkt, make([]byte, pad)...)
}

// AES-GCM alone goes only to an OpenSSH client whose KEXINIT offers it; the
// KEXINIT is read whole (and given back to x/crypto), and a client that
// sends none in time, or something else, gets every cipher.
func TestCiphersFollowTheClientsKexInit(t *testing.T) {
	if !hasAESGCMInstructions() {
		t.Skip("SKIPPED LOUDLY: no AES instructions here: every client gets every cipher")
	}
	const openssh = "SSH-2.0-OpenSSH_9.2p1\r\n"
	for _, tc := range []struct {
		name string
		sent []byte
		want []string
	}{
		{"default OpenSSH", append([]byte(openssh), kexInit("chacha20-poly1305@openssh.com,aes128-ctr,aes128-gcm@openssh.com")...), openSSHCiphers},
		{"no AES-GCM", append([]byte(openssh), kexInit("chacha20-poly1305@openssh.com,aes256-ctr")...), DefaultCiphers()},
		{"no KEXINIT in time", []byte(openssh), DefaultCiphers()},
		{"not a KEXINIT", append([]byte(openssh), 0, 0, 0, 12, 4, 21, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), DefaultCiphers()},
		{"oversized packet", append([]byte(openssh), 0xff, 0xff, 0xff, 0xff, 4, 20), DefaultCiphers()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			server, client := net.Pipe()
			defer server.Close()
			defer client.Close()
			go func() {
				buf := make([]byte, 64)
				client.Read(buf) // the server's identification
				client.Write(tc.sent)
			}()
			start := time.Now()
			vc := exchangeVersions(server)
			if d := time.Since(start); d > kexInitWait+time.Second {
				t.Fatalf("the exchange took %s", d)
			}
			if got := ciphersFor(nil, vc.version, vc.ciphers); !slices.Equal(got, tc.want) {
				t.Fatalf("offered %v, want %v", got, tc.want)
			}
			got := make([]byte, len(tc.sent))
			if _, err := io.ReadFull(vc, got); err != nil || !bytes.Equal(got, tc.sent) {
				t.Fatalf("replayed %q, %v; want %q", got, err, tc.sent)
			}
		})
	}
}
