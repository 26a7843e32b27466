package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/gate"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/ui"
	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// The browser tests walk through every page as a person does, in headless
// Chromium (Debian's chromium package) driven over the DevTools protocol:
// log in, enable two-factor authentication from the key for manual entry,
// save the backup codes, log in with a code and with a backup code, turn it
// off; in Russian, in English chosen with the page's switch, and with
// JavaScript off. On each page they check the words, where the focus is,
// and (with axe-core) accessibility, and they keep screenshots at desktop
// and phone widths in artifacts/screenshots at the top of the repository.

// screenshotDir is where the screenshots go, relative to this package.
const screenshotDir = "../artifacts/screenshots"

// viewports are the widths the screenshots are taken at.
var viewports = []struct {
	name          string
	width, height int64
	mobile        bool
}{
	{"desktop", 1280, 900, false},
	{"phone", 390, 844, true},
}

// chromiumPath finds the browser; without one the test is skipped locally
// and fails in CI.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{os.Getenv("CHROMIUM"), "chromium", "chromium-browser"} {
		if name == "" {
			continue
		}
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("Chromium is missing; CI must install it (apt-get install -y chromium chromium-driver)")
	}
	t.Skip("Chromium is not installed; to run the browser tests: apt-get install -y chromium chromium-driver")
	return ""
}

// axePath is axe-core's script, installed by `npm ci --prefix .ci`.
func axePath() string {
	if p := os.Getenv("AXE_CORE_JS"); p != "" {
		return p
	}
	return "../.ci/node_modules/axe-core/axe.min.js"
}

// axeSource reads axe-core; without it the accessibility checks are
// skipped locally (with a message) and fail in CI.
func axeSource(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(axePath())
	if err == nil {
		return string(b)
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("axe-core is missing (%v); CI must install it: npm ci --prefix .ci", err)
	}
	t.Logf("axe-core is not installed, so accessibility is not checked; to check it: npm ci --prefix .ci")
	return ""
}

// tab is one browser with one tab, fresh profile and all.
type tab struct {
	t         *testing.T
	ctx       context.Context
	base      string
	run       string // names the screenshots
	shots     int
	axe       string
	noScript  bool
	downloads string
	loc       *ui.Locale // the language the pages should be in
	product   string
}

type tabOptions struct {
	run string
	// acceptLanguage is the browser's list of languages, without
	// weights: Chromium adds them.
	acceptLanguage string
	noScript       bool
	// branding is extra two_factor lines; product the product name
	// they give (Test Cloud, the issuer, without).
	branding, product string
}

func newTab(t *testing.T, g *testGate, o tabOptions) *tab {
	t.Helper()
	exe := chromiumPath(t)
	profile := t.TempDir()
	downloads := t.TempDir()
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(exe),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("ignore-certificate-errors", true), // the site has Caddy's internal CA
		chromedp.UserDataDir(profile),
	)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	// Cleanups run last-in first-out: the browser ends before its profile
	// folder is removed.
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	tb := &tab{t: t, ctx: ctx, base: g.base, run: o.run, axe: axeSource(t), noScript: o.noScript, downloads: downloads}
	// Screenshots of an earlier run of this walk would mislead.
	old, _ := filepath.Glob(filepath.Join(screenshotDir, o.run+"-*.png"))
	for _, f := range append(old, filepath.Join(screenshotDir, "FAILED-"+o.run+".png")) {
		_ = os.Remove(f)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("starting Chromium: %v", err)
	}
	ua, err := chromedp.CallBrowser(ctx, cdpbrowser.GetVersion, struct{}{})
	if err != nil {
		t.Fatal(err)
	}
	send(tb, "Accept-Language", emulation.SetUserAgentOverride, emulation.SetUserAgentOverrideParams{UserAgent: ua.UserAgent, AcceptLanguage: o.acceptLanguage})
	send(tb, "focus", emulation.SetFocusEmulationEnabled, emulation.SetFocusEmulationEnabledParams{Enabled: true})
	if o.noScript {
		send(tb, "no script", emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true})
	}
	tb.viewport(viewports[0].width, viewports[0].height, false)
	if _, err := chromedp.CallBrowser(ctx, cdpbrowser.SetDownloadBehavior, cdpbrowser.SetDownloadBehaviorParams{
		Behavior: cdpbrowser.SetDownloadBehaviorBehaviorAllow, DownloadPath: downloads,
	}); err != nil {
		t.Fatal(err)
	}
	origin := strings.TrimSuffix(g.base, "/")
	for _, name := range []string{"clipboard-read", "clipboard-write"} {
		if _, err := chromedp.CallBrowser(ctx, cdpbrowser.SetPermission, cdpbrowser.SetPermissionParams{
			Permission: &cdpbrowser.PermissionDescriptor{Name: name, AllowWithoutSanitization: true},
			Setting:    cdpbrowser.PermissionSettingGranted, Origin: origin,
		}); err != nil {
			t.Fatal(err)
		}
	}
	return tb
}

