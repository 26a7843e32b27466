// Package ui renders the gate's pages: the embedded templates (or an
// operator's replacements), the message catalogues and the choice of
// language, the brand (product name, logo, colour) and the security
// headers of every page. It knows nothing of sessions or factors: the flows
// hand it a Page of message keys and values.
package ui

import (
	"bytes"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"text/template/parse"
	"time"

	"go.uber.org/zap"
	"golang.org/x/text/language"

	"github.com/caddy-two-factor/caddy-two-factor/templates"
)

// pageNames are the page templates; each is parsed with layout.html.
var pageNames = []string{"login", "code", "security", "enable", "disable", "backup_codes", "error", "password"}

// partials are templates of sections a page includes, parsed with it.
var partials = map[string][]string{"security": {"security_sessions", "security_keys"}, "disable": {"security_keys"}, "password": {"security_keys"}}

// Page is what every template gets. Title, Error, Notice, Message and
// BackText are message keys when a handler sets them; render replaces each
// with its text in the page's language.
type Page struct {
	Title            string
	Product          string
	Logo             string
	Home             string // where the brand in the header leads (home_url)
	Prefix           string
	Lang             string // BCP 47 tag of the page's language
	Dir              string // ltr or rtl
	Languages        []LanguageChoice
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
	// StepUp is true on the code page of a full session asked for a fresh
	// code (step_up); Next is then where it returns.
	StepUp   bool
	Message  string
	Wait     time.Duration
	Retry    string
	BackLink string
	BackText string
	// PasswordChangeable is true for a user kept in the store, who may
	// change their password on the Security pages.
	PasswordChangeable bool
	// MinPassword is the least number of characters of a new password.
	MinPassword int
	// ClockMinutes, when not 0, says that the refused code was right for
	// a time step about this many minutes away (at least 1): the clock of
	// the device that made it is off, ahead when ClockAhead.
	ClockMinutes int
	ClockAhead   bool
	// Activity is the user's recent security events, newest first, for
	// the Security page.
	Activity []ActivityItem
	// Sessions are the user's live sessions, on the Security page.
	Sessions []SessionRow
	// Remember is the lifetime of a remembered browser (the option
	// remember_browser), said in the page's language; empty when the site
	// does not remember browsers. Browsers are the user's remembered ones.
	Remember string
	Browsers []BrowserRow
	// Keys are the user's security keys and passkeys (WebAuthn), HasApp
	// whether they also have an authenticator app; KeyLogin offers a key
	// on the code page; KeyError is the ID of the key whose removal was
	// refused. Script loads the pages' script (app.js).
	Keys     []KeyRow
	HasApp   bool
	KeyLogin bool
	KeyError string
	Script   bool
}

// KeyRow is one of the user's security keys on the Security page.
type KeyRow struct {
	// ID is the credential ID, base64url: the forms name the key with it.
	ID, Name        string
	Added, LastUsed TimeText
	// Synced: a passkey backed up to other devices (the BS flag).
	Synced bool
}

// ActivityItem is one entry of a user's recent activity. Kind, By, Step
// and Method are the store's words (store.Event*), which the template
// turns into messages.
type ActivityItem struct {
	Kind, By, Step, Method string
	// When is the time for people (UTC), ISO the same for machines.
	When, ISO string
	// Address is the client's address, Browser a summary of its
	// User-Agent; either may be empty.
	Address, Browser string
	// Count is the number of sessions ended, or of backup codes left.
	Count int
	// ClockMinutes and ClockAhead are as in Page, for a wrong code of a
	// device whose clock seemed off.
	ClockMinutes int
	ClockAhead   bool
}

// SessionRow is one of the user's sessions as the Security page lists it:
// nothing in it lets anyone use the session.
type SessionRow struct {
	// Handle names the session in the forms that end it: derived from
	// the store key, not the cookie, and good only among the user's own.
	Handle string
	// Browser and System are read from the User-Agent; empty when not
	// known.
	Browser, System string
	Addr            string
	// SignedIn and LastSeen are UTC times (ISO 8601 in DateTime).
	SignedIn, LastSeen TimeText
	Current            bool
}

