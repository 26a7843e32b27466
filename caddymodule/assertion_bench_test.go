package caddymodule

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// BenchmarkServerAssertion is BenchmarkServer's two_factor site beside the
// same site with the signed assertion and auth_headers on: a whole request
// through Caddy's HTTP server with a live session. The session's token is
// signed at its first request and reused after (once a minute at most it
// is signed again), so the difference is a map look-up and four headers;
// internal/gate's BenchmarkAdmitAssertion/signed is what a signature costs.
func BenchmarkServerAssertion(b *testing.B) {
	dir := b.TempDir()
	server := func(port string, handlers ...map[string]any) map[string]any {
		handlers = append(handlers, map[string]any{"handler": "static_response", "status_code": 200, "body": "ok"})
		return map[string]any{
			"listen":          []string{"127.0.0.1:" + port},
			"automatic_https": map[string]any{"disable": true},
			"routes":          []any{map[string]any{"handle": handlers}},
		}
	}
	users := []map[string]string{{"username": "alice", "password": testHash}}
	cfg := map[string]any{
		"admin":   map[string]any{"disabled": true},
		"logging": map[string]any{"logs": map[string]any{"default": map[string]any{"level": "ERROR"}}},
		"apps": map[string]any{
			"two_factor": map[string]any{"clock": map[string]string{"source": "offset"}},
			"http": map[string]any{"servers": map[string]any{
				"gate": server("18994", map[string]any{"handler": "two_factor", "users": users, "storage_dir": dir + "/a"}),
				"assert": server("18995", map[string]any{"handler": "two_factor", "users": users, "storage_dir": dir + "/b",
					"assertion_header": "X-Two-Factor-Assertion", "auth_headers": true}),
			}},
		},
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		b.Fatal(err)
	}
	if err := caddy.Load(raw, true); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = caddy.Stop() })
	app, err := caddy.ActiveContext().App("http")
	if err != nil {
		b.Fatal(err)
	}
	servers := app.(*caddyhttp.App).Servers
	for _, tc := range []struct{ name, server string }{{"two_factor", "gate"}, {"two_factor+assertion", "assert"}} {
		srv := servers[tc.server]
		// alice has 2FA off: the password alone makes a full session.
		login := httptest.NewRequest(http.MethodPost, "http://example.test/.auth/login",
			strings.NewReader(url.Values{"username": {"alice"}, "password": {testPassword}}.Encode()))
		login.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		login.Header.Set("Sec-Fetch-Site", "same-origin")
		lw := httptest.NewRecorder()
		srv.ServeHTTP(lw, login)
		var cookie string
		for _, c := range lw.Result().Cookies() {
			if c.Name == DefaultCookieName {
				cookie = c.Name + "=" + c.Value
			}
		}
		if lw.Code != http.StatusSeeOther || cookie == "" {
			b.Fatalf("login: got %d and cookies %v", lw.Code, lw.Result().Cookies())
		}
		b.Run(tc.name, func(b *testing.B) {
			do := func() *httptest.ResponseRecorder {
				r := httptest.NewRequest(http.MethodGet, "http://example.test/app/page?tab=1", nil)
				browserHeaders(r)
				r.Header.Set("Cookie", cookie)
				w := httptest.NewRecorder()
				srv.ServeHTTP(w, r)
				return w
			}
			if w := do(); w.Code != http.StatusOK || w.Body.String() != "ok" {
				b.Fatalf("got %d %q, want 200 ok", w.Code, w.Body.String())
			}
			b.ReportAllocs()
			for b.Loop() {
				if w := do(); w.Code != http.StatusOK {
					b.Fatalf("got %d", w.Code)
				}
			}
		})
	}
}
