package gate

import (
	"net/http"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/audit"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/ui"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/users"
)

// afterLogin is where a session at rec's stage goes next.
func (g *Gate) afterLogin(rec *store.Session) string {
	switch rec.Stage {
	case store.StagePassword:
		return g.prefix + "/code"
	case store.StageEnrol:
		return g.prefix + "/security"
	}
	if next := SafeNext(rec.Next); next != "" {
		return next
	}
	return "/"
}

func (g *Gate) loginPage(w http.ResponseWriter, r *http.Request) error {
	next := SafeNext(r.URL.Query().Get("next"))
	rec, _, err := g.current(r)
	if err != nil {
		return g.unavailable(w, err)
	}
	if rec != nil && rec.Stage == store.StageFull {
		if next == "" {
			next = "/"
		}
		return g.seeOther(w, r, next)
	}
	return g.ui.Render(w, http.StatusOK, "login", ui.Page{Title: "login.title", Next: next})
}

// login is the first factor. A wrong password and an unknown name take the
// same time and get the same answer; either counts against the name's
// budget and the client's.
func (g *Gate) login(w http.ResponseWriter, r *http.Request) error {
	name := r.PostForm.Get("username")
	password := r.PostForm.Get("password")
	next := SafeNext(r.PostForm.Get("next"))
	key, ok := users.CanonicalName(name)
	if !ok {
		key = "\x00invalid"
	}
	res, wait, err := g.reserve(r, factorPassword, key)
	if err != nil {
		return g.unavailable(w, err)
	}
	if wait > 0 {
		g.auditThrottled(r, factorPassword, "", wait)
		return g.throttled(w, wait, "/login", "error.back_login")
	}
	acct, ok, err := g.users.Verify(r.Context(), g.db, key, password)
	if err != nil {
		g.settle(r, res, store.Unchecked)
		if r.Context().Err() != nil {
			return err // the client went away while waiting for a hash slot
		}
		return g.unavailable(w, err)
	}
	if !ok {
		// The reservation stays counted as the failure.
		metricLogins.WithLabelValues("failed").Inc()
		if acct == nil {
			g.auditRequest(r, zapcore.WarnLevel, audit.EvLoginFailed, "login failed", zap.String("step", audit.StepLogin), zap.String("reason", "unknown_user"))
		} else {
			g.auditRequest(r, zapcore.WarnLevel, audit.EvLoginFailed, "login failed", zap.String("user", acct.Name), zap.String("step", audit.StepLogin), zap.String("reason", "wrong_password"))
		}
		return g.ui.Render(w, http.StatusUnauthorized, "login", ui.Page{Title: "login.title", Next: next, Error: GenericFailure})
	}
	g.settle(r, res, store.Succeeded)
	g.rehash(r.Context(), acct, password)
	a, err := g.db.Account(r.Context(), acct.Key)
	if err != nil {
		return g.unavailable(w, err)
	}
	rec := &store.Session{User: acct.Key, Stage: store.StageFull, Next: next, Origin: acct.Origin, Cred: acct.Cred,
		AuthTime: g.now(), Methods: store.MethodPassword}
	if acct.Origin == store.OriginStore {
		rec.Name = acct.Name
	}
	g.stamp(r, rec)
	remembered := false
	switch {
	case a.Enabled():
		// A browser remembered for this user skips the code step.
		if remembered, err = g.remembered(r.Context(), r, acct); err != nil {
			return g.unavailable(w, err)
		}
		if !remembered {
			rec.Stage = store.StagePassword
		}
	case g.requireTwoFactor:
		rec.Stage = store.StageEnrol
	}
	if err := g.sessions.Start(w, r, rec); err != nil {
		return g.unavailable(w, err)
	}
	metricLogins.WithLabelValues("ok").Inc()
	g.auditRequest(r, zapcore.InfoLevel, audit.EvLoginOK, "password accepted", zap.String("user", acct.Name),
		zap.Bool("code_required", rec.Stage == store.StagePassword), zap.Bool("remembered_browser", remembered))
	if rec.Stage != store.StagePassword {
		// Logged in with the password alone (2FA off, or a remembered
		// browser).
		g.event(r, acct.Key, store.Event{Kind: store.EventLogin, Method: string(factorPassword)})
	}
	return g.seeOther(w, r, g.afterLogin(rec))
}

