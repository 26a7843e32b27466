package caddymodule

// Fuzz tests: no input panics the process, and each input-facing function
// keeps its promise whatever it is given. Seeds are in testdata/fuzz/<name>
// and below; .ci/run runs each fuzzer for a few seconds, and
// `go test -run '^$' -fuzz '^FuzzForms$' -fuzztime 10m ./caddymodule`
// runs one for longer.

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/attack"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/users"
)

// FuzzCanonicalName: a name that is accepted maps to a non-empty UTF-8 key
// that is its own canonical form, so every spelling of an account reaches
// the same key in one step.
func FuzzCanonicalName(f *testing.F) {
	for _, s := range aliceSpellings {
		f.Add(s.name)
	}
	f.Add("Straße")
	f.Add("ǅemal")
	f.Fuzz(func(t *testing.T, in string) {
		key, ok := users.CanonicalName(in)
		if !ok {
			return
		}
		if key == "" || !utf8.ValidString(key) {
			t.Fatalf("users.CanonicalName(%q) = %q", in, key)
		}
		if again, ok := users.CanonicalName(key); !ok || again != key {
			t.Fatalf("users.CanonicalName(%q) = %q, but users.CanonicalName(%q) = %q, %v", in, key, key, again, ok)
		}
	})
}

// FuzzForms feeds the gate's routes arbitrary methods, bodies, content
// types, queries and cookies, with and without a live session (not
// logged out by the fuzzer: logout is left out). Nothing panics, nothing
// is a server error, and only the live session's requests for the site
// reach the next handler.
func FuzzForms(f *testing.F) {
	f.Add(uint8(0), "POST", "username=alice&password=x&next=%2F%2Fevil", "application/x-www-form-urlencoded", "", false)
	f.Add(uint8(1), "POST", "code=123456", "application/x-www-form-urlencoded", "", true)
	f.Add(uint8(3), "POST", "code=abcde-fghjk&password=correct+horse", "application/x-www-form-urlencoded", "x=1", true)
	f.Add(uint8(4), "POST", "password=%ff%fe&code=%00", "application/x-www-form-urlencoded; charset=utf-16", "", true)
	f.Add(uint8(5), "POST", "--x\r\nContent-Disposition: form-data; name=\"code\"\r\n\r\n1\r\n--x--", "multipart/form-data; boundary=x", "", true)
	f.Add(uint8(2), "GET", "", "", "next=/x&a=%zz", true)
	f.Add(uint8(8), "PUT", "{}", "application/json", "", true)
	f.Add(uint8(0), "POST", strings.Repeat("a=b&", 5000), "application/x-www-form-urlencoded", "", false)
	h := &Handler{FreeFailures: 50}
	provisionHandler(f, h)
	w, err, _ := serve(h, form("/.auth/login", formOf("username", "alice", "password", testPassword)))
	if err != nil || len(w.Result().Cookies()) == 0 {
		f.Fatalf("login: %d %v", w.Code, err)
	}
	cookie := w.Result().Cookies()[0]
	f.Fuzz(func(t *testing.T, route uint8, method, body, contentType, query string, withSession bool) {
		if !validMethod(method) {
			return // net/http refuses such a request line before any handler
		}
		target := attack.FuzzPaths[int(route)%len(attack.FuzzPaths)]
		r := httptest.NewRequest(http.MethodGet, target, nil)
		r.Method = method
		r.Body = io.NopCloser(strings.NewReader(body))
		r.ContentLength = int64(len(body))
		r.URL.RawQuery = query
		if contentType != "" {
			r.Header.Set("Content-Type", contentType)
		}
		if withSession {
			r.AddCookie(cookie)
		}
		w, err, reached := serve(h, r)
		if w.Code >= 500 {
			t.Fatalf("%s %s?%s (%q, %q): got %d", method, target, query, contentType, body, w.Code)
		}
		var he caddyhttp.HandlerError
		if err != nil && (!errors.As(err, &he) || he.StatusCode != http.StatusUnauthorized) {
			t.Fatalf("%s %s: error %v, want none or a 401", method, target, err)
		}
		if reached && (!withSession || strings.HasPrefix(target, "/.auth")) {
			t.Fatalf("%s %s with session %v reached the next handler", method, target, withSession)
		}
	})
}

func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for i := 0; i < len(m); i++ {
		c := m[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("()<>@,;:\\\"/[]?={}", c) >= 0 {
			return false
		}
	}
	return true
}

// FuzzCaddyfile feeds the two_factor block arbitrary text: the parser and
// the adapter return an error or a config, never panic; a config the
// parser takes passes through the defaults and the checks without one too.
func FuzzCaddyfile(f *testing.F) {
	for _, s := range []string{
		"user alice " + "$2a$04$abcdefghijklmnopqrstuu5Mxd.cVsFFcEmB0v4lRfC/A7wnWtRO",
		"storage_dir /tmp/x\nprefix /auth\nissuer \"A B\"\nrequire_two_factor",
		"session_idle 10m\nsession_lifetime 1h\ncode_timeout 1m\ntotp_period 30\ntotp_digits 8\ntotp_algorithm sha256\ntotp_skew 2",
		"user_header X-User\ncookie_name sess\nfree_failures 3\nmax_delay 1m\nmax_concurrent_hashes 4",
		"totp_skew eleven", "prefix", "user a", "{", "}", "user `a b` \"c\" {", "encryption_key {env.X}", "session_idle -1s",
		"max_delay 99999999999999999999h", "totp_period 0x10", "templates_dir \"\"", "issuer \"\\\"\"",
		"assertion_header X-A\nassertion_algorithm EdDSA\nassertion_audience a\nassertion_lifetime 3m\nauth_headers",
		"step_up /admin/* 10m\nstep_up *.php 1h\nrequire_two_factor /b* /c\nrequire_two_factor",
		"step_up * 0s", "require_two_factor **", "assertion_key_overlap 2h\nassertion_key_rotation 1h\nassertion_header a",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		d := caddyfile.NewTestDispenser("two_factor {\n" + body + "\n}")
		var h Handler
		if err := h.UnmarshalCaddyfile(d); err == nil {
			h.StorageDir = "" // never touch the disk
			h.EncryptionKey = ""
			if err := h.defaults(caddy.NewReplacer()); err == nil {
				_ = h.validateConfig()
			}
		}
		_, _, _ = caddyconfig.GetAdapter("caddyfile").Adapt([]byte("localhost {\n\ttwo_factor {\n"+body+"\n\t}\n}\n"), map[string]any{"filename": "Caddyfile"})
	})
}
