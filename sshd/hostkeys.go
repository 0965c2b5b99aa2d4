package sshd

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	gossh "golang.org/x/crypto/ssh"

	"github.com/gitgate/gitgate/internal/atomicfile"
)

// Host key files the server generates in its data dir, named as OpenSSH
// names them so that admins recognise them.
const (
	HostKeyFileEd25519 = "ssh_host_ed25519_key"
	HostKeyFileRSA     = "ssh_host_rsa_key"
)

// rsaHostKeyBits is the size of a generated RSA host key (OpenSSH's default).
const rsaHostKeyBits = 3072

// hostKeyLockFile serialises key generation between processes (a server
// starting while "gitgate ssh host-keys" runs).
const hostKeyLockFile = ".ssh_host_keys.lock"

// LoadOrCreateHostKeys returns the host keys in dir, generating those that are
// missing: an Ed25519 key, and an RSA key for old clients. Generated keys are
// written in OpenSSH format with mode 0600 (and the public halves beside them
// as .pub files), so a restart presents the same keys. Keys from the extra
// files are added after them; an extra key replaces a generated key of the same
// type, since a server offers one key per type. Like sshd, it refuses private
// key files that others can read.
func LoadOrCreateHostKeys(dir string, extra []string) ([]gossh.Signer, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("host key dir: %w", err)
	}
	lock, err := atomicfile.Acquire(filepath.Join(dir, hostKeyLockFile))
	if err != nil {
		return nil, fmt.Errorf("host keys: %w", err)
	}
	defer lock.Release()

	var signers []gossh.Signer
	for _, k := range [...]struct {
		file     string
		generate func() (crypto.Signer, error)
	}{
		{HostKeyFileEd25519, func() (crypto.Signer, error) {
			_, priv, err := ed25519.GenerateKey(rand.Reader)
			return priv, err
		}},
		{HostKeyFileRSA, func() (crypto.Signer, error) { return rsa.GenerateKey(rand.Reader, rsaHostKeyBits) }},
	} {
		path := filepath.Join(dir, k.file)
		s, err := readHostKey(path)
		if errors.Is(err, fs.ErrNotExist) {
			s, err = createHostKey(path, k.generate)
		}
		if err != nil {
			return nil, err
		}
		signers = append(signers, s)
	}
	for _, path := range extra {
		s, err := readHostKey(path)
		if err != nil {
			return nil, err
		}
		signers = addHostKey(signers, s)
	}
	return signers, nil
}

// addHostKey adds s, replacing a key of the same type.
func addHostKey(signers []gossh.Signer, s gossh.Signer) []gossh.Signer {
	for i, old := range signers {
		if old.PublicKey().Type() == s.PublicKey().Type() {
			signers[i] = s
			return signers
		}
	}
	return append(signers, s)
}

func readHostKey(path string) (gossh.Signer, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("host key: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("host key %s: permissions %#o are too open; it must be readable by its owner only (chmod 600)", path, fi.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("host key: %w", err)
	}
	s, err := gossh.ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("host key %s: %w", path, err)
	}
	return s, nil
}

func createHostKey(path string, generate func() (crypto.Signer, error)) (gossh.Signer, error) {
	priv, err := generate()
	if err != nil {
		return nil, fmt.Errorf("generate host key %s: %w", path, err)
	}
	block, err := gossh.MarshalPrivateKey(priv, "")
	if err != nil {
		return nil, fmt.Errorf("encode host key %s: %w", path, err)
	}
	s, err := gossh.NewSignerFromSigner(priv)
	if err != nil {
		return nil, fmt.Errorf("host key %s: %w", path, err)
	}
	if err := atomicfile.Write(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, fmt.Errorf("write host key %s: %w", path, err)
	}
	if err := atomicfile.Write(path+".pub", gossh.MarshalAuthorizedKey(s.PublicKey()), 0o644); err != nil {
		return nil, fmt.Errorf("write host key %s.pub: %w", path, err)
	}
	return s, nil
}

// Fingerprint describes a public key as "ssh-keygen -l" does, without the
// comment: its size, SHA256 fingerprint and type, e.g.
// "256 SHA256:uN0...Mw (ED25519)".
func Fingerprint(pub gossh.PublicKey) string {
	bits, kind := 0, strings.ToUpper(strings.TrimPrefix(pub.Type(), "ssh-"))
	if ck, ok := pub.(gossh.CryptoPublicKey); ok {
		switch k := ck.CryptoPublicKey().(type) {
		case ed25519.PublicKey:
			bits, kind = 256, "ED25519"
		case *rsa.PublicKey:
			bits, kind = k.N.BitLen(), "RSA"
		case *ecdsa.PublicKey:
			bits, kind = k.Curve.Params().BitSize, "ECDSA"
		}
	}
	return fmt.Sprintf("%d %s (%s)", bits, gossh.FingerprintSHA256(pub), kind)
}

// Fingerprints returns the [Fingerprint] of each signer's public key.
func Fingerprints(signers []gossh.Signer) []string {
	out := make([]string, len(signers))
	for i, s := range signers {
		out[i] = Fingerprint(s.PublicKey())
	}
	return out
}
