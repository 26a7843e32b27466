package gate

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/audit"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/backupcodes"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/otp"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/secrets"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/users"
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

// codeResult is the outcome of checking a code.
type codeResult struct {
	ok     bool
	method factor // factorTOTP or factorBackup
	left   int    // backup codes left after a backup code was used
	// used: the code is right, but for the TOTP step accepted last, so it
	// was already used (a code is accepted once); not ok.
	used bool
	// drift, for a refused TOTP code, is the offset in steps (of period
	// seconds) of the step it was right for, outside the accepted window
	// (clock_hint.go); 0 for none.
	drift  int64
	period int
	// reason, for a refused security key, says why (for the audit log).
	reason string
	// key, for an accepted security key, is the RFC 8176 method it
	// proved: swk for a passkey that may be copied to other devices
	// (backup eligible), hwk for a key bound to its device.
	key store.Methods
}

// driftSeconds is the offset of a drifted code in seconds.
func (c codeResult) driftSeconds() int64 { return c.drift * int64(c.period) }

// checkCode verifies a TOTP code or a backup code for the account and, when
// it is right, uses it up in one atomic store operation: a TOTP step is
// accepted once and only after the newest step used so far; a backup code
// is accepted once, ever. A wrong code changes nothing. The error is for a
// store or key failure only.
func (g *Gate) checkCode(ctx context.Context, a store.Account, input string) (codeResult, error) {
	input = compactCode(input)
	res := codeResult{method: codeFactor(input)}
	switch backupcodes.Kind(input) {
	case backupcodes.KindTOTP:
		if a.TOTP == nil {
			return res, nil // security keys only: no app to check against
		}
		secret, err := g.sealer.Open(a.TOTP.SealedSecret, secretAAD("totp", a.Name))
		if err != nil {
			return res, fmt.Errorf("opening the TOTP secret of %s: %w", a.Name, err)
		}
		p := otp.Params{Algorithm: a.TOTP.Algorithm, Digits: a.TOTP.Digits, Period: a.TOTP.Period}
		now := g.now()
		step, ok := otp.MatchAfter(secret, p, input, now, g.skew, a.TOTP.LastStep)
		if !ok {
			// Right for the step accepted last: the code was just used.
			if step, ok := otp.Match(secret, p, input, now, g.skew); ok && step == a.TOTP.LastStep {
				res.used = true
				return res, nil
			}
			res.drift, res.period = g.driftSteps(secret, p, input, now), p.Period
			return res, nil
		}
		err = g.db.UseTOTPStep(ctx, a.Name, step)
		if errors.Is(err, store.ErrStepUsed) {
			// Another request used this step (or a newer one) meanwhile.
			res.used = true
			return res, nil
		}
		if errors.Is(err, store.ErrNotEnabled) {
			return res, nil
		}
		res.ok = err == nil
		return res, err
	case backupcodes.KindBackup:
		norm, ok := backupcodes.Normalize(input)
		if !ok {
			return res, nil
		}
		left, err := g.db.UseBackupCode(ctx, a.Name, g.codes.Hash(a.Name, norm))
		if errors.Is(err, store.ErrCodeUnknown) || errors.Is(err, store.ErrNotEnabled) {
			return res, nil
		}
		res.ok, res.left = err == nil, left
		return res, err
	}
	return res, nil
}

// recordCode logs and counts the outcome of a code check, and keeps it in
// the user's recent activity when it was a failure or used a backup code.
func (g *Gate) recordCode(r *http.Request, step string, acct *users.Account, res codeResult) {
	switch {
	case !res.ok:
		g.event(r, acct.Key, store.Event{Kind: store.EventCodeFailed, Step: step, Method: string(res.method), DriftSeconds: res.driftSeconds()})
		if res.drift != 0 {
			defer g.auditDrift(r, step, acct, res)
		}
	case res.method == factorBackup:
		g.event(r, acct.Key, store.Event{Kind: store.EventBackupUsed, Step: step, Count: res.left})
	}
	outcome := "failed"
	if res.ok {
		outcome = "ok"
	}
	metricCodes.WithLabelValues(string(res.method), outcome).Inc()
	user := zap.String("user", acct.Name)
	switch {
	case !res.ok && res.used:
		g.auditRequest(r, zapcore.WarnLevel, audit.EvCodeFailed, "one-time code rejected", user, zap.String("step", step), zap.String("method", string(res.method)), zap.String("reason", "already_used"))
	case !res.ok && res.reason != "":
		g.auditRequest(r, zapcore.WarnLevel, audit.EvCodeFailed, "security key rejected", user, zap.String("step", step), zap.String("method", string(res.method)), zap.String("reason", res.reason))
	case !res.ok:
		g.auditRequest(r, zapcore.WarnLevel, audit.EvCodeFailed, "one-time code rejected", user, zap.String("step", step), zap.String("method", string(res.method)))
	case res.method == factorBackup:
		metricBackupUsed.Inc()
		g.auditRequest(r, zapcore.InfoLevel, audit.EvBackupCodeUsed, "backup code used", user, zap.String("step", step), zap.Int("backup_codes_left", res.left))
	default:
		g.auditRequest(r, zapcore.InfoLevel, audit.EvCodeOK, "one-time code accepted", user, zap.String("step", step), zap.String("method", string(res.method)))
	}
}

