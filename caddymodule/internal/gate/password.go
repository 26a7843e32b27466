package gate

import (
	"context"
	"errors"
	"net/http"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/audit"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/ui"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/users"
)

// passwordView is the change-password page.
func (g *Gate) passwordView(acct *users.Account, a store.Account) ui.Page {
	return ui.Page{
		Title: "password.title", User: acct.Name, Enabled: a.Enabled(),
		PasswordChangeable: acct.Origin == store.OriginStore, MinPassword: users.MinPasswordChars,
		Keys: keyRows(a), Script: len(a.Credentials) > 0,
	}
}

func (g *Gate) passwordPage(w http.ResponseWriter, r *http.Request) error {
	_, acct, a, ok, err := g.settingsSession(w, r)
	if !ok {
		return err
	}
	return g.ui.Render(w, http.StatusOK, "password", g.passwordView(acct, a))
}

// changePassword sets a new password for a user kept in the store: it
// needs the current password, and a code when two-factor authentication
// is on. Every other session of the user ends; this one goes on under a
// new ID. A configured user's password is in the configuration, so the
// page only says so.
func (g *Gate) changePassword(w http.ResponseWriter, r *http.Request) error {
	rec, acct, a, ok, err := g.settingsSession(w, r)
	if !ok {
		return err
	}
	p := g.passwordView(acct, a)
	if acct.Origin != store.OriginStore {
		return g.ui.Render(w, http.StatusForbidden, "password", p)
	}
	newPassword := r.PostForm.Get("new_password")
	if err := users.CheckNewPassword(newPassword); err != nil {
		p.Error = newPasswordErrorKey(err)
		return g.ui.Render(w, http.StatusBadRequest, "password", p)
	}
	if newPassword != r.PostForm.Get("confirm_password") {
		p.Error = "password.error_mismatch"
		return g.ui.Render(w, http.StatusBadRequest, "password", p)
	}
	var v verdict
	if a.Enabled() {
		v, err = g.confirmBoth(r, audit.StepPassword, acct, a, r.PostForm.Get("current_password"), r.PostForm.Get("code"))
	} else {
		v, err = g.confirmPassword(r, audit.StepPassword, acct, r.PostForm.Get("current_password"))
	}
	if err != nil {
		if r.Context().Err() != nil {
			return err
		}
		return g.unavailable(w, err)
	}
	if v.wait > 0 {
		return g.throttled(w, v.wait, "/security", "error.back_security")
	}
	if !v.ok {
		p.Error = v.failure()
		clockHintOn(&p, v.driftSeconds)
		return g.ui.Render(w, http.StatusUnauthorized, "password", p)
	}
	newHash, err := g.users.Hash(r.Context(), true, newPassword)
	if err != nil {
		if r.Context().Err() != nil {
			return err
		}
		return g.unavailable(w, err)
	}
	ended, err := g.db.SetPassword(r.Context(), acct.Key, newHash, g.now(), rec.Key)
	if errors.Is(err, store.ErrNoUser) {
		// Deleted meanwhile: the session is over.
		if err := g.sessions.End(w, r); err != nil {
			return g.unavailable(w, err)
		}
		return g.seeOther(w, r, g.prefix+"/login")
	}
	if err != nil {
		return g.unavailable(w, err)
	}
	g.event(r, acct.Key, store.Event{Kind: store.EventPassword, By: store.ByUser, Count: ended})
	// The page is read before the session goes on under a new ID, so that
	// a failure to read it hands out no cookie (the change kept this
	// session: it is the one the list marks).
	view, err := g.securityPageOf(w, r, rec, acct, a)
	if err != nil {
		return g.unavailable(w, err)
	}
	view.Notice = "password.changed"
	if err := g.sessions.Start(w, r, rec); err != nil {
		return g.unavailable(w, err)
	}
	g.auditRequest(r, zapcore.InfoLevel, audit.EvPasswordChanged, "password changed", zap.String("user", acct.Name),
		zap.String("by", "user"), zap.Int("sessions_ended", ended))
	return g.ui.Render(w, http.StatusOK, "security", view)
}

// newPasswordErrorKey is the catalogue key that explains why a new
// password was refused.
func newPasswordErrorKey(err error) string {
	switch err {
	case users.ErrPasswordShort:
		return "password.error_short"
	case users.ErrPasswordLong:
		return "password.error_long"
	}
	return "password.error_utf8"
}

// rehash upgrades a store user's password hash to the configured
// parameters after the password proved right. A failure is logged and the
// login goes on: the old hash still works.
func (g *Gate) rehash(ctx context.Context, acct *users.Account, password string) {
	if acct.Origin != store.OriginStore || g.users.Current(acct.Stored) {
		return
	}
	newHash, err := g.users.Hash(ctx, true, password)
	if err != nil {
		g.logger.Warn("rehashing a password", zap.String("user", acct.Name), zap.Error(err))
		return
	}
	done, err := g.db.RehashPassword(ctx, acct.Key, acct.Stored, newHash)
	if err != nil {
		g.logger.Warn("rehashing a password", zap.String("user", acct.Name), zap.Error(err))
		return
	}
	if done {
		g.logger.Info("password hash upgraded to the configured argon2id parameters", zap.String("user", acct.Name))
	}
}
