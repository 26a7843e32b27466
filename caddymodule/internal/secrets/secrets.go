// Package secrets encrypts data at rest under a master key that is kept
// apart from the data it protects.
//
// The master Key is never used directly: purpose-specific subkeys are
// derived from it with HKDF-SHA256 (RFC 5869), one for the AES-256-GCM
// Sealer and one per Derive purpose, so that no two uses share a key.
package secrets

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// KeySize is the length of a master key in bytes.
const KeySize = 32

// Sentinel errors for expected outcomes.
var (
	// ErrInvalidKey is wrapped by every error ParseKey returns.
	ErrInvalidKey = errors.New("encryption key must be 32 bytes, base64 or hex encoded (for example the output of: head -c 32 /dev/urandom | base64)")
	// ErrNoKeyFile is wrapped by LoadOrCreateKeyFile's error when the key
	// file does not exist and it may not create one.
	ErrNoKeyFile = errors.New("encryption key file does not exist")
	// ErrDecrypt is returned by Sealer.Open for any input that does not
	// decrypt: wrong key, wrong associated data, tampering or truncation.
	ErrDecrypt = errors.New("cannot decrypt: wrong key, or data corrupted or tampered with")
	// ErrWrongKey is wrapped by Sealer.VerifyCheck's error when the check
	// value was made with another key.
	ErrWrongKey = errors.New("encryption key does not match the one the data was encrypted with")
)

// Key is a 32-byte master key. The zero Key is not a valid key: make one
// with NewKey, ParseKey or LoadOrCreateKeyFile. Its String and GoString
// methods never reveal the key, so it can't leak into logs by accident.
type Key struct {
	b [KeySize]byte
}

// NewKey returns a fresh random key from crypto/rand.
func NewKey() (Key, error) {
	var k Key
	if _, err := rand.Read(k.b[:]); err != nil {
		return Key{}, fmt.Errorf("generate encryption key: %w", err)
	}
	return k, nil
}

// ParseKey decodes a key written as standard or URL-safe base64 (padded or
// not) or as hex, surrounded by optional white space. It must decode to
// exactly 32 bytes, not all zero. Errors wrap ErrInvalidKey and never
// contain the input.
func ParseKey(s string) (Key, error) {
	s = strings.TrimSpace(s)
	raw, ok := decodeKey(s)
	if !ok {
		return Key{}, ErrInvalidKey
	}
	var k Key
	copy(k.b[:], raw)
	clear(raw)
	if k.isZero() {
		return Key{}, fmt.Errorf("encryption key is all zero bytes: %w", ErrInvalidKey)
	}
	return k, nil
}

// decodeKey tries each accepted encoding and returns the first decoding of
// exactly KeySize bytes. Hex is tried first: 64 hex digits are also valid
// base64, but of 48 bytes, so the two never compete for the same input.
func decodeKey(s string) ([]byte, bool) {
	if len(s) > hex.EncodedLen(KeySize) {
		return nil, false // longer than any accepted encoding
	}
	if len(s) == hex.EncodedLen(KeySize) {
		if b, err := hex.DecodeString(s); err == nil {
			return b, true
		}
	}
	for _, enc := range []*base64.Encoding{
		base64.StdEncoding, base64.RawStdEncoding,
		base64.URLEncoding, base64.RawURLEncoding,
	} {
		b, err := enc.DecodeString(s)
		if err == nil && len(b) == KeySize {
			return b, true
		}
		clear(b)
	}
	return nil, false
}

func (k Key) isZero() bool {
	var zero [KeySize]byte
	return subtle.ConstantTimeCompare(k.b[:], zero[:]) == 1
}

// encode returns the key as padded standard base64, the key file format.
func (k Key) encode() string {
	return base64.StdEncoding.EncodeToString(k.b[:])
}

// String returns a fixed placeholder, never the key.
func (k Key) String() string { return "secrets.Key(REDACTED)" }

// GoString returns a fixed placeholder, never the key.
func (k Key) GoString() string { return "secrets.Key(REDACTED)" }

// HKDF info strings. Derive's prefix differs from the sealer's string, so no
// purpose can make Derive return the sealer's key.
const (
	infoSealer = "caddy-two-factor v1 sealer aes-256-gcm"
	infoDerive = "caddy-two-factor v1 derive "
)

