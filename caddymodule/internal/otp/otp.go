// Package otp implements replay-safe time-based one-time passwords
// (TOTP, RFC 6238) on top of github.com/pquerna/otp.
//
// The code computation itself is delegated to pquerna/otp. What this package
// adds is the part a login flow needs and that pquerna's validators do not
// expose: which time step a code matched, so that the caller can remember it
// and refuse the same code (or an older one) a second time.
package otp

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base32"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/boombuler/barcode"
	"github.com/boombuler/barcode/qr"
	pqotp "github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
)

// SecretSize is the length in bytes of a secret made by NewSecret: 160 bits,
// the length RFC 4226 recommends for HMAC-SHA1.
const SecretSize = 20

// MinSecretSize is the shortest secret Match accepts (128 bits, the minimum
// of RFC 4226 section 4, requirement R6).
const MinSecretSize = 16

// MaxSkew is the largest skew Match and MatchAfter accept. It bounds the
// work done per attempt and the window an attacker can guess into.
const MaxSkew = 10

// Algorithm names accepted in Params.Algorithm.
const (
	SHA1   = "SHA1"
	SHA256 = "SHA256"
	SHA512 = "SHA512"
)

// Bounds for Params.Period, in seconds.
const (
	MinPeriod = 15
	MaxPeriod = 300
)

// maxCodeInput bounds the length of a submitted code before any work is done
// on it; a genuine code, even with surrounding spaces, is far shorter.
const maxCodeInput = 64

// ErrInvalidParams is wrapped by the errors Params.Validate returns.
var ErrInvalidParams = errors.New("invalid TOTP parameters")

// Params are the TOTP parameters shared with the authenticator app.
type Params struct {
	// Algorithm is the HMAC hash: "SHA1", "SHA256" or "SHA512".
	Algorithm string
	// Digits is the code length: 6 or 8.
	Digits int
	// Period is the length of a time step in seconds.
	Period int
}

// Default are the parameters every authenticator app supports: HMAC-SHA1,
// 6 digits, 30-second steps.
var Default = Params{Algorithm: SHA1, Digits: 6, Period: 30}

// Validate reports whether p can be used. Errors wrap ErrInvalidParams.
func (p Params) Validate() error {
	if _, err := p.algorithm(); err != nil {
		return err
	}
	if p.Digits != 6 && p.Digits != 8 {
		return fmt.Errorf("%w: digits must be 6 or 8, got %d", ErrInvalidParams, p.Digits)
	}
	if p.Period < MinPeriod || p.Period > MaxPeriod {
		return fmt.Errorf("%w: period must be between %d and %d seconds, got %d",
			ErrInvalidParams, MinPeriod, MaxPeriod, p.Period)
	}
	return nil
}

func (p Params) algorithm() (pqotp.Algorithm, error) {
	switch p.Algorithm {
	case SHA1:
		return pqotp.AlgorithmSHA1, nil
	case SHA256:
		return pqotp.AlgorithmSHA256, nil
	case SHA512:
		return pqotp.AlgorithmSHA512, nil
	default:
		return 0, fmt.Errorf("%w: algorithm must be %s, %s or %s, got %q",
			ErrInvalidParams, SHA1, SHA256, SHA512, p.Algorithm)
	}
}

// NewSecret returns SecretSize bytes from crypto/rand.
func NewSecret() ([]byte, error) {
	secret := make([]byte, SecretSize)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("generate TOTP secret: %w", err)
	}
	return secret, nil
}

var secretEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// EncodeSecret returns secret as unpadded upper-case base32, the form
// authenticator apps take when the key is typed in.
func EncodeSecret(secret []byte) string {
	return secretEncoding.EncodeToString(secret)
}

