// Package audit names the security events the gate and its operators
// cause, as they appear in the audit log (the logger
// http.handlers.two_factor.audit), and logs an operator's.
package audit

import (
	"net/http"

	"go.uber.org/zap"
)

// Audit events go to the logger http.handlers.two_factor.audit, one log
// entry per event. The "event" field is a stable name for machines; the
// message is for people. No entry ever holds a password, a code, a TOTP
// key or a session ID, and a name typed at the login is logged only when
// it is a user's (people type passwords into the name field).
const (
	EvLoginOK          = "login.ok"
	EvLoginFailed      = "login.failed"
	EvCodeOK           = "code.ok"
	EvCodeFailed       = "code.failed"
	EvBackupCodeUsed   = "backup_code.used"
	EvEnabled          = "two_factor.enabled"
	EvDisabled         = "two_factor.disabled"
	EvReset            = "two_factor.reset"
	EvCodesRegenerated = "backup_codes.regenerated"
	EvThrottled        = "throttled"
	EvSessionsRevoked  = "sessions.revoked"
	EvPasswordChanged  = "password.changed"
	EvUserAdded        = "user.added"
	EvUserDeleted      = "user.deleted"
	EvThrottleCleared  = "throttle.cleared"
	EvBackedUp         = "store.backed_up"
	EvRestored         = "store.restored"

	// EvCodeClockDrift follows a code.failed whose code was right for a
	// time step outside the accepted window but within clock_hint_window:
	// the device's clock is off (fields offset_steps, offset_seconds).
	EvCodeClockDrift = "code.clock_drift"

	// EvSessionEnded: a user ended one of their sessions on the Security
	// page.
	EvSessionEnded = "session.ended"
	// EvBrowserRemembered: a browser will not be asked for a code (the
	// option remember_browser); EvBrowsersForgotten: remembered browsers
	// were forgotten by their user or an operator.
	EvBrowserRemembered = "browser.remembered"
	EvBrowsersForgotten = "browsers.forgotten"
	// EvStepUpRequired: a browser was sent for a fresh code (reason
	// step_up_required) or to turn a second factor on (reason
	// two_factor_required) by a step_up or require_two_factor path;
	// EvStepUpOK: the fresh code was accepted.
	EvStepUpRequired = "step_up.required"
	EvStepUpOK       = "step_up.ok"
)

// Steps where a factor is checked (the "step" field).
const (
	StepLogin       = "login"
	StepCode        = "code"
	StepEnable      = "enable"
	StepDisable     = "disable"
	StepBackupCodes = "backup_codes"
	StepPassword    = "password_change"
	StepStepUp      = "step_up"
)

// Admin logs an event an operator caused through the admin API.
func Admin(l *zap.Logger, r *http.Request, event, msg string, fields ...zap.Field) {
	if l == nil {
		return
	}
	ip := r.RemoteAddr
	l.Info(msg, append([]zap.Field{zap.String("event", event), zap.String("by", "admin_api"), zap.String("remote_addr", ip)}, fields...)...)
}
