package caddymodule

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

const assertionHeader = "X-Two-Factor-Assertion"

// assertionGate is a gate that signs assertions for the audience
// app.example, with sessions long enough to outlive a key rotation.
func assertionGate(t *testing.T, more string) *testGate {
	return newGate(t, gateOpts{extra: "assertion_header " + assertionHeader + `
		assertion_audience app.example
		assertion_key_rotation 24h
		assertion_key_overlap 1h
		session_idle 40h
		session_lifetime 80h
		` + more})
}

// fullLogin logs alice in with her password and a code.
func fullLogin(t *testing.T, g *testGate, e enrolment) *browser {
	t.Helper()
	b := g.browser()
	b.login("alice", testPassword, "/.auth/code")
	b.postSeeOther("/.auth/code", url.Values{"code": {totpCode(t, e.secret, testNow())}}, "/")
	nextStep()
	return b
}

// fetchJWKS reads the gate's keys over HTTP, as an upstream would.
func fetchJWKS(t *testing.T, g *testGate) jose.JSONWebKeySet {
	t.Helper()
	keys, err := FetchKeys(context.Background(), &http.Client{Transport: caddytest.CreateTestingTransport()}, g.base+"/.auth/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// tokenOf returns the assertion the upstream got with the last request.
func tokenOf(t *testing.T, g *testGate) string {
	t.Helper()
	vals := g.up.last().Header.Values(assertionHeader)
	if len(vals) != 1 || vals[0] == "" {
		t.Fatalf("the upstream got %d assertion headers: %q", len(vals), vals)
	}
	return vals[0]
}

// TestAssertionVerifies: the upstream gets a JWT that go-jose verifies
// against the JWKS fetched over HTTP (VerifyAssertion, the code of
// docs/assertion.md), saying who and how; a tampered, an expired token and
// one checked for another audience or issuer are refused; a client's
// copies of the header never reach the upstream.
func TestAssertionVerifies(t *testing.T) {
	g := assertionGate(t, "auth_headers")
	e := g.enrolAlice()
	b := fullLogin(t, g, e)
	authAt := testNow().Add(-30 * time.Second)

	if r := b.get("/app", assertionHeader, "forged"); r.status != http.StatusOK {
		t.Fatalf("GET /app: %d", r.status)
	}
	token := tokenOf(t, g)
	if token == "forged" {
		t.Fatal("the client's assertion reached the upstream")
	}
	keys := fetchJWKS(t, g)
	c, err := VerifyAssertion(token, keys, "https://localhost:9443", "app.example", testNow())
	if err != nil {
		t.Fatalf("a fresh assertion does not verify: %v", err)
	}
	if c.Subject != "alice" || c.Name != "alice" || strings.Join(c.AMR, " ") != "pwd otp" || c.ID == "" || c.SessionID == "" {
		t.Errorf("claims: %+v", c)
	}
	if d := time.Unix(c.AuthTime, 0).Sub(authAt); d < -2*time.Second || d > 2*time.Second {
		t.Errorf("auth_time %v, want about %v", time.Unix(c.AuthTime, 0), authAt)
	}
	if exp, iat := c.Expiry.Time(), c.IssuedAt.Time(); exp.Sub(iat) != DefaultAssertionLifetime {
		t.Errorf("lifetime %v, want %v", exp.Sub(iat), DefaultAssertionLifetime)
	}
	if cookie := b.cookie(); strings.Contains(c.SessionID, cookie) || strings.Contains(cookie, c.SessionID) {
		t.Error("sid reveals the session cookie")
	}
	// Another session of the same user has its own token and sid.
	other := fullLogin(t, g, e)
	other.get("/app")
	c2, err := VerifyAssertion(tokenOf(t, g), keys, "https://localhost:9443", "app.example", testNow())
	if err != nil || c2.Subject != "alice" || c2.SessionID == c.SessionID || c2.ID == c.ID {
		t.Errorf("a second session: %+v (%v), first sid %s", c2, err, c.SessionID)
	}
	b.get("/app")
	token = tokenOf(t, g) // the first session's, now
	// The further headers of auth_headers.
	up := g.up.last().Header
	if up.Get("Remote-Name") != "alice" || up.Get("Remote-Auth-Methods") != "pwd otp" || up.Get("Remote-Auth-Time") != strconv.FormatInt(c.AuthTime, 10) {
		t.Errorf("auth headers: %q %q %q", up.Get("Remote-Name"), up.Get("Remote-Auth-Methods"), up.Get("Remote-Auth-Time"))
	}

	parts := strings.Split(token, ".")
	payload := []byte(parts[1])
	payload[10] ^= 1
	for name, bad := range map[string]func() error{
		"tampered payload": func() error {
			_, err := VerifyAssertion(parts[0]+"."+string(payload)+"."+parts[2], keys, "https://localhost:9443", "app.example", testNow())
			return err
		},
		"signature cut": func() error {
			_, err := VerifyAssertion(parts[0]+"."+parts[1]+"."+parts[2][:len(parts[2])-4], keys, "https://localhost:9443", "app.example", testNow())
			return err
		},
		"expired": func() error {
			_, err := VerifyAssertion(token, keys, "https://localhost:9443", "app.example", testNow().Add(3*time.Minute))
			return err
		},
		"wrong audience": func() error {
			_, err := VerifyAssertion(token, keys, "https://localhost:9443", "other.example", testNow())
			return err
		},
		"wrong issuer": func() error {
			_, err := VerifyAssertion(token, keys, "https://evil.example", "app.example", testNow())
			return err
		},
		"alg none": func() error {
			_, err := VerifyAssertion("eyJhbGciOiJub25lIn0."+parts[1]+".", keys, "https://localhost:9443", "app.example", testNow())
			return err
		},
	} {
		if bad() == nil {
			t.Errorf("%s: verifies", name)
		}
	}

	// Client copies in every spelling, as raw HTTP/1.1 lines, are gone;
	// the upstream gets the gate's one.
	var lines []string
	for _, s := range spellings(assertionHeader) {
		if !strings.ContainsAny(s, "_.") { // Caddy drops those itself
			lines = append(lines, s+": forged")
		}
	}
	lines = append(lines, "Remote-Auth-Methods: hwk", "remote-auth-time: 1")
	if r := b.rawGet("/raw", lines...); r.status != http.StatusOK {
		t.Fatalf("raw GET: %d %s", r.status, r.body)
	}
	if tok := tokenOf(t, g); tok != token {
		t.Errorf("after forged copies the upstream got %.40q, want the session's token", tok)
	}
	if v := g.up.last().Header.Values("Remote-Auth-Methods"); len(v) != 1 || v[0] != "pwd otp" {
		t.Errorf("Remote-Auth-Methods: %q", v)
	}
}

// TestAssertionReusedAndRotated: a session's token is reused until half
// its life is gone, then a new one is signed; a key rotation publishes the
// next key an overlap before it signs, old tokens verify until the overlap
// after it ends, then not.
func TestAssertionReusedAndRotated(t *testing.T) {
	g := assertionGate(t, "")
	e := g.enrolAlice()
	b := fullLogin(t, g, e)
	b.get("/one")
	first := tokenOf(t, g)
	c, err := VerifyAssertion(first, fetchJWKS(t, g), "https://localhost:9443", "app.example", testNow())
	if err != nil {
		t.Fatal(err)
	}
	iat := c.IssuedAt.Time()
	advance(iat.Add(50 * time.Second).Sub(testNow()))
	b.get("/two")
	if tokenOf(t, g) != first {
		t.Error("a new token within the first half of the old one's life")
	}
	advance(15 * time.Second)
	b.get("/three")
	second := tokenOf(t, g)
	if second == first {
		t.Error("the same token after half its life")
	}
	keys := fetchJWKS(t, g)
	if len(keys.Keys) != 1 {
		t.Fatalf("%d keys published at first", len(keys.Keys))
	}
	oldKid := keys.Keys[0].KeyID
	signedAt := testNow()

	// An overlap before the rotation, the next key is published.
	advance(23*time.Hour + time.Minute)
	keys = fetchJWKS(t, g)
	if len(keys.Keys) != 2 {
		t.Fatalf("%d keys published before the rotation, want 2", len(keys.Keys))
	}
	// After the rotation a new token carries the new key.
	advance(time.Hour)
	b.get("/four")
	third := tokenOf(t, g)
	if kidOf(t, third) == oldKid {
		t.Error("still signing with the old key after the rotation")
	}
	keys = fetchJWKS(t, g)
	if _, err := VerifyAssertion(third, keys, "https://localhost:9443", "app.example", testNow()); err != nil {
		t.Errorf("the new key's token: %v", err)
	}
	if _, err := VerifyAssertion(second, keys, "https://localhost:9443", "app.example", signedAt); err != nil {
		t.Errorf("the old key's token during the overlap: %v", err)
	}
	// Once the overlap is over, the old key is gone and its tokens fail.
	advance(time.Hour)
	keys = fetchJWKS(t, g)
	if len(keys.Keys) != 1 || keys.Keys[0].KeyID == oldKid {
		t.Errorf("after the overlap: %d keys, the old one %v", len(keys.Keys), len(keys.Key(oldKid)) > 0)
	}
	if _, err := VerifyAssertion(second, keys, "https://localhost:9443", "app.example", signedAt); err == nil {
		t.Error("the old key's token verifies after the overlap")
	}
}

func kidOf(t *testing.T, token string) string {
	t.Helper()
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA})
	if err != nil || len(tok.Headers) != 1 {
		t.Fatalf("parsing %q: %v", token, err)
	}
	return tok.Headers[0].KeyID
}

