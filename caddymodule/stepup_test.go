package caddymodule

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// apiGet is a request of a script, not a page navigation.
func (b *browser) apiGet(path string) response {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodGet, b.g.base+path, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Sec-Fetch-Mode", "cors")
	return b.do(req)
}

// TestStepUp: on a step_up path, a session whose code is older than the
// window gets the code step again (not the password) and returns to the
// same URL; an API call gets 401 with a machine-readable reason; within
// the window no code is asked; other paths are not affected; a user
// without a second factor is sent to turn it on, as on a
// require_two_factor path.
func TestStepUp(t *testing.T) {
	g := newGate(t, gateOpts{extra: "step_up /admin/* 10m\n\t\tstep_up /admin/keys 2m\n\t\trequire_two_factor /billing*\n\t\tauth_headers"})
	e := g.enrolAlice()
	b := fullLogin(t, g, e)

	// Fresh from the login: through.
	if r := b.get("/admin/x"); r.status != http.StatusOK {
		t.Fatalf("fresh session on /admin/x: %d", r.status)
	}
	authTime := g.up.last().Header.Get("Remote-Auth-Time")
	advance(11 * time.Minute)
	if r := b.get("/elsewhere"); r.status != http.StatusOK {
		t.Fatalf("a path without a rule: %d", r.status)
	}
	n := g.up.count()
	const target = "/admin/page?q=1&r=%2F"
	wantCode := "/.auth/code?next=" + url.QueryEscape(target)
	for _, p := range []string{target, "/ADMIN/page?q=1&r=%2F", "/x/../admin/page?q=1&r=%2F"} {
		r := b.get(p)
		want := wantCode
		if p != target {
			want = "/.auth/code?next=" + url.QueryEscape(p)
		}
		if r.status != http.StatusFound || r.header.Get("Location") != want {
			t.Fatalf("stale session on %s: %d %q, want 302 %q", p, r.status, r.header.Get("Location"), want)
		}
	}
	r := b.apiGet("/admin/api/items")
	var info struct {
		Error    string `json:"error"`
		MaxAge   int64  `json:"max_age"`
		Location string `json:"location"`
	}
	if err := json.Unmarshal([]byte(r.body), &info); err != nil || r.status != http.StatusUnauthorized ||
		r.header.Get("Two-Factor-Reason") != "step_up_required" || info.Error != "step_up_required" || info.MaxAge != 600 ||
		info.Location != "/.auth/code?next="+url.QueryEscape("/admin/api/items") {
		t.Fatalf("API call: %d %q %s (%v)", r.status, r.header.Get("Two-Factor-Reason"), r.body, err)
	}
	if g.up.count() != n {
		t.Fatal("a stale session reached a step_up path")
	}

	// The code page, the same step as at login, asks for a fresh code.
	page := b.get(wantCode)
	if page.status != http.StatusOK || !strings.Contains(page.body, `name="step_up"`) || !strings.Contains(page.body, "fresh check") ||
		!strings.Contains(page.body, `name="code"`) || strings.Contains(page.body, `name="password"`) {
		t.Fatalf("step-up page: %d %.600s", page.status, page.body)
	}
	bad := b.post("/.auth/code", url.Values{"step_up": {"1"}, "next": {target}, "code": {"000000"}})
	if bad.status != http.StatusUnauthorized || !strings.Contains(bad.body, `name="step_up"`) {
		t.Fatalf("a wrong step-up code: %d", bad.status)
	}
	b.postSeeOther("/.auth/code", url.Values{"step_up": {"1"}, "next": {target}, "code": {totpCode(t, e.secret, testNow())}}, target)
	if got := g.up.last(); got == nil || got.URL.RequestURI() != target {
		t.Fatalf("after the code the upstream got %v, want %s", got.URL, target)
	}
	if g.up.last().Header.Get("Remote-Auth-Time") == authTime {
		t.Error("Remote-Auth-Time did not move with the fresh code")
	}
	nextStep()

	// Within the window, no code is asked again.
	advance(5 * time.Minute)
	if r := b.get("/admin/y"); r.status != http.StatusOK {
		t.Fatalf("within the window: %d %q", r.status, r.header.Get("Location"))
	}
	// The shortest window of the rules that match holds.
	if r := b.get("/admin/keys"); r.status != http.StatusFound {
		t.Fatalf("/admin/keys (2m) after 5m: %d", r.status)
	}
	// Alice has a second factor: /billing lets her in whatever its age.
	if r := b.get("/billing/invoices"); r.status != http.StatusOK {
		t.Fatalf("/billing for a user with 2FA: %d", r.status)
	}
	// A step-up never leads off the site.
	nextStep()
	evil := b.post("/.auth/code", url.Values{"step_up": {"1"}, "next": {"//evil.example/x"}, "code": {totpCode(t, e.secret, testNow())}})
	if evil.status != http.StatusSeeOther || evil.header.Get("Location") != "/" {
		t.Errorf("next //evil.example: %d %q", evil.status, evil.header.Get("Location"))
	}

	// Bob has no second factor: sent to turn it on, on either rule.
	bob := g.browser()
	bob.login("Bob", testPassword, "/")
	for _, p := range []string{"/admin/x", "/billing"} {
		if r := bob.get(p); r.status != http.StatusFound || r.header.Get("Location") != "/.auth/security" {
			t.Errorf("Bob on %s: %d %q", p, r.status, r.header.Get("Location"))
		}
		r := bob.apiGet(p)
		if r.status != http.StatusUnauthorized || r.header.Get("Two-Factor-Reason") != "two_factor_required" || !strings.Contains(r.body, `"two_factor_required"`) {
			t.Errorf("Bob's API call on %s: %d %q %s", p, r.status, r.header.Get("Two-Factor-Reason"), r.body)
		}
	}
	if r := bob.get(wantCode); r.status != http.StatusFound || r.header.Get("Location") != "/.auth/security" {
		t.Errorf("Bob on the step-up page: %d %q", r.status, r.header.Get("Location"))
	}
	if r := bob.get("/elsewhere"); r.status != http.StatusOK {
		t.Errorf("Bob elsewhere: %d", r.status)
	}
}

