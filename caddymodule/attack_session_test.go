package caddymodule

import (
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/session"
)

// plant puts a session cookie with value v into the browser, as an
// attacker who can write cookies for the victim's browser would.
func (b *browser) plant(v string) {
	b.jar.SetCookies(mustURL(b.g.base), []*http.Cookie{{Name: DefaultCookieName, Value: v, Path: "/"}})
}

// replayWith returns a new browser holding only the cookie value v.
func (g *testGate) replayWith(v string) *browser {
	b := g.browser()
	b.plant(v)
	return b
}

// assertDead checks that a cookie value gets nothing anywhere: the site
// redirects to the login page, the Security pages and /me refuse it.
func assertDead(t *testing.T, g *testGate, what, v string) {
	t.Helper()
	b := g.replayWith(v)
	before := g.up.count()
	if r := b.get("/secret"); r.status != http.StatusFound || !strings.HasPrefix(r.header.Get("Location"), "/.auth/login") {
		t.Errorf("%s: the site answered %d %q, want a redirect to the login page", what, r.status, r.header.Get("Location"))
	}
	if r := b.get("/.auth/me"); r.status != http.StatusUnauthorized {
		t.Errorf("%s: /me answered %d, want 401", what, r.status)
	}
	if r := b.get("/.auth/security"); r.status != http.StatusFound || !strings.HasPrefix(r.header.Get("Location"), "/.auth/login") {
		t.Errorf("%s: the Security page answered %d %q, want a redirect to the login page", what, r.status, r.header.Get("Location"))
	}
	if r := b.post("/.auth/code", formOf("code", "123456")); r.header.Get("Location") != "/.auth/login" {
		t.Errorf("%s: the code form answered %d %q, want a redirect to the login page", what, r.status, r.header.Get("Location"))
	}
	if g.up.count() != before {
		t.Errorf("%s: the upstream was reached", what)
	}
}

