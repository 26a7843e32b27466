package caddymodule

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// rememberCookieName is the remembered-browser cookie of the default
// cookie_name.
const rememberCookieName = "__Host-two_factor_remember"

func (b *browser) rememberCookie() string {
	u, _ := url.Parse(b.g.base)
	for _, c := range b.jar.Cookies(u) {
		if c.Name == rememberCookieName {
			return c.Value
		}
	}
	return ""
}

// codeRemembered does the code step with "Don't ask for a code on this
// browser" ticked, with a fresh code of secret, and returns the answer.
func (b *browser) codeRemembered(secret string) response {
	b.t.Helper()
	nextStep()
	r := b.post("/.auth/code", url.Values{"code": {totpCode(b.t, secret, testNow())}, "remember": {"on"}})
	if r.status != http.StatusSeeOther {
		b.t.Fatalf("code step: got %d: %.300s", r.status, r.body)
	}
	return r
}

// remembered logs user in on b with the code and the box ticked, then logs
// out, so that the next login shows whether the browser is remembered.
func (b *browser) remembered(user, password, secret string) {
	b.t.Helper()
	b.login(user, password, "/.auth/code")
	b.codeRemembered(secret)
	if b.rememberCookie() == "" {
		b.t.Fatal("no remembered-browser cookie after the code step with the box ticked")
	}
	b.logout()
}

func (b *browser) logout() {
	b.t.Helper()
	if r := b.post("/.auth/logout", nil); r.status != http.StatusSeeOther {
		b.t.Fatalf("logout: got %d", r.status)
	}
}

// TestRememberBrowser: with remember_browser, the code step offers the
// box; ticked, the browser gets its own cookie, a later right password of
// that user skips the code, and the Security page lists the browser. The
// token is useless for another user and never reaches the upstream; a
// wrong password is still wrong.
func TestRememberBrowser(t *testing.T) {
	g := newGate(t, gateOpts{extra: "remember_browser 30d"})
	e := g.enrolAlice()
	bobB := g.browser()
	bobB.login("Bob", testPassword, "/")
	be := bobB.enable()

	b := g.browser()
	b.login("alice", testPassword, "/.auth/code")
	page := b.get("/.auth/code").body
	if !strings.Contains(page, `<input type="checkbox" id="remember" name="remember">`) ||
		!strings.Contains(page, `<label for="remember">Don&#39;t ask for a code on this browser for 30 days</label>`) {
		t.Fatalf("the code page offers no labelled box: %.2000s", page)
	}
	ru := b.get("/.auth/code", "Accept-Language", "ru").body
	if !strings.Contains(ru, "Не запрашивать код в этом браузере (срок — 30 дней)") {
		t.Error("the Russian code page lacks the box's words")
	}
	r := b.codeRemembered(e.secret)
	var set string
	for _, c := range r.header.Values("Set-Cookie") {
		if strings.HasPrefix(c, rememberCookieName+"=") {
			set = c
		}
	}
	for _, want := range []string{"Path=/", "Max-Age=2592000", "HttpOnly", "Secure", "SameSite=Lax"} {
		if !strings.Contains(set, want) {
			t.Errorf("remembered-browser cookie %q lacks %s", set, want)
		}
	}
	token := b.rememberCookie()
	if token == "" || token == b.cookie() {
		t.Fatal("no remembered-browser cookie of its own")
	}
	b.alive("after the code", "alice")
	if c := g.up.last().Header.Get("Cookie"); strings.Contains(c, token) || strings.Contains(c, "_remember") {
		t.Errorf("the upstream got the token: %q", c)
	}

	// Listed on the Security page, this browser marked.
	sec := b.get(securityPage).body
	ds := devices(t, sec, "browsers-heading")
	if len(ds) != 1 || !ds[0].current || !strings.Contains(sec, "This browser") || strings.Contains(sec, token) {
		t.Fatalf("remembered browsers listed: %+v", ds)
	}
	if out := g.cli("", "sessions", "list", "alice").out; !strings.Contains(out, "Remembered browsers: 1") || strings.Contains(out, token) {
		t.Errorf("sessions list:\n%s", out)
	}

	// The next login skips the code; a wrong password is still wrong.
	b.logout()
	if r := b.post("/.auth/login", url.Values{"username": {"alice"}, "password": {"wrong"}}); r.status != http.StatusUnauthorized {
		t.Errorf("wrong password on a remembered browser: got %d, want 401", r.status)
	}
	b.login("alice", testPassword, "/")
	b.alive("remembered browser after the password alone", "alice")

	// Another browser still needs the code; so does Bob on this one.
	g.browser().login("alice", testPassword, "/.auth/code")
	b.logout()
	b.login("Bob", testPassword, "/.auth/code")
	// Nor does a copy of the token help Bob in his own browser.
	bob := g.browser()
	u, _ := url.Parse(g.base)
	bob.jar.SetCookies(u, []*http.Cookie{{Name: rememberCookieName, Value: token, Path: "/", Secure: true}})
	bob.login("Bob", testPassword, "/.auth/code")
	nextStep()
	if r := bob.post("/.auth/code", url.Values{"code": {totpCode(t, be.secret, testNow())}}); r.status != http.StatusSeeOther {
		t.Errorf("Bob's code: got %d", r.status)
	}
}

