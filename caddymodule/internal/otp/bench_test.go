package otp

import (
	"testing"
	"time"

	pqotp "github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// BenchmarkMatchAfter is the CPU side of a TOTP check: the codes of the
// window (skew 1: three steps) computed and compared in constant time.
func BenchmarkMatchAfter(b *testing.B) {
	secret, err := NewSecret()
	if err != nil {
		b.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	code, err := totp.GenerateCodeCustom(EncodeSecret(secret), now,
		totp.ValidateOpts{Period: 30, Digits: pqotp.DigitsSix, Algorithm: pqotp.AlgorithmSHA1})
	if err != nil {
		b.Fatal(err)
	}
	wrong := "000000"
	if code == wrong {
		wrong = "000001"
	}
	for _, tc := range []struct {
		name string
		code string
		want bool
	}{{"right", code, true}, {"wrong", wrong, false}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, ok := MatchAfter(secret, Default, tc.code, now, 1, 0); ok != tc.want {
					b.Fatalf("got %v, want %v", ok, tc.want)
				}
			}
		})
	}
}
