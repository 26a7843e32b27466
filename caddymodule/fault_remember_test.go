package caddymodule

import (
	"context"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store"
)

// The fault matrix's handlers remember browsers, so that the code step
// with the box ticked and a remembered browser's login are in it.
var rememberForFaults = caddy.Duration(30 * 24 * time.Hour)

// The store methods of remembered browsers, made to fail like the others,
// and the requests of the session list and remembered browsers in the
// fault matrix.
func init() {
	wrappedMethods = append(wrappedMethods, "RememberBrowser", "RememberedBrowser", "RememberedBrowsers", "ForgetBrowser", "ForgetBrowsers")
	faultScenarios = append(faultScenarios,
		faultScenario{"code with the browser remembered", false, func(e *faultEnv) (func() result, *http.Cookie) {
			_, secret, _ := e.enable(e.login())
			p := e.login()
			nextStep()
			code := totpCode(e.t, secret, testNow())
			return func() result { return e.noRememberOn503(e.post("/.auth/code", p, "code", code, "remember", "on")) }, p
		}},
		faultScenario{"login on a remembered browser", false, func(e *faultEnv) (func() result, *http.Cookie) {
			_, secret, _ := e.enable(e.login())
			rc := e.rememberedBrowser(secret)
			return func() result {
				r := form("/.auth/login", formOf("username", "alice", "password", testPassword))
				r.AddCookie(rc)
				return e.do(r, nil)
			}, nil
		}},
		faultScenario{"log out another session", false, func(e *faultEnv) (func() result, *http.Cookie) {
			c, other := e.login(), e.login()
			var handle string
			for _, d := range devices(e.t, e.must(e.get("/.auth/security", c), http.StatusOK).w.Body.String(), "sessions-heading") {
				if !d.current {
					handle = d.handle
				}
			}
			return func() result {
				res := e.post("/.auth/security/sessions/end", c, "session", handle)
				res.others = []*http.Cookie{other}
				return res
			}, c
		}},
		faultScenario{"log out of all other sessions", false, func(e *faultEnv) (func() result, *http.Cookie) {
			c := e.login()
			e.login()
			return func() result { return e.post("/.auth/security/sessions/end-others", c) }, c
		}},
		faultScenario{"forget a remembered browser", false, func(e *faultEnv) (func() result, *http.Cookie) {
			c, secret, _ := e.enable(e.login())
			e.rememberedBrowser(secret)
			ds := devices(e.t, e.must(e.get("/.auth/security", c), http.StatusOK).w.Body.String(), "browsers-heading")
			if len(ds) != 1 {
				e.t.Fatalf("setup: %d remembered browsers listed, want 1", len(ds))
			}
			return func() result { return e.post("/.auth/security/browsers/forget", c, "browser", ds[0].handle) }, c
		}},
		faultScenario{"forget all remembered browsers", false, func(e *faultEnv) (func() result, *http.Cookie) {
			c, secret, _ := e.enable(e.login())
			e.rememberedBrowser(secret)
			return func() result { return e.post("/.auth/security/browsers/forget-all", c) }, c
		}},
	)
}

// rememberedBrowser logs alice in with a code and the box ticked, and
// returns the browser's remembered-browser cookie.
func (e *faultEnv) rememberedBrowser(secret string) *http.Cookie {
	e.t.Helper()
	p := e.login()
	nextStep()
	r := e.must(e.post("/.auth/code", p, "code", totpCode(e.t, secret, testNow()), "remember", "on"), http.StatusSeeOther)
	for _, c := range r.w.Result().Cookies() {
		if c.Name == rememberCookieName {
			return c
		}
	}
	e.t.Fatal("setup: no remembered-browser cookie")
	return nil
}

// noRememberOn503 fails the test when a refused request handed out a
// remembered-browser cookie.
func (e *faultEnv) noRememberOn503(r result) result {
	e.t.Helper()
	if r.status() >= 500 {
		for _, c := range r.w.Result().Cookies() {
			if c.Name == rememberCookieName {
				e.t.Errorf("a request answered %d handed out a remembered-browser cookie", r.status())
			}
		}
	}
	return r
}

func (f *faultyStore) RememberBrowser(ctx context.Context, u string, rb store.RememberedBrowser) error {
	if err := f.call("RememberBrowser"); err != nil {
		return err
	}
	return f.Store.RememberBrowser(ctx, u, rb)
}

func (f *faultyStore) RememberedBrowser(ctx context.Context, u string, h []byte) (store.RememberedBrowser, error) {
	if err := f.call("RememberedBrowser"); err != nil {
		return store.RememberedBrowser{}, err
	}
	return f.Store.RememberedBrowser(ctx, u, h)
}

func (f *faultyStore) RememberedBrowsers(ctx context.Context, u string) ([]store.RememberedBrowser, error) {
	if err := f.call("RememberedBrowsers"); err != nil {
		return nil, err
	}
	return f.Store.RememberedBrowsers(ctx, u)
}

func (f *faultyStore) ForgetBrowser(ctx context.Context, u string, h []byte) error {
	if err := f.call("ForgetBrowser"); err != nil {
		return err
	}
	return f.Store.ForgetBrowser(ctx, u, h)
}

func (f *faultyStore) ForgetBrowsers(ctx context.Context, u string) (int, error) {
	if err := f.call("ForgetBrowsers"); err != nil {
		return 0, err
	}
	return f.Store.ForgetBrowsers(ctx, u)
}
