package caddymodule

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// The proxied path reads and rewrites headers without allocating. These
// tests hold the fast versions to what they replace: net/http's r.Cookie,
// and the plain (allocating) implementations kept here as the reference.

// cookieCases are Cookie header lines that exercise parsing corners.
var cookieCases = [][]string{
	nil,
	{""},
	{"__Host-two_factor=abc"},
	{"a=1; __Host-two_factor=abc; b=2"},
	{"a=1", "__Host-two_factor=abc"},
	{`__Host-two_factor="abc"`},
	{`__Host-two_factor="abc`},
	{`__Host-two_factor=a"bc; __Host-two_factor=second`},
	{`__Host-two_factor=a\bc; __Host-two_factor=second`},
	{"__Host-two_factor=first; __Host-two_factor=second"},
	{"  __Host-two_factor = abc  ;"},
	{"__Host-two_factor"},
	{"__Host-two_factor="},
	{"__host-two_factor=abc"},
	{"x__Host-two_factor=abc"},
	{";;; ;__Host-two_factor=abc;;"},
	{"__Host-two_factor=a b c"},
	{"__Host-two_factor=\x7f"},
	{"__Host-two_factor=\tabc"},
	{"\t__Host-two_factor=abc\t"},
	{"__Host-two_factor=é"},
	{strings.Repeat("a=1;", maxCookies) + "__Host-two_factor=abc"},
	{strings.Repeat("a=1;", maxCookies-2) + "__Host-two_factor=abc"},
}

// netHTTPCookie is what r.Cookie finds.
func netHTTPCookie(lines []string, name string) (string, bool) {
	r := &http.Request{Header: http.Header{}}
	for _, l := range lines {
		r.Header.Add("Cookie", l)
	}
	c, err := r.Cookie(name)
	if err != nil {
		return "", false
	}
	return c.Value, true
}

func checkCookieValue(t *testing.T, lines []string) {
	t.Helper()
	h := http.Header{}
	for _, l := range lines {
		h.Add("Cookie", l)
	}
	got, gotOK := cookieValue(h, DefaultCookieName)
	want, wantOK := netHTTPCookie(lines, DefaultCookieName)
	if got != want || gotOK != wantOK {
		t.Errorf("cookieValue(%.80q): got %q %v, want %q %v (as r.Cookie)", lines, got, gotOK, want, wantOK)
	}
}

func TestCookieValueMatchesNetHTTP(t *testing.T) {
	for _, lines := range cookieCases {
		checkCookieValue(t, lines)
	}
}

func FuzzCookieValue(f *testing.F) {
	for _, lines := range cookieCases {
		if len(lines) == 1 && len(lines[0]) < 200 {
			f.Add(lines[0], "")
		}
	}
	f.Add("a=1", "__Host-two_factor=x")
	f.Fuzz(func(t *testing.T, line1, line2 string) {
		lines := []string{line1}
		if line2 != "" {
			lines = append(lines, line2)
		}
		checkCookieValue(t, lines)
	})
}

// removeCookieReference is the straightforward implementation the
// allocation-free removeCookie must agree with.
func removeCookieReference(h http.Header, name string) {
	lines := h.Values("Cookie")
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
	h.Del("Cookie")
	for _, line := range kept {
		if strings.TrimSpace(line) != "" {
			h.Add("Cookie", line)
		}
	}
}

func checkRemoveCookie(t *testing.T, lines []string) {
	t.Helper()
	got, want := http.Header{}, http.Header{}
	for _, l := range lines {
		got.Add("Cookie", l)
		want.Add("Cookie", l)
	}
	removeCookie(&http.Request{Header: got}, DefaultCookieName)
	removeCookieReference(want, DefaultCookieName)
	if !slices.Equal(got["Cookie"], want["Cookie"]) || len(got) != len(want) {
		t.Errorf("removeCookie(%.80q): got %q, want %q", lines, got["Cookie"], want["Cookie"])
	}
}

func TestRemoveCookieMatchesReference(t *testing.T) {
	for _, lines := range cookieCases {
		checkRemoveCookie(t, lines)
	}
	checkRemoveCookie(t, []string{"  ", "__Host-two_factor=x"})
	checkRemoveCookie(t, []string{";a=1; __Host-two_factor=x"})
	checkRemoveCookie(t, []string{" ; __Host-two_factor=x"})
}

