// Package gate is the login in front of a site, as plain Go: the proxied
// request's check (a complete session, or no way through) and the flows of
// the gate's own pages (password, code, Security settings, password
// change), each an http handler over the store, the sessions, the users and
// the pages. It imports no Caddy: the adapter in caddymodule fills a Config
// and passes requests in.
package gate

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/backupcodes"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/otp"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/secrets"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/session"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/ui"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/users"
)

// Config is what a Gate is made of, checked and with defaults filled in
// by the caller.
type Config struct {
	// Prefix is the path of the gate's own pages, such as /.auth.
	Prefix string
	// Issuer labels the account in authenticator apps; Product names the
	// site on the pages and in the backup codes file.
	Issuer, Product string
	// Realm is the account system the gate belongs to.
	Realm string
	// Cookie is the session cookie's name.
	Cookie string
	// UserHeader carries the user's name upstream; StripHeaders are
	// further identity headers removed from every request.
	UserHeader   string
	StripHeaders []string
	// RequireTwoFactor sends users without a second factor to enable one.
	RequireTwoFactor bool
	// PathRules ask more on some paths: a second factor, or a fresh
	// check of it (stepup.go).
	PathRules []PathRule
	// Assertion, when set, adds a signed identity assertion or further
	// identity headers to proxied requests (assertion.go).
	Assertion *Assertion
	// TOTP are the parameters of new enrolments; Skew the steps of drift
	// allowed either way.
	TOTP otp.Params
	Skew int
	// ClockHintWindow is how far from the current time step a wrong
	// code is looked for, to tell the user that their device's clock is
	// off (clock_hint.go); 0 turns the hints off.
	ClockHintWindow time.Duration
	// Idle, Lifetime and CodeTimeout bound a session: unused, in all, and
	// while it still owes the code.
	Idle, Lifetime, CodeTimeout time.Duration
	// RememberBrowser is how long a browser may skip the code step after
	// its user asked for it (remember_browser); 0 for never.
	RememberBrowser time.Duration
	// WebAuthn is the relying party of security keys (webauthn.go).
	WebAuthn WebAuthnConfig
	// Users are who may log in; Pages what the pages look like.
	Users *users.Directory
	Pages *ui.Pages
	// Now is the clock of everything the gate does.
	Now func() time.Time
	// ClientIP is the client's address as the server resolved it (behind
	// trusted proxies only), for throttling and the audit log.
	ClientIP func(*http.Request) string
	// Logger gets failures; Audit the security events.
	Logger, Audit *zap.Logger
}

// State is what a gate works on once its store is open.
type State struct {
	// DB is the realm's view of the store.
	DB store.Store
	// Attempts count guesses, reserved before each check.
	Attempts store.Attempts
	// Sealer encrypts TOTP secrets; Codes hashes backup codes.
	Sealer *secrets.Sealer
	Codes  *backupcodes.Hasher
}

// Gate checks proxied requests and serves the login and Security pages.
type Gate struct {
	// The fields the proxied path reads (Admit) come first, side by side:
	// two cache lines, then the identity set's.
	prefix         string
	now            func() time.Time
	sessions       *session.Store // set by Open
	users          *users.Directory
	pathRules      []pathRule // nil for none
	assertion      *asserter  // set by Open when configured
	userHeader     string
	rememberCookie string
	identity       identitySet // identity header names, folded by headerKey

	issuer, product, realm      string
	cookie                      string
	requireTwoFactor            bool
	params                      otp.Params
	skew                        int
	clockHint                   time.Duration
	clientIP                    func(*http.Request) string
	logger, audit               *zap.Logger
	ui                          *ui.Pages
	webauthn                    WebAuthnConfig // security keys (webauthn.go)
	crossSite                   *http.CrossOriginProtection
	idle, lifetime, codeTimeout time.Duration
	remember                    time.Duration
	assertionConfig             *Assertion

	// Set by Open.
	db       store.Store
	attempts store.Attempts
	sealer   *secrets.Sealer
	codes    *backupcodes.Hasher
}

// New returns a gate of c, which opens once its store does (Open).
func New(c Config) *Gate {
	strip := c.StripHeaders
	if c.Assertion != nil && c.Assertion.Header != "" {
		strip = append(append([]string(nil), strip...), c.Assertion.Header)
	}
	g := &Gate{
		prefix: c.Prefix, issuer: c.Issuer, product: c.Product, realm: c.Realm,
		cookie: c.Cookie, userHeader: c.UserHeader, requireTwoFactor: c.RequireTwoFactor,
		params: c.TOTP, skew: c.Skew, clockHint: c.ClockHintWindow, now: c.Now, clientIP: c.ClientIP,
		logger: c.Logger, audit: c.Audit, users: c.Users, ui: c.Pages,
		identity: identityHeaders(c.UserHeader, strip...),
		idle:     c.Idle, lifetime: c.Lifetime, codeTimeout: c.CodeTimeout,
		remember: c.RememberBrowser, rememberCookie: RememberCookie(c.Cookie),
		assertionConfig: c.Assertion,
	}
	if len(c.PathRules) > 0 {
		rules, err := parsePathRules(c.PathRules)
		if err != nil {
			// The caller checked the patterns (ParsePathPattern); should
			// one be wrong all the same, every path asks the most.
			c.Logger.Error("bad path rule; applying it to every path", zap.Error(err))
			rules = []pathRule{{pattern: pathPattern{kind: '*'}, maxAge: time.Nanosecond}}
		}
		g.pathRules = rules
	}
	g.crossSite = http.NewCrossOriginProtection()
	g.crossSite.SetDenyHandler(http.HandlerFunc(g.denyCrossSite))
	g.webauthn = c.WebAuthn
	return g
}

