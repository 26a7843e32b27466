package caddymodule

import (
	"net/http"
	"strings"
	"testing"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/gate"
)

// spellings returns the ways a client may write a header name that a
// server or framework could read as name: letter cases, "_" or "." for
// "-" (CGI and PHP map all three to "_"), and both.
func spellings(name string) []string {
	under := strings.ReplaceAll(name, "-", "_")
	dot := strings.ReplaceAll(name, "-", ".")
	alt := func(s string) string {
		b := []byte(strings.ToLower(s))
		for i := 0; i < len(b); i += 2 {
			if b[i] >= 'a' && b[i] <= 'z' {
				b[i] -= 'a' - 'A'
			}
		}
		return string(b)
	}
	return []string{name, strings.ToLower(name), strings.ToUpper(name), alt(name),
		under, strings.ToLower(under), strings.ToUpper(under), alt(under), dot, strings.ToLower(dot)}
}

// TestIdentityHeaderSmuggling sends every identity header the gate knows,
// in every spelling, as raw HTTP/1.1 lines: plain, without a space,
// padded, duplicated, folded, empty. The upstream gets exactly one
// identity header, the gate's, with the session's user; lines Go's server
// refuses as malformed get 400 and reach nothing.
//
// Caddy itself drops header names with "_" or "." unless the server's
// expected_underscore_headers / expected_dot_headers let them in, so the
// test runs both ways: by default, and with those lists letting every
// spelling reach the gate, which must then remove them itself.
func TestIdentityHeaderSmuggling(t *testing.T) {
	for _, tc := range []struct{ custom, global string }{
		{"", ""},
		{"", "servers {\n\t\texpected_underscore_headers remote_* x_*\n\t\texpected_dot_headers remote.* x.*\n\t}"},
		{"X-Gate-User", "servers {\n\t\texpected_underscore_headers remote_* x_*\n\t\texpected_dot_headers remote.* x.*\n\t}"},
		{"x-gate-user", ""}, // configured in another spelling than Go's
	} {
		custom := tc.custom
		extra := ""
		header := DefaultUserHeader
		if custom != "" {
			extra = "user_header " + custom
			header = custom
		}
		g := newGate(t, gateOpts{extra: extra, global: tc.global})
		b := g.browser()
		b.login("alice", testPassword, "/")
		// The test's own fold, not the product's headerKey.
		ids := map[string]bool{}
		for _, n := range append([]string{header}, gate.CommonIdentityHeaders...) {
			ids[fold(n)] = true
		}

		names := append([]string{header}, gate.CommonIdentityHeaders...)
		var lines [][]string
		for _, n := range names {
			for _, s := range spellings(n) {
				lines = append(lines,
					[]string{s + ": mallory"},
					[]string{s + ":mallory"},
					[]string{s + ":   mallory   "},
					[]string{s + ":\tmallory"},
					[]string{s + ":"},
					[]string{s + ": mallory", s + ": eve"},
					[]string{"X-Innocent: a", s + ": mallory\r\n folded"},
				)
			}
		}
		// Forms the server must refuse outright, or fold into another
		// header's value (a line starting with a space continues the one before
		// it), so that the request is refused or loses nothing but that header.
		malformed := [][]string{
			{"Remote-User : mallory"}, {"Remote-User\t: mallory"}, {" Remote-User: mallory"},
			{"Remote-User\x00: mallory"}, {"Remote\u2010User: mallory"}, {"X-Innocent: a\r\n Remote-User: mallory"},
			{"Remote-User: mall\x00ory"}, {"Remote-User: a\rRemote-User: mallory"},
		}
		tried := 0
		check := func(hdrs []string, mayRefuse bool) {
			t.Helper()
			before := g.up.count()
			r := b.raw("GET /app HTTP/1.1", hdrs...)
			tried++
			if g.up.count() == before {
				if !mayRefuse || r.status < 400 {
					t.Errorf("%q: got %d and nothing upstream, want it served without the smuggled header", hdrs, r.status)
				}
				return
			}
			up := g.up.last()
			var got []string
			for n, vs := range up.Header {
				if ids[fold(n)] {
					for _, v := range vs {
						got = append(got, n+": "+v)
					}
				}
			}
			if len(got) != 1 || got[0] != http.CanonicalHeaderKey(header)+": alice" {
				t.Errorf("%q: upstream identity headers %q, want exactly [%s: alice]", hdrs, got, http.CanonicalHeaderKey(header))
			}
		}
		for _, l := range lines {
			check(l, false)
		}
		for _, l := range malformed {
			check(l, true)
		}
		// HTTP/2, where names arrive in lower case.
		for _, n := range names {
			before := g.up.count()
			r := b.get("/app", strings.ToLower(n), "mallory", strings.ToLower(strings.ReplaceAll(n, "-", "_")), "mallory")
			tried++
			if r.status != http.StatusOK || g.up.count() != before+1 {
				t.Fatalf("HTTP/2 with %s: got %d", n, r.status)
			}
			for k, vs := range g.up.last().Header {
				if ids[fold(k)] && (len(vs) != 1 || vs[0] != "alice") {
					t.Errorf("HTTP/2 with %s: upstream got %s: %q", n, k, vs)
				}
			}
		}
		t.Logf("user_header %s, allow-lists %v: %d requests with smuggled identity headers", header, tc.global != "", tried)
	}
}

// TestSessionCookieNeverForwarded: however the Cookie header is written,
// the upstream never sees the gate's session ID, and keeps the site's own
// cookies.
func TestSessionCookieNeverForwarded(t *testing.T) {
	g := newGate(t, gateOpts{})
	b := g.browser()
	b.login("alice", testPassword, "/")
	id := b.cookie()
	for _, hdrs := range [][]string{
		{"Cookie: theme=dark"},
		{"Cookie: theme=dark; " + DefaultCookieName + "=" + id},
		{"Cookie: theme=dark", "Cookie: " + DefaultCookieName + "=" + id},
		{"cookie: " + DefaultCookieName + "=" + id + ";theme=dark"},
		{"COOKIE: theme=dark;  " + DefaultCookieName + "=" + id + " ; x=1"},
		{"Cookie: " + DefaultCookieName + "=" + id + "; theme=dark; " + DefaultCookieName + "=" + id},
	} {
		before := g.up.count()
		r := b.raw("GET /app HTTP/1.1", hdrs...)
		if r.status != http.StatusOK || g.up.count() != before+1 {
			t.Errorf("%q: got %d, want 200 through the gate", hdrs, r.status)
			continue
		}
		got := strings.Join(g.up.last().Header.Values("Cookie"), "; ")
		if strings.Contains(got, id) || strings.Contains(got, DefaultCookieName) {
			t.Errorf("%q: upstream Cookie %q holds the gate's session", hdrs, got)
		}
		if !strings.Contains(got, "theme=dark") {
			t.Errorf("%q: upstream Cookie %q lost the site's own cookie", hdrs, got)
		}
	}
}

// fold reads a header name as a lenient server might: any case, "_" and
// "." as "-".
func fold(name string) string {
	return strings.ToLower(strings.NewReplacer("_", "-", ".", "-").Replace(name))
}