// send sends one DevTools command to the tab.
func send[P, R any](tb *tab, what string, cmd cdp.Command[P, R], params P) {
	tb.t.Helper()
	if _, err := chromedp.Call(tb.ctx, cmd, params); err != nil {
		tb.t.Fatalf("%s: %v", what, err)
	}
}

func (tb *tab) viewport(w, h int64, mobile bool) {
	tb.t.Helper()
	send(tb, "viewport", emulation.SetDeviceMetricsOverride, emulation.SetDeviceMetricsOverrideParams{
		Width: w, Height: h, DeviceScaleFactor: 1, Mobile: mobile,
	})
}

// stepTimeout bounds every browser action.
const stepTimeout = 20 * time.Second

// do runs actions; on failure it saves a screenshot of where it stopped.
func (tb *tab) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		tb.fail(what, err)
	}
}

func (tb *tab) fail(what string, err error) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 5*time.Second)
	defer cancel()
	if png, e := chromedp.Run(ctx, chromedp.FullScreenshot(100)); e == nil {
		_ = os.MkdirAll(screenshotDir, 0o755)
		name := filepath.Join(screenshotDir, fmt.Sprintf("FAILED-%s.png", tb.run))
		_ = os.WriteFile(name, png, 0o644)
		tb.t.Logf("screenshot of the failure: %s", name)
	}
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	tb.t.Fatalf("%s (at %s): %v", what, loc, err)
}

// eval evaluates a JavaScript expression in the page (DevTools runs it
// even when the page's own scripts are off).
func eval[T any](tb *tab, expr string) T {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, func(p *runtime.EvaluateParams) { p.AwaitPromise = ptrTo(true) }))
	if err != nil {
		tb.fail("evaluating "+firstLine(expr), err)
	}
	return v
}

func ptrTo[T any](v T) *T { return &v }