// TestAssertionEdDSAAndOff: EdDSA signs when asked; without
// assertion_header no JWKS is served and no assertion is added.
func TestAssertionEdDSAAndOff(t *testing.T) {
	g := assertionGate(t, "assertion_algorithm EdDSA")
	e := g.enrolAlice()
	b := fullLogin(t, g, e)
	b.get("/x")
	tok := tokenOf(t, g)
	keys := fetchJWKS(t, g)
	if len(keys.Keys) != 1 || keys.Keys[0].Algorithm != "EdDSA" {
		t.Fatalf("keys: %+v", keys.Keys)
	}
	if _, err := VerifyAssertion(tok, keys, "https://localhost:9443", "app.example", testNow()); err != nil {
		t.Error(err)
	}
	unload(t)

	g = newGate(t, gateOpts{})
	b = g.browser()
	if r := b.get("/.auth/.well-known/jwks.json"); r.status != http.StatusNotFound {
		t.Errorf("JWKS without the option: %d", r.status)
	}
	b.login("alice", testPassword, "/")
	b.get("/y", assertionHeader, "forged")
	if v := g.up.last().Header.Values(assertionHeader); len(v) != 0 {
		// Not an identity header of this site: it passes as any header.
		if v[0] != "forged" {
			t.Errorf("without the option the gate set %q", v)
		}
	}
	if got := g.up.last().Header.Get("Remote-Auth-Methods"); got != "" {
		t.Errorf("Remote-Auth-Methods without auth_headers: %q", got)
	}
}