func FuzzRemoveCookie(f *testing.F) {
	for _, lines := range cookieCases {
		if len(lines) == 1 && len(lines[0]) < 200 {
			f.Add(lines[0], "")
		}
	}
	f.Add(" ;a=1", "__Host-two_factor=x; b")
	f.Fuzz(func(t *testing.T, line1, line2 string) {
		lines := []string{line1}
		if line2 != "" {
			lines = append(lines, line2)
		}
		checkRemoveCookie(t, lines)
	})
}

func TestRemoveCookieDoesNotWriteThroughSharedSlice(t *testing.T) {
	lines := []string{"a=1; __Host-two_factor=x"}
	r := &http.Request{Header: http.Header{"Cookie": lines}}
	removeCookie(r, DefaultCookieName)
	if lines[0] != "a=1; __Host-two_factor=x" {
		t.Errorf("the caller's slice changed to %q", lines[0])
	}
	if got := r.Header["Cookie"]; len(got) != 1 || got[0] != "a=1" {
		t.Errorf("got %q, want [a=1]", got)
	}
}

func FuzzIsIdentity(f *testing.F) {
	for _, n := range append(commonIdentityHeaders, "REMOTE_USER", "x_forwarded_user", "Accept", "X-User-Custom",
		"Remote-Us\u212Ar", strings.Repeat("a", 70), "Remote-User\x00", "X-O\u212Ata-User", "x-okta-user") {
		f.Add(n)
	}
	// A configured name with a "k", which the Kelvin sign folds to.
	identity := identityHeaders("X-Okta-User")
	f.Fuzz(func(t *testing.T, name string) {
		if got, want := isIdentity(name, identity), identity.names[headerKey(name)]; got != want {
			t.Errorf("isIdentity(%q): got %v, want %v", name, got, want)
		}
	})
}

// TestHotPathAllocations pins the allocation-free helpers: a regression
// shows here before it shows in the benchmarks.
func TestHotPathAllocations(t *testing.T) {
	identity := identityHeaders(DefaultUserHeader)
	h := http.Header{
		"Cookie": {"__Host-two_factor=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}, "Accept": {"text/html"},
		"User-Agent": {"x"}, "Accept-Language": {"en"}, "Sec-Fetch-Mode": {"navigate"},
	}
	r := &http.Request{Header: http.Header{}}
	for _, tc := range []struct {
		name string
		fn   func()
	}{
		{"cookieValue", func() { cookieValue(h, DefaultCookieName) }},
		{"isIdentity", func() {
			for n := range h {
				isIdentity(n, identity)
			}
		}},
		{"withoutCookie report", func() { withoutCookie(h["Cookie"][0], DefaultCookieName, nil) }},
		{"removeCookie only ours", func() {
			r.Header["Cookie"] = h["Cookie"]
			removeCookie(r, DefaultCookieName)
		}},
		{"stripIdentity", func() { stripIdentity(r, identity) }},
	} {
		if n := testing.AllocsPerRun(100, tc.fn); n > 0 {
			t.Errorf("%s: got %v allocations, want 0", tc.name, n)
		}
	}
}

// parseSessionIDReference is the decoding check parseSessionID replaced.
func parseSessionIDReference(v string) ([]byte, bool) {
	if len(v) != base64.RawURLEncoding.EncodedLen(sessionIDSize) || strings.ContainsAny(v, "=+/") {
		return nil, false
	}
	var raw [sessionIDSize]byte
	n, err := base64.RawURLEncoding.Decode(raw[:], []byte(v))
	if err != nil || n != sessionIDSize {
		return nil, false
	}
	return keyOf(v), true
}

func FuzzParseSessionIDMatchesReference(f *testing.F) {
	for _, s := range []string{
		"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA_",
		"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA+",
		"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
		"", "short", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		got, gotOK := parseSessionID(v)
		want, wantOK := parseSessionIDReference(v)
		if gotOK != wantOK || !bytes.Equal(got, want) {
			t.Errorf("parseSessionID(%q): got %x %v, want %x %v", v, got, gotOK, want, wantOK)
		}
	})
}
