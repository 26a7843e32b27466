package caddymodule

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"text/template/parse"
	"time"

	"go.uber.org/zap"
	"golang.org/x/text/language"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store"
	"github.com/caddy-two-factor/caddy-two-factor/templates"
)

// pageNames are the page templates; each is parsed with layout.html.
var pageNames = []string{"login", "code", "security", "enable", "disable", "backup_codes", "error", "password"}

// page is what every template gets. Title, Error, Notice, Message and
// BackText are message keys when a handler sets them; render replaces each
// with its text in the page's language.
type page struct {
	Title            string
	Product          string
	Logo             string
	Home             string // where the brand in the header leads (home_url)
	Prefix           string
	Lang             string // BCP 47 tag of the page's language
	Dir              string // ltr or rtl
	Languages        []languageChoice
	Back             string // where the language switch returns to
	User             string
	ShowNav          bool
	HideNav          bool // no way off the page but its own (backup codes)
	Error            string
	Notice           string
	Next             string
	QRCode           template.URL
	Secret           string
	AccountName      string
	OTPAuthURL       template.URL
	Digits           int
	Enabled          bool
	BackupLeft       int
	RequireTwoFactor bool
	BackupCodes      []string
	BackupText       template.URL
	BackupFailed     bool // the code page's error was for a backup code
	Message          string
	Wait             time.Duration
	Retry            string
	BackLink         string
	BackText         string
	// PasswordChangeable is true for a user kept in the store, who may
	// change their password on the Security pages.
	PasswordChangeable bool
	// MinPassword is the least number of characters of a new password.
	MinPassword int
}

// languageChoice is one entry of the language switch.
type languageChoice struct {
	Tag     string
	Name    string
	Current bool
}

// pageSet is everything the gate's pages are made of, ready to serve.
type pageSet struct {
	pages  map[string]map[string]*template.Template // language tag, page name
	langs  []*locale                                // offered, the default first
	picker *languagePicker
	css    []byte
	js     []byte
	csp    string
	cookie string // name of the language preference cookie

	logger *zap.Logger
	seen   sync.Map // message keys already logged as missing
}

// loadPages reads the catalogues, the templates, the stylesheet and the
// script, each file from templates_dir when it has one of that name, and
// checks that every message key the templates use exists.
func (h *Handler) loadPages() (*pageSet, error) {
	dir := h.TemplatesDir
	read := func(name string) ([]byte, error) {
		if dir != "" {
			b, err := os.ReadFile(filepath.Join(dir, name))
			if err == nil {
				return b, nil
			}
			if !os.IsNotExist(err) {
				return nil, fmt.Errorf("templates_dir: %w", err)
			}
		}
		return fs.ReadFile(templates.FS, name)
	}
	ps := &pageSet{pages: map[string]map[string]*template.Template{}, cookie: h.CookieName + "_lang", logger: h.logger}
	cats, err := loadCatalogues(templates.FS, dir, ps.missingMessage)
	if err != nil {
		return nil, err
	}
	tags := cats.tags()
	if len(h.Languages) > 0 {
		tags = nil
		for i, s := range h.Languages {
			tag, err := language.Parse(s)
			if err != nil || cats.byTag[tag.String()] == nil {
				return nil, fmt.Errorf("languages: entry %d %q is not one of the available languages %v (add templates_dir/locales/<tag>.json for another)", i+1, s, cats.tags())
			}
			if slices.Contains(tags, tag.String()) {
				return nil, fmt.Errorf("languages: %q is listed twice", s)
			}
			tags = append(tags, tag.String())
		}
	}
	for _, tag := range tags {
		ps.langs = append(ps.langs, cats.byTag[tag])
	}
	ps.picker = newLanguagePicker(ps.langs)

	layout, err := read("layout.html")
	if err != nil {
		return nil, err
	}
	bodies := make(map[string][]byte, len(pageNames))
	for _, name := range pageNames {
		if bodies[name], err = read(name + ".html"); err != nil {
			return nil, err
		}
	}
	base := cats.byTag[baseLanguage]
	for i, loc := range ps.langs {
		ps.pages[loc.tag.String()] = make(map[string]*template.Template, len(pageNames))
		for _, name := range pageNames {
			t, err := template.New("layout.html").Funcs(template.FuncMap{"t": loc.T}).Parse(string(layout))
			if err == nil {
				_, err = t.New(name + ".html").Parse(string(bodies[name]))
			}
			if err != nil {
				return nil, fmt.Errorf("template %s.html: %w", name, err)
			}
			if i == 0 {
				if err := checkTemplateKeys(t, base); err != nil {
					return nil, err
				}
			}
			ps.pages[loc.tag.String()][name] = t
		}
	}

	if ps.css, err = read("style.css"); err != nil {
		return nil, err
	}
	if h.PrimaryColor != "" {
		rules, err := brandStylesheet(h.PrimaryColor)
		if err != nil {
			return nil, err
		}
		ps.css = append(slices.Clip(ps.css), rules...)
	}
	if ps.js, err = read("app.js"); err != nil {
		return nil, err
	}
	logoOrigin := ""
	if h.LogoURL != "" {
		if logoOrigin, err = checkLogoURL(h.LogoURL); err != nil {
			return nil, err
		}
	}
	ps.csp = contentSecurityPolicy(logoOrigin)
	return ps, nil
}

