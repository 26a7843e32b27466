package caddymodule

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/ui"
)

// TestBrowserAccountSecurity walks the Security page's lists in Chromium:
// a remembered browser (the box at the code step, the code skipped at the
// next login, Forget all), the sessions (this one marked, another one
// logged out from here and dead at once) and the recent activity, with
// axe-core on each page and screenshots (account-*.png).
func TestBrowserAccountSecurity(t *testing.T) {
	loc, err := ui.Embedded("en")
	if err != nil {
		t.Fatal(err)
	}
	T := loc.T
	g := newGate(t, gateOpts{extra: "remember_browser 30d"})
	e := g.enrolAlice()

	// Another session of alice's, from curl (the session records the
	// User-Agent of the login).
	other := g.browser()
	if r := other.post("/.auth/login", url.Values{"username": {"alice"}, "password": {testPassword}}, "User-Agent", "curl/8.5.0"); r.status != http.StatusSeeOther {
		t.Fatalf("the other session's password: got %d", r.status)
	}
	nextStep()
	if r := other.post("/.auth/code", url.Values{"code": {totpCode(t, e.secret, testNow())}}, "User-Agent", "curl/8.5.0"); r.status != http.StatusSeeOther {
		t.Fatalf("the other session's code: got %d", r.status)
	}
	if r := other.get("/"); r.status != http.StatusOK {
		t.Fatalf("the other session: got %d, want 200", r.status)
	}

	tb := newTab(t, g, tabOptions{run: "account", acceptLanguage: "en-US,en"})
	tb.loc, tb.product = loc, "Test Cloud"
	login := func() {
		tb.open("/.auth/login")
		tb.navigating("password", tb.keys("#username", "alice"), tb.keys("#password", testPassword+"\r"))
	}

	// The code step offers to remember this browser.
	login()
	tb.want("code page", tb.location(), g.base+"/.auth/code")
	if label := tb.text(`label[for=remember]`); !strings.HasPrefix(label, "Don't ask for a code on this browser for") || !strings.Contains(label, "30") {
		t.Errorf("the remember box: %q", label)
	}
	tb.page("code-remember", T("code.heading"))
	nextStep()
	tb.do("tick remember", tb.click("#remember"))
	tb.navigating("the code", tb.keys("#code", totpCode(t, e.secret, testNow())+"\r"))
	tb.want("logged in", tb.location(), g.base+"/")

	// The Security page: this session marked, the other one listed.
	tb.open("/.auth/security")
	if n := eval[int](tb, `document.querySelectorAll('section[aria-labelledby=sessions-heading] li.device[aria-current=true]').length`); n != 1 {
		t.Errorf("sessions: %d marked as this one, want 1", n)
	}
	if n := eval[int](tb, `[...document.querySelectorAll('section[aria-labelledby=sessions-heading] li.device')].filter(li => li.textContent.includes('curl')).length`); n != 1 {
		t.Errorf("sessions: %d of curl listed, want 1", n)
	}
	tb.want("this browser remembered", tb.text(`section[aria-labelledby=browsers-heading] li.device[aria-current=true] .badge`), T("remember.this_browser"))
	if n := eval[int](tb, `document.querySelectorAll('.activity-item').length`); n == 0 {
		t.Error("the recent activity is empty")
	}
	tb.page("security-lists", T("security.title"))

	// Log the other session out from here: it is dead at once.
	if !eval[bool](tb, `(() => { const li = [...document.querySelectorAll('section[aria-labelledby=sessions-heading] li.device')].find(li => li.textContent.includes('curl')); if (!li) return false; li.querySelector('button[type=submit]').id = 'end-other'; return true })()`) {
		t.Fatal("no Log out button for the other session")
	}
	tb.navigating("log out the other session", tb.click("#end-other"))
	tb.want("back on the Security page", tb.location(), g.base+"/.auth/security")
	if n := eval[int](tb, `[...document.querySelectorAll('section[aria-labelledby=sessions-heading] li.device')].filter(li => li.textContent.includes('curl')).length`); n != 0 {
		t.Errorf("the ended session is still listed (%d)", n)
	}
	before := g.up.count()
	if r := other.get("/"); r.status == http.StatusOK || g.up.count() != before {
		t.Errorf("the session logged out from the Security page still works: %d", r.status)
	}

	// Logging in again on this browser skips the code.
	tb.navigating("log out", tb.click(`form[action$="/logout"] button`))
	login()
	tb.want("remembered: no code step", tb.location(), g.base+"/")

	// Forget all: the code is asked for again.
	tb.open("/.auth/security")
	tb.navigating("forget all", tb.click(`form[action$="/security/browsers/forget-all"] button`))
	tb.page("security-forgotten", T("security.title"))
	tb.navigating("log out", tb.click(`form[action$="/logout"] button`))
	login()
	tb.want("forgotten: the code step again", tb.location(), g.base+"/.auth/code")
}
