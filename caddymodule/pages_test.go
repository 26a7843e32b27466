package caddymodule

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestCrossSiteFormsAreRefused(t *testing.T) {
	g := newGate(t, gateOpts{})
	b := g.browser()
	b.login("alice", testPassword, "/")
	forms := map[string]url.Values{
		"/.auth/login":                 {"username": {"alice"}, "password": {testPassword}},
		"/.auth/code":                  {"code": {"123456"}},
		"/.auth/security/enable":       {"code": {"123456"}, "password": {testPassword}},
		"/.auth/security/disable":      {"code": {"123456"}, "password": {testPassword}},
		"/.auth/security/backup-codes": {"code": {"123456"}, "password": {testPassword}},
		"/.auth/logout":                {},
	}
	for path, form := range forms {
		for _, hdr := range [][]string{
			{"Sec-Fetch-Site", "cross-site"},
			{"Origin", "https://evil.example"},
			{"Sec-Fetch-Site", "same-site", "Origin", "https://sub.localhost:9443"},
		} {
			r := b.post(path, form, hdr...)
			if r.status != http.StatusForbidden {
				t.Errorf("POST %s with %v: got %d, want 403", path, hdr, r.status)
			}
		}
	}
	if r := b.get("/x"); r.status != 200 {
		t.Fatalf("the session was changed by a refused cross-site logout: got %d", r.status)
	}
	// Same-origin browser posts pass.
	if r := b.post("/.auth/logout", nil, "Sec-Fetch-Site", "same-origin", "Origin", "https://localhost:9443"); r.status != http.StatusSeeOther {
		t.Errorf("same-origin logout: got %d, want 303", r.status)
	}
}

func TestPageHeadersAndEscaping(t *testing.T) {
	g := newGate(t, gateOpts{})
	b := g.browser()
	r := b.get("/.auth/login?next=%2F%22%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E")
	if r.status != 200 {
		t.Fatalf("login page: got %d", r.status)
	}
	for h, want := range map[string]string{
		"Content-Security-Policy": "default-src 'none'",
		"X-Content-Type-Options":  "nosniff",
		"Referrer-Policy":         "no-referrer",
		"Cache-Control":           "no-store",
		"X-Frame-Options":         "DENY",
	} {
		if !strings.Contains(r.header.Get(h), want) {
			t.Errorf("%s: got %q, want it to contain %q", h, r.header.Get(h), want)
		}
	}
	if !strings.Contains(r.header.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
		t.Errorf("CSP lacks frame-ancestors 'none'")
	}
	if strings.Contains(r.body, "<script>") {
		t.Errorf("next was reflected unescaped")
	}
	for _, p := range []string{"/.auth/nope", "/.auth/<script>x"} {
		if r := b.get(p); r.status != 404 || strings.Contains(r.body, "<script>") {
			t.Errorf("GET %s: got %d, want an escaped 404 page", p, r.status)
		}
	}
	if r := b.get("/.auth/logout"); r.status != http.StatusMethodNotAllowed || !strings.Contains(r.header.Get("Allow"), "POST") {
		t.Errorf("GET logout: got %d Allow %q, want 405 Allow POST", r.status, r.header.Get("Allow"))
	}
	big := url.Values{"username": {"alice"}, "password": {strings.Repeat("x", 100_000)}}
	if r := b.post("/.auth/login", big); r.status != http.StatusBadRequest {
		t.Errorf("oversized form: got %d, want 400", r.status)
	}
	// Locations never come from Host or X-Forwarded-*.
	r = b.get("/deep/path", "X-Forwarded-Host", "evil.example", "X-Forwarded-Proto", "http")
	if loc := r.header.Get("Location"); !strings.HasPrefix(loc, "/.auth/login?next=") {
		t.Errorf("redirect with forged forwarding headers: got Location %q", loc)
	}
	for _, next := range []string{"//evil.example", "/\\evil.example", "https://evil.example/", "/\t/evil.example"} {
		s := g.browser()
		r := s.post("/.auth/login", url.Values{"username": {"alice"}, "password": {testPassword}, "next": {next}})
		if loc := r.header.Get("Location"); loc != "/" {
			t.Errorf("login with next=%q: got Location %q, want /", next, loc)
		}
	}
}

func TestEnablePageShowsKeyAndQR(t *testing.T) {
	g := newGate(t, gateOpts{})
	b := g.browser()
	b.login("alice", testPassword, "/")
	r := b.get("/.auth/security/enable", "X-Forwarded-Host", "evil.example", "Host", "evil.example")
	for _, want := range []string{
		`src="data:image/png;base64,`, "otpauth://totp/Test%20Cloud:alice?", "issuer=Test",
		"Code from application", "Account password", ">Enable<", `autocomplete="one-time-code"`, `inputmode="numeric"`,
		"<details", "Google Authenticator",
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("enable page lacks %q", want)
		}
	}
	if strings.Contains(r.body, "evil.example") {
		t.Errorf("enable page took a value from Host or X-Forwarded-Host")
	}
	// Reloading the page keeps offering the same key.
	if r2 := b.get("/.auth/security/enable"); otpauthRe.FindString(r2.body) != otpauthRe.FindString(r.body) {
		t.Errorf("the offered key changed between two loads of the enable page")
	}
	// A wrong code or password: 401, the same key, nothing enabled.
	r3 := b.post("/.auth/security/enable", url.Values{"code": {"000000"}, "password": {testPassword}})
	if r3.status != http.StatusUnauthorized || otpauthRe.FindString(r3.body) != otpauthRe.FindString(r.body) {
		t.Errorf("enable with a wrong code: got %d, want 401 with the same key", r3.status)
	}
	if r := b.get("/.auth/security"); !strings.Contains(r.body, "Enable security") {
		t.Errorf("2FA turned on by a wrong code")
	}
}