// waitFor polls a JavaScript condition from Go (bounded), so that it
// works with the page's scripts off too.
func (tb *tab) waitFor(what, cond string) {
	tb.t.Helper()
	deadline := time.Now().Add(stepTimeout)
	for {
		ctx, cancel := context.WithTimeout(tb.ctx, 5*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("!!("+cond+")"))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = errors.New("timed out")
			}
			tb.fail("waiting for "+what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// navigating runs steps that load a new page and waits until it has.
func (tb *tab) navigating(what string, steps ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	eval[bool](tb, "window.__before = true")
	tb.do(what, steps...)
	tb.waitFor(what+": the next page", "window.__before === undefined && document.readyState === 'complete'")
}

func (tb *tab) open(path string) {
	tb.t.Helper()
	tb.navigating("open "+path, chromedp.Navigate(tb.base+path))
}

func (tb *tab) location() string {
	tb.t.Helper()
	return eval[string](tb, "location.href")
}

// text is the text of the first element sel selects, its white space
// collapsed.
func (tb *tab) text(sel string) string {
	tb.t.Helper()
	b, _ := json.Marshal(sel)
	return eval[string](tb, fmt.Sprintf("(document.querySelector(%s) || {textContent: '<no '+%s+'>'}).textContent.replace(/\\s+/g, ' ').trim()", b, b))
}

func (tb *tab) focused() string {
	tb.t.Helper()
	return eval[string](tb, "document.activeElement ? (document.activeElement.id || document.activeElement.tagName) : ''")
}

// wantFocus checks that the element with the id has the keyboard focus.
// A browser applies autofocus when it next renders, which can be a moment
// after the page has loaded, so it waits a little (bounded) for it.
func (tb *tab) wantFocus(what, id string) {
	tb.t.Helper()
	got := tb.focused()
	for i := 0; got != id && i < 40; i++ {
		time.Sleep(50 * time.Millisecond)
		got = tb.focused()
	}
	tb.want(what, got, id)
}

func (tb *tab) click(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible)
}

func (tb *tab) keys(sel, text string) chromedp.Action[chromedp.Void] {
	return chromedp.SendKeys(chromedp.CSS(sel), text, chromedp.NodeVisible)
}

// want compares a value on the page with what it should be.
func (tb *tab) want(what, got, want string) {
	tb.t.Helper()
	if got != want {
		tb.t.Errorf("%s: %s: got %q, want %q", tb.run, what, got, want)
	}
}

// page checks what every page must have, takes its screenshots and checks
// its accessibility, in light and dark colours.
func (tb *tab) page(name, h1 string) {
	tb.t.Helper()
	tb.want(name+": <html lang>", eval[string](tb, "document.documentElement.lang"), tb.loc.Tag())
	tb.want(name+": heading", tb.text("h1"), h1)
	tb.want(name+": product", tb.text(".brand"), tb.product)
	// The CSP allows no inline script or style; none is there to break.
	if inline := eval[[]string](tb, `[...document.querySelectorAll('script:not([src]), [style], *')].flatMap(e =>
		e.matches('script:not([src]), [style]') ? [e.outerHTML.slice(0, 80)] : [...e.attributes].filter(a => a.name.startsWith('on')).map(a => e.tagName + ' ' + a.name))`); len(inline) > 0 {
		tb.t.Errorf("%s: %s has inline script or style: %v", tb.run, name, inline)
	}
	tb.screenshots(name)
	tb.accessibility(name)
}

func (tb *tab) screenshots(name string) {
	tb.t.Helper()
	if err := os.MkdirAll(screenshotDir, 0o755); err != nil {
		tb.t.Fatal(err)
	}
	tb.shots++
	shoot := func(suffix string) {
		ctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
		defer cancel()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			tb.t.Fatalf("screenshot of %s: %v", name, err)
		}
		file := filepath.Join(screenshotDir, fmt.Sprintf("%s-%02d-%s-%s.png", tb.run, tb.shots, name, suffix))
		if err := os.WriteFile(file, png, 0o644); err != nil {
			tb.t.Fatal(err)
		}
	}
	for _, v := range viewports {
		tb.viewport(v.width, v.height, v.mobile)
		shoot(v.name)
	}
	tb.viewport(viewports[0].width, viewports[0].height, false)
	tb.colourScheme("dark")
	shoot("dark")
	tb.colourScheme("")
}

func (tb *tab) colourScheme(scheme string) {
	tb.t.Helper()
	p := emulation.SetEmulatedMediaParams{}
	if scheme != "" {
		p.Features = []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}}
	}
	send(tb, "colour scheme", emulation.SetEmulatedMedia, p)
}

// violation is what axe-core reports for one broken rule.
type violation struct {
	ID     string   `json:"id"`
	Impact string   `json:"impact"`
	Help   string   `json:"help"`
	Nodes  []string `json:"nodes"`
}

// axeRun runs axe-core with the rule sets checked: WCAG 2.0, 2.1 and 2.2 A and AA, and
// axe's best practices.
const axeRun = `(async () => {
  const r = await axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice']}, resultTypes: ['violations']});
  return r.violations.map(v => ({id: v.id, impact: v.impact || '', help: v.help, nodes: v.nodes.map(n => n.target.join(' ') + ' — ' + (n.failureSummary || '').replace(/\s+/g, ' '))}));
})()`