func randomID(t *testing.T) string {
	b := make([]byte, session.IDSize)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// TestSessionFixation: a session ID planted before the login, whether made
// up or a live session of the attacker's own, is never adopted: after the
// password and again after the code the browser holds a new ID, and the
// planted one is dead.
func TestSessionFixation(t *testing.T) {
	g := newGate(t, gateOpts{})
	attacker := g.browser()
	attacker.login("bob", testPassword, "/")
	owner := g.browser()
	owner.login("alice", testPassword, "/")
	enr := owner.enable()

	for _, planted := range []string{randomID(t), attacker.cookie()} {
		victim := g.browser()
		victim.plant(planted)
		victim.login("alice", testPassword, "/.auth/code")
		afterPassword := victim.cookie()
		if afterPassword == planted || afterPassword == "" {
			t.Fatalf("after the password the browser holds %q, want a new ID", afterPassword)
		}
		assertDead(t, g, "the planted ID after the victim's password", planted)
		nextStep()
		if r := victim.post("/.auth/code", formOf("code", totpCode(t, enr.secret, testNow()))); r.status != http.StatusSeeOther {
			t.Fatalf("code: got %d", r.status)
		}
		if c := victim.cookie(); c == afterPassword || c == planted {
			t.Errorf("after the code the browser holds the same ID as before")
		}
		assertDead(t, g, "the planted ID after the victim's code", planted)
		assertDead(t, g, "the password-stage ID after the code", afterPassword)
		if r := victim.get("/secret"); r.status != http.StatusOK || g.up.last().Header.Get("Remote-User") != "alice" {
			t.Errorf("victim after login: got %d", r.status)
		}
	}
	// Without 2FA too: the ID changes at the password.
	v := g.browser()
	planted := randomID(t)
	v.plant(planted)
	v.login("bob", testPassword, "/")
	if v.cookie() == planted {
		t.Errorf("password login (2FA off) kept the planted ID")
	}
	assertDead(t, g, "planted ID after a 2FA-off login", planted)
}

// TestCookieReplay: a cookie saved before logout, before 2FA is turned on
// (by this session or another) and before it is turned off gets nothing
// afterwards; replacing the backup codes ends no session.
func TestCookieReplay(t *testing.T) {
	g := newGate(t, gateOpts{})
	// Logout, for a full session and for one that owes the code.
	b := g.browser()
	b.login("alice", testPassword, "/")
	saved := b.cookie()
	other := g.browser()
	other.login("alice", testPassword, "/")
	otherSaved := other.cookie()
	b.post("/.auth/logout", nil)
	assertDead(t, g, "full session after logout", saved)

	// Enabling ends every session of the user, the enabling one's old ID
	// too (it goes on under a new one).
	b.login("alice", testPassword, "/")
	beforeEnable := b.cookie()
	enr := b.enable()
	assertDead(t, g, "the enabling session's ID from before enabling", beforeEnable)
	assertDead(t, g, "another password-only session after enabling", otherSaved)
	if r := b.get("/secret"); r.status != http.StatusOK {
		t.Errorf("the enabling session after enabling: got %d, want 200", r.status)
	}

	p := g.browser()
	p.login("alice", testPassword, "/.auth/code")
	pendingSaved := p.cookie()
	p.post("/.auth/logout", nil)
	assertDead(t, g, "pending session after logout", pendingSaved)

	// Replacing backup codes ends nothing.
	nextStep()
	second := g.browser()
	second.login("alice", testPassword, "/.auth/code")
	second.post("/.auth/code", formOf("code", totpCode(t, enr.secret, testNow())))
	nextStep()
	if r := b.postSeeOther("/.auth/security/backup-codes", formOf("password", testPassword, "code", totpCode(t, enr.secret, testNow())), codesPage); r.status != http.StatusOK {
		t.Fatalf("new backup codes: got %d", r.status)
	}
	if r := second.get("/secret"); r.status != http.StatusOK {
		t.Errorf("another session after new backup codes: got %d, want 200", r.status)
	}

	// Disabling ends every other session, and the disabling one's old ID.
	secondSaved := second.cookie()
	beforeDisable := b.cookie()
	nextStep()
	if r := b.postSeeOther("/.auth/security/disable", formOf("password", testPassword, "code", totpCode(t, enr.secret, testNow())), securityPage); r.status != http.StatusOK {
		t.Fatalf("disable: got %d", r.status)
	}
	assertDead(t, g, "another session after disabling", secondSaved)
	assertDead(t, g, "the disabling session's ID from before disabling", beforeDisable)
	if r := b.get("/secret"); r.status != http.StatusOK {
		t.Errorf("the disabling session after disabling: got %d, want 200", r.status)
	}
}

// TestMalformedCookies: a cookie that does not decode, or names no live
// session, is no session: the pages answer as to a stranger, never with an
// error.
func TestMalformedCookies(t *testing.T) {
	g := newGate(t, gateOpts{})
	live := g.browser()
	live.login("alice", testPassword, "/")
	id := live.cookie()
	values := []string{
		"", "=", "x", strings.Repeat("A", 43), strings.Repeat("A", 42), strings.Repeat("A", 44), id + "=", id[:42] + "+",
		id[:42] + "/", id + id, strings.ToUpper(id), "%00" + id[3:], "\u00e9" + id[2:], strings.Repeat("x", 4000),
		`"` + id, id + `"`, id[:42] + "%", base64.StdEncoding.EncodeToString(make([]byte, 32)), "..%2f" + id[5:],
	}
	for _, v := range values {
		b := g.browser()
		r := b.raw("GET /secret HTTP/1.1", "Accept: text/html", "Cookie: "+DefaultCookieName+"="+v)
		if r.status != http.StatusFound {
			t.Errorf("cookie %.60q: the site answered %d, want 302 to the login page", v, r.status)
		}
		if r := b.raw("GET /.auth/login HTTP/1.1", "Cookie: "+DefaultCookieName+"="+v); r.status != http.StatusOK {
			t.Errorf("cookie %.60q: the login page answered %d, want 200", v, r.status)
		}
		if r := b.raw("GET /.auth/me HTTP/1.1", "Cookie: "+DefaultCookieName+"="+v); r.status != http.StatusUnauthorized {
			t.Errorf("cookie %.60q: /me answered %d, want 401", v, r.status)
		}
	}
	if g.up.count() != 0 {
		t.Errorf("the upstream was reached with a malformed cookie")
	}
	t.Logf("%d malformed cookies, 3 requests each", len(values))
	// RFC 6265 lets a cookie value stand in double quotes: that is the
	// same ID, not a malformed one.
	if r := g.browser().raw("GET /secret HTTP/1.1", "Cookie: "+DefaultCookieName+`="`+id+`"`); r.status != http.StatusOK {
		t.Errorf("the live ID in double quotes: got %d, want 200", r.status)
	}
	// A live ID beside a malformed copy of the cookie: the first one
	// counts, as for any cookie; nothing breaks.
	if r := g.browser().raw("GET /secret HTTP/1.1", "Accept: text/html", "Cookie: "+DefaultCookieName+"=junk; "+DefaultCookieName+"="+id); r.status >= 500 {
		t.Errorf("two copies of the cookie: got %d", r.status)
	}
}