// checkTemplateKeys fails for a t call in t whose key the base catalogue
// lacks, naming the template file and line.
func checkTemplateKeys(t *template.Template, base *locale) error {
	for _, tt := range t.Templates() {
		keys, err := templateKeys([]*parse.Tree{tt.Tree})
		if err != nil {
			return fmt.Errorf("template %w", err)
		}
		for _, k := range keys {
			if _, ok := base.messages[k]; !ok {
				return fmt.Errorf("template %s: unknown message key %q (not in %s/%s.json)", tt.Tree.ParseName, k, localesDir, baseLanguage)
			}
		}
	}
	return nil
}

// missingMessage reports a message key no catalogue has: a template or a
// handler asked for text that does not exist. It is logged once per key.
func (ps *pageSet) missingMessage(lang, key string) {
	if _, seen := ps.seen.LoadOrStore(lang+"\x00"+key, true); !seen {
		ps.logger.Warn("message key missing from the catalogues", zap.String("language", lang), zap.String("key", key))
	}
	if onMissingMessage != nil {
		onMissingMessage(lang, key)
	}
}

// onMissingMessage, when set (by tests), is told of every missing key.
var onMissingMessage func(lang, key string)

// securityHeaders go on every response of the gate's own routes.
func (h *Handler) securityHeaders(w http.ResponseWriter) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", h.ui.csp)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Cache-Control", "no-store")
	hd.Set("Cross-Origin-Opener-Policy", "same-origin")
}

