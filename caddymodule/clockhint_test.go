package caddymodule

import (
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/audit"
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// drifted is alice's code of the time step steps away from now.
func drifted(t *testing.T, secret string, steps int) string {
	t.Helper()
	return totpCode(t, secret, testNow().Add(time.Duration(steps)*30*time.Second))
}

// TestClockHints: at the code step, a code of a device whose clock is 3
// steps ahead or 4 behind is refused with a hint that says so, in
// minutes; one 30 steps away (15 minutes) gets none. Each counts as a
// failure: once free_failures are used up the next attempt is throttled,
// and gets no hint. No drifted code is ever accepted; the audit log has
// code.clock_drift with the offset; the recent activity says it too.
func TestClockHints(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "audit.log")
	g := newGate(t, gateOpts{extra: "free_failures 3", global: auditLog(logFile)})
	e := g.enrolAlice()
	s := g.browser()
	s.login("alice", testPassword, "/.auth/code")
	for _, tc := range []struct {
		steps int
		key   string
		mins  int
	}{
		{3, "clock.ahead", 2},
		{-4, "clock.behind", 2},
		{30, "", 0},
	} {
		r := s.post("/.auth/code", url.Values{"code": {drifted(t, e.secret, tc.steps)}})
		if r.status != http.StatusUnauthorized {
			t.Fatalf("code %+d steps away: got %d, want 401 (never accepted)", tc.steps, r.status)
		}
		if !strings.Contains(r.body, catalogueText(t, "en", "error.wrong_details")) {
			t.Errorf("code %+d steps away: not refused as a wrong code", tc.steps)
		}
		if tc.key == "" {
			if strings.Contains(r.body, `id="clock-hint"`) {
				t.Errorf("code %+d steps away: got a clock hint, want none (beyond the window)", tc.steps)
			}
			continue
		}
		if !strings.Contains(r.body, `id="clock-hint"`) || !strings.Contains(r.body, catalogueText(t, "en", tc.key, "count", tc.mins)) ||
			!strings.Contains(r.body, catalogueText(t, "en", "clock.fix")) {
			t.Errorf("code %+d steps away: want the hint %q: %.2000s", tc.steps, catalogueText(t, "en", tc.key, "count", tc.mins), r.body)
		}
		if !strings.Contains(r.body, `aria-describedby="form-error clock-hint code-hint"`) {
			t.Errorf("code %+d steps away: the code field is not described by the hint", tc.steps)
		}
	}
	// A fourth failure uses up free_failures 3 (the policy lets one more
	// through than it names, as in TestCodeBudgetSurvivesNewLogins): the
	// next attempt waits, and a drifted code gets no hint (nothing was
	// checked). Were drifted codes not counted, it would not wait.
	if r := s.post("/.auth/code", url.Values{"code": {"000000"}}); r.status != http.StatusUnauthorized {
		t.Fatalf("fourth attempt: got %d, want 401", r.status)
	}
	r := s.post("/.auth/code", url.Values{"code": {drifted(t, e.secret, 3)}})
	if r.status != http.StatusTooManyRequests {
		t.Fatalf("fifth attempt: got %d, want 429 (each drifted code counted as a failure)", r.status)
	}
	if strings.Contains(r.body, `clock-hint`) {
		t.Errorf("a throttled attempt got a clock hint")
	}
	// The right code is still accepted after the wait, once.
	advance(2 * time.Second)
	if r := s.post("/.auth/code", url.Values{"code": {totpCode(t, e.secret, testNow())}}); r.status != http.StatusSeeOther {
		t.Fatalf("right code after the wait: got %d, want 303", r.status)
	}

	_, events := auditEvents(t, logFile)
	if got := find(events, audit.EvCodeClockDrift, map[string]any{"user": "alice", "step": "code", "offset_steps": 3, "offset_seconds": 90}); len(got) != 1 {
		t.Errorf("audit: %d code.clock_drift events of +3 steps, want 1", len(got))
	}
	if got := find(events, audit.EvCodeClockDrift, map[string]any{"offset_steps": -4}); len(got) != 1 {
		t.Errorf("audit: %d code.clock_drift events of -4 steps, want 1", len(got))
	}
	if got := find(events, audit.EvCodeClockDrift, nil); len(got) != 2 {
		t.Errorf("audit: %d code.clock_drift events, want 2 (none for +30, none when throttled)", len(got))
	}
	if got := find(events, audit.EvCodeFailed, map[string]any{"user": "alice"}); len(got) != 4 {
		t.Errorf("audit: %d code.failed events, want 4", len(got))
	}

	// The recent activity tells of the clock too.
	page := s.get(securityPage).body
	if !strings.Contains(page, catalogueText(t, "en", "activity.clock_ahead", "count", 2)) ||
		!strings.Contains(page, catalogueText(t, "en", "activity.clock_behind", "count", 2)) {
		t.Errorf("the recent activity does not tell of the clock")
	}

	// On the Security forms: after the right password only.
	nextStep()
	r = s.post("/.auth/security/disable", url.Values{"password": {"wrong password"}, "code": {drifted(t, e.secret, -4)}})
	if r.status != http.StatusUnauthorized || strings.Contains(r.body, "clock-hint") {
		t.Errorf("disable with a wrong password and a drifted code: got %d, hint %v; want 401 without a hint", r.status, strings.Contains(r.body, "clock-hint"))
	}
	r = s.post("/.auth/security/disable", url.Values{"password": {testPassword}, "code": {drifted(t, e.secret, -4)}})
	if r.status != http.StatusUnauthorized || !strings.Contains(r.body, catalogueText(t, "en", "clock.behind", "count", 2)) {
		t.Errorf("disable with a code 4 steps behind: got %d, want 401 with the hint: %.1500s", r.status, r.body)
	}
	if !strings.Contains(r.body, `aria-describedby="form-error clock-hint"`) {
		t.Errorf("disable: the code field is not described by the hint")
	}
	r = s.post("/.auth/security/backup-codes", url.Values{"password": {testPassword}, "code": {drifted(t, e.secret, 5)}})
	if r.status != http.StatusUnauthorized || !strings.Contains(r.body, catalogueText(t, "en", "clock.ahead", "count", 3)) {
		t.Errorf("new codes with a code 5 steps ahead: got %d, want 401 with the hint (3 minutes)", r.status)
	}
	// In Russian, with its plural.
	r = s.post("/.auth/security/backup-codes", url.Values{"password": {testPassword}, "code": {drifted(t, e.secret, 20)}}, "Accept-Language", "ru")
	if want := catalogueText(t, "ru", "clock.ahead", "count", 10); r.status != http.StatusUnauthorized || !strings.Contains(r.body, want) || !strings.Contains(r.body, "10 минут") {
		t.Errorf("Russian, 20 steps ahead: got %d, want %q", r.status, html.UnescapeString(want))
	}
}

