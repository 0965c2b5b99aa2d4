package sshd

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"
)

func TestLoadOrCreateHostKeys(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	first, err := LoadOrCreateHostKeys(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := keyTypes(first); !slices.Equal(got, []string{gossh.KeyAlgoED25519, gossh.KeyAlgoRSA}) {
		t.Fatalf("key types = %v", got)
	}
	for _, name := range []string{HostKeyFileEd25519, HostKeyFileRSA} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %#o, want 0600", name, fi.Mode().Perm())
		}
		if _, err := os.Stat(filepath.Join(dir, name+".pub")); err != nil {
			t.Error(err)
		}
	}

	again, err := LoadOrCreateHostKeys(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := Fingerprints(first), Fingerprints(again); !slices.Equal(a, b) {
		t.Errorf("keys changed on reload: %v, then %v", a, b)
	}
}

func TestExtraHostKeys(t *testing.T) {
	dir := t.TempDir()
	ecdsaKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edFile := writeKey(t, edKey, 0o600)
	signers, err := LoadOrCreateHostKeys(dir, []string{writeKey(t, ecdsaKey, 0o600), edFile})
	if err != nil {
		t.Fatal(err)
	}
	if got := keyTypes(signers); !slices.Equal(got, []string{gossh.KeyAlgoED25519, gossh.KeyAlgoRSA, gossh.KeyAlgoECDSA256}) {
		t.Fatalf("key types = %v", got)
	}
	// The extra Ed25519 key replaces the generated one.
	want, err := gossh.NewSignerFromKey(edKey)
	if err != nil {
		t.Fatal(err)
	}
	if got := Fingerprint(signers[0].PublicKey()); got != Fingerprint(want.PublicKey()) {
		t.Errorf("Ed25519 host key = %s, want the extra key %s", got, Fingerprint(want.PublicKey()))
	}

	if err := os.Chmod(edFile, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateHostKeys(dir, []string{edFile}); err == nil || !strings.Contains(err.Error(), "too open") {
		t.Errorf("world-readable host key: err = %v, want a refusal", err)
	}
	if _, err := LoadOrCreateHostKeys(dir, []string{filepath.Join(dir, "missing")}); err == nil {
		t.Error("missing extra host key: no error")
	}
}

func keyTypes(signers []gossh.Signer) []string {
	var out []string
	for _, s := range signers {
		out = append(out, s.PublicKey().Type())
	}
	return out
}

func writeKey(t *testing.T, key any, mode os.FileMode) string {
	t.Helper()
	block, err := gossh.MarshalPrivateKey(key, "")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(path, pem.EncodeToMemory(block), mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestFingerprintMatchesSSHKeygen(t *testing.T) {
	dir := t.TempDir()
	signers, err := LoadOrCreateHostKeys(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{HostKeyFileEd25519, HostKeyFileRSA} {
		out, err := exec.Command("ssh-keygen", "-l", "-f", filepath.Join(dir, name+".pub")).Output()
		if err != nil {
			t.Fatalf("ssh-keygen: %v", err)
		}
		// "256 SHA256:... no comment (ED25519)"
		f := strings.Fields(string(out))
		want := f[0] + " " + f[1] + " " + f[len(f)-1]
		if got := Fingerprint(signers[i].PublicKey()); got != want {
			t.Errorf("Fingerprint = %q, ssh-keygen says %q", got, want)
		}
	}
}

// dirListing names the entries of dir.
func dirListing(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// With the host keys present, loading them writes nothing: no lock file, no
// directory, so that a gate can start on a read-only data dir. (Tests run as
// root, for whom a chmod'ed directory is still writable; the listing shows
// that no write was even attempted. The read-only mount itself is tested end
// to end in the serve command's tests.)
func TestHostKeysPresentWritesNothing(t *testing.T) {
	dir := t.TempDir()
	first, err := LoadOrCreateHostKeys(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, hostKeyLockFile)); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	before := dirListing(t, dir)
	again, err := LoadOrCreateHostKeys(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if after := dirListing(t, dir); !slices.Equal(before, after) {
		t.Errorf("loading present keys changed the dir: %v, then %v", before, after)
	}
	if a, b := Fingerprints(first), Fingerprints(again); !slices.Equal(a, b) {
		t.Errorf("keys changed: %v, then %v", a, b)
	}

	// Extra keys of both generated types: nothing is generated at all.
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaFile := filepath.Join(dir, HostKeyFileRSA) // an existing RSA key, used as an extra
	empty := filepath.Join(t.TempDir(), "no-such-dir")
	signers, err := LoadOrCreateHostKeys(empty, []string{writeKey(t, edKey, 0o600), rsaFile})
	if err != nil {
		t.Fatal(err)
	}
	if got := keyTypes(signers); !slices.Equal(got, []string{gossh.KeyAlgoED25519, gossh.KeyAlgoRSA}) {
		t.Fatalf("key types = %v", got)
	}
	if _, err := os.Stat(empty); !os.IsNotExist(err) {
		t.Errorf("the data dir was created for keys that were all given: %v", err)
	}
}