// BrowserRow is one of the user's remembered browsers.
type BrowserRow struct {
	Handle          string
	Browser, System string
	Addr            string
	Created, Until  TimeText
	Current         bool
}

// TimeText is a time as a page shows it and as its datetime attribute
// gives it.
type TimeText struct {
	Text, DateTime string
}

// NewTimeText formats t in UTC.
func NewTimeText(t time.Time) TimeText {
	u := t.UTC()
	return TimeText{Text: u.Format("2006-01-02 15:04 UTC"), DateTime: u.Format(time.RFC3339)}
}

// LanguageChoice is one entry of the language switch.
type LanguageChoice struct {
	Tag     string
	Name    string
	Current bool
}

// Config is what the pages are made of, beside the embedded templates.
type Config struct {
	// TemplatesDir holds files that replace embedded ones of the same
	// name, and locales/<tag>.json catalogues; empty for none.
	TemplatesDir string
	// LanguageCookie is the name of the cookie that keeps a user's choice
	// of language.
	LanguageCookie string
	// Languages are the offered languages, the default first; empty for
	// every language there is a catalogue for, English first.
	Languages []string
	// PrimaryColor (#rrggbb) recolours buttons and links; empty for none.
	PrimaryColor string
	// Product, Logo and Home are the brand in every page's header: the
	// name, an image beside it, and where it leads.
	Product, Logo, Home string
	// Prefix is the path the pages are served under.
	Prefix string
	// Digits is the length of the codes the forms ask for.
	Digits int
	// Logger gets rendering failures and missing message keys.
	Logger *zap.Logger
}

// Pages is everything the gate's pages are made of, ready to serve.
type Pages struct {
	cfg    Config
	pages  map[string]map[string]*template.Template // language tag, page name
	langs  []*Locale                                // offered, the default first
	picker *languagePicker
	css    []byte
	js     []byte
	csp    string
	cookie string // name of the language preference cookie

	logger *zap.Logger
	seen   sync.Map // message keys already logged as missing
}

