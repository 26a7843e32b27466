package caddymodule

import (
	"net/http"
	"strings"
	"testing"
)

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
		{"isIdentity", func() {
			for n := range h {
				isIdentity(n, identity)
			}
		}},
		{"stripIdentity", func() { stripIdentity(r, identity) }},
	} {
		if n := testing.AllocsPerRun(100, tc.fn); n > 0 {
			t.Errorf("%s: got %v allocations, want 0", tc.name, n)
		}
	}
}
