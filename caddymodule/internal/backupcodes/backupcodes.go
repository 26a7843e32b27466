// Package backupcodes makes and checks single-use recovery codes, the
// fallback for a user whose authenticator app is unavailable.
//
// A code is 10 symbols of a Crockford-style base32 alphabet (50 bits),
// shown as "xxxxx-xxxxx". Codes are stored only as keyed hashes; see Hasher.
package backupcodes

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"strings"
)

// Alphabet is the set of symbols a code is made of: digits and lower-case
// letters without i, l, o and u, so that no two symbols are easily confused.
const Alphabet = "0123456789abcdefghjkmnpqrstvwxyz"

// Length is the number of symbols in a code (50 bits of entropy).
const Length = 10

// Count is the number of codes in a freshly generated set.
const Count = 10

// MaxGenerate is the largest n Generate accepts.
const MaxGenerate = 100

// maxInput bounds the length of input Normalize looks at; a code typed with
// generous spacing is still far shorter.
const maxInput = 64

// ErrInvalidCount is wrapped by the error Generate returns for an n outside
// [1, MaxGenerate].
var ErrInvalidCount = errors.New("invalid number of backup codes")

// symbolValue maps an input byte to its symbol in Alphabet, or 0 if the
// byte is not a symbol. Upper case and Crockford's look-alikes (i and l for
// 1, o for 0) are folded in.
var symbolValue = func() [256]byte {
	var m [256]byte
	for i := 0; i < len(Alphabet); i++ {
		c := Alphabet[i]
		m[c] = c
		if c >= 'a' && c <= 'z' {
			m[c-'a'+'A'] = c
		}
	}
	for _, c := range "iIlL" {
		m[c] = '1'
	}
	m['o'], m['O'] = '0', '0'
	return m
}()

// Generate returns n distinct codes from crypto/rand, in display form
// ("xxxxx-xxxxx"). Each symbol takes the low 5 bits of its own random byte,
// so every symbol is uniform over Alphabet.
func Generate(n int) ([]string, error) {
	if n < 1 || n > MaxGenerate {
		return nil, fmt.Errorf("%w: %d, want 1 to %d", ErrInvalidCount, n, MaxGenerate)
	}
	codes := make([]string, 0, n)
	seen := make(map[string]bool, n)
	var raw [Length]byte
	for len(codes) < n {
		if _, err := rand.Read(raw[:]); err != nil {
			return nil, fmt.Errorf("generate backup code: %w", err)
		}
		var sym [Length]byte
		for i, b := range raw {
			sym[i] = Alphabet[b&0x1f]
		}
		code := string(sym[:])
		if seen[code] {
			continue // 2^-50 per pair: practically never, but never a duplicate.
		}
		seen[code] = true
		codes = append(codes, Display(code))
	}
	return codes, nil
}

// Display returns a normalized code in display form, "xxxxx-xxxxx". Any
// other input is returned unchanged.
func Display(normalized string) string {
	if len(normalized) != Length {
		return normalized
	}
	return normalized[:Length/2] + "-" + normalized[Length/2:]
}

// Normalize turns what a user typed into the canonical form of a code: 10
// lower-case Alphabet symbols. It folds upper case, drops spaces, tabs, line
// breaks and dashes, and reads i and l as 1 and o as 0. ok is false unless
// the result is exactly 10 symbols; input longer than 64 bytes is refused
// outright.
func Normalize(input string) (string, bool) {
	if len(input) > maxInput {
		return "", false
	}
	var out [Length]byte
	n := 0
	for i := 0; i < len(input); i++ {
		c := input[i]
		switch c {
		case ' ', '\t', '\r', '\n', '-':
			continue
		}
		s := symbolValue[c]
		if s == 0 || n == Length {
			return "", false
		}
		out[n] = s
		n++
	}
	if n != Length {
		return "", false
	}
	return string(out[:]), true
}

// LooksLikeBackupCode reports whether input normalizes to a backup code.
func LooksLikeBackupCode(input string) bool {
	_, ok := Normalize(input)
	return ok
}

