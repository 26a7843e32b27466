package users

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// Defaults of the argon2id cost for the passwords of store users: those of
// `caddy hash-password --algorithm argon2id`.
const (
	DefaultArgon2idTime    = 1
	DefaultArgon2idMemory  = 46 * 1024 // KiB
	DefaultArgon2idThreads = 1
	argon2idKeyLen         = 32
	argon2idSaltLen        = 16
)

// Limits of a new password: NIST SP 800-63B asks for at least 8 characters
// and no composition rules; the upper bound keeps hashing cheap to ask for.
const (
	MinPasswordChars = 8
	MaxPasswordBytes = 1024
)

// Argon2id is the cost of argon2id hashes made for store users.
type Argon2id struct {
	Time, Memory uint32 // iterations; KiB
	Threads      uint8
}

// Hash makes an argon2id hash of password in the PHC text form that
// `caddy hash-password` prints.
func (p Argon2id) Hash(password string) (string, error) {
	salt := make([]byte, argon2idSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("argon2id salt: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, argon2idKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.Memory, p.Time, p.Threads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

// Current reports whether a stored hash is argon2id with exactly these
// parameters; any other (bcrypt, other parameters) is rehashed at the next
// successful login.
func (p Argon2id) Current(stored string) bool {
	_, key, err := decodeArgon2id(stored)
	want := fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$", argon2.Version, p.Memory, p.Time, p.Threads)
	return err == nil && len(key) == argon2idKeyLen && strings.HasPrefix(stored, want)
}

// decoy is a hash of a random password with these parameters: what an
// unknown name is compared against when every user is in the store.
func (p Argon2id) decoy() (passwordHash, error) {
	pw := make([]byte, 18)
	if _, err := rand.Read(pw); err != nil {
		return passwordHash{}, err
	}
	h, err := p.Hash(base64.RawStdEncoding.EncodeToString(pw))
	if err != nil {
		return passwordHash{}, err
	}
	return parsePasswordHash(h)
}

// Errors of a new password that does not meet the rules.
var (
	ErrPasswordShort = fmt.Errorf("the password must have at least %d characters", MinPasswordChars)
	ErrPasswordLong  = fmt.Errorf("the password must be at most %d bytes", MaxPasswordBytes)
	ErrPasswordUTF8  = errors.New("the password is not valid UTF-8 text")
)

// CheckNewPassword applies the rules for a password a user or an operator
// sets.
func CheckNewPassword(pw string) error {
	switch {
	case !utf8.ValidString(pw):
		return ErrPasswordUTF8
	case len(pw) > MaxPasswordBytes:
		return ErrPasswordLong
	case utf8.RuneCountInString(pw) < MinPasswordChars:
		return ErrPasswordShort
	}
	return nil
}

// decodeArgon2id reads an argon2id hash in the PHC text form
// ($argon2id$v=19$m=<KiB>,t=<passes>,p=<threads>$<salt>$<key>, unpadded
// standard base64) into its parameters, salt and key.
func decodeArgon2id(s string) (argon2idHash, []byte, error) {
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return argon2idHash{}, nil, errors.New("not an argon2id hash")
	}
	var h argon2idHash
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return argon2idHash{}, nil, fmt.Errorf("unsupported argon2 version %q", parts[2])
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &h.Memory, &h.Time, &h.Threads); err != nil {
		return argon2idHash{}, nil, fmt.Errorf("malformed argon2id parameters %q", parts[3])
	}
	if h.Time == 0 || h.Threads == 0 || h.Memory < 8*uint32(h.Threads) || h.Memory > maxArgon2idMemory {
		return argon2idHash{}, nil, fmt.Errorf("argon2id parameters out of range: %q", parts[3])
	}
	var err error
	if h.salt, err = base64.RawStdEncoding.Strict().DecodeString(parts[4]); err != nil || len(h.salt) < 8 {
		return argon2idHash{}, nil, errors.New("malformed argon2id salt")
	}
	key, err := base64.RawStdEncoding.Strict().DecodeString(parts[5])
	if err != nil || len(key) < 16 || len(key) > 128 {
		return argon2idHash{}, nil, errors.New("malformed argon2id key")
	}
	return h, key, nil
}

// maxArgon2idMemory bounds the memory a configured hash may ask for per
// comparison (4 GiB): a hash is configuration, but a typo should not take
// the machine's memory at every login.
const maxArgon2idMemory = 4 << 20

// argon2idHash is the parameters and salt of an argon2id hash.
type argon2idHash struct {
	Argon2id
	salt []byte
}

// compareArgon2id reports whether password matches the argon2id hash,
// comparing the keys in constant time.
func compareArgon2id(hash, password []byte) (bool, error) {
	h, key, err := decodeArgon2id(string(hash))
	if err != nil {
		return false, err
	}
	got := argon2.IDKey(password, h.salt, h.Time, h.Memory, h.Threads, uint32(len(key)))
	return subtle.ConstantTimeCompare(got, key) == 1, nil
}

// compareBcrypt reports whether password matches the bcrypt hash.
func compareBcrypt(hash, password []byte) (bool, error) {
	err := bcrypt.CompareHashAndPassword(hash, password)
	if errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
		return false, nil
	}
	return err == nil, err
}
