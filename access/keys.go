package access

import (
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/ssh"
)

// RSA key sizes accepted, in bits.
const (
	MinRSABits = 2048
	MaxRSABits = 16384
)

// maxKeyLine bounds a key line; a 16384-bit RSA key is under 3 KiB.
const maxKeyLine = 16 << 10

// keyTypes are the key types git users have and the gate accepts.
var keyTypes = map[string]bool{
	ssh.KeyAlgoED25519:    true,
	ssh.KeyAlgoSKED25519:  true,
	ssh.KeyAlgoECDSA256:   true,
	ssh.KeyAlgoECDSA384:   true,
	ssh.KeyAlgoECDSA521:   true,
	ssh.KeyAlgoSKECDSA256: true,
	ssh.KeyAlgoRSA:        true,
}

// ParseKey parses one SSH public key in authorized_keys format,
// "TYPE BASE64 [COMMENT]", and checks that it is strong enough: ed25519,
// ecdsa (and their FIDO "sk-" variants), or rsa of MinRSABits to MaxRSABits
// bits. Options before the key type ("no-pty,command=...") are refused
// rather than silently ignored, as are DSA keys and certificates.
func ParseKey(line string) (ssh.PublicKey, string, error) {
	line = strings.TrimSpace(line)
	switch {
	case line == "":
		return nil, "", errors.New("empty key")
	case len(line) > maxKeyLine:
		return nil, "", fmt.Errorf("key line of %d bytes, at most %d allowed", len(line), maxKeyLine)
	case !utf8.ValidString(line):
		return nil, "", errors.New("key line is not valid UTF-8")
	case strings.ContainsFunc(line, isControl):
		return nil, "", errors.New("key line holds control characters or line breaks: one key per line")
	}
	typ, rest := cutField(line)
	data, comment := cutField(rest)
	if err := checkKeyType(typ); err != nil {
		return nil, "", err
	}
	if data == "" {
		return nil, "", fmt.Errorf("%s key without key data: want \"TYPE BASE64 [COMMENT]\"", typ)
	}
	blob, err := base64.StdEncoding.DecodeString(data)
	if err != nil {
		return nil, "", fmt.Errorf("%s key data is not valid base64", typ)
	}
	key, err := ssh.ParsePublicKey(blob)
	if err != nil {
		return nil, "", fmt.Errorf("malformed %s key: %w", typ, err)
	}
	if key.Type() != typ {
		return nil, "", fmt.Errorf("key line says %s but the key data is %s", typ, key.Type())
	}
	if err := checkKeyStrength(key); err != nil {
		return nil, "", err
	}
	return key, comment, nil
}

func checkKeyType(typ string) error {
	switch {
	case keyTypes[typ]:
		return nil
	case typ == ssh.InsecureKeyAlgoDSA:
		return errors.New("ssh-dss (DSA) keys are too weak: use ed25519, ecdsa or rsa")
	case strings.Contains(typ, "-cert-"):
		return errors.New("ssh certificates are not supported: add the plain public key")
	case strings.ContainsAny(typ, ",=\""):
		return errors.New("key options (such as no-pty or command=) are not supported: give the key alone")
	}
	return fmt.Errorf("unsupported key type %q: use ed25519, ecdsa or rsa", typ)
}

func checkKeyStrength(key ssh.PublicKey) error {
	if key.Type() != ssh.KeyAlgoRSA {
		return nil // ed25519 and the NIST curves have fixed, adequate sizes
	}
	ck, ok := key.(ssh.CryptoPublicKey)
	if !ok {
		return errors.New("rsa key of unknown size")
	}
	pub, ok := ck.CryptoPublicKey().(*rsa.PublicKey)
	if !ok {
		return errors.New("rsa key of unknown size")
	}
	switch bits := pub.N.BitLen(); {
	case bits < MinRSABits:
		return fmt.Errorf("rsa key of %d bits, at least %d required", bits, MinRSABits)
	case bits > MaxRSABits:
		return fmt.Errorf("rsa key of %d bits, at most %d allowed", bits, MaxRSABits)
	}
	return nil
}

// Fingerprint returns the key's SHA256 fingerprint as OpenSSH prints it,
// "SHA256:...".
func Fingerprint(key ssh.PublicKey) string { return ssh.FingerprintSHA256(key) }

// formatKey returns the canonical line for key: type, base64 and comment.
func formatKey(key ssh.PublicKey, comment string) string {
	line := strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(key)), "\n")
	if comment != "" {
		line += " " + comment
	}
	return line
}

// cutField splits s at its first run of spaces or tabs.
func cutField(s string) (field, rest string) {
	i := strings.IndexAny(s, " \t")
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.TrimLeft(s[i:], " \t")
}

// isControl reports control characters other than tab.
func isControl(r rune) bool {
	return r != '\t' && (r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0))
}
