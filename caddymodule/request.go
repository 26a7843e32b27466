package caddymodule

import (
	"net/http"
	"net/url"
	"path"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// cleanPath is the path the gate decides on: decoded (as Go's server gives
// it), backslashes read as slashes, and cleaned of dot segments and
// repeated slashes, so that /.auth/../x is /x and //x is /x.
func cleanPath(p string) string {
	if strings.Contains(p, "\\") {
		p = strings.ReplaceAll(p, "\\", "/")
	}
	if p == "" || p[0] != '/' {
		p = "/" + p
	}
	return path.Clean(p)
}

// isNavigation reports whether a request is a browser loading a page,
// which is sent to the login page rather than refused with 401.
func isNavigation(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	if r.Header.Get("Upgrade") != "" {
		return false
	}
	if mode := r.Header.Get("Sec-Fetch-Mode"); mode != "" {
		return mode == "navigate"
	}
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

// commonIdentityHeaders are removed from every request that passes the
// gate, besides the configured one, since upstreams commonly trust them.
var commonIdentityHeaders = []string{
	"Remote-User", "Remote-Name", "Remote-Email", "Remote-Groups",
	"X-Remote-User", "X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Preferred-Username",
	"X-Auth-Request-User", "X-Auth-Request-Email", "X-Webauth-User",
}

// identityFold maps the characters CGI-style backends (PHP's $_SERVER among
// them) read as "-" in a header name.
var identityFold = strings.NewReplacer("_", "-", ".", "-")

// headerKey folds a header name the way servers and frameworks may read
// it: any letter case, and "_" or "." for "-".
func headerKey(name string) string {
	return identityFold.Replace(strings.ToLower(name))
}

func identityHeaders(configured string) map[string]bool {
	m := make(map[string]bool, len(commonIdentityHeaders)+1)
	for _, n := range append(commonIdentityHeaders, configured) {
		m[headerKey(n)] = true
	}
	return m
}

// stripIdentity deletes every client-sent copy of an identity header, in
// any spelling, before the gate sets its own.
func stripIdentity(r *http.Request, identity map[string]bool) {
	for name := range r.Header {
		if identity[headerKey(name)] {
			delete(r.Header, name)
		}
	}
}

// removeCookie drops the gate's own cookie from the Cookie header(s), so
// the upstream never sees the session ID. Other cookies are kept as sent.
func removeCookie(r *http.Request, name string) {
	lines := r.Header.Values("Cookie")
	if len(lines) == 0 {
		return
	}
	kept := make([]string, 0, len(lines))
	changed := false
	for _, line := range lines {
		parts := strings.Split(line, ";")
		out := parts[:0]
		for _, part := range parts {
			n, _, _ := strings.Cut(part, "=")
			if strings.TrimSpace(n) == name {
				changed = true
				continue
			}
			out = append(out, part)
		}
		if len(out) > 0 {
			kept = append(kept, strings.TrimLeft(strings.Join(out, ";"), " "))
		}
	}
	if !changed {
		return
	}
	r.Header.Del("Cookie")
	for _, line := range kept {
		if strings.TrimSpace(line) != "" {
			r.Header.Add("Cookie", line)
		}
	}
}

func validHeaderName(n string) bool { return n != "" && httpguts.ValidHeaderFieldName(n) }

func validCookieName(n string) bool {
	if n == "" || len(n) > 100 {
		return false
	}
	for _, c := range n {
		if c <= ' ' || c >= 0x7f || strings.ContainsRune("()<>@,;:\\\"/[]?={}", c) {
			return false
		}
	}
	return true
}

func urlQueryEscape(s string) string { return url.QueryEscape(s) }

// maxNextLen bounds the return address kept in a session.
const maxNextLen = 2048

// safeNext returns the return address if it is a path on this site, and ""
// otherwise. It refuses everything a browser might read as another site:
// "//host", "/\host", schemes, control characters, tabs and newlines
// anywhere (browsers drop them, turning "/\t/host" into "//host").
func safeNext(next string) string {
	if next == "" || len(next) > maxNextLen || next[0] != '/' {
		return ""
	}
	for i := 0; i < len(next); i++ {
		if c := next[i]; c < 0x21 || c == 0x7f || c == '\\' {
			return ""
		}
	}
	if len(next) > 1 && (next[1] == '/' || next[1] == '\\') {
		return ""
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
		return ""
	}
	return next
}
