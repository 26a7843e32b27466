package gate

import (
	"net/http"
	"time"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/audit"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// auditRequest logs an event a request caused. The event name and the
// client address come first, before any field that may hold text a client
// chose, so that a log filter anchored on them (fail2ban) cannot be fooled
// by a crafted name.
func (g *Gate) auditRequest(r *http.Request, lvl zapcore.Level, event, msg string, fields ...zap.Field) {
	if ce := g.audit.Check(lvl, msg); ce != nil {
		ce.Write(append([]zap.Field{zap.String("event", event), zap.String("client_ip", g.clientIP(r))}, fields...)...)
	}
}

// auditThrottled logs and counts an attempt refused while throttled.
func (g *Gate) auditThrottled(r *http.Request, f factor, user string, wait time.Duration) {
	metricThrottled.WithLabelValues(string(f)).Inc()
	fields := []zap.Field{zap.String("factor", string(f)), zap.Duration("retry_after", wait)}
	if user != "" {
		fields = append(fields, zap.String("user", user))
	}
	g.auditRequest(r, zapcore.WarnLevel, audit.EvThrottled, "attempt refused while throttled", fields...)
}
