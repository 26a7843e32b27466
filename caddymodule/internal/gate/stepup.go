package gate

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/audit"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/ui"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/users"
)

// PathRule asks more of a session on the paths Pattern matches: a second
// factor enabled (require_two_factor <paths>), and when MaxAge is set, a
// second-factor check at most MaxAge old (step_up <path> <duration>).
type PathRule struct {
	Pattern string
	MaxAge  time.Duration
}

// pathPattern is a parsed path pattern: the forms of Caddy's path matcher
// without a wildcard in the middle.
type pathPattern struct {
	kind byte // '*' any path, 'p' prefix, 's' suffix, '=' exact
	s    string
}

// ParsePathPattern reads a path pattern: "*" (every path), "/x/*" or
// "/x*" (a prefix), "*.ext" (a suffix) or "/x" (that path only). Letter
// case does not count, as in Caddy's path matcher. Patterns match the
// clean path (cleanPath: decoded, dot segments and repeated or trailing
// slashes gone), so /x/* covers /x too.
func ParsePathPattern(p string) (pathPattern, error) {
	bad := func(why string) (pathPattern, error) {
		return pathPattern{}, fmt.Errorf("path %q: %s; want *, /prefix/*, *suffix or an exact /path", p, why)
	}
	switch {
	case p == "":
		return bad("empty")
	case strings.ContainsAny(p, "\x00\r\n\t ?#%\\"):
		return bad("has a character a path pattern cannot have")
	case p == "*":
		return pathPattern{kind: '*'}, nil
	case strings.HasPrefix(p, "*"):
		if strings.Contains(p[1:], "*") {
			return bad("more than one *")
		}
		return pathPattern{kind: 's', s: strings.ToLower(p[1:])}, nil
	case p[0] != '/':
		return bad("must start with / or *")
	case strings.HasSuffix(p, "*"):
		if strings.Contains(p[:len(p)-1], "*") {
			return bad("a * only at the start or the end")
		}
		return pathPattern{kind: 'p', s: strings.ToLower(p[:len(p)-1])}, nil
	case strings.Contains(p, "*"):
		return bad("a * only at the start or the end")
	}
	return pathPattern{kind: '=', s: strings.ToLower(p)}, nil
}

// matches reports whether the clean path p matches, in any letter case,
// without allocating.
func (m pathPattern) matches(p string) bool {
	switch m.kind {
	case '*':
		return true
	case 'p':
		if len(p) >= len(m.s) && strings.EqualFold(p[:len(m.s)], m.s) {
			return true
		}
		// A clean path has no trailing slash: /admin/* covers /admin/,
		// which is /admin once clean.
		return strings.HasSuffix(m.s, "/") && strings.EqualFold(p, m.s[:len(m.s)-1])
	case 's':
		return len(p) >= len(m.s) && strings.EqualFold(p[len(p)-len(m.s):], m.s)
	}
	return strings.EqualFold(p, m.s)
}

// pathRule is a PathRule with its pattern parsed.
type pathRule struct {
	pattern pathPattern
	maxAge  time.Duration
}

func parsePathRules(rules []PathRule) ([]pathRule, error) {
	out := make([]pathRule, 0, len(rules))
	for _, r := range rules {
		p, err := ParsePathPattern(r.Pattern)
		if err != nil {
			return nil, err
		}
		if r.MaxAge < 0 {
			return nil, fmt.Errorf("path %q: negative duration", r.Pattern)
		}
		out = append(out, pathRule{pattern: p, maxAge: r.MaxAge})
	}
	return out, nil
}

// The reasons of a step-up refusal, in the JSON body and the
// Two-Factor-Reason header of a 401.
const (
	ReasonStepUp    = "step_up_required"
	ReasonTwoFactor = "two_factor_required"
	// ReasonHeader names the reason of a 401 of a path rule.
	ReasonHeader = "Two-Factor-Reason"
)

