package gate

import (
	"net/http"
	"net/http/httptest"
	"path"
	"strings"
	"testing"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/attack"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/backupcodes"
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
		if got := SafeNext(tc.in); got != tc.want {
			t.Errorf("SafeNext(%q): got %q, want %q", tc.in, got, tc.want)
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
		"Cookie": {"a=1", "b=2"},
	}
	custom := identityHeaders("X-User-Custom")
	cookies := stripIdentity(r, &custom)
	if len(r.Header) != 2 || r.Header.Get("Accept") != "text/html" || len(r.Header["Cookie"]) != 2 {
		t.Errorf("after stripping: got %v, want only Accept and Cookie", r.Header)
	}
	if len(cookies) != 2 || cookies[0] != "a=1" || cookies[1] != "b=2" {
		t.Errorf("cookie lines: got %q, want the Cookie header's", cookies)
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

func FuzzIsIdentity(f *testing.F) {
	for _, n := range append(CommonIdentityHeaders, "REMOTE_USER", "x_forwarded_user", "Accept", "X-User-Custom",
		"Remote-Us\u212Ar", strings.Repeat("a", 70), "Remote-User\x00", "X-O\u212Ata-User", "x-okta-user") {
		f.Add(n)
	}
	// A configured name with a "k", which the Kelvin sign folds to.
	identity := identityHeaders("X-Okta-User")
	f.Fuzz(func(t *testing.T, name string) {
		if got, want := isIdentity(name, &identity), identity.names[headerKey(name)]; got != want {
			t.Errorf("isIdentity(%q): got %v, want %v", name, got, want)
		}
	})
}

// TestHotPathAllocations pins the allocation-free helpers: a regression
// shows here before it shows in the benchmarks.
func TestHotPathAllocations(t *testing.T) {
	identity := identityHeaders("Remote-User")
	h := http.Header{
		"Cookie": {"__Host-two_factor=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}, "Accept": {"text/html"},
		"User-Agent": {"x"}, "Accept-Language": {"en"}, "Sec-Fetch-Mode": {"navigate"},
	}
	r := &http.Request{Header: http.Header{}}
	for _, tc := range []struct {
		name string
		fn   func()
	}{
		{"isIdentity", func() {
			for n := range h {
				isIdentity(n, &identity)
			}
		}},
		{"stripIdentity", func() { stripIdentity(r, &identity) }},
	} {
		if n := testing.AllocsPerRun(100, tc.fn); n > 0 {
			t.Errorf("%s: got %v allocations, want 0", tc.name, n)
		}
	}
}

// TestStripIdentityDropsTrailers: stripIdentity deletes the listed names in
// any spelling, drops the trailers (so that a map the server fills in later
// is no longer this request's) and the Trailer header, and keeps the rest.
func TestStripIdentityDropsTrailers(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader("x"))
	shared := http.Header{"Remote-User": nil, "X-Checksum": nil}
	r.Trailer = shared
	r.Header = http.Header{
		"Trailer": {"Remote-User, X-Checksum"}, "X-Email": {"a"}, "X_email": {"b"}, "X.email": {"c"},
		"X-Forwarded-Groups": {"d"}, "Remote-User": {"e"}, "X-Emails": {"kept"}, "Accept": {"text/html"},
	}
	names := identityHeaders("Remote-User", "x-email", "X_Forwarded.Groups")
	stripIdentity(r, &names)
	shared["Remote-User"] = []string{"mallory"} // what the server adds at the body's end
	if r.Trailer != nil {
		t.Errorf("trailers: got %v, want none", r.Trailer)
	}
	if later := r.WithContext(r.Context()); later.Trailer != nil {
		t.Errorf("a copy made after the gate: got trailers %v, want none", later.Trailer)
	}
	if len(r.Header) != 2 || r.Header.Get("X-Emails") != "kept" || r.Header.Get("Accept") != "text/html" {
		t.Errorf("headers: got %v, want only X-Emails and Accept", r.Header)
	}
}

// FuzzSafeNext: what SafeNext keeps is the input itself, a path on this
// site however a browser reads it, and never longer than the limit.
func FuzzSafeNext(f *testing.F) {
	for _, p := range attack.RedirectPayloads {
		f.Add(p)
	}
	f.Add("/docs?a=1#x")
	f.Fuzz(func(t *testing.T, in string) {
		out := SafeNext(in)
		if out == "" {
			return
		}
		if out != in {
			t.Fatalf("SafeNext(%q) = %q: changed the input", in, out)
		}
		if len(out) > maxNextLen {
			t.Fatalf("SafeNext kept %d bytes", len(out))
		}
		if !attack.OnThisSite(out) {
			t.Fatalf("SafeNext(%q) kept a next that leaves the site", in)
		}
	})
}

// FuzzCleanPath: the decided-on path is absolute, clean, without
// backslashes or dot segments, and cleaning it again changes nothing.
func FuzzCleanPath(f *testing.F) {
	for _, p := range attack.ForcedTargets {
		f.Add(p)
	}
	for _, p := range []string{"/", "", "a", "/a/b", "/a//b", "//", "/a/./b", "/a/../b", "/a/", "/.", "/..",
		"/a/.", "/a/..", "/.a", "/..a", "/a.", "/a\\b", "/a/b.c/d..e"} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := cleanPath(in)
		if !strings.HasPrefix(out, "/") || path.Clean(out) != out || strings.Contains(out, "\\") {
			t.Fatalf("cleanPath(%q) = %q: not a clean absolute path", in, out)
		}
		for _, seg := range strings.Split(out, "/") {
			if seg == ".." || seg == "." {
				t.Fatalf("cleanPath(%q) = %q keeps a dot segment", in, out)
			}
		}
		if again := cleanPath(out); again != out {
			t.Fatalf("cleanPath is not idempotent: %q -> %q -> %q", in, out, again)
		}
		// The shortcut for a clean path says yes exactly when the long
		// way would change nothing.
		if long := slowCleanPath(in); long != out || isClean(in) != (long == in) {
			t.Fatalf("cleanPath(%q) = %q, isClean %v; the long way gives %q", in, out, isClean(in), long)
		}
	})
}

