package caddymodule

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/users"
	"github.com/caddyserver/caddy/v2/caddytest"
	"golang.org/x/crypto/bcrypt"
)

// TestHashBudgetThroughHTTP sets a budget far too small for even one
// bcrypt hash: the first login runs (the budget starts full), the next
// are refused (after a pause) with 503, Retry-After and a page that says so, before any
// password is checked, so that neither a right password nor a wrong one
// counts; once the clock has moved on by the wait, logging in works again.
func TestHashBudgetThroughHTTP(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte(testPassword), 8)
	if err != nil {
		t.Fatal(err)
	}
	// At 0.001% of the CPUs, one bcrypt hash of cost 8 (10 ms to 1 s, with
	// the race detector on a loaded machine) takes longer than 10 s to earn
	// back on up to 64 CPUs, and less than the 24 h a refusal's wait is
	// capped at on 2.
	g := newGate(t, gateOpts{hash: string(hash), extra: "hash_cpu 0.001%\n\t\thash_cpu_burst 1ms"})
	g.browser().login("alice", testPassword, "/")
	before := scrape(t)
	var wait int
	for i, try := range []struct{ user, password string }{{"alice", testPassword}, {"bob", "wrong"}, {"nobody", "wrong"}} {
		r := g.browser().post("/.auth/login", url.Values{"username": {try.user}, "password": {try.password}})
		if r.status != http.StatusServiceUnavailable {
			t.Fatalf("login %d (%s) over the budget: got %d, want 503", i+2, try.user, r.status)
		}
		s, err := strconv.Atoi(r.header.Get("Retry-After"))
		if err != nil || s <= int(users.MaxHashWait/time.Second) {
			t.Fatalf("Retry-After %q: want more than %v in seconds", r.header.Get("Retry-After"), users.MaxHashWait)
		}
		wait = max(wait, s)
		if !strings.Contains(r.body, "Too many sign-ins right now") || r.header.Get("Set-Cookie") != "" {
			t.Fatalf("the refusal page: cookie %q, body:\n%s", r.header.Get("Set-Cookie"), r.body)
		}
	}
	// Refused, not failed: nothing was checked, nothing counted.
	delta(t, before, scrape(t), map[string]float64{
		"caddy_two_factor_hash_budget_refused_total":      3,
		`caddy_two_factor_logins_total{outcome="failed"}`: 0,
		`caddy_two_factor_logins_total{outcome="ok"}`:     0,
	})
	// The operator is not held to the budget: adding a user through the
	// admin API works during the flood.
	res, err := http.Post("http://"+adminAddr+"/two-factor/users/add", "application/json",
		strings.NewReader(`{"user":"erin","password":"a long enough password"}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("adding a user over the admin API while logins are over the budget: got %d, want 201", res.StatusCode)
	}
	// Twice the wait: the budget is full again even if the hash took so
	// long that the reported wait was capped.
	advance(time.Duration(2*wait+1) * time.Second)
	g.browser().login("bob", testPassword, "/")
}

// TestHashBudgetJSONLimits checks the JSON settings that the Caddyfile
// cannot express.
func TestHashBudgetJSONLimits(t *testing.T) {
	for _, tc := range []struct{ field, want string }{
		{`"hash_cpu_percent": 250`, "hash_cpu 250%: must be more than 0 and at most 100"},
		{`"hash_cpu_percent": -1`, "hash_cpu -1%: must be more than 0"},
		{`"hash_cpu_burst": -1000000000`, "hash_cpu_burst -1s: must be between 0 and 24h"},
	} {
		assertJSONFieldRefused(t, tc.field, tc.want)
	}
}

// assertJSONFieldRefused loads a JSON config whose two_factor handler has
// the extra field, and checks that Caddy refuses it with want in the error.
func assertJSONFieldRefused(t *testing.T, field, want string) {
	t.Helper()
	caddytest.AssertLoadError(t, `{
	"admin": {"listen": "localhost:2999"},
	"apps": {"http": {"servers": {"s": {"listen": [":9080"], "routes": [{"handle": [{
		"handler": "two_factor", "storage_dir": "`+t.TempDir()+`",
		"users": [{"username": "alice", "password": "`+testHash+`"}],
		`+field+`
	}]}]}}}}
}`, "json", want)
}