// pendingSession returns the session of a user who owes the code, or
// redirects the request to where its session belongs.
func (g *Gate) pendingSession(w http.ResponseWriter, r *http.Request) (*store.Session, bool, error) {
	rec, _, err := g.current(r)
	if err != nil {
		return nil, false, g.unavailable(w, err)
	}
	if rec == nil {
		return nil, false, g.seeOther(w, r, g.prefix+"/login")
	}
	if rec.Stage != store.StagePassword {
		return nil, false, g.seeOther(w, r, g.afterLogin(rec))
	}
	return rec, true, nil
}

func (g *Gate) codePage(w http.ResponseWriter, r *http.Request) error {
	rec, ok, err := g.pendingSession(w, r)
	if !ok {
		return err
	}
	p := ui.Page{Title: "code.title", Remember: g.rememberText(w)}
	if err := g.offerKey(r, rec, &p); err != nil {
		return g.unavailable(w, err)
	}
	return g.ui.Render(w, http.StatusOK, "code", p)
}

// code is the second factor: a TOTP code or one unused backup code.
func (g *Gate) code(w http.ResponseWriter, r *http.Request) error {
	rec, ok, err := g.pendingSession(w, r)
	if !ok {
		return err
	}
	input := r.PostForm.Get("code")
	f := codeFactor(input)
	name, _, _ := g.sessionName(rec.User, rec)
	attempt, wait, err := g.reserve(r, f, rec.User)
	if err != nil {
		return g.unavailable(w, err)
	}
	if wait > 0 {
		g.auditThrottled(r, f, name, wait)
		return g.throttled(w, wait, "/code", "error.back_code")
	}
	a, err := g.db.Account(r.Context(), rec.User)
	if err != nil {
		g.settle(r, attempt, store.Unchecked)
		return g.unavailable(w, err)
	}
	if !a.Enabled() {
		// Two-factor authentication was turned off meanwhile: start over.
		g.settle(r, attempt, store.Unchecked)
		if err := g.sessions.End(w, r); err != nil {
			return g.unavailable(w, err)
		}
		return g.seeOther(w, r, g.prefix+"/login")
	}
	res, err := g.checkCode(r.Context(), a, input)
	if err != nil {
		g.settle(r, attempt, store.Unchecked)
		return g.unavailable(w, err)
	}
	g.recordCode(r, audit.StepCode, &users.Account{Name: name, Key: rec.User}, res)
	if !res.ok {
		p := ui.Page{Title: "code.title", Error: GenericFailure, BackupFailed: f == factorBackup, Remember: g.rememberText(w)}
		p.KeyLogin, p.HasApp, p.Script = len(a.Credentials) > 0, a.TOTP != nil, len(a.Credentials) > 0
		clockHintOn(&p, res.driftSeconds())
		return g.ui.Render(w, http.StatusUnauthorized, "code", p)
	}
	g.settle(r, attempt, store.Succeeded)
	rec.Stage = store.StageFull
	rec.AuthTime, rec.Methods = g.now(), rec.Methods|store.MethodPassword|store.MethodOTP
	target := g.afterLogin(rec)
	rec.Next = ""
	// The token is stored before the session starts and its cookie set
	// after: if either write fails, the answer is 503 and no browser
	// holds a token (one stored meanwhile is never presented, and expires).
	var token string
	if g.remember > 0 && r.PostForm.Get("remember") == "on" {
		if token, err = g.rememberBrowser(r, rec); err != nil {
			return g.unavailable(w, err)
		}
	}
	if err := g.sessions.Start(w, r, rec); err != nil {
		return g.unavailable(w, err)
	}
	g.event(r, rec.User, store.Event{Kind: store.EventLogin, Method: string(res.method)})
	if token != "" {
		g.setRememberCookie(w, token)
		g.auditRequest(r, zapcore.InfoLevel, audit.EvBrowserRemembered, "browser remembered", zap.String("user", name), zap.Duration("for", g.remember))
	}
	return g.seeOther(w, r, target)
}