// Open gives the gate its store; it serves no request before.
func (g *Gate) Open(s State) error {
	g.db, g.attempts, g.sealer, g.codes = s.DB, s.Attempts, s.Sealer, s.Codes
	g.sessions = session.New(s.DB, session.Config{
		Cookie: g.cookie, Idle: g.idle, Lifetime: g.lifetime, Pending: g.codeTimeout, Now: g.now,
	})
	if g.assertionConfig != nil {
		a, err := newAsserter(*g.assertionConfig, s, g.now)
		if err != nil {
			return err
		}
		g.assertion = a
	}
	return nil
}

// StatusError is a refusal the server answers with its own error handling
// (Code is the HTTP status): 401 for a request that is not a page
// navigation and has no session, 503 when the store fails.
type StatusError struct {
	Code int
	Err  error
}

func (e *StatusError) Error() string { return e.Err.Error() }

// errNotLoggedIn is the 401 of a request without a session; one value, so
// that refusing costs no allocation here.
var errNotLoggedIn = &StatusError{Code: http.StatusUnauthorized, Err: errors.New("two_factor: not logged in")}

func (e *StatusError) Unwrap() error { return e.Err }

// Admit serves the gate's own pages under the prefix, and checks every
// other request: it returns the user's name when the request may go on
// (identity headers set, the session cookie and client copies of identity
// headers removed), as an interface value (made once for a configured
// user), or nil when it has answered the request (a page, a redirect). An
// error is a *StatusError or the request's context ending.
func (g *Gate) Admit(w http.ResponseWriter, r *http.Request) (any, error) {
	p := cleanPath(r.URL.Path)
	if strings.HasPrefix(p, g.prefix) && (len(p) == len(g.prefix) || p[len(g.prefix)] == '/') {
		return nil, g.serveOwn(w, r, strings.TrimPrefix(p, g.prefix))
	}
	now := g.now()
	// adm.Rec is the store's record, shared: read, never changed, and its
	// user is adm.User.
	adm, ok, err := g.sessions.Lookup(r, now)
	if err != nil {
		return nil, g.storeFailed(err)
	}
	if !ok {
		return nil, g.refuse(w, r, nil)
	}
	rec := adm.Rec
	if rec.Stage != store.StageFull {
		return nil, g.refuse(w, r, rec)
	}
	name, user, ok := g.sessionName(adm.User, rec)
	if !ok {
		// The user was removed from the configuration, or a configured
		// user now has the name of the store user the session is for.
		return nil, g.refuse(w, r, nil)
	}
	switch err := g.sessions.KeepAdmitted(r.Context(), adm, now); {
	case errors.Is(err, store.ErrNotFound):
		return nil, g.refuse(w, r, nil) // ended meanwhile, by a logout
	case err != nil:
		return nil, g.storeFailed(err)
	}
	if g.pathRules != nil {
		if done, err := g.checkPaths(w, r, p, adm, now); done {
			return nil, err
		}
	}
	cookies := stripIdentity(r, &g.identity)
	g.sessions.RemoveFrom(r, cookies, g.rememberCookie)
	r.Header.Set(g.userHeader, name)
	if g.assertion != nil {
		if err := g.assertIdentity(r, adm, name, now); err != nil {
			return nil, g.storeFailed(err)
		}
	}
	if user == nil {
		user = name
	}
	return user, nil
}

// sessionName returns the name of the session rec of user, from memory: the
// configured user (with the name as an interface value, made once), or
// for a store user the name kept in the session (a store user's deletion
// or password change ends their sessions in the same transaction, so a
// live session is a live user). A session is good only for a user of the
// origin it was made for, and a configured user's only while the
// configuration has the password hash it was made with: changing a user
// line ends their sessions.
func (g *Gate) sessionName(user string, rec *store.Session) (string, any, bool) {
	if acct := g.users.Lookup(user); acct != nil {
		return acct.Name, acct.Boxed, rec.Origin == store.OriginConfig && bytes.Equal(rec.Cred, acct.Cred)
	}
	return rec.Name, nil, rec.Origin == store.OriginStore && rec.Name != ""
}

// refuse answers a request for the site without a complete session: a
// browser navigation goes to the step the session is at, anything else
// gets 401.
func (g *Gate) refuse(w http.ResponseWriter, r *http.Request, rec *store.Session) error {
	if !isNavigation(r) {
		return errNotLoggedIn
	}
	target := g.prefix + "/login?next=" + urlQueryEscape(r.URL.RequestURI())
	if rec != nil {
		switch rec.Stage {
		case store.StagePassword:
			target = g.prefix + "/code"
		case store.StageEnrol:
			target = g.prefix + "/security"
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, target, http.StatusFound)
	return nil
}

// storeFailed fails closed: a store that cannot be read lets nothing
// through and turns nothing off.
func (g *Gate) storeFailed(err error) error {
	g.logger.Error("store failed; refusing the request", zap.Error(err))
	return &StatusError{Code: http.StatusServiceUnavailable, Err: fmt.Errorf("two_factor store: %w", err)}
}
