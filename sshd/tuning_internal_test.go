package sshd

import (
	"net"
	"slices"
	"strings"
	"testing"
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
	if got := ciphersFor([]string{"aes256-ctr"}, "SSH-2.0-OpenSSH_9.2p1"); !slices.Equal(got, []string{"aes256-ctr"}) {
		t.Fatalf("configured ciphers not kept: %v", got)
	}
	for _, v := range []string{"SSH-2.0-JSCH-0.1.54", "SSH-2.0-libssh2_1.10.0", "", "SSH-2.0-OpenSSH"} {
		if got := ciphersFor(nil, v); !slices.Equal(got, DefaultCiphers()) {
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
