package access

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"io"
	"log/slog"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// newKey returns a fresh public key and its authorized_keys line with the
// given comment. kind is "ed25519", "ecdsa256", "ecdsa384", "rsa1024",
// "rsa2048" and so on.
func newKey(t testing.TB, kind, comment string) (ssh.PublicKey, string) {
	t.Helper()
	var pub any
	switch kind {
	case "ed25519":
		p, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		pub = p
	case "ecdsa256", "ecdsa384":
		curve := elliptic.P256()
		if kind == "ecdsa384" {
			curve = elliptic.P384()
		}
		k, err := ecdsa.GenerateKey(curve, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		pub = &k.PublicKey
	case "rsa1024", "rsa2048":
		bits := 1024
		if kind == "rsa2048" {
			bits = 2048
		}
		k, err := generateRSA(bits)
		if err != nil {
			t.Fatal(err)
		}
		pub = &k.PublicKey
	default:
		t.Fatalf("unknown key kind %q", kind)
	}
	key, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))
	if comment != "" {
		line += " " + comment
	}
	return key, line
}

// generateRSA makes an RSA key; 1024 bits is the smallest crypto/rsa makes,
// and is only used to check that such keys are refused.
func generateRSA(bits int) (*rsa.PrivateKey, error) {
	return rsa.GenerateKey(rand.Reader, bits)
}

// discardLogger drops all logs.
func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
