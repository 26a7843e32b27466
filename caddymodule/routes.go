package caddymodule

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/users"
)

// maxFormBytes bounds the body of a POST to the gate's pages.
const maxFormBytes = 16 << 10

// genericFailure is (the catalogue key of) the one message for a wrong
// name, password or code, so that no answer tells which one was wrong or
// whether the account exists.
const genericFailure = "error.wrong_details"

// serveOwn dispatches the gate's own routes (sub is the path under the
// prefix). Nothing here is ever passed to the next handler.
func (h *Handler) serveOwn(w http.ResponseWriter, r *http.Request, sub string) error {
	h.ui.SecurityHeaders(w)
	route, ok := ownRoutes[sub]
	back := h.Prefix + "/security"
	if ok && r.Method == http.MethodGet {
		back = h.Prefix + sub
		if r.URL.RawQuery != "" {
			back += "?" + r.URL.RawQuery
		}
	} else if ok && route.get != nil {
		back = h.Prefix + sub
	}
	w = h.ui.For(w, r, back)
	if !ok {
		return h.errorPage(w, http.StatusNotFound, "error.not_found_title", "error.not_found")
	}
	var serve func(*Handler, http.ResponseWriter, *http.Request) error
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		serve = route.get
	case http.MethodPost:
		serve = route.post
	}
	if serve == nil {
		w.Header().Set("Allow", route.allow())
		return h.errorPage(w, http.StatusMethodNotAllowed, "error.method_title", "error.method")
	}
	if r.Method == http.MethodPost {
		if err := h.crossSite.Check(r); err != nil {
			h.denyCrossSite(w, r)
			return nil
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		if err := r.ParseForm(); err != nil {
			return h.errorPage(w, http.StatusBadRequest, "error.bad_request_title", "error.bad_request")
		}
	}
	return serve(h, w, r)
}

type route struct {
	get, post func(*Handler, http.ResponseWriter, *http.Request) error
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
	"":                       {get: (*Handler).home},
	"/":                      {get: (*Handler).home},
	"/assets/style.css":      {get: (*Handler).stylesheet},
	"/assets/app.js":         {get: (*Handler).script},
	"/language":              {post: (*Handler).setLanguage},
	"/login":                 {get: (*Handler).loginPage, post: (*Handler).login},
	"/code":                  {get: (*Handler).codePage, post: (*Handler).code},
	"/security":              {get: (*Handler).securityPage},
	"/security/enable":       {get: (*Handler).enablePage, post: (*Handler).enable},
	"/security/disable":      {get: (*Handler).disablePage, post: (*Handler).disable},
	"/security/backup-codes": {get: (*Handler).backupCodesPage, post: (*Handler).newBackupCodes},
	"/security/password":     {get: (*Handler).passwordPage, post: (*Handler).changePassword},
	"/logout":                {post: (*Handler).logout},
	"/me":                    {get: (*Handler).me},
}

func (h *Handler) home(w http.ResponseWriter, r *http.Request) error {
	return h.seeOther(w, r, h.Prefix+"/security")
}

func (h *Handler) stylesheet(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	_, err := w.Write(h.ui.Stylesheet())
	return err
}

// script serves the pages' one script file. Every page works without it;
// it adds copy and print buttons to the backup codes.
func (h *Handler) script(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	_, err := w.Write(h.ui.Script())
	return err
}

// languageCookieAge is how long the language switch's choice is kept.
const languageCookieAge = 365 * 24 * time.Hour

// setLanguage is the language switch: it keeps the chosen language in a
// cookie and goes back to the page it was on. It is a POST, under the
// same cross-site protection as every other form, so no other site can
// change a user's language with a link.
func (h *Handler) setLanguage(w http.ResponseWriter, r *http.Request) error {
	back := safeNext(r.PostForm.Get("back"))
	if back == "" {
		back = h.Prefix + "/login"
	}
	tag := r.PostForm.Get("lang")
	if h.ui.Offers(tag) {
		http.SetCookie(w, &http.Cookie{
			Name: h.ui.LanguageCookie(), Value: tag, Path: "/",
			MaxAge: int(languageCookieAge.Seconds()), Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode,
		})
	}
	return h.seeOther(w, r, back)
}

// seeOther redirects to a path on this site. Locations are always built
// from configuration or a checked path, never from Host or X-Forwarded-*.
func (h *Handler) seeOther(w http.ResponseWriter, r *http.Request, target string) error {
	code := http.StatusSeeOther
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		code = http.StatusFound
	}
	w.Header().Set("Location", target)
	w.WriteHeader(code)
	return nil
}

// clientIP is the client address as Caddy resolved it (honouring
// trusted_proxies), never a raw X-Forwarded-For.
func clientIP(r *http.Request) string {
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok && ip != "" {
		return ip
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// current returns the request's live session and its user; a session of a
// user no longer configured, or of another origin, counts as none. A store
// user's account here has no hash: checking their password reads it anew.
func (h *Handler) current(r *http.Request) (*store.Session, *users.Account, error) {
	rec, err := h.sessions.Current(r)
	if err != nil || rec == nil {
		return nil, nil, err
	}
	name, ok := h.sessionName(rec)
	if !ok {
		return nil, nil, nil
	}
	acct := h.users.Lookup(rec.User)
	if acct == nil {
		acct = &users.Account{Name: name, Key: rec.User, Origin: store.OriginStore}
	}
	return rec, acct, nil
}

func (h *Handler) logout(w http.ResponseWriter, r *http.Request) error {
	if err := h.sessions.End(w, r); err != nil {
		return h.unavailable(w, err)
	}
	return h.seeOther(w, r, h.Prefix+"/login")
}

// meInfo is the JSON of P/me.
type meInfo struct {
	User            string `json:"user"`
	TwoFactor       bool   `json:"two_factor"`
	BackupCodesLeft int    `json:"backup_codes_left"`
	// SetupRequired is true while the site requires a second factor the
	// user has not enabled yet.
	SetupRequired bool `json:"setup_required"`
}

func (h *Handler) me(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/json")
	rec, acct, err := h.current(r)
	if err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		return json.NewEncoder(w).Encode(map[string]string{"error": "store unavailable"})
	}
	if rec == nil || rec.Stage == store.StagePassword {
		w.WriteHeader(http.StatusUnauthorized)
		return json.NewEncoder(w).Encode(map[string]string{"error": "not logged in"})
	}
	a, err := h.db.Account(r.Context(), rec.User)
	if err != nil {
		h.logger.Error("store failed", zap.Error(err))
		w.WriteHeader(http.StatusServiceUnavailable)
		return json.NewEncoder(w).Encode(map[string]string{"error": "store unavailable"})
	}
	return json.NewEncoder(w).Encode(meInfo{
		User: acct.Name, TwoFactor: a.Enabled(), BackupCodesLeft: len(a.BackupCodes),
		SetupRequired: rec.Stage == store.StageEnrol,
	})
}

// errWrongStage marks a request whose session is not at the step a page
// needs; the caller redirects.
var errWrongStage = errors.New("wrong stage")