// accessibility runs axe-core on the page, in light and dark colours, and
// fails on any violation.
func (tb *tab) accessibility(name string) {
	tb.t.Helper()
	if tb.axe == "" {
		return
	}
	if !eval[bool](tb, "typeof axe !== 'undefined'") {
		ctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
		_, err := chromedp.Run(ctx, chromedp.Evaluate[chromedp.Void](tb.axe))
		cancel()
		if err != nil {
			tb.t.Fatalf("injecting axe-core: %v", err)
		}
	}
	if tb.noScript {
		// axe-core needs script; the page's own script ran (or rather,
		// did not) at load, so turning script on now checks the page as
		// it is without JavaScript.
		send(tb, "script on", emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: false})
		defer send(tb, "script off", emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true})
	}
	for _, scheme := range []string{"light", "dark"} {
		tb.colourScheme(scheme)
		for _, v := range eval[[]violation](tb, axeRun) {
			tb.t.Errorf("%s: %s (%s colours): accessibility: %s [%s, %s]\n\t%s", tb.run, name, scheme, v.Help, v.ID, v.Impact, strings.Join(v.Nodes, "\n\t"))
		}
	}
	tb.colourScheme("")
}

var groupedKey = regexp.MustCompile(`^[A-Z2-7 ]+$`)

// TestBrowserRussian walks through every page in Russian, the language the
// browser asks for, with the operator's product name and colour (which
// must pass the accessibility checks too).
func TestBrowserRussian(t *testing.T) {
	walkThrough(t, tabOptions{run: "ru", acceptLanguage: "ru-RU,ru,en-US,en",
		branding: "product_name \"Тестовое облако\"\n\t\tprimary_color \"#0b6e4f\"", product: "Тестовое облако"}, "ru", "")
}

// TestBrowserEnglishBySwitch starts in a browser that asks for Russian and
// switches the pages to English with the language switch; the choice holds
// on every page after.
func TestBrowserEnglishBySwitch(t *testing.T) {
	walkThrough(t, tabOptions{run: "en", acceptLanguage: "ru-RU,ru"}, "en", "en")
}

// TestBrowserWithoutJavaScript walks through the pages with the page's
// scripts off: everything works; the copy and print buttons, which need
// the script, are not shown.
func TestBrowserWithoutJavaScript(t *testing.T) {
	walkThrough(t, tabOptions{run: "nojs", acceptLanguage: "en-US,en", noScript: true}, "en", "")
}