// slowCleanPath is cleanPath without its shortcut for clean paths.
func slowCleanPath(p string) string {
	p = strings.ReplaceAll(p, "\\", "/")
	if p == "" || p[0] != '/' {
		p = "/" + p
	}
	return path.Clean(p)
}

// FuzzCodeInput: whatever is typed into a code field is classified
// without panicking; what is read as a backup code normalises to a code
// of the alphabet, and its display form normalises back to it.
func FuzzCodeInput(f *testing.F) {
	for _, s := range []string{"123456", "123 456", "12345678", "abcde-fghjk", "ABCDE FGHJK", "iloIL-01234", " 1-2-3-4-5-6 ", "\u0661\u0662\u0663\u0664\u0665\u0666", strings.Repeat("-", 70)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		c := compactCode(in)
		fc := codeFactor(in)
		norm, ok := backupcodes.Normalize(c)
		switch backupcodes.Kind(c) {
		case backupcodes.KindBackup:
			if !ok || fc != factorBackup {
				t.Fatalf("%q: a backup code that does not normalise (%v) or counts as %s", in, ok, fc)
			}
		default:
			if fc != factorTOTP {
				t.Fatalf("%q: not a backup code but counts as %s", in, fc)
			}
		}
		if !ok {
			return
		}
		if len(norm) != backupcodes.Length || strings.Trim(norm, backupcodes.Alphabet) != "" {
			t.Fatalf("Normalize(%q) = %q: not %d symbols of the alphabet", c, norm, backupcodes.Length)
		}
		if again, ok := backupcodes.Normalize(backupcodes.Display(norm)); !ok || again != norm {
			t.Fatalf("display form of %q normalises to %q, %v", norm, again, ok)
		}
	})
}
