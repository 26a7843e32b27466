package caddymodule

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/gate"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddytest"
)

// newBodyUpstream is an upstream that reads each request's body to its end
// before recording the request, so that the recorded copy holds the
// trailers that arrived after the body (r.Clone copies r.Trailer).
func newBodyUpstream(t *testing.T) *upstream {
	u := &upstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		u.mu.Lock()
		u.reqs = append(u.reqs, r.Clone(r.Context()))
		u.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"path": r.URL.Path, "headers": r.Header, "body": string(body)})
	}))
	t.Cleanup(u.srv.Close)
	return u
}

// chunked sends a POST with a chunked body ("hello") over raw HTTP/1.1,
// with the browser's session cookie, the given header lines and the given
// trailer lines after the last chunk.
func (b *browser) chunked(headerLines, trailerLines []string) response {
	b.t.Helper()
	var sb strings.Builder
	sb.WriteString("POST /app HTTP/1.1\r\nHost: localhost:9443\r\nConnection: close\r\n")
	fmt.Fprintf(&sb, "Cookie: %s=%s\r\n", DefaultCookieName, b.cookie())
	sb.WriteString("Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n")
	for _, l := range headerLines {
		sb.WriteString(l + "\r\n")
	}
	sb.WriteString("\r\n5\r\nhello\r\n0\r\n")
	for _, l := range trailerLines {
		sb.WriteString(l + "\r\n")
	}
	sb.WriteString("\r\n")
	return rawExchange(b.t, sb.String())
}

// trailerCases are chunked requests that carry an identity name (or a
// name the operator listed with strip_header) as a trailer: declared,
// undeclared beside a declared one, undeclared alone, and spelled as CGI
// backends read it.
func trailerCases(name string) []struct{ headers, trailers []string } {
	under := strings.ReplaceAll(name, "-", "_")
	dot := strings.ReplaceAll(name, "-", ".")
	return []struct{ headers, trailers []string }{
		{[]string{"Trailer: " + name}, []string{name + ": mallory"}},
		{[]string{"Trailer: X-Checksum"}, []string{"X-Checksum: abc", name + ": mallory"}},
		{[]string{"Trailer: X-Checksum, " + name}, []string{"X-Checksum: abc", name + ": mallory", name + ": eve"}},
		{nil, []string{name + ": mallory"}},
		{[]string{"Trailer: " + strings.ToLower(under)}, []string{strings.ToLower(under) + ": mallory"}},
		{[]string{"Trailer: " + strings.ToUpper(dot)}, []string{strings.ToUpper(dot) + ": mallory"}},
		{[]string{"Trailer: X-Checksum"}, []string{"X-Checksum: abc", strings.ToUpper(under) + ": mallory", strings.ToLower(dot) + ": eve"}},
		{[]string{"Trailer: " + name, "Trailer: X-Checksum"}, []string{strings.ToLower(name) + ": mallory", "X-Checksum: abc"}},
	}
}

// TestIdentityTrailerSmuggling: a logged-in client sends identity names
// (and names listed with strip_header) as request trailers of a chunked
// POST, in every way HTTP/1.1 allows. The upstream, which reads the body
// to its end, gets the body and exactly one identity header (the gate's),
// and no trailer at all: the gate drops request trailers (docs/routes.md,
// what the upstream receives).
func TestIdentityTrailerSmuggling(t *testing.T) {
	for _, global := range []string{
		"",
		"servers {\n\t\texpected_underscore_headers remote_* x_*\n\t\texpected_dot_headers remote.* x.*\n\t}",
	} {
		g := newGate(t, gateOpts{up: newBodyUpstream(t), global: global, extra: "strip_header X-Email\n\t\tstrip_header X-Forwarded-Groups X-Team"})
		b := g.browser()
		b.login("alice", testPassword, "/")
		watched := map[string]bool{}
		for _, n := range append([]string{DefaultUserHeader, "X-Email", "X-Forwarded-Groups", "X-Team"}, gate.CommonIdentityHeaders...) {
			watched[fold(n)] = true
		}
		tried := 0
		for _, name := range []string{"Remote-User", "X-Forwarded-User", "X-Email", "X-Forwarded-Groups"} {
			for _, tc := range trailerCases(name) {
				before := g.up.count()
				r := b.chunked(tc.headers, tc.trailers)
				tried++
				if r.status != http.StatusOK || g.up.count() != before+1 || !strings.Contains(r.body, `"body":"hello"`) {
					t.Errorf("headers %q, trailers %q: got %d, upstream requests %d→%d, body %.200q; want 200 with the body upstream",
						tc.headers, tc.trailers, r.status, before, g.up.count(), r.body)
					continue
				}
				up := g.up.last()
				for k, vs := range up.Trailer {
					if watched[fold(k)] {
						t.Errorf("headers %q, trailers %q: upstream got the trailer %s: %q", tc.headers, tc.trailers, k, vs)
					} else if len(vs) > 0 {
						t.Errorf("headers %q, trailers %q: upstream got the trailer %s: %q, want request trailers dropped", tc.headers, tc.trailers, k, vs)
					}
				}
				checkOnlyGateIdentity(t, fmt.Sprintf("headers %q, trailers %q", tc.headers, tc.trailers), up.Header, watched)
			}
		}
		t.Logf("allow-lists %v: %d chunked requests with smuggled trailers", global != "", tried)
	}
}