// walkThrough is the whole tour: lang is the language the pages must be
// in; switchTo, when set, is chosen with the switch on the first page.
func walkThrough(t *testing.T, o tabOptions, lang, switchTo string) {
	loc, err := ui.Embedded(lang)
	if err != nil {
		t.Fatal(err)
	}
	g := newGate(t, gateOpts{extra: o.branding})
	if o.product == "" {
		o.product = "Test Cloud"
	}
	tb := newTab(t, g, o)
	tb.product = o.product
	tb.loc = loc
	T := tb.loc.T

	// A visit to the site goes to the login page, which keeps the path.
	tb.open("/app?x=1")
	tb.want("redirect to login", tb.location(), g.base+"/.auth/login?next=%2Fapp%3Fx%3D1")
	if switchTo != "" {
		tb.want("the page in the browser's language", eval[string](tb, "document.documentElement.lang"), "ru")
		tb.navigating("switch language", tb.click(fmt.Sprintf(`button[name="lang"][value="%s"]`, switchTo)))
		tb.want("the switch goes back to the same page", tb.location(), g.base+"/.auth/login?next=%2Fapp%3Fx%3D1")
	}
	tb.wantFocus("login: focus", "username")
	tb.page("login", T("login.title"))

	// The skip link is the first stop of the keyboard and leads to main.
	tb.do("focus the skip link", chromedp.Focus(chromedp.CSS(".skip-link")))
	if top := eval[float64](tb, "document.querySelector('.skip-link').getBoundingClientRect().top"); top < 0 {
		t.Errorf("%s: the focused skip link is off screen (top %v)", o.run, top)
	}
	tb.do("follow the skip link", chromedp.KeyEvent(kb.Enter))
	tb.wantFocus("focus after the skip link", "main")

	// A wrong password: the error is announced and the focus is on the
	// first field.
	tb.navigating("wrong password",
		tb.keys("#username", "alice"), tb.keys("#password", "wrong password"), chromedp.KeyEvent(kb.Enter))
	tb.want("login error", tb.text("[role=alert]"), T(gate.GenericFailure))
	tb.wantFocus("login error: focus", "username")
	tb.want("login error: described by the error", eval[string](tb, "document.activeElement.getAttribute('aria-describedby')"), "form-error")
	if title := eval[string](tb, "document.title"); !strings.HasPrefix(title, T("title.error_prefix")) {
		t.Errorf("%s: login error: title %q does not start with %q", o.run, title, T("title.error_prefix"))
	}
	tb.page("login-error", T("login.title"))

	// Log in with the keyboard alone: type, Tab, type, Enter.
	tb.navigating("log in",
		chromedp.KeyEvent("alice"), chromedp.KeyEvent(kb.Tab), chromedp.KeyEvent(testPassword), chromedp.KeyEvent(kb.Enter))
	tb.want("after login", tb.location(), g.base+"/app?x=1")

	// Security: 2FA is off.
	tb.open("/.auth/security")
	tb.want("security: status", tb.text(".badge"), T("security.badge_off"))
	tb.page("security-off", T("security.title"))

	// Enable security.
	tb.want("the enable link", tb.text(`a[href$="/security/enable"]`), T("security.enable_link"))
	tb.navigating("enable security", tb.click(`a[href$="/security/enable"]`))
	tb.page("enable", T("enable.title"))
	tb.want("enable: the QR code's text alternative", eval[string](tb, "document.querySelector('.qr img').alt"), T("enable.qr_alt", "account", "alice"))

	// The key for manual entry, opened with the keyboard.
	tb.want("manual entry link", tb.text("details.disclosure > summary"), T("enable.manual_summary"))
	tb.do("open the manual key", chromedp.Focus(chromedp.CSS("details.disclosure > summary")), chromedp.KeyEvent(kb.Enter))
	tb.waitFor("the key", "document.querySelector('details.disclosure').open")
	key := tb.text(".secret")
	if !groupedKey.MatchString(key) {
		t.Fatalf("%s: the key for manual entry %q is not grouped Base32", o.run, key)
	}
	tb.want("manual entry: account", tb.text(".key-details dd"), "alice")
	tb.page("enable-manual-key", T("enable.title"))
	secret := strings.ReplaceAll(key, " ", "")

	// A wrong code: an error, the focus on the code, the same key.
	tb.navigating("enable with a wrong code",
		tb.keys("#code", "000000"), tb.keys("#password", testPassword), chromedp.KeyEvent(kb.Enter))
	tb.want("enable error", tb.text("[role=alert]"), T(gate.GenericFailure))
	tb.wantFocus("enable error: focus", "code")
	tb.do("reopen the key", tb.click("details.disclosure > summary"))
	tb.want("enable error: the same key", tb.text(".secret"), key)
	tb.page("enable-error", T("enable.title"))

	// The code the app would show, and the password: Enable.
	tb.want("the enable button", tb.text(`form[action$="/security/enable"] button[type=submit]`), T("enable.submit"))
	tb.navigating("enable",
		tb.keys("#code", totpCode(t, secret, testNow())), tb.keys("#password", testPassword),
		tb.click(`form[action$="/security/enable"] button[type=submit]`))

	// The backup codes.
	codes := eval[[]string](tb, "[...document.querySelectorAll('.backup-codes code')].map(c => c.textContent)")
	if len(codes) != 10 {
		t.Fatalf("%s: got %d backup codes, want 10", o.run, len(codes))
	}
	tb.want("notice", tb.text("[role=status].message"), T("notice.enabled"))
	if n := eval[int](tb, "document.querySelectorAll('.site-header a, .site-header button').length"); n != 0 {
		t.Errorf("%s: the backup codes page offers %d ways off it in the header, want none", o.run, n)
	}
	tb.page("backup-codes", T("codes.heading"))
	checkDownload(tb, codes)
	visible := "(s => { const e = document.querySelector(s); return !!e && !e.hidden && e.offsetParent !== null })"
	if o.noScript {
		for _, b := range []string{"button[data-copy]", "button[data-print]"} {
			if eval[bool](tb, visible+"('"+b+"')") {
				t.Errorf("%s: %s is shown without JavaScript, where it cannot work", o.run, b)
			}
		}
	} else {
		checkCopyAndPrint(tb, codes, visible)
	}
	// "I saved them" must be confirmed before going on.
	tb.do("continue without confirming", tb.click(".confirm-saved button[type=submit]"))
	time.Sleep(300 * time.Millisecond) // a navigation, if one were to start, would have by now
	if n := eval[int](tb, "document.querySelectorAll('.backup-codes code').length"); n != 10 {
		t.Fatalf("%s: Continue left the backup codes without the confirmation", o.run)
	}
	tb.want("the confirmation", tb.text("label[for=saved]"), T("codes.confirm"))
	tb.do("confirm with the keyboard", chromedp.Focus(chromedp.CSS("#saved")), chromedp.KeyEvent(" "))
	tb.navigating("continue", tb.click(".confirm-saved button[type=submit]"))
	tb.want("security: status", tb.text(".badge"), T("security.badge_on"))
	tb.want("security: codes left", tb.text(".section p:nth-of-type(2) strong"), "10")
	tb.page("security-on", T("security.title"))

	// Log out, and in with a code from the app.
	tb.navigating("log out", tb.click(`form[action$="/logout"] button`))
	tb.want("after logout", tb.location(), g.base+"/.auth/login")
	tb.navigating("password", tb.keys("#username", "alice"), tb.keys("#password", testPassword+"\r"))
	tb.want("code page", tb.location(), g.base+"/.auth/code")
	tb.wantFocus("code: focus", "code")
	tb.page("code", T("code.heading"))
	tb.navigating("a wrong code", tb.keys("#code", "000000\r"))
	tb.want("code error", tb.text("[role=alert]"), T(gate.GenericFailure))
	tb.wantFocus("code error: focus", "code")
	tb.page("code-error", T("code.heading"))
	nextStep()
	tb.navigating("the code", tb.keys("#code", totpCode(t, secret, testNow())+"\r"))
	tb.want("logged in with a code", tb.location(), g.base+"/")

	// Log out, and in with a backup code.
	tb.open("/.auth/security")
	tb.navigating("log out", tb.click(`form[action$="/logout"] button`))
	tb.navigating("password", tb.keys("#username", "alice"), tb.keys("#password", testPassword+"\r"))
	tb.want("backup code link", tb.text("details.disclosure > summary"), T("code.backup_summary"))
	tb.do("open backup code", tb.click("details.disclosure > summary"))
	tb.navigating("a wrong backup code", tb.keys("#backup-code", "aaaaa-bbbbb\r"))
	tb.want("backup code error", tb.text("[role=alert]"), T(gate.GenericFailure))
	tb.wantFocus("backup code error: focus", "backup-code")
	tb.page("code-backup-error", T("code.heading"))
	tb.navigating("a backup code", tb.keys("#backup-code", codes[0]+"\r"))
	tb.want("logged in with a backup code", tb.location(), g.base+"/")

	// Security shows one code fewer; turn it off.
	tb.open("/.auth/security")
	tb.want("security: codes left", tb.text(".section p:nth-of-type(2) strong"), "9")
	tb.want("the disable link", tb.text(`a[href$="/security/disable"]`), T("security.disable_link"))
	tb.navigating("disable security", tb.click(`a[href$="/security/disable"]`))
	tb.wantFocus("disable: focus", "password")
	tb.page("disable", T("disable.title"))
	tb.want("the turn off button", tb.text(`form[action$="/security/disable"] button[type=submit]`), T("disable.submit"))
	nextStep()
	tb.navigating("turn off",
		tb.keys("#password", testPassword), tb.keys("#code", totpCode(t, secret, testNow())),
		tb.click(`form[action$="/security/disable"] button[type=submit]`))
	tb.want("notice", tb.text("[role=status].message"), T("notice.disabled"))
	tb.want("security: status", tb.text(".badge"), T("security.badge_off"))
	tb.page("security-disabled", T("security.title"))

	// Error pages.
	tb.open("/.auth/no-such-page")
	tb.page("not-found", T("error.not_found_title"))
	tb.open("/.auth/security")
	tb.navigating("log out", tb.click(`form[action$="/logout"] button`))
	// Wrong passwords until the pause; how many depends on how fast they
	// come (each pause is counted from the last failure), so it is bounded
	// rather than exact.
	for i := 0; tb.text("h1") != T("error.throttled_title"); i++ {
		if i == DefaultFreeFailures+10 {
			t.Fatalf("%s: %d wrong passwords and no pause", o.run, i)
		}
		tb.navigating("wrong password", tb.keys("#username", "Bob"), tb.keys("#password", "nope\r"))
	}
	retry, waits := tb.text(".card p:nth-of-type(2)"), []string{}
	for s := 1; s <= 60; s++ {
		waits = append(waits, T("error.retry", "wait", ui.HumanWait(tb.loc, time.Duration(s)*time.Second)))
	}
	if !slices.Contains(waits, retry) {
		t.Errorf("%s: throttled: got %q, want it to say when to try again, such as %q", o.run, retry, waits[0])
	}
	tb.page("too-many-attempts", T("error.throttled_title"))
}

