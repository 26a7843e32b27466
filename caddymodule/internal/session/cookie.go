package session

import (
	"bytes"
	"net/http"
	"net/textproto"
	"slices"
	"strings"
)

// RemoveCookie drops the gate's own cookies (every one of names) from the
// Cookie header(s), in one pass, so that the upstream never sees a session
// ID or a token. Other cookies are kept as sent. A request that carries
// only the gate's cookies (the usual case) costs no allocation.
func RemoveCookie(r *http.Request, names ...string) {
	RemoveCookieFrom(r.Header, r.Header["Cookie"], names...)
}

// RemoveCookieFrom is RemoveCookie for a caller that holds the Cookie
// header's lines already (h["Cookie"]).
func RemoveCookieFrom(h http.Header, lines []string, names ...string) {
	if len(lines) == 1 { // HTTP/1.1, and HTTP/2 (Go joins its cookie fields)
		out, found := withoutCookie(lines[0], names)
		switch {
		case !found:
		case strings.TrimSpace(out) == "":
			delete(h, "Cookie")
		default:
			h["Cookie"] = []string{out}
		}
		return
	}
	if !slices.ContainsFunc(lines, func(line string) bool { return hasCookie(line, names) }) {
		return
	}
	var kept []string
	for _, line := range lines {
		out, found := withoutCookie(line, names)
		if !found {
			out = strings.TrimLeft(line, " ") // as rebuilt from its parts
		}
		if strings.TrimSpace(out) != "" {
			kept = append(kept, out)
		}
	}
	if len(kept) == 0 {
		delete(h, "Cookie")
		return
	}
	h["Cookie"] = kept
}

// withoutCookie returns line with every ";"-separated part named one of
// names left out (the rest joined by ";" and stripped of leading spaces),
// and whether there was such a part. When the parts left are one run of
// the line (the usual case: the gate's cookie first or last), the result
// is that part of line, not a copy, and nothing is built: on the proxied
// path, this frame and the stack below it stay small.
func withoutCookie(line string, names []string) (string, bool) {
	found := false
	// The run of kept parts so far, as offsets in line (runStart < 0
	// before the first), while no removed part has come between two kept
	// ones.
	runStart, runEnd, oneRun := -1, -1, true
	for off, rest := 0, line; ; {
		part, more, ok := strings.Cut(rest, ";")
		if isNamed(part, names) {
			found = true
		} else {
			switch {
			case runStart < 0:
				runStart = off
			case runEnd != off-1: // a removed part lies between
				oneRun = false
			}
			runEnd = off + len(part)
		}
		if !ok {
			break
		}
		off += len(part) + 1
		rest = more
	}
	switch {
	case !found:
		return "", false
	case runStart < 0:
		return "", true // nothing left
	case oneRun:
		return strings.TrimLeft(line[runStart:runEnd], " "), true
	}
	return joinKept(line, names), true
}

// joinKept is withoutCookie's result when the parts left are not one run
// of line: they are copied, joined by ";".
//
//go:noinline
func joinKept(line string, names []string) string {
	var buf [256]byte // longer lines spill to the heap
	b := buf[:0]
	first := true
	for part := range strings.SplitSeq(line, ";") {
		if !isNamed(part, names) {
			if !first {
				b = append(b, ';')
			}
			b = append(b, part...)
			first = false
		}
	}
	return string(bytes.TrimLeft(b, " "))
}

// hasCookie reports whether a part of line is named one of names.
func hasCookie(line string, names []string) bool {
	for part := range strings.SplitSeq(line, ";") {
		if isNamed(part, names) {
			return true
		}
	}
	return false
}

// isNamed reports whether the cookie part ("name=value") is named one of
// names.
func isNamed(part string, names []string) bool {
	n, _, _ := strings.Cut(part, "=")
	return slices.Contains(names, strings.TrimSpace(n))
}

// maxCookies is net/http's default limit on the cookies it reads from a
// request (GODEBUG httpcookiemaxnum); past it, r.Cookie finds none.
const maxCookies = 3000

// CookieValue returns the value of the request's first cookie called name,
// exactly as r.Cookie(name) would find it, without allocating: the gate
// reads its cookie on every request. The value has any surrounding double
// quotes removed.
func CookieValue(h http.Header, name string) (string, bool) {
	lines := h["Cookie"]
	if len(lines) == 0 {
		return "", false
	}
	size := 0
	for _, line := range lines {
		size += len(line)
	}
	if size >= maxCookies { // else there cannot be more than maxCookies
		count := 0
		for _, line := range lines {
			count += strings.Count(line, ";") + 1
		}
		if count > maxCookies {
			return "", false
		}
	}
	for _, line := range lines {
		line = textproto.TrimString(line)
		for len(line) > 0 {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = textproto.TrimString(part)
			if part == "" {
				continue
			}
			n, val, _ := strings.Cut(part, "=")
			if textproto.TrimString(n) != name {
				continue
			}
			if len(val) > 1 && val[0] == '"' && val[len(val)-1] == '"' {
				val = val[1 : len(val)-1]
			}
			if validCookieValue(val) {
				return val, true
			}
		}
	}
	return "", false
}

// validCookieValue is net/http's test of a cookie value's bytes, by
// table: it runs on every proxied request.
func validCookieValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if byteClass[v[i]]&cookieByte == 0 {
			return false
		}
	}
	return true
}

// byteClass marks, for each byte, the classes it belongs to: one table
// for the two checks every proxied request makes of its session ID
// (validCookieValue, then ParseID), so that they read the same cache
// lines.
var byteClass = func() (t [256]uint8) {
	for b := 0x20; b < 0x7f; b++ {
		if b != '"' && b != ';' && b != '\\' {
			t[b] |= cookieByte
		}
	}
	for _, c := range "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_" {
		t[c] |= base64URLByte
	}
	return t
}()

// The classes of byteClass.
const (
	cookieByte    = 1 << iota // net/http accepts it in a cookie value
	base64URLByte             // of the unpadded URL-safe base64 alphabet
)
