package gate

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/users"
)

// maxFormBytes bounds the body of a POST to the gate's pages.
const maxFormBytes = 16 << 10

// GenericFailure is (the catalogue key of) the one message for a wrong
// name, password or code, so that no answer tells which one was wrong or
// whether the account exists.
const GenericFailure = "error.wrong_details"

// serveOwn dispatches the gate's own routes (sub is the path under the
// prefix). Nothing here is ever passed to the next handler.
func (g *Gate) serveOwn(w http.ResponseWriter, r *http.Request, sub string) error {
	g.ui.SecurityHeaders(w)
	route, ok := ownRoutes[sub]
	back := g.prefix + "/security"
	if ok && r.Method == http.MethodGet {
		back = g.prefix + sub
		if r.URL.RawQuery != "" {
			back += "?" + r.URL.RawQuery
		}
	} else if ok && route.get != nil {
		back = g.prefix + sub
	}
	w = g.ui.For(w, r, back)
	if !ok {
		return g.errorPage(w, http.StatusNotFound, "error.not_found_title", "error.not_found")
	}
	var serve func(*Gate, http.ResponseWriter, *http.Request) error
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		serve = route.get
	case http.MethodPost:
		serve = route.post
	}
	if serve == nil {
		w.Header().Set("Allow", route.allow())
		return g.errorPage(w, http.StatusMethodNotAllowed, "error.method_title", "error.method")
	}
	if r.Method == http.MethodPost {
		if err := g.crossSite.Check(r); err != nil {
			g.denyCrossSite(w, r)
			return nil
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		if err := r.ParseForm(); err != nil {
			return g.errorPage(w, http.StatusBadRequest, "error.bad_request_title", "error.bad_request")
		}
	}
	return serve(g, w, r)
}

type route struct {
	get, post func(*Gate, http.ResponseWriter, *http.Request) error
}

func (rt route) allow() string {
	var m []string
	if rt.get != nil {
		m = append(m, "GET", "HEAD")
	}
	if rt.post != nil {
		m = append(m, "POST")
	}
	return strings.Join(m, ", ")
}

var ownRoutes = map[string]route{
	"":                              {get: (*Gate).home},
	"/":                             {get: (*Gate).home},
	"/assets/style.css":             {get: (*Gate).stylesheet},
	"/assets/app.js":                {get: (*Gate).script},
	"/language":                     {post: (*Gate).setLanguage},
	"/login":                        {get: (*Gate).loginPage, post: (*Gate).login},
	"/code":                         {get: (*Gate).codeStepPage, post: (*Gate).codeStep},
	"/security":                     {get: (*Gate).securityPage},
	"/security/enable":              {get: (*Gate).enablePage, post: (*Gate).enable},
	"/security/disable":             {get: (*Gate).disablePage, post: (*Gate).disable},
	"/security/backup-codes":        {get: (*Gate).backupCodesPage, post: (*Gate).newBackupCodes},
	"/security/password":            {get: (*Gate).passwordPage, post: (*Gate).changePassword},
	"/security/sessions/end":        {post: (*Gate).endSession},
	"/security/sessions/end-others": {post: (*Gate).endOtherSessions},
	"/security/browsers/forget":     {post: (*Gate).forgetBrowser},
	"/security/browsers/forget-all": {post: (*Gate).forgetBrowsers},
	"/security/keys/rename":         {post: (*Gate).renameKey},
	"/security/keys/remove":         {post: (*Gate).removeKey},
	"/webauthn/register/options":    {post: (*Gate).registerOptions},
	"/webauthn/register":            {post: (*Gate).register},
	"/webauthn/login/options":       {post: (*Gate).loginOptions},
	"/webauthn/login":               {post: (*Gate).keyLogin},
	"/logout":                       {post: (*Gate).logout},
	"/me":                           {get: (*Gate).me},
	"/.well-known/jwks.json":        {get: (*Gate).jwks},
}

func (g *Gate) home(w http.ResponseWriter, r *http.Request) error {
	return g.seeOther(w, r, g.prefix+"/security")
}

func (g *Gate) stylesheet(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	_, err := w.Write(g.ui.Stylesheet())
	return err
}