// TestAssertionDebugLogFilter: Caddy's reverse_proxy logs the upstream
// request with its headers at debug level ("upstream roundtrip"), so with
// debug logging on, the assertion (a bearer token for its lifetime) lands
// in the log. The filter docs/assertion.md gives, taken from it as written,
// keeps the line and drops the token.
func TestAssertionDebugLogFilter(t *testing.T) {
	dir := t.TempDir()
	raw, filtered := filepath.Join(dir, "raw.log"), filepath.Join(dir, "filtered.log")
	g := newGate(t, gateOpts{extra: "assertion_header " + assertionHeader, global: fmt.Sprintf(`log proxy_raw {
		level DEBUG
		output file %s
		format json
		include http.handlers.reverse_proxy
	}
	log proxy_filtered {
		level DEBUG
		output file %s
		%s
		include http.handlers.reverse_proxy
	}`, raw, filtered, docFormat(t))})
	b := fullLogin(t, g, g.enrolAlice())
	if r := b.get("/app"); r.status != http.StatusOK {
		t.Fatalf("GET /app: %d", r.status)
	}
	token := tokenOf(t, g)
	read := func(file string) string {
		for range 50 { // the line is written as the request ends (bounded)
			if data, err := os.ReadFile(file); err == nil && strings.Contains(string(data), "upstream roundtrip") {
				return string(data)
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("%s: no upstream roundtrip line", file)
		return ""
	}
	if !strings.Contains(read(raw), token) {
		t.Error("the unfiltered debug log does not hold the assertion: the caveat in docs/assertion.md is out of date")
	}
	if got := read(filtered); strings.Contains(got, token) || strings.Contains(got, assertionHeader) {
		t.Errorf("the filtered debug log still holds the assertion:\n%s", got)
	}
}

// docFormat returns the format subdirective of the log filter in
// docs/assertion.md's Caddyfile block, braces and all.
func docFormat(t *testing.T) string {
	t.Helper()
	block := docBlock(t, "caddyfile")
	i := strings.Index(block, "format filter {")
	if i < 0 {
		t.Fatal("docs/assertion.md's Caddyfile block has no format filter")
	}
	depth := 0
	for j := i; j < len(block); j++ {
		switch block[j] {
		case '{':
			depth++
		case '}':
			if depth--; depth == 0 {
				return block[i : j+1]
			}
		}
	}
	t.Fatal("docs/assertion.md: the format filter does not end")
	return ""
}
