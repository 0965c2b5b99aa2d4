package lfs

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/internal/atomicfile"
)

// AuthScheme is the Authorization scheme of the gate's signed LFS headers.
const AuthScheme = "Gitgate-LFS"

// maxTokenLength bounds a signed header before it is decoded.
const maxTokenLength = 4096

// ErrBadToken is returned for a signed header that is malformed, forged,
// expired, or used outside what it was issued for.
var ErrBadToken = errors.New("invalid or expired LFS authorization")

// Grant is what a signed header allows: one user on one repository for one
// operation ("download" or "upload"), and, for an object action, one object
// of one size. An empty OID grants the batch and locks APIs.
type Grant struct {
	User    string `json:"u"`
	Repo    string `json:"r"`
	Op      string `json:"o"`
	OID     string `json:"i,omitempty"`
	Size    int64  `json:"s,omitempty"`
	Expires int64  `json:"e"` // Unix seconds
	// Scopes are the scopes of the token the grant was issued on (zero:
	// unscoped, as SSH keys are): a grant never allows more than they did.
	Scopes gitgate.Scopes `json:"c,omitempty"`
	// Cred is the credential User signed in with (gitgate.User.Credential):
	// every use checks that it is still theirs and valid, so a grant dies
	// with the key, the token or the user it was issued on.
	Cred string `json:"k,omitempty"`
}

// Signer issues and checks signed headers with a secret only the gate knows.
type Signer struct {
	secret []byte
	now    func() time.Time
}

// LoadOrCreateSecret reads the signing secret from path, creating it (32
// random bytes, hex, mode 0600) on first start.
func LoadOrCreateSecret(path string) ([]byte, error) {
	data, err := atomicfile.ReadBounded(path, 1024)
	if errors.Is(err, fs.ErrNotExist) {
		buf := make([]byte, 32)
		rand.Read(buf)
		if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
			return nil, fmt.Errorf("lfs secret: %w", err)
		}
		if err := atomicfile.Write(path, []byte(hex.EncodeToString(buf)+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("lfs secret: %w", err)
		}
		data, err = atomicfile.ReadBounded(path, 1024)
	}
	if err != nil {
		return nil, fmt.Errorf("lfs secret: %w", err)
	}
	secret, err := hex.DecodeString(strings.TrimSpace(string(data)))
	if err != nil || len(secret) < 32 {
		return nil, fmt.Errorf("lfs secret %s: not 32 or more hex-encoded bytes", path)
	}
	return secret, nil
}

// NewSigner returns a signer with secret.
func NewSigner(secret []byte) *Signer { return &Signer{secret: secret, now: time.Now} }

// Sign returns the Authorization header value for g, valid for ttl.
func (s *Signer) Sign(g Grant, ttl time.Duration) string {
	g.Expires = s.now().Add(ttl).Unix()
	payload, _ := json.Marshal(g)
	p := base64.RawURLEncoding.EncodeToString(payload)
	return AuthScheme + " " + p + "." + base64.RawURLEncoding.EncodeToString(s.mac(p))
}

func (s *Signer) mac(p string) []byte {
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte("gitgate-lfs-v1\x00" + p))
	return m.Sum(nil)
}

// Verify checks an Authorization header value and returns its grant. It
// returns (Grant{}, false, nil) when the header is not of AuthScheme.
func (s *Signer) Verify(header string) (Grant, bool, error) {
	token, ok := strings.CutPrefix(header, AuthScheme+" ")
	if !ok {
		return Grant{}, false, nil
	}
	if len(token) > maxTokenLength {
		return Grant{}, true, ErrBadToken
	}
	p, sig, ok := strings.Cut(token, ".")
	if !ok {
		return Grant{}, true, ErrBadToken
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, s.mac(p)) {
		return Grant{}, true, ErrBadToken
	}
	payload, err := base64.RawURLEncoding.DecodeString(p)
	if err != nil {
		return Grant{}, true, ErrBadToken
	}
	var g Grant
	if err := json.Unmarshal(payload, &g); err != nil {
		return Grant{}, true, ErrBadToken
	}
	if s.now().Unix() >= g.Expires {
		return Grant{}, true, fmt.Errorf("%w: expired", ErrBadToken)
	}
	return g, true, nil
}