// checkDownload downloads the backup codes file and reads it.
func checkDownload(tb *tab, codes []string) {
	tb.t.Helper()
	tb.want("download link", tb.text("a[download]"), tb.loc.T("codes.download"))
	tb.do("download", tb.click("a[download]"))
	file := filepath.Join(tb.downloads, "backup-codes.txt")
	var body []byte
	for i := 0; ; i++ {
		b, err := os.ReadFile(file)
		if err == nil && len(b) > 0 {
			body = b
			break
		}
		if i == 200 {
			entries, _ := os.ReadDir(tb.downloads)
			tb.t.Fatalf("%s: no backup-codes.txt downloaded after 10s; the folder has %v", tb.run, entries)
		}
		time.Sleep(50 * time.Millisecond)
	}
	lines := strings.Split(string(body), "\n")
	tb.want("file: first line", lines[0], tb.loc.T("codes_file.heading", "user", "alice", "product", tb.product))
	for _, c := range codes {
		if !strings.Contains(string(body), "\n"+c+"\n") {
			tb.t.Errorf("%s: the downloaded file lacks the code %s", tb.run, c)
		}
	}
	if !strings.Contains(string(body), tb.loc.T("codes_file.once")) {
		tb.t.Errorf("%s: the downloaded file lacks how the codes are used", tb.run)
	}
}