// StepUpInfo is the JSON body of a 401 of a path rule.
type StepUpInfo struct {
	Error string `json:"error"`
	// MaxAge is the rule's window in seconds (step_up only).
	MaxAge int64 `json:"max_age,omitempty"`
	// Location is the page a browser would be sent to.
	Location string `json:"location"`
}

// checkPaths applies the path rules to a full session on the clean path
// p at now (the request's reading of the clock). It returns true when the
// request must not go on; it has then answered it (a redirect or a 401) or
// err says why not.
func (g *Gate) checkPaths(w http.ResponseWriter, r *http.Request, p string, adm store.Admission, now time.Time) (bool, error) {
	rec := adm.Rec
	need, maxAge := false, time.Duration(0)
	for i := range g.pathRules {
		if rule := &g.pathRules[i]; rule.pattern.matches(p) {
			need = true
			if rule.maxAge > 0 && (maxAge == 0 || rule.maxAge < maxAge) {
				maxAge = rule.maxAge
			}
		}
	}
	if !need {
		return false, nil
	}
	fresh := maxAge == 0 || !now.After(rec.AuthTime.Add(maxAge))
	if rec.Methods.SecondFactor() && fresh {
		return false, nil
	}
	// Only now the store: has the user a second factor? (A session that
	// skipped the code on a remembered browser has one without having
	// used it.)
	a, err := g.db.Account(r.Context(), adm.User)
	if err != nil {
		return true, g.storeFailed(err)
	}
	reason, target := ReasonStepUp, g.prefix+"/code?next="+urlQueryEscape(r.URL.RequestURI())
	switch {
	case !a.Enabled():
		reason, target = ReasonTwoFactor, g.prefix+"/security"
	case maxAge == 0:
		return false, nil // enabled, and no fresh check asked for
	}
	metricStepUp.WithLabelValues(reason).Inc()
	if isNavigation(r) {
		name, _, _ := g.sessionName(adm.User, rec)
		g.auditRequest(r, zapcore.InfoLevel, audit.EvStepUpRequired, "a fresher factor is required for the path",
			zap.String("user", name), zap.String("reason", reason))
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, target, http.StatusFound)
		return true, nil
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set(ReasonHeader, reason)
	w.WriteHeader(http.StatusUnauthorized)
	return true, json.NewEncoder(w).Encode(StepUpInfo{Error: reason, MaxAge: int64(maxAge / time.Second), Location: target})
}

// codeStepPage is GET P/code: the code step of a login, or for a full
// session sent here by a step_up path (with next), the same page asking
// for a fresh code.
func (g *Gate) codeStepPage(w http.ResponseWriter, r *http.Request) error {
	if r.URL.Query().Has("next") {
		rec, _, err := g.current(r)
		if err != nil {
			return g.unavailable(w, err)
		}
		if rec != nil && rec.Stage == store.StageFull {
			return g.stepUpPage(w, r, rec)
		}
	}
	return g.codePage(w, r)
}

// codeStep is POST P/code: the code step of a login, or a step-up's code
// (the form's step_up field) for a full session.
func (g *Gate) codeStep(w http.ResponseWriter, r *http.Request) error {
	if r.PostForm.Get("step_up") != "" {
		rec, _, err := g.current(r)
		if err != nil {
			return g.unavailable(w, err)
		}
		if rec != nil && rec.Stage == store.StageFull {
			return g.stepUpCode(w, r, rec)
		}
	}
	return g.code(w, r)
}

// stepUpNext is where a step-up returns to.
func stepUpNext(next string) string {
	if next = SafeNext(next); next == "" {
		next = "/"
	}
	return next
}

