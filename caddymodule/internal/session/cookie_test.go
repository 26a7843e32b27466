package session

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

// testCookie is the default cookie name of the gate.
const testCookie = "__Host-two_factor"

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
	got, gotOK := CookieValue(h, testCookie)
	want, wantOK := netHTTPCookie(lines, testCookie)
	if got != want || gotOK != wantOK {
		t.Errorf("CookieValue(%.80q): got %q %v, want %q %v (as r.Cookie)", lines, got, gotOK, want, wantOK)
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
	RemoveCookie(&http.Request{Header: got}, testCookie)
	removeCookieReference(want, testCookie)
	if !slices.Equal(got["Cookie"], want["Cookie"]) || len(got) != len(want) {
		t.Errorf("RemoveCookie(%.80q): got %q, want %q", lines, got["Cookie"], want["Cookie"])
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

// TestRemoveTwoCookies: removing two names in one pass is removing each in
// turn.
func TestRemoveTwoCookies(t *testing.T) {
	const other = "__Host-two_factor_remember"
	for _, lines := range append(cookieCases,
		[]string{other + "=t; a=1; " + testCookie + "=x"}, []string{other + "=t", testCookie + "=x"}, []string{other + "=t"}) {
		got, want := http.Header{}, http.Header{}
		for _, l := range lines {
			got.Add("Cookie", l)
			want.Add("Cookie", l)
		}
		RemoveCookie(&http.Request{Header: got}, testCookie, other)
		removeCookieReference(want, testCookie)
		removeCookieReference(want, other)
		if !slices.Equal(got["Cookie"], want["Cookie"]) || len(got) != len(want) {
			t.Errorf("RemoveCookie(%.80q, both): got %q, want %q", lines, got["Cookie"], want["Cookie"])
		}
	}
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
	RemoveCookie(r, testCookie)
	if lines[0] != "a=1; __Host-two_factor=x" {
		t.Errorf("the caller's slice changed to %q", lines[0])
	}
	if got := r.Header["Cookie"]; len(got) != 1 || got[0] != "a=1" {
		t.Errorf("got %q, want [a=1]", got)
	}
}

// parseSessionIDReference is the decoding check parseSessionID replaced.
func parseSessionIDReference(v string) ([]byte, bool) {
	if len(v) != base64.RawURLEncoding.EncodedLen(IDSize) || strings.ContainsAny(v, "=+/") {
		return nil, false
	}
	var raw [IDSize]byte
	n, err := base64.RawURLEncoding.Decode(raw[:], []byte(v))
	if err != nil || n != IDSize {
		return nil, false
	}
	return KeyOf(v), true
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
		got, gotOK := ParseID(v)
		want, wantOK := parseSessionIDReference(v)
		if gotOK != wantOK || !bytes.Equal(got, want) {
			t.Errorf("ParseID(%q): got %x %v, want %x %v", v, got, gotOK, want, wantOK)
		}
	})
}

// TestCookieAllocations pins the allocation-free cookie helpers of the
// proxied path: a regression shows here before it shows in the benchmarks.
func TestCookieAllocations(t *testing.T) {
	h := http.Header{"Cookie": {testCookie + "=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}, "Accept": {"text/html"}}
	r := &http.Request{Header: http.Header{}}
	for _, tc := range []struct {
		name string
		fn   func()
	}{
		{"CookieValue", func() { CookieValue(h, testCookie) }},
		{"hasCookie", func() { hasCookie(h["Cookie"][0], []string{testCookie}) }},
		{"RemoveCookie only ours", func() {
			r.Header["Cookie"] = h["Cookie"]
			RemoveCookie(r, testCookie, testCookie+"_remember")
		}},
	} {
		if n := testing.AllocsPerRun(100, tc.fn); n > 0 {
			t.Errorf("%s: got %v allocations, want 0", tc.name, n)
		}
	}
}

// FuzzParseSessionID: only a cookie value of the exact form of an ID is
// looked up, under the hash of the value as sent.
func FuzzParseSessionID(f *testing.F) {
	f.Add(strings.Repeat("A", 43))
	f.Add("98pzNPEtokQJ7UKk5K9UAUyt6f9OGszDy8hBONgxOXs")
	f.Add("98pzNPEtokQJ7UKk5K9UAUyt6f9OGszDy8hBONgxOX+")
	f.Add("")
	f.Fuzz(func(t *testing.T, v string) {
		key, ok := ParseID(v)
		if !ok {
			return
		}
		if len(v) != 43 || len(key) != 32 || string(key) != string(KeyOf(v)) {
			t.Fatalf("ParseID(%q) accepted it with key %x", v, key)
		}
	})
}

func TestRemoveCookie(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want []string
	}{
		{[]string{"a=1; __Host-two_factor=xyz; b=2"}, []string{"a=1; b=2"}},
		{[]string{"__Host-two_factor=xyz"}, nil},
		{[]string{"__Host-two_factor=xyz", "c=3"}, []string{"c=3"}},
		{[]string{"x=1;__Host-two_factor=xyz;y=2"}, []string{"x=1;y=2"}},
		{[]string{"a=1"}, []string{"a=1"}},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		for _, l := range tc.in {
			r.Header.Add("Cookie", l)
		}
		RemoveCookie(r, testCookie)
		got := r.Header.Values("Cookie")
		if len(got) != len(tc.want) {
			t.Errorf("RemoveCookie(%q): got %q, want %q", tc.in, got, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("RemoveCookie(%q): got %q, want %q", tc.in, got, tc.want)
			}
		}
	}
}
