package gate

import (
	"fmt"
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
	if isClean(p) {
		return p // most requests: one pass, nothing to change
	}
	if strings.Contains(p, "\\") {
		p = strings.ReplaceAll(p, "\\", "/")
	}
	if p == "" || p[0] != '/' {
		p = "/" + p
	}
	return path.Clean(p)
}

// isClean reports whether cleanPath would return p as it is: an absolute
// path without backslashes, empty, "." or ".." segments, or a trailing
// slash (but "/"). FuzzCleanPath holds it to cleanPath.
func isClean(p string) bool {
	if p == "" || p[0] != '/' || (len(p) > 1 && p[len(p)-1] == '/') {
		return false
	}
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '\\':
			return false
		case '/':
			// The segment that starts here: not empty, ".", or "..".
			seg := p[i+1:]
			if j := strings.IndexByte(seg, '/'); j >= 0 {
				seg = seg[:j]
			}
			if seg == "." || seg == ".." || (seg == "" && len(p) > 1) {
				return false
			}
		}
	}
	return true
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

// CommonIdentityHeaders are removed from every request that passes the
// gate, besides the configured one, since upstreams commonly trust them.
var CommonIdentityHeaders = []string{
	"Remote-User", "Remote-Name", "Remote-Email", "Remote-Groups",
	"X-Remote-User", "X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Preferred-Username",
	"X-Auth-Request-User", "X-Auth-Request-Email", "X-Webauth-User",
	HeaderAuthMethods, HeaderAuthTime,
}

// identityFold maps the characters CGI-style backends (PHP's $_SERVER among
// them) read as "-" in a header name.
var identityFold = strings.NewReplacer("_", "-", ".", "-")

// headerKey folds a header name the way servers and frameworks may read
// it: any letter case, and "_" or "." for "-".
func headerKey(name string) string {
	return identityFold.Replace(strings.ToLower(name))
}

// identitySet holds the identity header names folded by headerKey, with a
// cheap filter in front: most of a request's headers (Accept-*, Sec-*,
// User-Agent, Cookie) differ from every identity header in the first letter.
type identitySet struct {
	names map[string]bool
	first [256]bool // first bytes of the folded names
}

// identityHeaders is the set of names stripIdentity deletes: the common
// identity headers, the configured user header, and the further names an
// operator listed (strip_headers).
func identityHeaders(configured string, further ...string) identitySet {
	names := make([]string, 0, len(CommonIdentityHeaders)+1+len(further))
	names = append(append(append(names, CommonIdentityHeaders...), configured), further...)
	s := identitySet{names: make(map[string]bool, len(names))}
	for _, n := range names {
		k := headerKey(n)
		s.names[k] = true
		if k != "" {
			s.first[k[0]] = true
		}
	}
	return s
}

// checkStripHeaders checks the strip_headers option: header names only.
func CheckStripHeaders(names []string) error {
	for i, n := range names {
		if !ValidHeaderName(n) {
			return fmt.Errorf("strip_headers %d: not a valid header name: %q", i+1, n)
		}
	}
	return nil
}

// stripIdentity deletes every client-sent copy of an identity header, in
// any spelling, before the gate sets its own, and drops the request's
// trailers.
//
// Trailers are dropped whole rather than filtered by name. They arrive
// after the body, long after the gate let the request through: net/http
// (HTTP/1.1 and HTTP/2) adds them, declared or not, at the body's end to
// the Trailer map that every shallow copy of the request shares, and
// Caddy's reverse_proxy forwards that map's contents once it has read the
// body. A backend that reads trailers as headers would trust any of them,
// not only the names the gate knows, and browsers, the clients a login
// gate serves, never send request trailers. Setting r.Trailer to nil
// detaches this request, and every copy made of it downstream, from the
// map the server fills in; a server that sets the field of its own request
// instead (net/http when none was declared, quic-go's HTTP/3) never
// reached the copies Caddy hands to handlers. It costs no allocation. The
// Trailer header, which announces them, goes too.
//
// It returns the Cookie header's lines, met on the way, so that the caller
// removes the gate's cookies without looking the header up again: the
// proxied path makes one pass over the request's headers.
func stripIdentity(r *http.Request, identity *identitySet) (cookies []string) {
	for name, v := range r.Header {
		switch {
		case name == "Cookie":
			cookies = v // for the caller, who removes the gate's cookies
		case name == "Trailer":
			delete(r.Header, name)
		case name != "" && name[0] < 0x80 && !identity.first[foldByte(name[0])]:
			// Most headers: no identity name starts with this letter.
		case isIdentity(name, identity):
			delete(r.Header, name)
		}
	}
	r.Trailer = nil
	return cookies
}

// isIdentity reports whether identity holds headerKey(name). It runs for
// every header of every request that passes, so it folds ASCII names in a
// buffer on the stack rather than allocating.
func isIdentity(name string, identity *identitySet) bool {
	var buf [64]byte
	if len(name) > len(buf) {
		return identity.names[headerKey(name)]
	}
	if len(name) == 0 || name[0] >= 0x80 {
		return identity.names[headerKey(name)]
	}
	// headerKey folds an ASCII first byte by itself, whatever follows.
	if !identity.first[foldByte(name[0])] {
		return false
	}
	b := buf[:len(name)]
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= 0x80 {
			// Not a valid header name; fold it as Unicode, as before.
			return identity.names[headerKey(name)]
		}
		b[i] = foldByte(c)
	}
	return identity.names[string(b)]
}

// foldByte is headerKey for one ASCII byte.
func foldByte(c byte) byte {
	switch {
	case 'A' <= c && c <= 'Z':
		return c + 'a' - 'A'
	case c == '_', c == '.':
		return '-'
	}
	return c
}

func ValidHeaderName(n string) bool { return n != "" && httpguts.ValidHeaderFieldName(n) }

func ValidCookieName(n string) bool {
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

// SafeNext returns the return address if it is a path on this site, and ""
// otherwise. It refuses everything a browser might read as another site:
// "//host", "/\host", schemes, control characters, tabs and newlines
// anywhere (browsers drop them, turning "/\t/host" into "//host").
func SafeNext(next string) string {
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