// script serves the pages' one script file. Every page works without it;
// it adds copy and print buttons to the backup codes.
func (g *Gate) script(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	_, err := w.Write(g.ui.Script())
	return err
}

// languageCookieAge is how long the language switch's choice is kept.
const languageCookieAge = 365 * 24 * time.Hour

// setLanguage is the language switch: it keeps the chosen language in a
// cookie and goes back to the page it was on. It is a POST, under the
// same cross-site protection as every other form, so no other site can
// change a user's language with a link.
func (g *Gate) setLanguage(w http.ResponseWriter, r *http.Request) error {
	back := SafeNext(r.PostForm.Get("back"))
	if back == "" {
		back = g.prefix + "/login"
	}
	tag := r.PostForm.Get("lang")
	if g.ui.Offers(tag) {
		http.SetCookie(w, &http.Cookie{
			Name: g.ui.LanguageCookie(), Value: tag, Path: "/",
			MaxAge: int(languageCookieAge.Seconds()), Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode,
		})
	}
	return g.seeOther(w, r, back)
}

// seeOther redirects to a path on this site. Locations are always built
// from configuration or a checked path, never from Host or X-Forwarded-*.
func (g *Gate) seeOther(w http.ResponseWriter, r *http.Request, target string) error {
	code := http.StatusSeeOther
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		code = http.StatusFound
	}
	w.Header().Set("Location", target)
	w.WriteHeader(code)
	return nil
}

// current returns the request's live session and its user; a session of a
// user no longer configured, or of another origin, counts as none. A store
// user's account here has no hash: checking their password reads it anew.
func (g *Gate) current(r *http.Request) (*store.Session, *users.Account, error) {
	rec, err := g.sessions.Current(r)
	if err != nil || rec == nil {
		return nil, nil, err
	}
	name, _, ok := g.sessionName(rec.User, rec)
	if !ok {
		return nil, nil, nil
	}
	acct := g.users.Lookup(rec.User)
	if acct == nil {
		acct = &users.Account{Name: name, Key: rec.User, Origin: store.OriginStore}
	}
	return rec, acct, nil
}

func (g *Gate) logout(w http.ResponseWriter, r *http.Request) error {
	// Whose session it was, for their recent activity; a failure to tell
	// leaves the logout to End, which answers for the store.
	rec, _, _ := g.current(r)
	if err := g.sessions.End(w, r); err != nil {
		return g.unavailable(w, err)
	}
	if rec != nil && rec.Stage != store.StagePassword {
		g.event(r, rec.User, store.Event{Kind: store.EventLogout, By: store.ByUser})
	}
	return g.seeOther(w, r, g.prefix+"/login")
}

// MeInfo is the JSON of P/me.
type MeInfo struct {
	User            string `json:"user"`
	TwoFactor       bool   `json:"two_factor"`
	BackupCodesLeft int    `json:"backup_codes_left"`
	// SetupRequired is true while the site requires a second factor the
	// user has not enabled yet.
	SetupRequired bool `json:"setup_required"`
}

func (g *Gate) me(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/json")
	rec, acct, err := g.current(r)
	if err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		return json.NewEncoder(w).Encode(map[string]string{"error": "store unavailable"})
	}
	if rec == nil || rec.Stage == store.StagePassword {
		w.WriteHeader(http.StatusUnauthorized)
		return json.NewEncoder(w).Encode(map[string]string{"error": "not logged in"})
	}
	a, err := g.db.Account(r.Context(), rec.User)
	if err != nil {
		g.logger.Error("store failed", zap.Error(err))
		w.WriteHeader(http.StatusServiceUnavailable)
		return json.NewEncoder(w).Encode(map[string]string{"error": "store unavailable"})
	}
	return json.NewEncoder(w).Encode(MeInfo{
		User: acct.Name, TwoFactor: a.Enabled(), BackupCodesLeft: len(a.BackupCodes),
		SetupRequired: rec.Stage == store.StageEnrol,
	})
}

// errWrongStage marks a request whose session is not at the step a page
// needs; the caller redirects.
var errWrongStage = errors.New("wrong stage")
