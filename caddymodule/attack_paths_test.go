package caddymodule

import (
	"net/http"
	"strings"
	"testing"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/attack"
)

// forcedMethods are the methods tried on every target; OPTIONS * and
// CONNECT are tried on their own.
var forcedMethods = []string{"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PROPFIND", "FOO"}

// TestForcedBrowsing sends every method to every spelling of a path, as
// raw HTTP/1.1 request lines, without a session and with a session that
// has only the password: nothing reaches the upstream, and nothing fails
// with a server error. A full session, sent the same spellings, does reach
// it, so the requests are ones the site would serve.
func TestForcedBrowsing(t *testing.T) {
	g := newGate(t, gateOpts{})
	owner := g.browser()
	owner.login("alice", testPassword, "/")
	enr := owner.enable()

	pending := g.browser()
	pending.login("alice", testPassword, "/.auth/code")
	sessions := map[string]*browser{"no session": g.browser(), "password only": pending}

	tried := 0
	for name, b := range sessions {
		for _, target := range attack.ForcedTargets {
			for _, m := range forcedMethods {
				before := g.up.count()
				r := b.raw(m + " " + target + " HTTP/1.1")
				tried++
				if g.up.count() != before || reachedUpstream(r) {
					t.Errorf("%s: %s %s reached the upstream (status %d)", name, m, target, r.status)
				}
				if r.status >= 500 {
					t.Errorf("%s: %s %s: got %d, want no server error", name, m, target, r.status)
				}
			}
		}
		for _, line := range []string{
			"OPTIONS * HTTP/1.1", "CONNECT localhost:9443 HTTP/1.1", "CONNECT evil.example:443 HTTP/1.1",
			"GET /secret HTTP/1.0", "GET /secret HTTP/1.1\r\nX-Forwarded-Uri: /.auth/login",
			"GET /secret HTTP/1.1\r\nX-Original-URL: /.auth/login\r\nX-Rewrite-URL: /.auth/login",
			"GET /secret HTTP/1.1\r\nX-Forwarded-Prefix: /.auth",
			"GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
			"GET /secret HTTP/1.1\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__",
		} {
			before := g.up.count()
			r := b.raw(line)
			tried++
			if g.up.count() != before || reachedUpstream(r) {
				t.Errorf("%s: %q reached the upstream (status %d)", name, line, r.status)
			}
		}
	}
	if n := g.up.count(); n != 0 {
		t.Fatalf("upstream got %d requests without a full session, want 0", n)
	}

	// The control: the same spellings with a full session are served.
	full := g.browser()
	full.login("alice", testPassword, "/.auth/code")
	nextStep()
	if r := full.post("/.auth/code", formOf("code", totpCode(t, enr.secret, testNow()))); r.status != http.StatusSeeOther {
		t.Fatalf("code: got %d", r.status)
	}
	for _, target := range []string{"/secret", "//secret", "/.auth/..%2fsecret", "/.auth/%2e%2e/secret", "https://localhost:9443/secret", "/.AUTH/login", "/secret;.css"} {
		before := g.up.count()
		if r := full.raw("GET " + target + " HTTP/1.1"); g.up.count() != before+1 || !reachedUpstream(r) {
			t.Errorf("control: GET %s with a full session: got %d and the upstream was not reached; the spelling is not one the site serves", target, r.status)
		}
	}
	t.Logf("%d forced-browsing requests, none reached the upstream", tried)
}

// TestEnrolStageReachesOnlySecurity: under require_two_factor a user who
// has not enrolled has a session that reaches the Security pages and
// nothing else, whatever the spelling.
func TestEnrolStageReachesOnlySecurity(t *testing.T) {
	g := newGate(t, gateOpts{extra: "require_two_factor"})
	b := g.browser()
	b.login("alice", testPassword, "/.auth/security")
	for _, target := range attack.ForcedTargets {
		for _, m := range []string{"GET", "HEAD", "POST", "OPTIONS"} {
			before := g.up.count()
			r := b.raw(m + " " + target + " HTTP/1.1")
			if g.up.count() != before || reachedUpstream(r) {
				t.Errorf("enrol stage: %s %s reached the upstream (status %d)", m, target, r.status)
			}
		}
	}
	if r := b.get("/.auth/security"); r.status != http.StatusOK {
		t.Errorf("security page in the enrol stage: got %d, want 200", r.status)
	}
}

// TestIdentityOnlyFromSession: a pending login of alice cannot become Bob
// by naming him in a form field or a header, even with Bob's valid code.
func TestIdentityOnlyFromSession(t *testing.T) {
	g := newGate(t, gateOpts{})
	bob := g.browser()
	bob.login("bob", testPassword, "/")
	bobKey := bob.enable()
	alice := g.browser()
	alice.login("alice", testPassword, "/")
	alice.enable()
	nextStep()

	a := g.browser()
	a.login("alice", testPassword, "/.auth/code")
	code := totpCode(t, bobKey.secret, testNow())
	r := a.post("/.auth/code", formOf("code", code, "username", "Bob", "user", "Bob", "name", "Bob"),
		"Remote-User", "Bob", "X-Forwarded-User", "Bob")
	if r.status != http.StatusUnauthorized {
		t.Fatalf("alice's pending login with Bob's code and Bob's name in fields and headers: got %d, want 401", r.status)
	}
	// Anonymous requests naming a user in headers get nothing either.
	anon := g.browser()
	if r := anon.raw("GET /.auth/me HTTP/1.1", "Remote-User: alice", "X-Forwarded-User: alice", "Authorization: Basic YWxpY2U6eA=="); r.status != http.StatusUnauthorized {
		t.Errorf("/me with identity headers and no session: got %d, want 401", r.status)
	}
	if r := anon.raw("GET /secret HTTP/1.1", "Accept: text/html", "Remote-User: alice", "X-Remote-User: alice"); r.status != http.StatusFound || g.up.count() != 0 {
		t.Errorf("the site with identity headers and no session: got %d (upstream %d), want 302 and nothing through", r.status, g.up.count())
	}
	if strings.Contains(a.get("/.auth/me").body, "Bob") {
		t.Errorf("alice's session took Bob's identity")
	}
}