// stepUpPage shows the code step to a full session, to return to next.
func (g *Gate) stepUpPage(w http.ResponseWriter, r *http.Request, rec *store.Session) error {
	a, err := g.db.Account(r.Context(), rec.User)
	if err != nil {
		return g.unavailable(w, err)
	}
	if !a.Enabled() {
		return g.seeOther(w, r, g.prefix+"/security")
	}
	p := ui.Page{Title: "code.title", StepUp: true, Next: stepUpNext(r.URL.Query().Get("next"))}
	p.KeyLogin, p.HasApp, p.Script = len(a.Credentials) > 0, a.TOTP != nil, len(a.Credentials) > 0
	return g.ui.Render(w, http.StatusOK, "code", p)
}

// stepUpKey records a step-up's security key, checked by keyLogin, in the
// session (same ID) and answers where to return.
func (g *Gate) stepUpKey(w http.ResponseWriter, r *http.Request, rec *store.Session, name, next string, res codeResult) error {
	rec.AuthTime, rec.Methods = g.now(), rec.Methods|res.key
	switch err := g.sessions.Update(r.Context(), rec); {
	case errors.Is(err, store.ErrNotFound):
		return g.writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "not_logged_in", "redirect": g.prefix + "/login"})
	case err != nil:
		return g.keyUnavailable(w, err)
	}
	metricStepUp.WithLabelValues("ok").Inc()
	g.auditRequest(r, zapcore.InfoLevel, audit.EvStepUpOK, "fresh second factor accepted", zap.String("user", name), zap.String("method", string(res.method)))
	return g.writeJSON(w, http.StatusOK, map[string]string{"redirect": stepUpNext(next)})
}

// stepUpCode checks a step-up's code, as the code step does (same attempt
// budget, same codes), and on success records the check in the session,
// same ID, and returns to next.
func (g *Gate) stepUpCode(w http.ResponseWriter, r *http.Request, rec *store.Session) error {
	next := stepUpNext(r.PostForm.Get("next"))
	input := r.PostForm.Get("code")
	f := codeFactor(input)
	name, _, _ := g.sessionName(rec.User, rec)
	attempt, wait, err := g.reserve(r, f, rec.User)
	if err != nil {
		return g.unavailable(w, err)
	}
	if wait > 0 {
		g.auditThrottled(r, f, name, wait)
		return g.throttled(w, wait, "/code?next="+urlQueryEscape(next), "error.back_code")
	}
	a, err := g.db.Account(r.Context(), rec.User)
	if err != nil {
		g.settle(r, attempt, store.Unchecked)
		return g.unavailable(w, err)
	}
	if !a.Enabled() {
		g.settle(r, attempt, store.Unchecked)
		return g.seeOther(w, r, g.prefix+"/security")
	}
	res, err := g.checkCode(r.Context(), a, input)
	if err != nil {
		g.settle(r, attempt, store.Unchecked)
		return g.unavailable(w, err)
	}
	g.recordCode(r, audit.StepStepUp, &users.Account{Name: name, Key: rec.User}, res)
	if !res.ok {
		metricStepUp.WithLabelValues("failed").Inc()
		p := ui.Page{Title: "code.title", StepUp: true, Next: next, Error: GenericFailure, BackupFailed: f == factorBackup}
		p.KeyLogin, p.HasApp, p.Script = len(a.Credentials) > 0, a.TOTP != nil, len(a.Credentials) > 0
		clockHintOn(&p, res.driftSeconds())
		return g.ui.Render(w, http.StatusUnauthorized, "code", p)
	}
	g.settle(r, attempt, store.Succeeded)
	rec.AuthTime, rec.Methods = g.now(), rec.Methods|store.MethodOTP
	switch err := g.sessions.Update(r.Context(), rec); {
	case errors.Is(err, store.ErrNotFound):
		return g.seeOther(w, r, g.prefix+"/login") // ended meanwhile
	case err != nil:
		return g.unavailable(w, err)
	}
	metricStepUp.WithLabelValues("ok").Inc()
	g.auditRequest(r, zapcore.InfoLevel, audit.EvStepUpOK, "fresh second factor accepted", zap.String("user", name), zap.String("method", string(res.method)))
	return g.seeOther(w, r, next)
}
