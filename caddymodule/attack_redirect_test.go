package caddymodule

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/net/html"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/attack"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/gate"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/otp"
)

var nextFieldRe = regexp.MustCompile(`name="next" value="([^"]*)"`)

// TestOpenRedirectPayloads sends every payload as `next` through each way
// it can travel: the login page's query, the login form (2FA off and on,
// so also after the code), and the login page visited with a full
// session. Every Location stays on this site; an unsafe `next` is dropped
// for "/".
func TestOpenRedirectPayloads(t *testing.T) {
	g := newGate(t, gateOpts{extra: "free_failures 50"})
	bob := g.browser()
	bob.login("bob", testPassword, "/")
	bobKey := bob.enable()

	check := func(how, payload string, r response) {
		t.Helper()
		loc := r.header.Get("Location")
		if loc == "" {
			t.Errorf("%s with next=%.80q: no Location (status %d)", how, payload, r.status)
			return
		}
		if !attack.OnThisSite(loc) {
			t.Errorf("%s with next=%.80q: Location %q leaves the site", how, payload, loc)
		}
		if gate.SafeNext(payload) == "" && loc != "/" {
			t.Errorf("%s with next=%.80q: Location %.80q, want / for an unsafe next", how, payload, loc)
		}
		if r.header.Get("Set-Cookie") != "" && strings.Contains(r.header.Get("Set-Cookie"), "planted") {
			t.Errorf("%s with next=%.80q: a header was injected: %q", how, payload, r.header.Values("Set-Cookie"))
		}
	}
	tried := 0
	for _, p := range attack.RedirectPayloads {
		// The login page carries only a safe next in its form.
		r := g.browser().get("/.auth/login?next=" + url.QueryEscape(p))
		if m := nextFieldRe.FindStringSubmatch(r.body); m != nil && gate.SafeNext(p) == "" {
			t.Errorf("login page with next=%.80q carries it in the form: %.80q", p, m[1])
		}
		// Password only (2FA off).
		s := g.browser()
		check("login", p, s.post("/.auth/login", formOf("username", "alice", "password", testPassword, "next", p)))
		// Password then code (2FA on): next is kept in the session.
		s = g.browser()
		if r := s.post("/.auth/login", formOf("username", "bob", "password", testPassword, "next", p)); r.header.Get("Location") != "/.auth/code" {
			t.Fatalf("login with 2FA: got %q, want /.auth/code", r.header.Get("Location"))
		}
		nextStep()
		check("code", p, s.post("/.auth/code", formOf("code", totpCode(t, bobKey.secret, testNow()))))
		// The login page visited with a full session.
		full := g.browser()
		full.login("alice", testPassword, "/")
		check("login page with a session", p, full.get("/.auth/login?next="+url.QueryEscape(p)))
		tried += 4
	}
	if g.up.count() != 0 {
		t.Errorf("the upstream was reached")
	}
	// A safe next is honoured, so the checks above are not vacuous.
	s := g.browser()
	if r := s.post("/.auth/login", formOf("username", "alice", "password", testPassword, "next", "/docs/a?b=1#c")); r.header.Get("Location") != "/docs/a?b=1#c" {
		t.Errorf("safe next: got Location %q, want /docs/a?b=1#c", r.header.Get("Location"))
	}
	t.Logf("%d redirect payloads, %d attempts, every Location on this site", len(attack.RedirectPayloads), tried)
}

// TestPathAsRedirectPayload: the path of an anonymous request becomes
// next; a path that is a payload ("//evil.example") is dropped at login.
func TestPathAsRedirectPayload(t *testing.T) {
	g := newGate(t, gateOpts{})
	for _, target := range []string{"//evil.example", "//evil.example/x?y=1", "/\\evil.example", "///evil.example/%2e%2e"} {
		b := g.browser()
		r := b.raw("GET "+target+" HTTP/1.1", "Accept: text/html")
		loc := r.header.Get("Location")
		if r.status != http.StatusFound || !strings.HasPrefix(loc, "/.auth/login?next=") {
			t.Errorf("GET %s: got %d %q, want 302 to the login page", target, r.status, loc)
			continue
		}
		u, _ := url.Parse(loc)
		next := u.Query().Get("next")
		r = b.post("/.auth/login", formOf("username", "alice", "password", testPassword, "next", next))
		if got := r.header.Get("Location"); !attack.OnThisSite(got) {
			t.Errorf("GET %s then login: Location %q leaves the site", target, got)
		}
	}
}