// checkCopyAndPrint uses the copy button and checks the printed page.
func checkCopyAndPrint(tb *tab, codes []string, visible string) {
	tb.t.Helper()
	for _, b := range []string{"button[data-copy]", "button[data-print]"} {
		if !eval[bool](tb, visible+"('"+b+"')") {
			tb.t.Errorf("%s: %s is not shown", tb.run, b)
		}
	}
	tb.want("copy button", tb.text("button[data-copy]"), tb.loc.T("codes.copy"))
	tb.want("print button", tb.text("button[data-print]"), tb.loc.T("codes.print"))
	tb.do("copy", tb.click("button[data-copy]"))
	tb.waitFor("the copy to be announced", "document.getElementById('copy-status').textContent !== ''")
	tb.want("copy announced", tb.text("#copy-status"), tb.loc.T("codes.copied"))
	tb.want("clipboard", eval[string](tb, "navigator.clipboard.readText()"), strings.Join(codes, "\n")+"\n")

	// On paper: the codes and whose they are; no buttons, header or form.
	send(tb, "print media", emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{Media: "print"})
	for sel, want := range map[string]bool{
		".site-header": false, ".confirm-saved": false, ".codes-actions": false, ".backup-codes": true, ".print-only": true,
	} {
		if got := eval[bool](tb, visible+"('"+sel+"')"); got != want {
			tb.t.Errorf("%s: printed, %s visible: got %v, want %v", tb.run, sel, got, want)
		}
	}
	tb.want("printed heading", tb.text(".print-only"), tb.loc.T("codes_file.heading", "user", "alice", "product", tb.product))
	ctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	cancel()
	if err == nil {
		_ = os.WriteFile(filepath.Join(screenshotDir, fmt.Sprintf("%s-%02d-backup-codes-print.png", tb.run, tb.shots)), png, 0o644)
	}
	send(tb, "screen media", emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{})
}