// Derive returns a 32-byte subkey for purpose, for example the pepper of
// the backup-code HMAC. Distinct purposes give independent keys; the same
// key and purpose always give the same subkey. It panics on the zero Key.
func (k Key) Derive(purpose string) []byte {
	return k.derive(infoDerive + purpose)
}

func (k Key) derive(info string) []byte {
	if k.isZero() {
		panic("secrets: use of the zero Key; make keys with NewKey, ParseKey or LoadOrCreateKeyFile")
	}
	b, err := hkdf.Key(sha256.New, k.b[:], nil, info, KeySize)
	if err != nil {
		// Only possible for an output length HKDF-SHA256 can't produce.
		panic("secrets: HKDF: " + err.Error())
	}
	return b
}

// Sealer returns the AES-256-GCM Sealer keyed with k's sealer subkey.
func (k Key) Sealer() (*Sealer, error) {
	if k.isZero() {
		return nil, errors.New("secrets: the zero Key cannot seal; make keys with NewKey, ParseKey or LoadOrCreateKeyFile")
	}
	sub := k.derive(infoSealer)
	defer clear(sub)
	block, err := aes.NewCipher(sub)
	if err != nil {
		return nil, fmt.Errorf("create AES cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("create AES-GCM: %w", err)
	}
	return &Sealer{aead: aead}, nil
}

// Format of a sealed value: version (1 byte) || nonce (12 bytes) ||
// AES-GCM ciphertext and tag. The version byte is also authenticated, as
// the first byte of the associated data.
const (
	version1  = 1
	nonceSize = 12
	tagSize   = 16
	// Overhead is how many bytes Seal adds to the plaintext.
	Overhead = 1 + nonceSize + tagSize
)

// Sealer encrypts and authenticates small values with AES-256-GCM. Nonces
// are random, which is safe for far more values than a two-factor store
// holds (NIST SP 800-38D allows 2^32 per key). A Sealer is safe for
// concurrent use.
type Sealer struct {
	aead cipher.AEAD
}

// Seal encrypts plaintext and binds it to aad, which must be given again
// to Open (for example the user name, so a sealed secret can't be moved to
// another user). The result is Overhead bytes longer than plaintext.
func (s *Sealer) Seal(plaintext, aad []byte) ([]byte, error) {
	out := make([]byte, 1+nonceSize, Overhead+len(plaintext))
	out[0] = version1
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, fmt.Errorf("generate nonce: %w", err)
	}
	return s.aead.Seal(out, out[1:], plaintext, withVersion(version1, aad)), nil
}

// Open decrypts a value made by Seal with the same key and aad. Any failure
// (wrong key, wrong aad, a changed or missing byte, an unknown version)
// returns ErrDecrypt; Open never panics, whatever its input.
func (s *Sealer) Open(sealed, aad []byte) ([]byte, error) {
	if len(sealed) < Overhead || sealed[0] != version1 {
		return nil, ErrDecrypt
	}
	nonce, ct := sealed[1:1+nonceSize], sealed[1+nonceSize:]
	pt, err := s.aead.Open(nil, nonce, ct, withVersion(version1, aad))
	if err != nil {
		return nil, ErrDecrypt
	}
	return pt, nil
}

func withVersion(v byte, aad []byte) []byte {
	out := make([]byte, 0, 1+len(aad))
	return append(append(out, v), aad...)
}

// The known value sealed by Check.
var (
	checkPlaintext = []byte("caddy-two-factor key check")
	checkAAD       = []byte("caddy-two-factor key check v1")
)

// Check returns a sealed known value. A store keeps it when created and
// hands it to VerifyCheck when opened, so that starting with the wrong key
// fails at once rather than on each user's first login. Each call returns a
// different value (the nonce is random); all of them verify.
func (s *Sealer) Check() []byte {
	v, err := s.Seal(checkPlaintext, checkAAD)
	if err != nil {
		// Seal fails only if crypto/rand does, which it does not since Go 1.24.
		panic("secrets: seal check value: " + err.Error())
	}
	return v
}

// VerifyCheck reports whether v was made by Check with the same key. Its
// error wraps ErrWrongKey if not.
func (s *Sealer) VerifyCheck(v []byte) error {
	pt, err := s.Open(v, checkAAD)
	if err != nil || subtle.ConstantTimeCompare(pt, checkPlaintext) != 1 {
		return fmt.Errorf("verify key check value: %w", ErrWrongKey)
	}
	return nil
}