// CodeKind says which kind of second-factor code a user submitted.
type CodeKind int

// The kinds of code Kind tells apart.
const (
	// KindInvalid is input that is neither a TOTP code nor a backup code.
	KindInvalid CodeKind = iota
	// KindTOTP is exactly 6 or 8 ASCII digits: a code from the app.
	KindTOTP
	// KindBackup is input that normalizes to a backup code.
	KindBackup
)

// String returns the kind's name.
func (k CodeKind) String() string {
	switch k {
	case KindTOTP:
		return "totp"
	case KindBackup:
		return "backup"
	default:
		return "invalid"
	}
}

// Kind classifies a submitted code, so that one input field can take both
// kinds. Once surrounding white space is trimmed, exactly 6 or 8 ASCII
// digits are a TOTP attempt (a backup code is always 10 symbols, so it
// cannot look like one); anything else that normalizes is a backup code
// attempt; the rest is KindInvalid.
func Kind(input string) CodeKind {
	if len(input) > maxInput {
		return KindInvalid
	}
	t := strings.TrimSpace(input)
	if (len(t) == 6 || len(t) == 8) && allDigits(t) {
		return KindTOTP
	}
	if LooksLikeBackupCode(input) {
		return KindBackup
	}
	return KindInvalid
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// KeySize is the length in bytes of the key NewHasher takes.
const KeySize = 32

// hashContext separates these hashes from any other use of the same key.
const hashContext = "caddy-two-factor backup code v1"

// Hasher computes the keyed hashes backup codes are stored as.
//
// A backup code has 50 bits of entropy, which is too little to survive an
// offline guessing attack on a plain or salted hash: NIST SP 800-63B section
// 5.1.2 requires look-up secrets with less than 112 bits of entropy to be
// stored in a form resistant to offline attack. Here that form is
// HMAC-SHA256 under a secret key (a pepper) that lives outside the store, so
// a stolen copy of the store alone gives an attacker nothing to brute-force;
// online guessing is left to the caller's rate limit.
//
// The user name is part of the hash, so equal codes of two users hash
// differently and one user's hash cannot be replayed for another.
//
// A Hasher is safe for concurrent use.
type Hasher struct {
	key []byte
}

// NewHasher returns a Hasher using key, which must be at least KeySize
// secret random bytes (derived from the master key elsewhere). It panics on
// a shorter key: that is a programming error, never a run-time condition.
func NewHasher(key []byte) *Hasher {
	if len(key) < KeySize {
		panic(fmt.Sprintf("backupcodes: hash key is %d bytes, want at least %d", len(key), KeySize))
	}
	return &Hasher{key: append([]byte(nil), key...)}
}

// Hash returns the 32-byte HMAC-SHA256 of user and normalizedCode (as
// returned by Normalize). Both are length-prefixed, so that no two distinct
// (user, code) pairs share an input: ("ab", "c") and ("a", "bc") differ.
func (h *Hasher) Hash(user, normalizedCode string) []byte {
	mac := hmac.New(sha256.New, h.key)
	writeField(mac, hashContext)
	writeField(mac, user)
	writeField(mac, normalizedCode)
	return mac.Sum(nil)
}

// writeField writes s preceded by its length as a big-endian uint64.
func writeField(h hash.Hash, s string) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(s)))
	h.Write(n[:]) // a hash.Hash never returns a write error
	h.Write([]byte(s))
}

// Text returns the content of the downloadable text file of a set of codes:
// the header lines (which name the user and the site, and the date), a
// blank line, one code per line, a blank line and the footer lines (how
// the codes are to be used). The caller writes header and footer in the
// reader's language. Line breaks and other control characters in them are
// replaced by spaces, so that a name cannot forge lines in the file.
func Text(header, codes, footer []string) string {
	var b strings.Builder
	for _, l := range header {
		b.WriteString(oneLine(l))
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	for _, c := range codes {
		b.WriteString(c)
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	for _, l := range footer {
		b.WriteString(oneLine(l))
		b.WriteByte('\n')
	}
	return b.String()
}

// oneLine replaces control characters in s with spaces.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s)
}
