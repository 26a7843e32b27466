package caddymodule

import (
	"net/http"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Audit events go to the logger http.handlers.two_factor.audit, one log
// entry per event. The "event" field is a stable name for machines; the
// message is for people. No entry ever holds a password, a code, a TOTP
// key or a session ID, and a name typed at the login is logged only when
// it is a user's (people type passwords into the name field).
const (
	evLoginOK          = "login.ok"
	evLoginFailed      = "login.failed"
	evCodeOK           = "code.ok"
	evCodeFailed       = "code.failed"
	evBackupCodeUsed   = "backup_code.used"
	evEnabled          = "two_factor.enabled"
	evDisabled         = "two_factor.disabled"
	evReset            = "two_factor.reset"
	evCodesRegenerated = "backup_codes.regenerated"
	evThrottled        = "throttled"
	evSessionsRevoked  = "sessions.revoked"
	evPasswordChanged  = "password.changed"
	evUserAdded        = "user.added"
	evUserDeleted      = "user.deleted"
	evThrottleCleared  = "throttle.cleared"
	evBackedUp         = "store.backed_up"
	evRestored         = "store.restored"
)

// Steps where a factor is checked (the "step" field).
const (
	stepLogin       = "login"
	stepCode        = "code"
	stepEnable      = "enable"
	stepDisable     = "disable"
	stepBackupCodes = "backup_codes"
	stepPassword    = "password_change"
)

// auditRequest logs an event a request caused. The event name and the
// client address come first, before any field that may hold text a client
// chose, so that a log filter anchored on them (fail2ban) cannot be fooled
// by a crafted name.
func (h *Handler) auditRequest(r *http.Request, lvl zapcore.Level, event, msg string, fields ...zap.Field) {
	if ce := h.audit.Check(lvl, msg); ce != nil {
		ce.Write(append([]zap.Field{zap.String("event", event), zap.String("client_ip", clientIP(r))}, fields...)...)
	}
}

// auditThrottled logs and counts an attempt refused while throttled.
func (h *Handler) auditThrottled(r *http.Request, f factor, user string, wait time.Duration) {
	metricThrottled.WithLabelValues(string(f)).Inc()
	fields := []zap.Field{zap.String("factor", string(f)), zap.Duration("retry_after", wait)}
	if user != "" {
		fields = append(fields, zap.String("user", user))
	}
	h.auditRequest(r, zapcore.WarnLevel, evThrottled, "attempt refused while throttled", fields...)
}

// auditAdmin logs an event an operator caused through the admin API.
func auditAdmin(l *zap.Logger, r *http.Request, event, msg string, fields ...zap.Field) {
	if l == nil {
		return
	}
	ip := r.RemoteAddr
	l.Info(msg, append([]zap.Field{zap.String("event", event), zap.String("by", "admin_api"), zap.String("remote_addr", ip)}, fields...)...)
}
