package gate

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/agent"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/audit"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/session"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/ui"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/users"
)

// Remembered browsers (the option remember_browser): after a correct code
// with "Don't ask for a code on this browser" ticked, the browser gets a
// cookie of its own, apart from the session's, holding 32 random bytes
// (unpadded base64url, like a session ID). The store keeps the SHA-256 of
// the cookie's value under the user, with its times, browser and address.
// A later correct password of that user, in this realm, on that browser,
// skips the code step. The password is still checked and counted as
// always; the token is only looked up after it was right, and only for the
// user it was right for, so it is worth nothing for another user or realm
// and tells nothing to someone who lacks the password. Every change of the
// user's second factors or password forgets all of them (in the store's
// transaction of the change); so do the Security page's "Forget" buttons,
// the operator's reset and `caddy two-factor browsers forget`.

// RememberCookie is the name of the remembered-browser cookie of a gate
// whose session cookie is called cookie: __Host- prefixed, so that it is
// Secure, for path / and of this host only.
func RememberCookie(cookie string) string {
	const host = "__Host-"
	if len(cookie) >= len(host) && cookie[:len(host)] == host {
		cookie = cookie[len(host):]
	}
	return host + cookie + "_remember"
}

// rememberToken returns the hash of the request's remembered-browser
// token, or nil when it has none of the right form.
func (g *Gate) rememberToken(r *http.Request) []byte {
	v, ok := session.CookieValue(r.Header, g.rememberCookie)
	if !ok {
		return nil
	}
	key, ok := session.ParseID(v)
	if !ok {
		return nil
	}
	return key
}

// remembered reports whether the request's browser is remembered for the
// user, whose password was right (cred is the fingerprint of a configured
// user's hash).
func (g *Gate) remembered(ctx context.Context, r *http.Request, acct *users.Account) (bool, error) {
	if g.remember <= 0 {
		return false, nil
	}
	hash := g.rememberToken(r)
	if hash == nil {
		return false, nil
	}
	rb, err := g.db.RememberedBrowser(ctx, acct.Key, hash)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	// A configured user's password changes in the configuration, which
	// the store does not see: the token is good only with the hash it was
	// made under.
	return bytes.Equal(rb.Cred, acct.Cred), nil
}

// rememberBrowser stores a new token for the session's user and returns
// it, for setRememberCookie.
func (g *Gate) rememberBrowser(r *http.Request, rec *store.Session) (string, error) {
	id, err := session.NewID()
	if err != nil {
		return "", err
	}
	now := g.now()
	rb := store.RememberedBrowser{
		Hash: session.KeyOf(id), Created: now, Expires: now.Add(g.remember),
		Agent: r.UserAgent(), Addr: g.clientIP(r), Cred: rec.Cred,
	}
	if err := g.db.RememberBrowser(r.Context(), rec.User, rb); err != nil {
		return "", err
	}
	return id, nil
}

// setRememberCookie gives the browser its token: HttpOnly, Secure,
// SameSite=Lax, for the whole site, as long as the token lives.
func (g *Gate) setRememberCookie(w http.ResponseWriter, token string) {
	http.SetCookie(w, &http.Cookie{
		Name: g.rememberCookie, Value: token, Path: "/", MaxAge: int(g.remember.Seconds()),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
}

// rememberText says for how long a browser is remembered, in the page's
// language: whole days, or hours under two days.
func (g *Gate) rememberText(w http.ResponseWriter) string {
	if g.remember <= 0 {
		return ""
	}
	loc := g.ui.Locale(w)
	if g.remember < 48*time.Hour {
		return loc.T("duration.hours", "count", int((g.remember+time.Hour-1)/time.Hour))
	}
	return loc.T("remember.days", "count", int((g.remember+24*time.Hour-1)/(24*time.Hour)))
}

// fillBrowsers adds the user's remembered browsers to the Security page.
func (g *Gate) fillBrowsers(r *http.Request, rec *store.Session, p *ui.Page) error {
	all, err := g.db.RememberedBrowsers(r.Context(), rec.User)
	if err != nil {
		return err
	}
	mine := g.rememberToken(r)
	for _, rb := range all {
		b, sys := agent.Parse(rb.Agent)
		p.Browsers = append(p.Browsers, ui.BrowserRow{
			Handle: Handle("browser", rb.Hash), Browser: b, System: sys, Addr: rb.Addr,
			Created: ui.NewTimeText(rb.Created), Until: ui.NewTimeText(rb.Expires),
			Current: mine != nil && bytes.Equal(mine, rb.Hash),
		})
	}
	return nil
}

// forgetBrowser forgets one of the user's remembered browsers.
func (g *Gate) forgetBrowser(w http.ResponseWriter, r *http.Request) error {
	rec, acct, a, ok, err := g.settingsSession(w, r)
	if !ok {
		return err
	}
	all, err := g.db.RememberedBrowsers(r.Context(), rec.User)
	if err != nil {
		return g.unavailable(w, err)
	}
	handle := r.PostForm.Get("browser")
	var hash []byte
	for _, rb := range all {
		if handle != "" && Handle("browser", rb.Hash) == handle {
			hash = rb.Hash
		}
	}
	if hash == nil {
		p, err := g.securityPageOf(w, r, rec, acct, a)
		if err != nil {
			return g.unavailable(w, err)
		}
		p.Error = "remember.not_found"
		return g.ui.Render(w, http.StatusNotFound, "security", p)
	}
	if err := g.db.ForgetBrowser(r.Context(), rec.User, hash); err != nil {
		return g.unavailable(w, err)
	}
	g.auditRequest(r, zapcore.InfoLevel, audit.EvBrowsersForgotten, "remembered browser forgotten by its user", zap.String("user", acct.Name), zap.Int("browsers", 1))
	return g.noticeSecurity(w, r, rec, "remember.forgotten")
}

// forgetBrowsers forgets all of the user's remembered browsers.
func (g *Gate) forgetBrowsers(w http.ResponseWriter, r *http.Request) error {
	rec, acct, _, ok, err := g.settingsSession(w, r)
	if !ok {
		return err
	}
	n, err := g.db.ForgetBrowsers(r.Context(), rec.User)
	if err != nil {
		return g.unavailable(w, err)
	}
	g.auditRequest(r, zapcore.InfoLevel, audit.EvBrowsersForgotten, "remembered browsers forgotten by their user", zap.String("user", acct.Name), zap.Int("browsers", n))
	return g.noticeSecurity(w, r, rec, "remember.all_forgotten")
}
