package main

import (
	"regexp"
	"strings"
	"testing"
)

// perfScript is the shape of `perf script -F ip,sym` output: one block of
// frames per sample, the leaf first, blocks separated by blank lines.
const perfScript = `
	  1d72cb7 github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/gate.(*Gate).Admit
	  1db0a90 github.com/caddy-two-factor/caddy-two-factor/caddymodule.(*Handler).ServeHTTP
	  1c00000 net/http.(*conn).serve

	  a3b14 crypto/internal/fips140/sha256.blockSHANI.abi0
	  1d72cb7 github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/gate.(*Gate).Admit
	  1db0a90 github.com/caddy-two-factor/caddy-two-factor/caddymodule.(*Handler).ServeHTTP
	  1c00000 net/http.(*conn).serve

	  55 github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy.(*Handler).ServeHTTP
	  1db0a90 github.com/caddy-two-factor/caddy-two-factor/caddymodule.(*Handler).ServeHTTP
	  1c00000 net/http.(*conn).serve

	  66 runtime.mallocgc
	  77 github.com/caddyserver/caddy/v2/modules/caddyhttp/caddyauth.Authentication.ServeHTTP
	  1c00000 net/http.(*conn).serve

	  88 [unknown]
	  1c00000 net/http.(*conn).serve
`

// TestTally: a handler's own samples are those with it on the stack and
// not through the ignored functions; the functions under it are counted
// once per sample (cumulative) and at the leaf (self); a name matches
// with or without its package path, and only whole.
func TestTally(t *testing.T) {
	r, err := tally(strings.NewReader(perfScript), "caddymodule.(*Handler).ServeHTTP", regexp.MustCompile("reverseproxy"))
	if err != nil {
		t.Fatal(err)
	}
	if r.total != 5 || r.own != 2 {
		t.Fatalf("total %d own %d, want 5 and 2", r.total, r.own)
	}
	const admit = "github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/gate.(*Gate).Admit"
	const sha = "crypto/internal/fips140/sha256.blockSHANI"
	if r.cum[admit] != 2 || r.self[admit] != 1 || r.cum[sha] != 1 || r.self[sha] != 1 {
		t.Errorf("Admit cum %d self %d, SHA cum %d self %d; want 2 1 1 1", r.cum[admit], r.self[admit], r.cum[sha], r.self[sha])
	}
	if r.cum["net/http.(*conn).serve"] != 0 {
		t.Error("a caller of the focus was counted under it")
	}

	d, err := tally(strings.NewReader(perfScript), "caddyauth.Authentication.ServeHTTP", nil)
	if err != nil || d.own != 1 {
		t.Errorf("basic_auth: own %d (%v), want 1", d.own, err)
	}
	if n, _ := tally(strings.NewReader(perfScript), "Authentication.ServeHTTP", nil); n.own != 0 {
		t.Errorf("a partial name matched %d samples", n.own)
	}
}

func TestIsFunc(t *testing.T) {
	for _, tc := range []struct {
		frame, name string
		want        bool
	}{
		{"github.com/a/b/caddyauth.Authentication.ServeHTTP", "caddyauth.Authentication.ServeHTTP", true},
		{"caddyauth.Authentication.ServeHTTP", "caddyauth.Authentication.ServeHTTP", true},
		{"github.com/a/b/xcaddyauth.Authentication.ServeHTTP", "caddyauth.Authentication.ServeHTTP", false},
		{"github.com/a/b/caddyauth.Authentication.ServeHTTP.func1", "caddyauth.Authentication.ServeHTTP", false},
	} {
		if got := isFunc(tc.frame, tc.name); got != tc.want {
			t.Errorf("isFunc(%q, %q) = %v, want %v", tc.frame, tc.name, got, tc.want)
		}
	}
}