// TestTrustOptionErrors: the options of the assertion and of the path
// rules refuse what they cannot do, naming the option (and the line).
func TestTrustOptionErrors(t *testing.T) {
	for _, tc := range []struct{ line, want string }{
		{"step_up /admin/*", "step_up: want a path and a duration"},
		{"step_up admin 10m", `step_up: path "admin": must start with / or *`},
		{"step_up /a/*/b 10m", "a * only at the start or the end"},
		{"step_up /admin 10s", "step_up: the duration must be from 1m to 720h"},
		{"step_up /admin soon", "step_up: invalid duration"},
		{"require_two_factor /a?b", "require_two_factor: path"},
		{"assertion_algorithm RS256", "assertion_algorithm: want ES256 or EdDSA"},
		{"assertion_header Cookie", `assertion_header "Cookie": a request needs that header`},
		{"assertion_header Remote_Auth_Time", `assertion_header "Remote_Auth_Time": a request needs that header`},
		{"assertion_header bad:name", "not a valid header name"},
		{"assertion_lifetime 1m", "assertion_lifetime: must be from 2m to 5m"},
		{"assertion_lifetime 6m", "assertion_lifetime: must be from 2m to 5m"},
		{"auth_headers yes", "auth_headers takes no arguments"},
	} {
		err := adaptError(t, "\t\t"+tc.line)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "Caddyfile:3") {
			t.Errorf("%s: got %v, want %q at Caddyfile:3", tc.line, err, tc.want)
		}
	}
	// Checked when the config is loaded (JSON configs too).
	for _, tc := range []struct{ body, want string }{
		{"assertion_audience app", "assertion_audience: set assertion_header too"},
		{"assertion_header X-A\nassertion_key_rotation 1h\nassertion_key_overlap 1h", "assertion_key_overlap 1h: must be shorter than assertion_key_rotation 1h"},
		{"assertion_header X-A\nuser_header x_a", `assertion_header "X-A": the user header has that name`},
	} {
		var h Handler
		if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("two_factor {\n" + tc.body + "\n}")); err != nil {
			t.Fatalf("%q: %v", tc.body, err)
		}
		if err := h.defaults(caddy.NewReplacer()); err != nil {
			t.Fatal(err)
		}
		if err := h.validateConfig(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.body, err, tc.want)
		}
	}
	for _, h := range []Handler{
		{StepUp: []StepUpRule{{Path: "/a/*", MaxAge: caddy.Duration(time.Second)}}},
		{StepUp: []StepUpRule{{Path: "a", MaxAge: caddy.Duration(time.Hour)}}},
		{RequireTwoFactorPaths: []string{""}},
		{AssertionHeader: "X-A", AssertionAlgorithm: "HS256"},
		{AssertionHeader: "X-A", AssertionIssuer: "a\nb"},
	} {
		if err := h.defaults(caddy.NewReplacer()); err != nil {
			t.Fatal(err)
		}
		if err := h.validateConfig(); err == nil {
			t.Errorf("%+v: accepted", h)
		}
	}
	// Repeated: step_up and require_two_factor with paths add up.
	var h Handler
	d := caddyfile.NewTestDispenser("two_factor {\nstep_up /a/* 10m\nstep_up /b 1h\nrequire_two_factor /c*\nrequire_two_factor /d *.php\nrequire_two_factor\n}")
	if err := h.UnmarshalCaddyfile(d); err != nil || len(h.StepUp) != 2 || len(h.RequireTwoFactorPaths) != 3 || !h.RequireTwoFactor {
		t.Errorf("repeated path rules: %v %+v", err, h)
	}
}
