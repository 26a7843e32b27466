package caddymodule

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/ui"
)

// TestBrowserStepUp walks a step-up in Chromium, in English and in
// Russian: a page under a step_up path opens while the code is fresh;
// later the same URL leads to the code step (the same page as at login,
// asking for a fresh check, no password), and the code returns to that
// URL, query and all; within the window it opens at once again. axe-core
// on the step-up page and screenshots (stepup-*.png).
func TestBrowserStepUp(t *testing.T) {
	for _, lang := range []string{"en", "ru"} {
		t.Run(lang, func(t *testing.T) {
			loc, err := ui.Embedded(lang)
			if err != nil {
				t.Fatal(err)
			}
			T := loc.T
			g := newGate(t, gateOpts{extra: "step_up /admin/* 10m"})
			e := g.enrolAlice()
			tb := newTab(t, g, tabOptions{run: "stepup-" + lang, acceptLanguage: lang})
			tb.loc, tb.product = loc, "Test Cloud"

			const target = "/admin/report?year=2026&q=a%2Fb"
			tb.open("/.auth/login?next=" + url.QueryEscape(target))
			tb.navigating("password", tb.keys("#username", "alice"), tb.keys("#password", testPassword+"\r"))
			tb.want("code page", tb.location(), g.base+"/.auth/code")
			tb.navigating("the code", tb.keys("#code", totpCode(t, e.secret, testNow())+"\r"))
			tb.want("logged in, at the admin page", tb.location(), g.base+target)
			nextStep()

			advance(11 * time.Minute)
			tb.open(target)
			tb.want("stale: the code step", tb.location(), g.base+"/.auth/code?next="+url.QueryEscape(target))
			if lead := tb.text("p.lead"); !strings.Contains(lead, strings.ReplaceAll(T("code.step_up_lead"), "{digits}", "6")) {
				t.Errorf("the step-up page's lead: %q", lead)
			}
			if n := eval[int](tb, `document.querySelectorAll('input[type=password], #remember').length`); n != 0 {
				t.Errorf("the step-up page has %d password fields or remember boxes", n)
			}
			tb.page("step-up", T("code.heading"))
			tb.navigating("the fresh code", tb.keys("#code", totpCode(t, e.secret, testNow())+"\r"))
			tb.want("back at the same URL", tb.location(), g.base+target)
			if n := g.up.countURI(target); n != 2 {
				t.Errorf("the upstream got %s %d times, want 2 (at login, after the step-up)", target, n)
			}
			nextStep()

			advance(5 * time.Minute)
			tb.open("/admin/other")
			tb.want("within the window: no code", tb.location(), g.base+"/admin/other")
		})
	}
}

// countURI is how many requests for uri reached the upstream.
func (u *upstream) countURI(uri string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for _, r := range u.reqs {
		if r.URL.RequestURI() == uri {
			n++
		}
	}
	return n
}
