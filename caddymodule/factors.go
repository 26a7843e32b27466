package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/backupcodes"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/otp"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store"
)

// codeFactor says which budget a code attempt counts against: anything
// that is not a well-formed backup code counts as a TOTP guess.
func codeFactor(input string) factor {
	if backupcodes.Kind(compactCode(input)) == backupcodes.KindBackup {
		return factorBackup
	}
	return factorTOTP
}

// maxCodeInput bounds what is read of a code field.
const maxCodeInput = 64

// compactCode drops the spaces and dashes people type inside codes ("123
// 456", "abcde-fghjk"); input too long to be a code is returned unchanged
// and fails as it is.
func compactCode(input string) string {
	if len(input) > maxCodeInput {
		return input
	}
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '-' {
			return -1
		}
		return r
	}, input)
}

// secretAAD binds a sealed TOTP secret to its user and purpose, so that a
// sealed value copied to another record does not open.
func secretAAD(purpose, user string) []byte {
	return []byte("two_factor/" + purpose + "/" + user)
}

// checkCode verifies a TOTP code or a backup code for the account and, when
// it is right, uses it up in one atomic store operation: a TOTP step is
// accepted once and only after the newest step used so far; a backup code
// is accepted once, ever. A wrong code changes nothing. The error is for a
// store or key failure only.
func (h *Handler) checkCode(ctx context.Context, a store.Account, input string) (bool, error) {
	input = compactCode(input)
	switch backupcodes.Kind(input) {
	case backupcodes.KindTOTP:
		secret, err := h.sealer.Open(a.TOTP.SealedSecret, secretAAD("totp", a.Name))
		if err != nil {
			return false, fmt.Errorf("opening the TOTP secret of %s: %w", a.Name, err)
		}
		p := otp.Params{Algorithm: a.TOTP.Algorithm, Digits: a.TOTP.Digits, Period: a.TOTP.Period}
		step, ok := otp.MatchAfter(secret, p, input, h.now(), h.skew, a.TOTP.LastStep)
		if !ok {
			return false, nil
		}
		err = h.db.UseTOTPStep(ctx, a.Name, step)
		if errors.Is(err, store.ErrStepUsed) || errors.Is(err, store.ErrNotEnabled) {
			return false, nil
		}
		return err == nil, err
	case backupcodes.KindBackup:
		norm, ok := backupcodes.Normalize(input)
		if !ok {
			return false, nil
		}
		_, err := h.db.UseBackupCode(ctx, a.Name, h.codes.Hash(a.Name, norm))
		if errors.Is(err, store.ErrCodeUnknown) || errors.Is(err, store.ErrNotEnabled) {
			return false, nil
		}
		return err == nil, err
	}
	return false, nil
}

// verdict is the outcome of checking factors for a settings change.
type verdict struct {
	ok   bool
	wait time.Duration // > 0: throttled; nothing was checked
}

// confirmPassword checks the account password for a settings change, on
// the same budget as the login.
func (h *Handler) confirmPassword(ctx context.Context, acct *account, password, ip string) (verdict, error) {
	if wait := h.limits.wait(factorPassword, acct.key, ip); wait > 0 {
		return verdict{wait: wait}, nil
	}
	_, ok, err := h.users.verify(ctx, acct.key, password)
	if err != nil {
		return verdict{}, err
	}
	if !ok {
		h.limits.fail(factorPassword, acct.key, ip)
		return verdict{}, nil
	}
	h.limits.succeed(factorPassword, acct.key)
	return verdict{ok: true}, nil
}

// confirmBoth checks the password, then (only if it is right) the code,
// using the code up. Either being wrong changes nothing else.
func (h *Handler) confirmBoth(ctx context.Context, acct *account, a store.Account, password, code, ip string) (verdict, error) {
	f := codeFactor(code)
	if wait := max(h.limits.wait(factorPassword, acct.key, ip), h.limits.wait(f, acct.key, ip)); wait > 0 {
		return verdict{wait: wait}, nil
	}
	v, err := h.confirmPassword(ctx, acct, password, ip)
	if err != nil || !v.ok {
		return v, err
	}
	good, err := h.checkCode(ctx, a, code)
	if err != nil {
		return verdict{}, err
	}
	if !good {
		h.limits.fail(f, acct.key, ip)
		return verdict{}, nil
	}
	h.limits.succeed(f, acct.key)
	return verdict{ok: true}, nil
}
