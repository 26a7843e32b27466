package caddymodule

import (
	"encoding/json"
	"html"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/gate"
)

// xssPayloads break out of text, attributes, URLs and templates.
var xssPayloads = []string{
	`"><script>alert(1)</script>`, `'><img src=x onerror=alert(1)>`, `</title><script>alert(1)</script>`,
	`<svg/onload=alert(1)>`, `" autofocus onfocus="alert(1)`, `' onmouseover='alert(1)`, `javascript:alert(1)`,
	`</textarea><script>alert(1)</script>`, `<iframe srcdoc="<script>alert(1)</script>">`, `{{.}}{{template "layout"}}`,
	"\u2028<script>alert(1)</script>", `<a href="javascript:alert(1)">x</a>`, `%3Cscript%3Ealert(1)%3C/script%3E`,
	`<base href="//evil.example/">`, `<meta http-equiv="refresh" content="0;url=//evil.example">`,
	`<style>*{background:url(//evil.example)}</style>`, "`${alert(1)}`", `<math><mtext><script>alert(1)</script>`,
	`&lt;script&gt;`, `<!--<script>-->`, `]]><script>alert(1)</script>`,
}

// TestReflectedXSS sends each payload through every value a page could
// reflect: next (login page and a failed login), the username of a failed
// login (not reflected at all), the path of a 404 and a 405, the query of
// the redirect to the login page, and headers pages never use
// (Accept-Language, Referer, User-Agent, a cookie). No page holds markup
// that came from the request.
func TestReflectedXSS(t *testing.T) {
	g := newGate(t, gateOpts{extra: "free_failures 50"})
	tried := 0
	look := func(what, payload string, r response) {
		t.Helper()
		tried++
		if r.status >= 500 {
			t.Errorf("%s with %q: got %d", what, payload, r.status)
		}
		assertNoMarkup(t, what+" with "+payload, r.body)
		if strings.ContainsAny(payload, `<>"'`) && strings.Contains(r.body, payload) {
			t.Errorf("%s: the payload %q is in the page unescaped", what, payload)
		}
	}
	headers := func(p string) []string {
		return []string{"Accept-Language", p, "Referer", "https://localhost:9443/" + url.PathEscape(p), "User-Agent", p}
	}
	for _, p := range xssPayloads {
		b := g.browser()
		look("login page next", p, b.get("/.auth/login?next="+url.QueryEscape("/"+p), headers(p)...))
		r := b.post("/.auth/login", formOf("username", "zed", "password", "x", "next", "/"+p), headers(p)...)
		look("failed login next", p, r)
		if r.status != http.StatusUnauthorized {
			t.Errorf("failed login: got %d", r.status)
		}
		r = b.post("/.auth/login", formOf("username", p, "password", "x"))
		look("failed login username", p, r)
		if strings.Contains(r.body, html.EscapeString(p)) && len(p) > 8 {
			t.Errorf("failed login reflects the username %q", p)
		}
		look("404", p, b.get("/.auth/"+url.PathEscape(p), headers(p)...))
		look("404 raw", p, b.raw("GET /.auth/"+strings.ReplaceAll(url.PathEscape(p), "%2F", "/")+" HTTP/1.1"))
		req, _ := http.NewRequest(http.MethodPut, g.base+"/.auth/login?x="+url.QueryEscape(p), nil)
		look("405", p, b.do(req))
		look("redirect to login", p, b.get("/app?q="+url.QueryEscape(p), headers(p)...))
		look("code page without session", p, b.get("/.auth/code?x="+url.QueryEscape(p), headers(p)...))
		b.jar.SetCookies(mustURL(g.base), []*http.Cookie{{Name: DefaultCookieName, Value: url.QueryEscape(p), Path: "/"}})
		look("login page with a cookie", p, b.get("/.auth/login", headers(p)...))
	}
	t.Logf("%d payloads, %d reflections checked", len(xssPayloads), tried)
}

// TestMarkupInConfiguredNames: a user name and an issuer holding markup
// (the operator's input, but still data) are escaped on every page, in
// the JSON of /me, in the otpauth link and in the backup-codes file.
func TestMarkupInConfiguredNames(t *testing.T) {
	name := `"><svg/onload=alert(1)>`
	g := newGate(t, gateOpts{extra: "user `" + name + "` " + testHash})
	g.config = strings.Replace(g.config, `issuer "Test Cloud"`, `issuer "<script>x</script>"`, 1)
	g.reload()
	b := g.browser()
	b.login(name, testPassword, "/")
	for _, p := range []string{"/.auth/security", "/.auth/security/enable", "/.auth/login"} {
		assertNoMarkup(t, p, b.get(p).body)
	}
	r := b.get("/.auth/security/enable")
	if strings.Contains(r.body, name) {
		t.Errorf("enable page holds the name unescaped")
	}
	b.enable()
	var m gate.MeInfo
	r = b.get("/.auth/me")
	if err := json.Unmarshal([]byte(r.body), &m); err != nil || m.User != name || strings.Contains(r.body, "<") {
		t.Errorf("/me: got %q (%v), want the name JSON-escaped", r.body, err)
	}
	for _, p := range []string{"/.auth/security", "/.auth/security/disable"} {
		assertNoMarkup(t, p, b.get(p).body)
	}
}