// pageWriter is the ResponseWriter of a request for one of the gate's own
// routes. It carries what serveOwn decided about the request, its
// language and the page the language switch returns to, to render and the
// error pages, which get only the writer.
type pageWriter struct {
	http.ResponseWriter
	loc  *locale
	back string
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *pageWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// pageWriterFor picks the request's language and wraps w with it.
func (h *Handler) pageWriterFor(w http.ResponseWriter, r *http.Request, back string) *pageWriter {
	cookie := ""
	if c, err := r.Cookie(h.ui.cookie); err == nil {
		cookie = c.Value
	}
	return &pageWriter{ResponseWriter: w, loc: h.ui.picker.pick(cookie, r.Header.Get("Accept-Language")), back: back}
}

// localeOf is the language of the page w writes.
func (h *Handler) localeOf(w http.ResponseWriter) *locale {
	if pw, ok := w.(*pageWriter); ok {
		return pw.loc
	}
	return h.ui.langs[0]
}

// render writes a page in the request's language. Rendering into a buffer
// first means a template error becomes a clean 500, not half a page.
func (h *Handler) render(w http.ResponseWriter, status int, name string, p page) error {
	loc := h.localeOf(w)
	p.Product = h.ProductName
	p.Logo = h.LogoURL
	p.Home = h.HomeURL
	p.Prefix = h.Prefix
	p.Lang, p.Dir = loc.tag.String(), loc.Dir()
	p.Digits = h.params.Digits
	if p.User != "" && p.BackLink == "" && !p.HideNav {
		p.ShowNav = true
	}
	for _, f := range []*string{&p.Title, &p.Error, &p.Notice, &p.Message, &p.BackText} {
		if *f != "" {
			*f = loc.T(*f)
		}
	}
	if p.Wait > 0 {
		p.Retry = humanWait(loc, p.Wait)
	}
	if pw, ok := w.(*pageWriter); ok && len(h.ui.langs) > 1 && !p.HideNav {
		p.Back = pw.back
		for _, l := range h.ui.langs {
			p.Languages = append(p.Languages, languageChoice{Tag: l.tag.String(), Name: l.Name(), Current: l == loc})
		}
	}
	var buf bytes.Buffer
	if err := h.ui.pages[loc.tag.String()][name].ExecuteTemplate(&buf, "layout", p); err != nil {
		h.logger.Error("rendering page", zap.String("page", name), zap.Error(err))
		http.Error(w, "internal error", http.StatusInternalServerError)
		return nil
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Language", p.Lang)
	w.WriteHeader(status)
	_, err := w.Write(buf.Bytes())
	return err
}

// errorPage renders a page that explains a refusal.
// title and message are message keys.
func (h *Handler) errorPage(w http.ResponseWriter, status int, title, message string) error {
	return h.render(w, status, "error", page{
		Title: title, Message: message,
		BackLink: h.Prefix + "/security", BackText: "error.back_security",
	})
}

// throttled refuses an attempt while the account or client must wait. Its
// link leads back to the step that was refused (sub, under the prefix, with
// the catalogue key of the link's text): at the code step the session is
// still pending, so the way back is the code form, not the password form.
func (h *Handler) throttled(w http.ResponseWriter, wait time.Duration, sub, backText string) error {
	w.Header().Set("Retry-After", retryAfter(wait))
	return h.render(w, http.StatusTooManyRequests, "error", page{
		Title:    "error.throttled_title",
		Message:  "error.throttled",
		Wait:     wait,
		BackLink: h.Prefix + sub, BackText: backText,
	})
}

// unavailable is the page for a store that cannot be read or written, or
// for a password check refused because hashing is over its CPU budget.
func (h *Handler) unavailable(w http.ResponseWriter, err error) error {
	if wait, ok := overBudget(err); ok {
		return h.busy(w, wait)
	}
	h.logRefusal(err)
	return h.render(w, http.StatusServiceUnavailable, "error", page{
		Title:    "error.unavailable_title",
		Message:  "error.unavailable",
		BackLink: h.Prefix + "/login", BackText: "error.back_login",
	})
}

// logRefusal says what failed when a request is refused with 503: the
// client went away (not the server's fault), the store, or something else
// (generating a QR code or a random value, sealing a secret: the error
// says which).
func (h *Handler) logRefusal(err error) {
	var se *store.Error
	switch {
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		h.logger.Info("the client went away before the request was done", zap.Error(err))
	case errors.As(err, &se):
		h.logger.Error("store failed; refusing the request", zap.String("operation", se.Op), zap.Error(err))
	default:
		h.logger.Error("could not complete the request; refusing it", zap.Error(err))
	}
}

// busy refuses a password check that would wait too long for the hashing
// budget: nothing was checked, nothing counts against the account.
func (h *Handler) busy(w http.ResponseWriter, wait time.Duration) error {
	metricHashBudget.Inc()
	if h.users.budget.logDue() {
		h.logger.Warn("password hashing is over its CPU budget (hash_cpu); refusing logins until it refills",
			zap.Duration("retry_after", wait))
	}
	w.Header().Set("Retry-After", retryAfter(wait))
	return h.render(w, http.StatusServiceUnavailable, "error", page{
		Title:    "error.busy_title",
		Message:  "error.busy",
		Wait:     wait,
		BackLink: h.Prefix + "/login", BackText: "error.back_login",
	})
}

// humanWait says how long to wait, rounded up to a whole second, minute or
// hour, in the page's language.
func humanWait(loc *locale, d time.Duration) string {
	s := int((d + time.Second - 1) / time.Second)
	switch {
	case s < 60:
		return loc.T("duration.seconds", "count", max(s, 1))
	case s < 3600:
		return loc.T("duration.minutes", "count", (s+59)/60)
	default:
		return loc.T("duration.hours", "count", (s+3599)/3600)
	}
}

// denyCrossSite answers a state-changing request from another site.
func (h *Handler) denyCrossSite(w http.ResponseWriter, r *http.Request) {
	h.securityHeaders(w)
	_ = h.errorPage(w, http.StatusForbidden, "error.cross_site_title", "error.cross_site")
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