// TestClockHintOnEnable: the enable form hints at a drifted code of the
// key being offered, and refuses it.
func TestClockHintOnEnable(t *testing.T) {
	g := newGate(t, gateOpts{})
	b := g.browser()
	b.login("alice", testPassword, "/")
	r := b.get("/.auth/security/enable")
	m := otpauthRe.FindStringSubmatch(r.body)
	if m == nil {
		t.Fatalf("enable page has no otpauth link")
	}
	secret := secretOf(t, m[1])
	r = b.post("/.auth/security/enable", url.Values{"code": {drifted(t, secret, -6)}, "password": {testPassword}})
	if r.status != http.StatusUnauthorized || !strings.Contains(r.body, catalogueText(t, "en", "clock.behind", "count", 3)) {
		t.Fatalf("enable with a code 6 steps behind: got %d, want 401 with the hint: %.1500s", r.status, r.body)
	}
	if !strings.Contains(r.body, `aria-describedby="form-error clock-hint"`) {
		t.Errorf("enable: the code field is not described by the hint")
	}
	if me := b.get("/.auth/me"); !strings.Contains(me.body, `"two_factor":false`) {
		t.Errorf("a drifted code turned 2FA on: %s", me.body)
	}
}

// TestClockHintWindowOff: clock_hint_window 0 turns the hints off.
func TestClockHintWindowOff(t *testing.T) {
	g := newGate(t, gateOpts{extra: "clock_hint_window 0"})
	e := g.enrolAlice()
	s := g.browser()
	s.login("alice", testPassword, "/.auth/code")
	r := s.post("/.auth/code", url.Values{"code": {drifted(t, e.secret, 3)}})
	if r.status != http.StatusUnauthorized || strings.Contains(r.body, "clock-hint") {
		t.Errorf("hints off: got %d, hint %v; want 401 without one", r.status, strings.Contains(r.body, "clock-hint"))
	}
	unload(t)
	// A narrower window: 2m covers 4 steps, not 5.
	g = newGate(t, gateOpts{extra: "clock_hint_window 2m"})
	e = g.enrolAlice()
	s = g.browser()
	s.login("alice", testPassword, "/.auth/code")
	if r := s.post("/.auth/code", url.Values{"code": {drifted(t, e.secret, 4)}}); !strings.Contains(r.body, "clock-hint") {
		t.Errorf("2m window, 4 steps: want a hint")
	}
	if r := s.post("/.auth/code", url.Values{"code": {drifted(t, e.secret, -5)}}); strings.Contains(r.body, "clock-hint") {
		t.Errorf("2m window, 5 steps: want no hint")
	}
}

// TestClockHintWindowOption: clock_hint_window takes 0 (off) as well as a
// duration up to 1h, from the Caddyfile and from JSON; unset is 10m.
func TestClockHintWindowOption(t *testing.T) {
	for _, tc := range []struct {
		line string
		want time.Duration
	}{
		{"", DefaultClockHintWindow},
		{"clock_hint_window 0", 0},
		{"clock_hint_window 0s", 0},
		{"clock_hint_window 90s", 90 * time.Second},
		{"clock_hint_window 1h", time.Hour},
	} {
		var h Handler
		if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("two_factor {\n" + tc.line + "\n}")); err != nil {
			t.Fatalf("%q: %v", tc.line, err)
		}
		if err := h.defaults(caddy.NewReplacer()); err != nil {
			t.Fatal(err)
		}
		if err := h.validateConfig(); err != nil {
			t.Errorf("%q: %v", tc.line, err)
		}
		if h.clockHint != tc.want {
			t.Errorf("%q: window %v, want %v", tc.line, h.clockHint, tc.want)
		}
	}
	for _, tc := range []struct{ line, want string }{
		{"clock_hint_window -1m", "clock_hint_window: must be positive"},
		{"clock_hint_window 61m", "clock_hint_window: must be at most 1h"},
		{"clock_hint_window ten", "clock_hint_window: invalid duration"},
	} {
		if err := adaptError(t, "\t\t"+tc.line); err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "Caddyfile:3") {
			t.Errorf("%s: got %v, want %q at Caddyfile:3", tc.line, err, tc.want)
		}
	}
	assertJSONFieldRefused(t, `"clock_hint_window": 7200000000000`, "clock_hint_window 2h0m0s: must be between 0 (off) and 1h")
	assertJSONFieldRefused(t, `"clock_hint_window": -1`, "clock_hint_window -1ns: must be between 0 (off) and 1h")
}
