package otp

import (
	"testing"
	"time"

	pqotp "github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// codeAt computes a code with pquerna/otp directly.
func driftCode(t *testing.T, secret []byte, p Params, at time.Time) string {
	t.Helper()
	c, err := totp.GenerateCodeCustom(EncodeSecret(secret), at, totp.ValidateOpts{
		Period: uint(p.Period), Digits: pqotp.Digits(p.Digits), Algorithm: pqotp.AlgorithmSHA1,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestDriftOffset finds the step of a code outside the accepted window and
// within the drift window, either way, and nothing else.
func TestDriftOffset(t *testing.T) {
	secret := []byte("0123456789abcdefghij")
	p := Default
	now := time.Unix(1_700_000_015, 0)
	step := time.Duration(p.Period) * time.Second
	for _, tc := range []struct {
		steps  int
		skew   int
		window int
		want   int64
		ok     bool
	}{
		{3, 1, 20, 3, true},
		{-4, 1, 20, -4, true},
		{2, 1, 20, 2, true},
		{-2, 1, 20, -2, true},
		{20, 1, 20, 20, true},
		{-20, 1, 20, -20, true},
		{21, 1, 20, 0, false},  // beyond the window
		{30, 1, 20, 0, false},  // +30 steps: 15 minutes
		{-30, 1, 20, 0, false}, // -30 steps
		{1, 1, 20, 0, false},   // inside the accepted window: not drift
		{0, 1, 20, 0, false},
		{-1, 1, 20, 0, false},
		{2, 2, 20, 0, false}, // a wider skew accepts it; not drift
		{3, 1, 1, 0, false},  // a window not above the skew finds nothing
		{3, 1, 0, 0, false},
		{3, 1, MaxDriftWindow + 1, 0, false},
	} {
		code := driftCode(t, secret, p, now.Add(time.Duration(tc.steps)*step))
		// The code must not also be valid at a nearer step (a collision
		// would make the expected offset another one).
		if _, ok := Match(secret, p, code, now, 0); ok && tc.steps != 0 {
			continue
		}
		got, ok := DriftOffset(secret, p, code, now, tc.skew, tc.window)
		if ok != tc.ok || got != tc.want {
			t.Errorf("code of step %+d, skew %d, window %d: got %d %v, want %d %v", tc.steps, tc.skew, tc.window, got, ok, tc.want, tc.ok)
		}
		// Never a match: a drifted code is refused.
		if tc.ok {
			if _, ok := Match(secret, p, code, now, tc.skew); ok {
				t.Errorf("code of step %+d matched within skew %d", tc.steps, tc.skew)
			}
		}
	}
}

// TestDriftOffsetRefusesBadInputs: malformed codes, short secrets, bad
// parameters and skews find nothing.
func TestDriftOffsetRefusesBadInputs(t *testing.T) {
	secret := []byte("0123456789abcdefghij")
	now := time.Unix(1_700_000_015, 0)
	code := driftCode(t, secret, Default, now.Add(3*30*time.Second))
	if _, ok := DriftOffset(secret, Default, code, now, 1, 20); !ok {
		t.Fatal("the well-formed case finds nothing")
	}
	for name, f := range map[string]func() bool{
		"short secret": func() bool { _, ok := DriftOffset(secret[:10], Default, code, now, 1, 20); return ok },
		"letters":      func() bool { _, ok := DriftOffset(secret, Default, "12a456", now, 1, 20); return ok },
		"too long":     func() bool { _, ok := DriftOffset(secret, Default, code+"0", now, 1, 20); return ok },
		"huge input":   func() bool { _, ok := DriftOffset(secret, Default, string(make([]byte, 1000)), now, 1, 20); return ok },
		"bad params": func() bool {
			_, ok := DriftOffset(secret, Params{Algorithm: "MD5", Digits: 6, Period: 30}, code, now, 1, 20)
			return ok
		},
		"negative skew": func() bool { _, ok := DriftOffset(secret, Default, code, now, -1, 20); return ok },
		"skew too big":  func() bool { _, ok := DriftOffset(secret, Default, code, now, MaxSkew+1, 20); return ok },
	} {
		if f() {
			t.Errorf("%s: found an offset", name)
		}
	}
	// Spaces around the code are trimmed, as by Match.
	if got, ok := DriftOffset(secret, Default, " "+code+" ", now, 1, 20); !ok || got != 3 {
		t.Errorf("code with spaces: got %d %v, want 3 true", got, ok)
	}
	// Before 1970 no code exists: steps below zero are skipped.
	early := time.Unix(30, 0)
	if got, ok := DriftOffset(secret, Default, driftCode(t, secret, Default, time.Unix(0, 0)), early, 0, 5); !ok || got != -1 {
		t.Errorf("the code of step 0 at step 1 (skew 0): got %d %v, want -1 true", got, ok)
	}
}
