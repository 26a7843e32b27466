package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/users"
)

func TestSafeNext(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/", "/"},
		{"/docs?a=1&b=2", "/docs?a=1&b=2"},
		{"/a/b#frag", "/a/b#frag"},
		{"", ""},
		{"docs", ""},
		{"//evil.example", ""},
		{"//evil.example/path", ""},
		{"/\\evil.example", ""},
		{"\\\\evil.example", ""},
		{"/\t/evil.example", ""},
		{"/\n/evil.example", ""},
		{"/\r/evil.example", ""},
		{"/ /evil.example", ""},
		{"https://evil.example", ""},
		{"http:evil.example", ""},
		{"javascript:alert(1)", ""},
		{"/x\x00", ""},
		{"///evil.example", ""},
		{"/%09/evil.example", "/%09/evil.example"}, // a path segment, not a host: browsers do not decode it in Location
		{"https:/evil.example", ""},
		{"/docs\u2028", "/docs\u2028"},
		{string(make([]byte, 3000)), ""},
	} {
		if got := safeNext(tc.in); got != tc.want {
			t.Errorf("safeNext(%q): got %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestCleanPath(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/.auth/login", "/.auth/login"},
		{"/.auth/../secret", "/secret"},
		{"//secret", "/secret"},
		{"/.auth\\..\\secret", "/secret"},
		{"", "/"},
		{"secret", "/secret"},
		{"/.auth/login/", "/.auth/login"},
		{"/./.auth/./login", "/.auth/login"},
	} {
		if got := cleanPath(tc.in); got != tc.want {
			t.Errorf("cleanPath(%q): got %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestStripIdentity(t *testing.T) {
	r := httptest.NewRequest("GET", "/", nil)
	r.Header = http.Header{
		"Remote-User": {"a"}, "Remote_user": {"b"}, "REMOTE_USER": {"c"}, "remote-user": {"d"},
		"X-Forwarded-User": {"e"}, "X_forwarded_user": {"f"}, "Remote.User": {"h"}, "X-User-Custom": {"g"}, "Accept": {"text/html"},
	}
	stripIdentity(r, identityHeaders("X-User-Custom"))
	if len(r.Header) != 1 || r.Header.Get("Accept") != "text/html" {
		t.Errorf("after stripping: got %v, want only Accept", r.Header)
	}
}

func TestCanonicalName(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"alice", "alice", true},
		{"ALICE", "alice", true},
		{"ａｌｉｃｅ", "alice", true},
		{"Straße", "strasse", true},
		{"", "", false},
		{"a b", "", false},
		{"a\x00", "", false},
		{"\xff", "", false},
	} {
		got, ok := users.CanonicalName(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("users.CanonicalName(%q): got %q %v, want %q %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}
