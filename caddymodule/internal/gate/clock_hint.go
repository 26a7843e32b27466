package gate

import (
	"net/http"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/audit"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/otp"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/ui"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/users"
)

// Clock hints. A TOTP code depends on the time, so a phone whose clock is
// a few minutes off makes codes that are refused, and the user cannot
// tell why. When a wrong code is the right code of the user's key for a
// time step outside the accepted window (the skew) but within
// clock_hint_window, the code is refused as any wrong code (a failure
// counted against the attempt budget), and the page says that the
// device's clock seems about N minutes ahead or behind and how to fix it.
//
// It is no oracle: the hint is looked for only where a code is checked,
// that is after the right password (the code step of a session at the
// password stage, or the Security forms after their password check), on
// an attempt already reserved against the same budget as any code; a
// throttled attempt is not checked and gets no hint. Telling a holder of
// the password that a code of the right key was typed at the wrong time
// tells them nothing about the key. A drifted code is never accepted.

// driftSteps returns the offset, in time steps, of the step whose code
// input is, when it is outside the accepted window and within the clock
// hint window; 0 when there is none or hints are off.
func (g *Gate) driftSteps(secret []byte, p otp.Params, input string, now time.Time) int64 {
	if g.clockHint <= 0 || p.Period <= 0 {
		return 0
	}
	window := int(g.clockHint / (time.Duration(p.Period) * time.Second))
	window = min(window, otp.MaxDriftWindow)
	if window <= g.skew {
		return 0
	}
	off, ok := otp.DriftOffset(secret, p, input, now, g.skew, window)
	if !ok {
		return 0
	}
	return off
}

// driftMinutes turns an offset in seconds into whole minutes for people:
// rounded, at least 1, and whether the device is ahead. 0 for none.
func driftMinutes(seconds int64) (int, bool) {
	if seconds == 0 {
		return 0, false
	}
	ahead := seconds > 0
	if seconds < 0 {
		seconds = -seconds
	}
	return max(1, int((seconds+30)/60)), ahead
}

// clockHintOn puts the hint of a refused code that drifted on page p.
func clockHintOn(p *ui.Page, driftSeconds int64) {
	p.ClockMinutes, p.ClockAhead = driftMinutes(driftSeconds)
}

// auditDrift logs that a refused code was right for another time step.
func (g *Gate) auditDrift(r *http.Request, step string, acct *users.Account, res codeResult) {
	g.auditRequest(r, zapcore.WarnLevel, audit.EvCodeClockDrift, "one-time code of another time: the device's clock seems off",
		zap.String("user", acct.Name), zap.String("step", step),
		zap.Int64("offset_steps", res.drift), zap.Int64("offset_seconds", res.driftSeconds()))
}
