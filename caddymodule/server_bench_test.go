package caddymodule

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/caddyauth"
)

// BenchmarkServer is the headline benchmark of the proxied path: a whole
// request through Caddy's HTTP server (its ServeHTTP: the request's
// context, replacer and variables, access to the route table, the handler
// chain, the response), in process, for three sites of one config in
// front of the same static response: plain, behind the gate with a live
// session, and behind Caddy's basic_auth (bcrypt, with its hash cache, so
// a request costs a cache lookup). The differences to plain are what the
// gate and basic_auth add; BenchmarkAuthenticated is the handler alone.
func BenchmarkServer(b *testing.B) {
	dir := b.TempDir()
	users := []map[string]string{{"username": "alice", "password": testHash}}
	servers := loadBenchServers(b, map[string]any{
		"plain": benchServer("18991"),
		"gate":  benchServer("18992", map[string]any{"handler": "two_factor", "users": users, "storage_dir": dir + "/store"}),
		"basic": benchServer("18993", map[string]any{"handler": "authentication", "providers": map[string]any{
			"http_basic": map[string]any{"accounts": users, "hash_cache": map[string]any{}},
		}}),
	})
	cookie := benchLogin(b, servers["gate"])
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:"+testPassword))

	// Every request carries both the session cookie and the basic
	// credentials, so that the requests are alike and only the handlers
	// differ.
	for _, tc := range []struct{ name, server string }{
		{"plain", "plain"}, {"two_factor", "gate"}, {"basic_auth", "basic"},
	} {
		b.Run(tc.name, func(b *testing.B) { benchRequests(b, servers[tc.server], "Cookie", cookie, "Authorization", basic) })
	}
}

// benchServer is one server of the benchmarks' config: one route, no
// matcher, the handlers and then a static "ok".
func benchServer(port string, handlers ...map[string]any) map[string]any {
	handlers = append(handlers, map[string]any{"handler": "static_response", "status_code": 200, "body": "ok"})
	return map[string]any{
		"listen":          []string{"127.0.0.1:" + port},
		"automatic_https": map[string]any{"disable": true},
		"routes":          []any{map[string]any{"handle": handlers}},
	}
}

// loadBenchServers loads a config of those servers (no admin API, the
// test clock) into Caddy, and returns Caddy's servers by name.
func loadBenchServers(b *testing.B, servers map[string]any) map[string]*caddyhttp.Server {
	b.Helper()
	cfg := map[string]any{
		"admin":   map[string]any{"disabled": true},
		"logging": map[string]any{"logs": map[string]any{"default": map[string]any{"level": "ERROR"}}},
		"apps": map[string]any{
			"two_factor": map[string]any{"clock": map[string]string{"source": "offset"}},
			"http":       map[string]any{"servers": servers},
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
	return app.(*caddyhttp.App).Servers
}

// benchLogin logs alice in on a gate's server and returns the Cookie
// header of her session: she has 2FA off, so the password alone makes it
// full.
func benchLogin(b *testing.B, srv *caddyhttp.Server) string {
	b.Helper()
	login := httptest.NewRequest(http.MethodPost, "http://example.test/.auth/login",
		strings.NewReader(url.Values{"username": {"alice"}, "password": {testPassword}}.Encode()))
	login.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	login.Header.Set("Sec-Fetch-Site", "same-origin")
	lw := httptest.NewRecorder()
	srv.ServeHTTP(lw, login)
	for _, c := range lw.Result().Cookies() {
		if c.Name == DefaultCookieName && lw.Code == http.StatusSeeOther {
			return c.Name + "=" + c.Value
		}
	}
	b.Fatalf("login: got %d and cookies %v", lw.Code, lw.Result().Cookies())
	return ""
}

// benchRequests measures whole requests through srv, each new as on the
// wire, with the header name and value pairs given, and checks each is
// answered 200 "ok".
func benchRequests(b *testing.B, srv *caddyhttp.Server, headers ...string) {
	do := func() *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, "http://example.test/app/page?tab=1", nil)
		browserHeaders(r)
		for i := 0; i+1 < len(headers); i += 2 {
			r.Header.Set(headers[i], headers[i+1])
		}
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
}