// Load reads the catalogues, the templates, the stylesheet and the
// script, each file from TemplatesDir when it has one of that name, and
// checks that every message key the templates use exists.
func Load(cfg Config) (*Pages, error) {
	dir := cfg.TemplatesDir
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
	ps := &Pages{cfg: cfg, pages: map[string]map[string]*template.Template{}, cookie: cfg.LanguageCookie, logger: cfg.Logger}
	cats, err := loadCatalogues(templates.FS, dir, ps.missingMessage)
	if err != nil {
		return nil, err
	}
	tags := cats.tags()
	if len(cfg.Languages) > 0 {
		tags = nil
		for i, s := range cfg.Languages {
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
		for _, part := range partials[name] {
			if bodies[part], err = read(part + ".html"); err != nil {
				return nil, err
			}
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
			for _, part := range partials[name] {
				if err == nil {
					_, err = t.New(part + ".html").Parse(string(bodies[part]))
				}
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
	if cfg.PrimaryColor != "" {
		rules, err := brandStylesheet(cfg.PrimaryColor)
		if err != nil {
			return nil, err
		}
		ps.css = append(slices.Clip(ps.css), rules...)
	}
	if ps.js, err = read("app.js"); err != nil {
		return nil, err
	}
	logoOrigin := ""
	if cfg.Logo != "" {
		if logoOrigin, err = CheckLogoURL(cfg.Logo); err != nil {
			return nil, err
		}
	}
	ps.csp = contentSecurityPolicy(logoOrigin)
	return ps, nil
}

// checkTemplateKeys fails for a t call in t whose key the base catalogue
// lacks, naming the template file and line.
func checkTemplateKeys(t *template.Template, base *Locale) error {
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
func (ps *Pages) missingMessage(lang, key string) {
	if _, seen := ps.seen.LoadOrStore(lang+"\x00"+key, true); !seen {
		ps.logger.Warn("message key missing from the catalogues", zap.String("language", lang), zap.String("key", key))
	}
	if f := onMissing.Load(); f != nil {
		(*f)(lang, key)
	}
}

// onMissing, when set, is told of every missing key.
var onMissing atomic.Pointer[func(lang, key string)]

// OnMissingMessage has f told of every message key a page asks for that no
// catalogue has, in any Pages of the process: tests fail a run on any.
func OnMissingMessage(f func(lang, key string)) { onMissing.Store(&f) }

// SecurityHeaders go on every response of the gate's own routes.
func (ps *Pages) SecurityHeaders(w http.ResponseWriter) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", ps.csp)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Cache-Control", "no-store")
	hd.Set("Cross-Origin-Opener-Policy", "same-origin")
}

// Writer is the ResponseWriter of a request for one of the gate's own
// routes. It carries what was decided about the request, its language and
// the page the language switch returns to, to Render, which gets only the
// writer.
type Writer struct {
	http.ResponseWriter
	loc  *Locale
	back string
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *Writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// For picks the request's language and wraps w with it; back is the page
// the language switch returns to.
func (ps *Pages) For(w http.ResponseWriter, r *http.Request, back string) *Writer {
	cookie := ""
	if c, err := r.Cookie(ps.cookie); err == nil {
		cookie = c.Value
	}
	return &Writer{ResponseWriter: w, loc: ps.picker.pick(cookie, r.Header.Get("Accept-Language")), back: back}
}

// Locale is the language of the page w writes.
func (ps *Pages) Locale(w http.ResponseWriter) *Locale {
	if pw, ok := w.(*Writer); ok {
		return pw.loc
	}
	return ps.langs[0]
}

// Stylesheet is the pages' CSS.
func (ps *Pages) Stylesheet() []byte { return ps.css }

// Script is the pages' one script file.
func (ps *Pages) Script() []byte { return ps.js }

// LanguageCookie names the cookie that keeps the choice of language.
func (ps *Pages) LanguageCookie() string { return ps.cookie }

// Offers reports whether tag is one of the offered languages.
func (ps *Pages) Offers(tag string) bool {
	_, ok := ps.picker.byTag[tag]
	return ok
}

// Render writes a page in the request's language. Rendering into a buffer
// first means a template error becomes a clean 500, not half a page.
func (ps *Pages) Render(w http.ResponseWriter, status int, name string, p Page) error {
	loc := ps.Locale(w)
	p.Product = ps.cfg.Product
	p.Logo = ps.cfg.Logo
	p.Home = ps.cfg.Home
	p.Prefix = ps.cfg.Prefix
	p.Lang, p.Dir = loc.tag.String(), loc.Dir()
	p.Digits = ps.cfg.Digits
	if p.User != "" && p.BackLink == "" && !p.HideNav {
		p.ShowNav = true
	}
	for _, f := range []*string{&p.Title, &p.Error, &p.Notice, &p.Message, &p.BackText} {
		if *f != "" {
			*f = loc.T(*f)
		}
	}
	if p.Wait > 0 {
		p.Retry = HumanWait(loc, p.Wait)
	}
	if pw, ok := w.(*Writer); ok && len(ps.langs) > 1 && !p.HideNav {
		p.Back = pw.back
		for _, l := range ps.langs {
			p.Languages = append(p.Languages, LanguageChoice{Tag: l.tag.String(), Name: l.Name(), Current: l == loc})
		}
	}
	var buf bytes.Buffer
	if err := ps.pages[loc.tag.String()][name].ExecuteTemplate(&buf, "layout", p); err != nil {
		ps.logger.Error("rendering page", zap.String("page", name), zap.Error(err))
		http.Error(w, "internal error", http.StatusInternalServerError)
		return nil
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Language", p.Lang)
	w.WriteHeader(status)
	_, err := w.Write(buf.Bytes())
	return err
}

// HumanWait says how long to wait, rounded up to a whole second, minute or
// hour, in the page's language.
func HumanWait(loc *Locale, d time.Duration) string {
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
