package access

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strings"
)

// TokenPrefix starts every access token secret, so that secret scanners and
// people can recognise a leaked one.
const TokenPrefix = "ggt_"

const (
	// tokenSecretBytes is the entropy of a secret.
	tokenSecretBytes = 32
	// maxTokenLength bounds what is hashed; real secrets are 47 bytes.
	maxTokenLength = 256
	// tokenIDBytes is the size of a token's public id.
	tokenIDBytes = 4
)

// newTokenSecret returns a fresh secret: the prefix and 32 random bytes in
// unpadded base64url, safe in headers and in URL user info.
func newTokenSecret() string {
	b := make([]byte, tokenSecretBytes)
	rand.Read(b) // never fails, see crypto/rand
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(b)
}

// newTokenID returns a short random id that names a token in listings.
func newTokenID() string {
	b := make([]byte, tokenIDBytes)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// hashToken returns the SHA-256 of the whole secret. A fast, unsalted hash
// is right here, unlike for passwords: the secret holds 256 random bits, so
// the digest cannot be reversed by guessing, and a slow hash would only make
// every authenticated request slower.
func hashToken(secret string) [sha256.Size]byte {
	return sha256.Sum256([]byte(secret))
}

// looksLikeToken reports whether secret could be one of ours; anything else
// is refused before hashing.
func looksLikeToken(secret string) bool {
	return len(secret) <= maxTokenLength && strings.HasPrefix(secret, TokenPrefix)
}

// validTokenID reports whether id is acceptable in the file: 1 to 32 ASCII
// letters, digits, '-' or '_'.
func validTokenID(id string) bool {
	if id == "" || len(id) > 32 {
		return false
	}
	for _, c := range []byte(id) {
		if !isASCIIAlnum(c) && c != '-' && c != '_' {
			return false
		}
	}
	return true
}

// validDigest reports whether s is 64 lower-case hex digits.
func validDigest(s string) bool {
	if len(s) != 2*sha256.Size {
		return false
	}
	for _, c := range []byte(s) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func isASCIIAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}