func TestRequireTwoFactor(t *testing.T) {
	g := newGate(t, gateOpts{extra: "require_two_factor"})
	b := g.browser()
	b.login("alice", testPassword, "/.auth/security")
	if r := b.get("/app"); r.status != http.StatusFound || r.header.Get("Location") != "/.auth/security" {
		t.Fatalf("site before enrolling: got %d %q, want 302 /.auth/security", r.status, r.header.Get("Location"))
	}
	if r := b.rawGet("/app"); r.status != http.StatusFound {
		t.Fatalf("site before enrolling: got %d", r.status)
	}
	if g.up.count() != 0 {
		t.Fatalf("upstream reached before enrolling")
	}
	r := b.get("/.auth/security")
	if r.status != 200 || !strings.Contains(r.body, "requires") {
		t.Errorf("security page: got %d, want 200 saying 2FA is required", r.status)
	}
	b.enable()
	if r := b.get("/app"); r.status != 200 {
		t.Fatalf("site after enrolling: got %d, want 200", r.status)
	}
}

// TestSecurityPagesKeepSessionAlive checks that time spent on the gate's
// own Security pages counts as activity, as requests to the site do: a
// user reading them for longer than session_idle is not logged out.
func TestSecurityPagesKeepSessionAlive(t *testing.T) {
	g := newGate(t, gateOpts{extra: "session_idle 10m\n\t\tsession_lifetime 1h"})
	b := g.browser()
	b.login("alice", testPassword, "/")
	for i := range 3 {
		advance(9 * time.Minute)
		if r := b.get("/.auth/security"); r.status != http.StatusOK {
			t.Fatalf("Security page %d min after the last request to the site: got %d, want 200", 9*(i+1), r.status)
		}
	}
	advance(9 * time.Minute)
	if r := b.get("/x"); r.status != http.StatusOK {
		t.Fatalf("the site 36 min after its last request, 9 after the Security page: got %d, want 200", r.status)
	}
	// Idle everywhere for longer than session_idle: logged out.
	advance(11 * time.Minute)
	if r := b.get("/.auth/security"); r.status/100 != 3 || !strings.HasPrefix(r.header.Get("Location"), "/.auth/login") {
		t.Fatalf("Security page after the idle timeout: got %d to %q, want a redirect to the login", r.status, r.header.Get("Location"))
	}
	// /.auth/me is a status check, not activity: polling it keeps nothing alive.
	b2 := g.browser()
	b2.login("alice", testPassword, "/")
	advance(9 * time.Minute)
	if r := b2.get("/.auth/me"); r.status != http.StatusOK {
		t.Fatalf("/.auth/me: got %d, want 200", r.status)
	}
	advance(2 * time.Minute)
	if r := b2.get("/x"); r.status != http.StatusFound {
		t.Fatalf("the site 11 min after its last request, 2 after /.auth/me: got %d, want 302 to the login", r.status)
	}
}

func TestSessionTimeouts(t *testing.T) {
	g := newGate(t, gateOpts{extra: "session_idle 10m\n\t\tsession_lifetime 1h\n\t\tcode_timeout 2m"})
	b := g.browser()
	b.login("alice", testPassword, "/")
	// Used every 9 minutes, the session lives until its lifetime ends.
	for range 6 {
		advance(9 * time.Minute)
		if r := b.get("/x"); r.status != 200 {
			t.Fatalf("active session: got %d, want 200", r.status)
		}
	}
	advance(7 * time.Minute) // 61 minutes after login
	if r := b.get("/x"); r.status != http.StatusFound {
		t.Fatalf("after the absolute lifetime: got %d, want 302", r.status)
	}
	b2 := g.browser()
	b2.login("alice", testPassword, "/")
	advance(11 * time.Minute)
	if r := b2.get("/x"); r.status != http.StatusFound {
		t.Fatalf("after the idle timeout: got %d, want 302", r.status)
	}
	// The code step expires too.
	b2.login("alice", testPassword, "/")
	b2.enable()
	nextStep()
	b3 := g.browser()
	b3.login("alice", testPassword, "/.auth/code")
	advance(3 * time.Minute)
	if r := b3.post("/.auth/code", url.Values{"code": {"123456"}}); r.status != http.StatusSeeOther || r.header.Get("Location") != "/.auth/login" {
		t.Fatalf("code after code_timeout: got %d %q, want 303 to login", r.status, r.header.Get("Location"))
	}
}
