package caddymodule

import (
	"net/http"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/ui"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/users"
)

// afterLogin is where a session at rec's stage goes next.
func (h *Handler) afterLogin(rec *store.Session) string {
	switch rec.Stage {
	case store.StagePassword:
		return h.Prefix + "/code"
	case store.StageEnrol:
		return h.Prefix + "/security"
	}
	if next := safeNext(rec.Next); next != "" {
		return next
	}
	return "/"
}

func (h *Handler) loginPage(w http.ResponseWriter, r *http.Request) error {
	next := safeNext(r.URL.Query().Get("next"))
	rec, _, err := h.current(r)
	if err != nil {
		return h.unavailable(w, err)
	}
	if rec != nil && rec.Stage == store.StageFull {
		if next == "" {
			next = "/"
		}
		return h.seeOther(w, r, next)
	}
	return h.ui.Render(w, http.StatusOK, "login", ui.Page{Title: "login.title", Next: next})
}

// login is the first factor. A wrong password and an unknown name take the
// same time and get the same answer; either counts against the name's
// budget and the client's.
func (h *Handler) login(w http.ResponseWriter, r *http.Request) error {
	name := r.PostForm.Get("username")
	password := r.PostForm.Get("password")
	next := safeNext(r.PostForm.Get("next"))
	key, ok := users.CanonicalName(name)
	if !ok {
		key = "\x00invalid"
	}
	res, wait, err := h.reserve(r, factorPassword, key)
	if err != nil {
		return h.unavailable(w, err)
	}
	if wait > 0 {
		h.auditThrottled(r, factorPassword, "", wait)
		return h.throttled(w, wait, "/login", "error.back_login")
	}
	acct, ok, err := h.users.Verify(r.Context(), h.db, key, password)
	if err != nil {
		h.settle(r, res, store.Unchecked)
		if r.Context().Err() != nil {
			return err // the client went away while waiting for a hash slot
		}
		return h.unavailable(w, err)
	}
	if !ok {
		// The reservation stays counted as the failure.
		metricLogins.WithLabelValues("failed").Inc()
		if acct == nil {
			h.auditRequest(r, zapcore.WarnLevel, evLoginFailed, "login failed", zap.String("step", stepLogin), zap.String("reason", "unknown_user"))
		} else {
			h.auditRequest(r, zapcore.WarnLevel, evLoginFailed, "login failed", zap.String("user", acct.Name), zap.String("step", stepLogin), zap.String("reason", "wrong_password"))
		}
		return h.ui.Render(w, http.StatusUnauthorized, "login", ui.Page{Title: "login.title", Next: next, Error: genericFailure})
	}
	h.settle(r, res, store.Succeeded)
	h.rehash(r.Context(), acct, password)
	a, err := h.db.Account(r.Context(), acct.Key)
	if err != nil {
		return h.unavailable(w, err)
	}
	rec := &store.Session{User: acct.Key, Stage: store.StageFull, Next: next, Origin: acct.Origin, Cred: acct.Cred}
	if acct.Origin == store.OriginStore {
		rec.Name = acct.Name
	}
	switch {
	case a.Enabled():
		rec.Stage = store.StagePassword
	case h.RequireTwoFactor:
		rec.Stage = store.StageEnrol
	}
	if err := h.sessions.Start(w, r, rec); err != nil {
		return h.unavailable(w, err)
	}
	metricLogins.WithLabelValues("ok").Inc()
	h.auditRequest(r, zapcore.InfoLevel, evLoginOK, "password accepted", zap.String("user", acct.Name),
		zap.Bool("code_required", rec.Stage == store.StagePassword))
	return h.seeOther(w, r, h.afterLogin(rec))
}

// pendingSession returns the session of a user who owes the code, or
// redirects the request to where its session belongs.
func (h *Handler) pendingSession(w http.ResponseWriter, r *http.Request) (*store.Session, bool, error) {
	rec, _, err := h.current(r)
	if err != nil {
		return nil, false, h.unavailable(w, err)
	}
	if rec == nil {
		return nil, false, h.seeOther(w, r, h.Prefix+"/login")
	}
	if rec.Stage != store.StagePassword {
		return nil, false, h.seeOther(w, r, h.afterLogin(rec))
	}
	return rec, true, nil
}

func (h *Handler) codePage(w http.ResponseWriter, r *http.Request) error {
	if _, ok, err := h.pendingSession(w, r); !ok {
		return err
	}
	return h.ui.Render(w, http.StatusOK, "code", ui.Page{Title: "code.title"})
}

// code is the second factor: a TOTP code or one unused backup code.
func (h *Handler) code(w http.ResponseWriter, r *http.Request) error {
	rec, ok, err := h.pendingSession(w, r)
	if !ok {
		return err
	}
	input := r.PostForm.Get("code")
	f := codeFactor(input)
	name, _ := h.sessionName(rec)
	attempt, wait, err := h.reserve(r, f, rec.User)
	if err != nil {
		return h.unavailable(w, err)
	}
	if wait > 0 {
		h.auditThrottled(r, f, name, wait)
		return h.throttled(w, wait, "/code", "error.back_code")
	}
	a, err := h.db.Account(r.Context(), rec.User)
	if err != nil {
		h.settle(r, attempt, store.Unchecked)
		return h.unavailable(w, err)
	}
	if !a.Enabled() {
		// Two-factor authentication was turned off meanwhile: start over.
		h.settle(r, attempt, store.Unchecked)
		if err := h.sessions.End(w, r); err != nil {
			return h.unavailable(w, err)
		}
		return h.seeOther(w, r, h.Prefix+"/login")
	}
	res, err := h.checkCode(r.Context(), a, input)
	if err != nil {
		h.settle(r, attempt, store.Unchecked)
		return h.unavailable(w, err)
	}
	h.recordCode(r, stepCode, &users.Account{Name: name, Key: rec.User}, res)
	if !res.ok {
		return h.ui.Render(w, http.StatusUnauthorized, "code", ui.Page{Title: "code.title", Error: genericFailure, BackupFailed: f == factorBackup})
	}
	h.settle(r, attempt, store.Succeeded)
	rec.Stage = store.StageFull
	target := h.afterLogin(rec)
	rec.Next = ""
	if err := h.sessions.Start(w, r, rec); err != nil {
		return h.unavailable(w, err)
	}
	return h.seeOther(w, r, target)
}