// TestRememberBrowserOff: without the option there is no box, and a
// ticked box sent anyway remembers nothing.
func TestRememberBrowserOff(t *testing.T) {
	g := newGate(t, gateOpts{})
	e := g.enrolAlice()
	b := g.browser()
	b.login("alice", testPassword, "/.auth/code")
	if strings.Contains(b.get("/.auth/code").body, `name="remember"`) {
		t.Error("the code page offers the box without remember_browser")
	}
	b.codeRemembered(e.secret)
	if b.rememberCookie() != "" {
		t.Error("a browser was remembered without remember_browser")
	}
	if strings.Contains(b.get(securityPage).body, "browsers-heading") {
		t.Error("the Security page lists remembered browsers without remember_browser")
	}
}

// TestRememberBrowserVoided: each event that must void a remembered
// browser does, and the browser is asked for the code again.
func TestRememberBrowserVoided(t *testing.T) {
	g := newGate(t, gateOpts{extra: "remember_browser 30d\n\t\t" + cheapArgon2})
	e := g.enrolAlice()
	secret := e.secret
	codeNow := func() string { nextStep(); return totpCode(t, secret, testNow()) }

	for _, tc := range []struct {
		name string
		void func(b *browser)
	}{
		{"forget all on the Security page", func(b *browser) {
			b.login("alice", testPassword, "/")
			r := b.postSeeOther("/.auth/security/browsers/forget-all", nil, securityPage)
			if !strings.Contains(r.body, "All remembered browsers have been forgotten") {
				t.Error("no notice after forgetting all browsers")
			}
			b.logout()
		}},
		{"forget this one on the Security page", func(b *browser) {
			b.login("alice", testPassword, "/")
			ds := devices(t, b.get(securityPage).body, "browsers-heading")
			if len(ds) != 1 {
				t.Fatalf("%d remembered browsers listed, want 1", len(ds))
			}
			// Cross-site, nothing happens.
			if r := b.post("/.auth/security/browsers/forget", url.Values{"browser": {ds[0].handle}}, "Sec-Fetch-Site", "cross-site"); r.status != http.StatusForbidden {
				t.Errorf("cross-site forget: got %d, want 403", r.status)
			}
			if r := b.post("/.auth/security/browsers/forget", url.Values{"browser": {"nonsense"}}); r.status != http.StatusNotFound {
				t.Errorf("forget of an unknown handle: got %d, want 404", r.status)
			}
			b.postSeeOther("/.auth/security/browsers/forget", url.Values{"browser": {ds[0].handle}}, securityPage)
			b.logout()
		}},
		{"new backup codes", func(b *browser) {
			b.login("alice", testPassword, "/")
			b.postSeeOther("/.auth/security/backup-codes", url.Values{"password": {testPassword}, "code": {codeNow()}}, codesPage)
			b.logout()
		}},
		{"caddy two-factor browsers forget", func(b *browser) {
			out := g.cli("", "browsers", "forget", "alice").out
			if !strings.Contains(out, "Forgot 1 remembered browser of alice") {
				t.Errorf("browsers forget: %q", out)
			}
		}},
		{"expiry", func(b *browser) { advance(30*24*time.Hour + time.Minute) }},
		{"2FA off, then on again", func(b *browser) {
			b.login("alice", testPassword, "/")
			b.postSeeOther("/.auth/security/disable", url.Values{"password": {testPassword}, "code": {codeNow()}}, securityPage)
			if ds := devices(t, b.get(securityPage).body, "browsers-heading"); len(ds) != 0 {
				t.Errorf("%d remembered browsers left after 2FA off", len(ds))
			}
			secret = b.enable().secret
			b.logout()
		}},
		{"caddy two-factor reset", func(b *browser) {
			g.cli("", "reset", "alice")
			if out := g.cli("", "sessions", "list", "alice").out; !strings.Contains(out, "Remembered browsers: 0") {
				t.Errorf("after reset:\n%s", out)
			}
			b.login("alice", testPassword, "/")
			secret = b.enable().secret
			b.logout()
		}},
	} {
		b := g.browser()
		b.remembered("alice", testPassword, secret)
		b.login("alice", testPassword, "/") // remembered
		b.logout()
		tc.void(b)
		b.login("alice", testPassword, "/.auth/code") // asked for the code again
		if t.Failed() {
			t.Fatalf("after %s", tc.name)
		}
	}
}

