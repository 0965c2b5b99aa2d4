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
	"syscall"

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

// generatedHostKeys are the keys the server makes when they are missing.
var generatedHostKeys = [...]struct {
	file     string
	keyType  string
	generate func() (crypto.Signer, error)
}{
	{HostKeyFileEd25519, gossh.KeyAlgoED25519, func() (crypto.Signer, error) {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		return priv, err
	}},
	{HostKeyFileRSA, gossh.KeyAlgoRSA, func() (crypto.Signer, error) { return rsa.GenerateKey(rand.Reader, rsaHostKeyBits) }},
}

// LoadOrCreateHostKeys returns the host keys in dir, generating those that are
// missing: an Ed25519 key, and an RSA key for old clients. Generated keys are
// written in OpenSSH format with mode 0600 (and the public halves beside them
// as .pub files), so a restart presents the same keys. Keys from the extra
// files are added after them; an extra key replaces a generated key of the same
// type, since a server offers one key per type, and then that key is neither
// read nor generated. Like sshd, it refuses private key files that others can
// read.
//
// When every key is present, nothing is written (not even a lock file), so
// the server starts on a read-only data dir. Only a missing key takes the
// lock and writes; on a read-only dir that fails with a message saying how
// to provide the keys.
func LoadOrCreateHostKeys(dir string, extra []string) ([]gossh.Signer, error) {
	var extras []gossh.Signer
	for _, path := range extra {
		s, err := readHostKey(path)
		if err != nil {
			return nil, err
		}
		extras = addHostKey(extras, s)
	}
	signers, missing, err := readGeneratedHostKeys(dir, extras)
	if err != nil {
		return nil, err
	}
	if missing {
		if signers, err = createHostKeys(dir, extras); err != nil {
			return nil, err
		}
	}
	for _, s := range extras {
		signers = addHostKey(signers, s)
	}
	return signers, nil
}

// readGeneratedHostKeys reads the generated keys that no extra key replaces,
// without writing anything; missing reports whether one does not exist.
func readGeneratedHostKeys(dir string, extras []gossh.Signer) (signers []gossh.Signer, missing bool, err error) {
	for _, k := range generatedHostKeys {
		if s := hostKeyOfType(extras, k.keyType); s != nil {
			signers = append(signers, s)
			continue
		}
		s, err := readHostKey(filepath.Join(dir, k.file))
		if errors.Is(err, fs.ErrNotExist) {
			return nil, true, nil
		}
		if err != nil {
			return nil, false, err
		}
		signers = append(signers, s)
	}
	return signers, false, nil
}

// createHostKeys generates the missing keys under the lock, which serialises
// generation with another process (a server starting while "gitgate ssh
// host-keys" runs), and returns every generated key.
func createHostKeys(dir string, extras []gossh.Signer) ([]gossh.Signer, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("host key dir: %w", readOnlyHint(err))
	}
	lock, err := atomicfile.Acquire(filepath.Join(dir, hostKeyLockFile))
	if err != nil {
		return nil, fmt.Errorf("host keys: %w", readOnlyHint(err))
	}
	defer lock.Release()

	var signers []gossh.Signer
	for _, k := range generatedHostKeys {
		if s := hostKeyOfType(extras, k.keyType); s != nil {
			signers = append(signers, s)
			continue
		}
		path := filepath.Join(dir, k.file)
		s, err := readHostKey(path)
		if errors.Is(err, fs.ErrNotExist) {
			s, err = createHostKey(path, k.generate)
		}
		if err != nil {
			return nil, readOnlyHint(err)
		}
		signers = append(signers, s)
	}
	return signers, nil
}

// readOnlyHint explains a write that failed on a read-only data dir.
func readOnlyHint(err error) error {
	if errors.Is(err, syscall.EROFS) || errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("%w (a host key is missing and the data dir cannot be written: "+
			"create the keys once with \"gitgate ssh host-keys\" where it is writable, or give them with --ssh-host-key)", err)
	}
	return err
}

// hostKeyOfType returns the signer of the given key type, or nil.
func hostKeyOfType(signers []gossh.Signer, keyType string) gossh.Signer {
	for _, s := range signers {
		if s.PublicKey().Type() == keyType {
			return s
		}
	}
	return nil
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

// maxHostKeySize bounds a host key file: an OpenSSH private key of any type
// gitgate uses, even RSA 16384, is far smaller.
const maxHostKeySize = 64 << 10

func readHostKey(path string) (gossh.Signer, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("host key: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("host key %s: permissions %#o are too open; it must be readable by its owner only (chmod 600)", path, fi.Mode().Perm())
	}
	// Bounded in size and time, and only from a regular file: a FIFO or a
	// device here must not hang or exhaust the server at start.
	data, err := atomicfile.ReadBounded(path, maxHostKeySize)
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