// poisonHeaders are every header a proxy or framework might take the
// public host, scheme or path from.
var poisonHeaders = []string{
	"X-Forwarded-Host", "evil.example", "X-Forwarded-Proto", "http", "X-Forwarded-Scheme", "http",
	"X-Forwarded-Port", "666", "Forwarded", "for=1.2.3.4;host=evil.example;proto=http",
	"X-Original-Host", "evil.example", "X-Host", "evil.example", "X-Forwarded-Server", "evil.example",
	"X-HTTP-Host-Override", "evil.example", "X-Forwarded-Prefix", "//evil.example",
	"X-Original-URL", "//evil.example/", "X-Rewrite-URL", "//evil.example/", "X-Forwarded-Uri", "//evil.example/",
	"Referer", "https://evil.example/", "X-Url-Scheme", "http",
	"Front-End-Https", "off", "X-Forwarded-Ssl", "off",
}

// TestHostAndForwardedPoisoning sends poisoned Host and X-Forwarded-*
// headers with every request that answers with a redirect or a page, with
// and without trusted_proxies: no Location, link or QR code takes anything
// from them.
func TestHostAndForwardedPoisoning(t *testing.T) {
	for _, global := range []string{"", "servers {\n\t\ttrusted_proxies static 127.0.0.1/8 ::1\n\t}"} {
		g := newGate(t, gateOpts{global: global})
		tried := 0
		send := func(b *browser, method, path string, form url.Values) response {
			t.Helper()
			var body *strings.Reader
			if form != nil {
				body = strings.NewReader(form.Encode())
			} else {
				body = strings.NewReader("")
			}
			req, _ := http.NewRequest(method, g.base+path, body)
			if form != nil {
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			req.Header.Set("Accept", "text/html")
			for i := 0; i+1 < len(poisonHeaders); i += 2 {
				req.Header.Set(poisonHeaders[i], poisonHeaders[i+1])
			}
			req.Host = "localhost:666" // a Host the site matches, with a port of the attacker's choice
			r := b.do(req)
			tried++
			if loc := r.header.Get("Location"); loc != "" && (!attack.OnThisSite(loc) || strings.Contains(loc, "666") || strings.Contains(loc, "evil")) {
				t.Errorf("%s %s: Location %q was taken from the request's headers", method, path, loc)
			}
			if strings.Contains(r.body, "evil.example") || strings.Contains(r.body, ":666") || strings.Contains(r.body, "http://") {
				t.Errorf("%s %s: the page took a value from the request's headers: %.300s", method, path, r.body)
			}
			return r
		}
		anon := g.browser()
		send(anon, "GET", "/deep/path?q=1", nil)
		send(anon, "GET", "/.auth", nil)
		send(anon, "GET", "/.auth/security", nil)
		send(anon, "GET", "/.auth/code", nil)
		send(anon, "GET", "/.auth/login", nil)
		send(anon, "GET", "/.auth/nope", nil)
		send(anon, "POST", "/.auth/login", formOf("username", "alice", "password", "wrong"))

		b := g.browser()
		send(b, "POST", "/.auth/login", formOf("username", "alice", "password", testPassword))
		send(b, "GET", "/.auth/login", nil)
		send(b, "GET", "/.auth/security", nil)
		r := send(b, "GET", "/.auth/security/enable", nil)
		link := otpauthRe.FindStringSubmatch(r.body)
		if link == nil {
			t.Fatalf("enable page without an otpauth link")
		}
		assertQRCodeIs(t, r.body, html.UnescapeString(link[1]))
		if !strings.HasPrefix(link[1], "otpauth://totp/Test%20Cloud:alice?") || !strings.Contains(link[1], "issuer=Test%20Cloud") {
			t.Errorf("otpauth link %q: want issuer and account from the configuration", link[1])
		}
		enr := b.enable()
		send(b, "POST", "/.auth/security/enable", formOf("password", testPassword, "code", "000000"))
		send(b, "POST", "/.auth/logout", formOf())

		p := g.browser()
		send(p, "POST", "/.auth/login", formOf("username", "alice", "password", testPassword))
		send(p, "GET", "/secret", nil)
		send(p, "GET", "/.auth/security", nil)
		nextStep()
		send(p, "POST", "/.auth/code", formOf("code", totpCode(t, enr.secret, testNow())))
		send(p, "GET", "/.auth/login?next=/x", nil)
		if g.up.count() != 0 {
			t.Errorf("upstream reached by the poisoning requests: %d", g.up.count())
		}
		t.Logf("trusted_proxies %v: %d requests with poisoned headers", global != "", tried)
	}
}

var qrRe = regexp.MustCompile(`src="data:image/png;base64,([^"]+)"`)

// assertQRCodeIs checks that the page's QR code encodes link: the encoder
// is deterministic, so the PNG must equal the one made from link.
func assertQRCodeIs(t *testing.T, page, link string) {
	t.Helper()
	m := qrRe.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no QR code on the page")
	}
	got, err := base64.StdEncoding.DecodeString(html.UnescapeString(m[1]))
	if err != nil {
		t.Fatal(err)
	}
	want, err := otp.QRPNG(link, 200)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("the QR code does not encode %q", link)
	}
}