// verdict is the outcome of checking factors for a settings change.
type verdict struct {
	ok   bool
	wait time.Duration // > 0: throttled; nothing was checked
	// used: the password was right and the code was right for a TOTP step
	// already used; the change was refused.
	used bool
	// driftSeconds: the password was right and the code was right for a
	// time this far away (clock_hint.go); the change was refused.
	driftSeconds int64
}

// codeUsed is (the catalogue key of) the message for a settings change
// whose password was right and whose code was already used: the user is
// to wait for the next code. It tells nothing that the user does not
// already know, having typed the right password and a right code.
const codeUsed = "error.code_used"

// failure is the catalogue key of the message for a refused change.
func (v verdict) failure() string {
	if v.used {
		return codeUsed
	}
	return GenericFailure
}

// confirmPassword checks the account password for a settings change, on
// the same budget as the login.
func (g *Gate) confirmPassword(r *http.Request, step string, acct *users.Account, password string) (verdict, error) {
	return g.confirm(r, step, acct, password, "", nil)
}

// confirmBoth checks the password, then (only if it is right) the code,
// using the code up. Either being wrong changes nothing else.
func (g *Gate) confirmBoth(r *http.Request, step string, acct *users.Account, a store.Account, password, code string) (verdict, error) {
	if assertion := r.PostForm.Get("assertion"); code == "" && assertion != "" {
		// A security key instead of a code (webauthn.go).
		rec, _, err := g.current(r)
		if err != nil || rec == nil {
			return verdict{}, errors.Join(err, errors.New("no session for a security key's assertion"))
		}
		return g.confirmSecond(r, rec, step, acct, a, password, "", []byte(assertion))
	}
	return g.confirm(r, step, acct, password, codeFactor(code), func() (codeResult, error) {
		return g.checkCode(r.Context(), a, code)
	})
}

// confirm checks the password and then, if check is not nil, a code of
// factor f (check verifies it and uses it up). An attempt at each factor is
// reserved before anything is checked, so that concurrent guesses are held
// to the sequential budget; when either must wait, nothing is checked or
// counted. A wrong password leaves the code's reservation taken back
// (the code was not checked); a failure to check takes back what it had
// not decided.
func (g *Gate) confirm(r *http.Request, step string, acct *users.Account, password string, f factor, check func() (codeResult, error)) (verdict, error) {
	pw, wait, err := g.reserve(r, factorPassword, acct.Key)
	if err != nil {
		return verdict{}, err
	}
	if wait > 0 {
		g.auditThrottled(r, factorPassword, acct.Name, wait)
		return verdict{wait: wait}, nil
	}
	var code store.Reservation
	if check != nil {
		code, wait, err = g.reserve(r, f, acct.Key)
		if err != nil || wait > 0 {
			g.settle(r, pw, store.Unchecked)
		}
		if err != nil {
			return verdict{}, err
		}
		if wait > 0 {
			g.auditThrottled(r, f, acct.Name, wait)
			return verdict{wait: wait}, nil
		}
	}
	_, ok, err := g.users.Verify(r.Context(), g.db, acct.Key, password)
	if err != nil || !ok {
		if check != nil {
			g.settle(r, code, store.Unchecked)
		}
	}
	if err != nil {
		g.settle(r, pw, store.Unchecked)
		return verdict{}, err
	}
	if !ok {
		g.auditRequest(r, zapcore.WarnLevel, audit.EvLoginFailed, "wrong password", zap.String("user", acct.Name), zap.String("step", step), zap.String("reason", "wrong_password"))
		return verdict{}, nil
	}
	g.settle(r, pw, store.Succeeded)
	if check == nil {
		return verdict{ok: true}, nil
	}
	res, err := check()
	if err != nil {
		g.settle(r, code, store.Unchecked)
		return verdict{}, err
	}
	g.recordCode(r, step, acct, res)
	if !res.ok {
		return verdict{used: res.used, driftSeconds: res.driftSeconds()}, nil
	}
	g.settle(r, code, store.Succeeded)
	return verdict{ok: true}, nil
}

// SealTOTP seals a user's TOTP secret as enabling stores it.
func SealTOTP(sealer *secrets.Sealer, user string, secret []byte) ([]byte, error) {
	return sealer.Seal(secret, secretAAD("totp", user))
}