// TestRememberBrowserPasswordChange: a store user's password change
// forgets their remembered browsers.
func TestRememberBrowserPasswordChange(t *testing.T) {
	g := newGate(t, gateOpts{extra: "remember_browser 1h\n\t\t" + cheapArgon2})
	g.cli("", "user", "add", "erin", "--password-hash", testHash)
	b := g.browser()
	b.login("erin", testPassword, "/")
	e := b.enable()
	b.logout()
	b.login("erin", testPassword, "/.auth/code")
	if !strings.Contains(b.get("/.auth/code").body, "for 1 hour") {
		t.Error("the box does not say 1 hour")
	}
	b.codeRemembered(e.secret)
	b.logout()
	b.login("erin", testPassword, "/")
	const nw = "a new password"
	nextStep()
	form := url.Values{"current_password": {testPassword}, "new_password": {nw}, "confirm_password": {nw}, "code": {totpCode(t, e.secret, testNow())}}
	if r := b.post("/.auth/security/password", form); r.status != http.StatusOK {
		t.Fatalf("password change: got %d", r.status)
	}
	b.logout()
	b.login("erin", nw, "/.auth/code")
}

// TestRememberBrowserRealm: a token of realm a's admin is worth nothing for
// realm b's admin of the same name and password on the same store.
func TestRememberBrowserRealm(t *testing.T) {
	s := newTwoSites(t, "realm a\n\t\tremember_browser 30d\n\t\tuser admin "+testHash, "realm b\n\t\tremember_browser 30d\n\t\tuser admin "+testHash)
	ba := s.a.browser()
	ba.login("admin", testPassword, "/")
	ea := ba.enable()
	nextStep()
	bb := s.b.browser()
	bb.login("admin", testPassword, "/")
	bb.enable()
	ba.logout()
	ba.remembered("admin", testPassword, ea.secret)
	ba.login("admin", testPassword, "/")

	// The token, copied to B's host, does not skip B's code.
	ub, _ := url.Parse(s.b.base)
	b2 := s.b.browser()
	b2.jar.SetCookies(ub, []*http.Cookie{{Name: rememberCookieName, Value: ba.rememberCookie(), Path: "/", Secure: true}})
	b2.login("admin", testPassword, "/.auth/code")
}

// TestRememberBrowserConfigHashChange: a configured user's remembered
// browser holds only while the configuration has the hash it was made
// under: a new hash of the same password forgets it.
func TestRememberBrowserConfigHashChange(t *testing.T) {
	g := newGate(t, gateOpts{extra: "remember_browser 30d"})
	e := g.enrolAlice()
	b := g.browser()
	b.remembered("alice", testPassword, e.secret)
	b.login("alice", testPassword, "/")
	b.logout()
	h, err := bcrypt.GenerateFromPassword([]byte(testPassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	g.config = strings.Replace(g.config, "user alice "+testHash, "user alice "+string(h), 1)
	g.reload()
	b.login("alice", testPassword, "/.auth/code")
}
