package gate

import (
	"context"
	"testing"
	"time"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/otp"
	pqotp "github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// BenchmarkCheckCode is the second factor's check with the store work it
// does: a TOTP code (open the sealed secret, compute and compare the codes
// of the window, record the step in a synced transaction) and a backup code
// (normalise, HMAC, remove it in a synced transaction).
func BenchmarkCheckCode(b *testing.B) {
	g, clock := newTestGate(b)
	ctx := context.Background()
	secret, codes := enrol(b, g, "alice")
	b.Run("totp", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			clock.advance(30 * time.Second) // a new step each time: a code is accepted once
			a, err := g.db.Account(ctx, "alice")
			if err != nil {
				b.Fatal(err)
			}
			res, err := g.checkCode(ctx, a, codeAt(b, secret, clock.now()))
			ok := res.ok
			if err != nil || !ok {
				b.Fatalf("got %v %v, want accepted", ok, err)
			}
		}
	})
	b.Run("backup", func(b *testing.B) {
		b.ReportAllocs()
		left := codes
		for b.Loop() {
			if len(left) == 0 {
				b.StopTimer()
				var hashes [][]byte
				var err error
				if left, hashes, err = NewBackupCodes(g.codes, "alice"); err != nil {
					b.Fatal(err)
				}
				if err := g.db.ReplaceBackupCodes(ctx, "alice", hashes); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			a, err := g.db.Account(ctx, "alice")
			if err != nil {
				b.Fatal(err)
			}
			res, err := g.checkCode(ctx, a, left[0])
			ok := res.ok
			if err != nil || !ok {
				b.Fatalf("got %v %v, want accepted", ok, err)
			}
			left = left[1:]
		}
	})
}

// codeAt is the TOTP code of secret at t.
func codeAt(tb testing.TB, secret []byte, t time.Time) string {
	tb.Helper()
	code, err := totp.GenerateCodeCustom(otp.EncodeSecret(secret), t, totp.ValidateOpts{Period: 30, Digits: pqotp.DigitsSix, Algorithm: pqotp.AlgorithmSHA1})
	if err != nil {
		tb.Fatal(err)
	}
	return code
}