// GroupKey splits s into groups of four characters separated by single
// spaces, to make a key easier to read and type. Spaces already in s are
// dropped first.
func GroupKey(s string) string {
	s = strings.ReplaceAll(s, " ", "")
	var b strings.Builder
	n := 0
	for _, r := range s {
		if n > 0 && n%4 == 0 {
			b.WriteByte(' ')
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}

// Step returns the number of the time step t falls in, for steps of period
// seconds counted from the Unix epoch (rounding down, also before 1970).
// It panics if period is not positive; Params.Validate rules that out.
func Step(t time.Time, period int) int64 {
	sec, p := t.Unix(), int64(period)
	step := sec / p
	if sec%p != 0 && sec < 0 {
		step--
	}
	return step
}

// Match reports whether code is the valid code for any time step in
// [Step(now)-skew, Step(now)+skew], and if so returns the oldest such step.
// It is MatchAfter with no step used yet.
func Match(secret []byte, p Params, code string, now time.Time, skew int) (step int64, ok bool) {
	return MatchAfter(secret, p, code, now, skew, math.MinInt64)
}

// MatchAfter is like Match but only considers steps strictly greater than
// after, the last step the caller accepted for this secret. Storing the
// returned step and passing it back as after on the next attempt makes each
// code usable once, and also refuses any code older than one already used.
//
// code must be exactly p.Digits ASCII digits once surrounding white space is
// trimmed. Malformed codes, invalid p, a secret shorter than MinSecretSize
// and a skew outside [0, MaxSkew] never match. All candidate steps in the
// window are computed and compared in constant time, whichever matches.
func MatchAfter(secret []byte, p Params, code string, now time.Time, skew int, after int64) (step int64, ok bool) {
	if len(code) > maxCodeInput || len(secret) < MinSecretSize || skew < 0 || skew > MaxSkew {
		return 0, false
	}
	if p.Validate() != nil {
		return 0, false
	}
	code = strings.TrimSpace(code)
	if !isDigits(code, p.Digits) {
		return 0, false
	}
	alg, _ := p.algorithm()
	opts := hotp.ValidateOpts{Digits: pqotp.Digits(p.Digits), Algorithm: alg}
	encoded := EncodeSecret(secret)

	current := Step(now, p.Period)
	found := false
	for s := current - int64(skew); s <= current+int64(skew); s++ {
		if s < 0 {
			continue // HOTP counters are unsigned; no code exists before 1970.
		}
		want, err := hotp.GenerateCodeCustom(encoded, uint64(s), opts)
		if err != nil {
			return 0, false
		}
		eq := subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1
		if eq && s > after && !found {
			step, found = s, true
		}
	}
	return step, found
}

// isDigits reports whether s is exactly n ASCII digits.
func isDigits(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// URL returns the otpauth:// key URI that authenticator apps scan, in the
// format of Google's "Key Uri Format": the label is "issuer:account", and
// the issuer is repeated in the issuer parameter. An empty issuer is left
// out. An issuer containing a colon is left out of the label (but kept in
// the parameter), because the label uses the colon as its separator.
func URL(issuer, account string, secret []byte, p Params) string {
	label := escapeLabel(account)
	if issuer != "" && !strings.Contains(issuer, ":") {
		label = escapeLabel(issuer) + ":" + label
	}
	q := []string{"secret=" + EncodeSecret(secret)}
	if issuer != "" {
		q = append(q, "issuer="+escapeQuery(issuer))
	}
	q = append(q,
		"algorithm="+escapeQuery(p.Algorithm),
		"digits="+strconv.Itoa(p.Digits),
		"period="+strconv.Itoa(p.Period),
	)
	return "otpauth://totp/" + label + "?" + strings.Join(q, "&")
}

// escapeLabel percent-encodes one part of the label, including any colon
// (the label's separator) and "+" (which some apps read as a space).
func escapeLabel(s string) string {
	return labelEscaper.Replace(url.PathEscape(s))
}

var labelEscaper = strings.NewReplacer(":", "%3A", "+", "%2B")

// escapeQuery percent-encodes a query value, writing a space as %20 rather
// than "+", which some authenticator apps show literally.
func escapeQuery(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}

// Bounds for the size argument of QRPNG, in pixels.
const (
	MinQRSize = 64
	MaxQRSize = 2048
)

// quietZone is the white border around a QR code, in modules, that ISO/IEC
// 18004 requires for reliable scanning.
const quietZone = 4

// QRPNG returns a size×size PNG image of a QR code (error correction level
// M) encoding otpauthURL, with a white quiet zone around it.
func QRPNG(otpauthURL string, size int) ([]byte, error) {
	if size < MinQRSize || size > MaxQRSize {
		return nil, fmt.Errorf("QR code size must be between %d and %d pixels, got %d", MinQRSize, MaxQRSize, size)
	}
	code, err := qr.Encode(otpauthURL, qr.M, qr.Auto)
	if err != nil {
		return nil, fmt.Errorf("encode QR code: %w", err)
	}
	modules := code.Bounds().Dx()
	scale := size / (modules + 2*quietZone)
	if scale < 1 {
		return nil, fmt.Errorf("QR code of %d modules does not fit in %d pixels", modules, size)
	}
	scaled, err := barcode.Scale(code, modules*scale, modules*scale)
	if err != nil {
		return nil, fmt.Errorf("scale QR code: %w", err)
	}

	img := image.NewPaletted(image.Rect(0, 0, size, size), color.Palette{color.White, color.Black})
	// Index 0 is white, so the new image is already all quiet zone.
	off := (size - modules*scale) / 2
	r := image.Rect(off, off, off+modules*scale, off+modules*scale)
	draw.Draw(img, r, scaled, scaled.Bounds().Min, draw.Src)

	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("encode PNG: %w", err)
	}
	return buf.Bytes(), nil
}

// MaxDriftWindow is the largest window, in time steps either way, that
// DriftOffset searches: an hour of 15-second steps. It bounds the work
// done per attempt.
const MaxDriftWindow = 240

// DriftOffset reports whether code is the valid code for a time step
// outside the accepted window [Step(now)-skew, Step(now)+skew] but within
// window steps of the current one, and if so returns that step's offset
// from the current one (positive: the code is of a later step, so the
// device's clock is ahead). When codes of several such steps are equal,
// the offset nearest to zero wins (the earlier on a tie). The code is never
// accepted for such a step: this only explains a refusal (a phone whose
// clock is off). The same input rules as MatchAfter apply; a window not
// above skew, or above MaxDriftWindow, finds nothing. Every candidate step
// is computed and compared in constant time.
func DriftOffset(secret []byte, p Params, code string, now time.Time, skew, window int) (offset int64, ok bool) {
	if len(code) > maxCodeInput || len(secret) < MinSecretSize || skew < 0 || skew > MaxSkew {
		return 0, false
	}
	if window <= skew || window > MaxDriftWindow || p.Validate() != nil {
		return 0, false
	}
	code = strings.TrimSpace(code)
	if !isDigits(code, p.Digits) {
		return 0, false
	}
	alg, _ := p.algorithm()
	opts := hotp.ValidateOpts{Digits: pqotp.Digits(p.Digits), Algorithm: alg}
	encoded := EncodeSecret(secret)
	current := Step(now, p.Period)
	found := false
	// Outward from the accepted window, the earlier step first: the first
	// match is the nearest.
	for d := int64(skew) + 1; d <= int64(window); d++ {
		for _, off := range [2]int64{-d, d} {
			s := current + off
			if s < 0 {
				continue
			}
			want, err := hotp.GenerateCodeCustom(encoded, uint64(s), opts)
			if err != nil {
				return 0, false
			}
			eq := subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1
			if eq && !found {
				offset, found = off, true
			}
		}
	}
	return offset, found
}