// checkOnlyGateIdentity fails unless the only watched header in h is the
// gate's Remote-User: alice.
func checkOnlyGateIdentity(t *testing.T, what string, h http.Header, watched map[string]bool) {
	t.Helper()
	var got []string
	for n, vs := range h {
		if watched[fold(n)] {
			for _, v := range vs {
				got = append(got, n+": "+v)
			}
		}
	}
	if len(got) != 1 || got[0] != "Remote-User: alice" {
		t.Errorf("%s: upstream identity headers %q, want exactly [Remote-User: alice]", what, got)
	}
}

// TestIdentityTrailersOverHTTP2: the same over HTTP/2, where Go's client
// sends the declared trailers after the body.
func TestIdentityTrailersOverHTTP2(t *testing.T) {
	g := newGate(t, gateOpts{up: newBodyUpstream(t), extra: "strip_header X-Email"})
	b := g.browser()
	b.login("alice", testPassword, "/")
	for _, trailer := range []http.Header{
		{"Remote-User": {"mallory"}},
		{"X-Checksum": {"abc"}, "Remote_user": {"mallory"}, "X-Email": {"mallory@example.com"}},
	} {
		req, err := http.NewRequest(http.MethodPost, g.base+"/app", io.MultiReader(strings.NewReader("hello")))
		if err != nil {
			t.Fatal(err)
		}
		req.Trailer = trailer
		before := g.up.count()
		res, err := b.client.Do(req)
		if err != nil {
			t.Fatalf("trailers %v: %v", trailer, err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.ProtoMajor != 2 || res.StatusCode != http.StatusOK || g.up.count() != before+1 || !strings.Contains(string(body), `"body":"hello"`) {
			t.Fatalf("trailers %v: got %s %d, body %.200q; want HTTP/2 200 with the body upstream", trailer, res.Proto, res.StatusCode, body)
		}
		up := g.up.last()
		for k, vs := range up.Trailer {
			if len(vs) > 0 {
				t.Errorf("trailers %v: upstream got the trailer %s: %q, want request trailers dropped", trailer, k, vs)
			}
		}
		checkOnlyGateIdentity(t, fmt.Sprintf("HTTP/2 trailers %v", trailer), up.Header,
			map[string]bool{fold("Remote-User"): true, fold("X-Email"): true})
	}
}

// TestStripHeaderSmuggling: names listed with strip_header are deleted
// from the request headers in every spelling, over HTTP/1.1 and HTTP/2,
// and the other headers are kept. As in TestIdentityHeaderSmuggling, the
// test runs with Caddy's defaults (which drop names with "_" or ".") and
// with allow-lists that let those spellings reach the gate (Caddy then
// drops their "-" forms itself).
func TestStripHeaderSmuggling(t *testing.T) {
	for _, global := range []string{
		"",
		"servers {\n\t\texpected_underscore_headers x_*\n\t\texpected_dot_headers x.*\n\t}",
	} {
		g := newGate(t, gateOpts{extra: "strip_header X-Email\n\t\tstrip_header x-forwarded-groups X_Team", global: global})
		b := g.browser()
		b.login("alice", testPassword, "/")
		watched := map[string]bool{fold("X-Email"): true, fold("X-Forwarded-Groups"): true, fold("X-Team"): true}
		tried := 0
		for _, n := range []string{"X-Email", "X-Forwarded-Groups", "X-Team"} {
			for _, s := range spellings(n) {
				for _, lines := range [][]string{{s + ": mallory"}, {s + ": mallory", s + ": eve"}, {"X-Innocent: a", s + ":mallory"}} {
					before := g.up.count()
					r := b.raw("GET /app HTTP/1.1", lines...)
					tried++
					if r.status != http.StatusOK || g.up.count() != before+1 {
						t.Errorf("%q: got %d, want it served", lines, r.status)
						continue
					}
					for k, vs := range g.up.last().Header {
						if watched[fold(k)] {
							t.Errorf("%q: upstream got %s: %q", lines, k, vs)
						}
					}
				}
			}
			before := g.up.count()
			r := b.get("/app", strings.ToLower(n), "mallory", strings.ReplaceAll(strings.ToLower(n), "-", "_"), "eve")
			tried++
			if r.status != http.StatusOK || g.up.count() != before+1 {
				t.Fatalf("HTTP/2 with %s: got %d", n, r.status)
			}
			for k, vs := range g.up.last().Header {
				if watched[fold(k)] {
					t.Errorf("HTTP/2 with %s: upstream got %s: %q", n, k, vs)
				}
			}
		}
		if global == "" {
			// Headers that are not listed still reach the upstream.
			r := b.raw("GET /app HTTP/1.1", "X-Emails: kept", "X-Team-Size: 3")
			up := g.up.last()
			if r.status != http.StatusOK || up.Header.Get("X-Emails") != "kept" || up.Header.Get("X-Team-Size") != "3" {
				t.Errorf("unlisted headers: got %d, upstream %v; want X-Emails and X-Team-Size kept", r.status, up.Header)
			}
		}
		t.Logf("allow-lists %v: %d requests with headers named by strip_header", global != "", tried)
	}
}

// TestStripHeaderCaddyfile: strip_header takes one or more names, may be
// repeated, and refuses anything that is not a header name with an error
// that names the line.
func TestStripHeaderCaddyfile(t *testing.T) {
	adapt := func(body string) (string, error) {
		src := "localhost {\n" + body + "\n}\n"
		out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src), map[string]any{"filename": "Caddyfile"})
		return string(out), err
	}
	out, err := adapt("two_factor {\n\tstrip_header X-Email\n\tstrip_header X-Forwarded-Groups x_team\n}")
	if err != nil {
		t.Fatalf("adapt: %v", err)
	}
	if want := `"strip_headers":["X-Email","X-Forwarded-Groups","x_team"]`; !strings.Contains(out, want) {
		t.Errorf("adapted JSON: got %s, want it to hold %s", out, want)
	}
	for _, tc := range []struct{ body, want, line string }{
		{"two_factor {\n\tstrip_header\n}", "strip_header: want one or more header names", "Caddyfile:3"},
		{"two_factor {\n\tstrip_header \"X Email\"\n}", "strip_header: not a valid header name: 'X Email'", "Caddyfile:3"},
		{"two_factor {\n\tissuer x\n\tstrip_header X-Email X-Email:\n}", "strip_header: not a valid header name: 'X-Email:'", "Caddyfile:4"},
		{"two_factor {\n\tstrip_header X-Émail\n}", "strip_header: not a valid header name: 'X-Émail'", "Caddyfile:3"},
		{"two_factor {\n\tstrip_header \"\"\n}", "strip_header: not a valid header name: ''", "Caddyfile:3"},
	} {
		_, err := adapt(tc.body)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasSuffix(err.Error(), "at "+tc.line) {
			t.Errorf("%q: got %v, want an error with %q at %s", tc.body, err, tc.want, tc.line)
		}
	}
}

// TestStripHeadersJSON: a bad name in the JSON field stops Caddy from
// loading, with the name's position.
func TestStripHeadersJSON(t *testing.T) {
	dir := t.TempDir()
	cfg := fmt.Sprintf(`{
		"admin": {"listen": "localhost:2999"},
		"apps": {"http": {"http_port": 9080, "https_port": 9443, "servers": {"s": {
			"listen": [":9080"],
			"routes": [{"handle": [{
				"handler": "two_factor",
				"users": [{"username": "alice", "password": %q}],
				"storage_dir": %q,
				"strip_headers": ["X-Email", "X Groups"]
			}]}]
		}}}}
	}`, testHash, dir+"/s")
	caddytest.AssertLoadError(t, cfg, "json", `strip_headers 2: not a valid header name`)
}
