package caddymodule

import (
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestPasswordThrottlePerAccount(t *testing.T) {
	g := newGate(t, gateOpts{extra: "free_failures 3"})
	// Every spelling of the name, from fresh sessions, counts against one account.
	spellings := []string{"alice", "ALICE", "Alice", "ａｌｉｃｅ"}
	for i := range 3 {
		r := g.browser().post("/.auth/login", url.Values{"username": {spellings[i]}, "password": {"wrong"}})
		if r.status != http.StatusUnauthorized {
			t.Fatalf("failure %d: got %d, want 401", i+1, r.status)
		}
	}
	// The 4th failure gets a delay; from then on even the right password waits.
	g.browser().post("/.auth/login", url.Values{"username": {"alice"}, "password": {"wrong"}})
	r := g.browser().post("/.auth/login", url.Values{"username": {spellings[3]}, "password": {testPassword}})
	if r.status != http.StatusTooManyRequests {
		t.Fatalf("right password while throttled: got %d, want 429", r.status)
	}
	if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 {
		t.Errorf("Retry-After: got %q, want a positive number of seconds", r.header.Get("Retry-After"))
	}
	if r.header.Get("Set-Cookie") != "" {
		t.Errorf("a throttled login set a cookie")
	}
	// Another account is not affected.
	g.browser().login("bob", testPassword, "/")
	// After the wait, the right password works again.
	advance(2 * time.Second)
	g.browser().login("alice", testPassword, "/")
}

func TestCodeBudgetSurvivesNewLogins(t *testing.T) {
	g := newGate(t, gateOpts{extra: "free_failures 3"})
	enrolled := g.enrolAlice()
	// Wrong codes from new sessions and restarted logins share one budget,
	// and a correct password does not reset it.
	for i := range 4 {
		s := g.browser()
		s.login("alice", testPassword, "/.auth/code")
		if r := s.post("/.auth/code", url.Values{"code": {"000000"}}); r.status != http.StatusUnauthorized {
			t.Fatalf("wrong code %d: got %d, want 401", i+1, r.status)
		}
	}
	s := g.browser()
	s.login("alice", testPassword, "/.auth/code")
	good := totpCode(t, enrolled.secret, testNow())
	r := s.post("/.auth/code", url.Values{"code": {good}})
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
		t.Fatalf("right code while throttled: got %d (Retry-After %q), want 429 with Retry-After", r.status, r.header.Get("Retry-After"))
	}
	// The right code was refused unread: it still works after the wait.
	advance(2 * time.Second)
	if r := s.post("/.auth/code", url.Values{"code": {good}}); r.status != http.StatusSeeOther {
		t.Fatalf("right code after the wait: got %d, want 303", r.status)
	}
}

func TestClientBudgetAcrossAccounts(t *testing.T) {
	g := newGate(t, gateOpts{extra: "free_failures 1"})
	// One client guessing many names hits the per-client budget (4x free).
	var last response
	for i := range 6 {
		last = g.browser().post("/.auth/login", url.Values{"username": {"user" + strconv.Itoa(i)}, "password": {"x"}})
	}
	if last.status != http.StatusTooManyRequests {
		t.Fatalf("many names from one client: got %d, want 429", last.status)
	}
	// X-Forwarded-For from an untrusted client changes nothing.
	r := g.browser().post("/.auth/login", url.Values{"username": {"zed"}, "password": {"x"}}, "X-Forwarded-For", "203.0.113.7")
	if r.status != http.StatusTooManyRequests {
		t.Fatalf("spoofed X-Forwarded-For: got %d, want 429 (the header must not pick the client's budget)", r.status)
	}
	if !strings.Contains(r.body, "Too many attempts") {
		t.Errorf("429 page lacks an explanation")
	}
}

// backLinkOn returns the href of the error page's way back (the link in its
// actions paragraph).
func backLinkOn(t *testing.T, page string) string {
	t.Helper()
	m := backLinkRe.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("the page has no link back: %.500s", page)
	}
	return m[1]
}

var backLinkRe = regexp.MustCompile(`<p class="actions">\s*<a class="button[^"]*" href="([^"]+)"`)

// TestThrottledCodeStepLeadsBackToCode: the session is still pending after
// a 429 at the code step, so the page's way back is the code form, which
// accepts the code after the wait, not the password form.
func TestThrottledCodeStepLeadsBackToCode(t *testing.T) {
	g := newGate(t, gateOpts{extra: "free_failures 1"})
	enrolled := g.enrolAlice()
	s := g.browser()
	s.login("alice", testPassword, "/.auth/code")
	s.post("/.auth/code", url.Values{"code": {"000000"}})
	s.post("/.auth/code", url.Values{"code": {"000000"}})
	r := s.post("/.auth/code", url.Values{"code": {totpCode(t, enrolled.secret, testNow())}})
	if r.status != http.StatusTooManyRequests {
		t.Fatalf("code while throttled: got %d, want 429", r.status)
	}
	back := backLinkOn(t, r.body)
	if back != "/.auth/code" {
		t.Errorf("the 429 page at the code step links back to %q, want /.auth/code", back)
	}
	if r := s.get(back); r.status != http.StatusOK || !strings.Contains(r.body, `name="code"`) {
		t.Fatalf("following the way back: got %d, want 200 and the code form: %.300s", r.status, r.body)
	}
	advance(5 * time.Second)
	if r := s.post(back, url.Values{"code": {totpCode(t, enrolled.secret, testNow())}}); r.status != http.StatusSeeOther {
		t.Fatalf("the code after the wait: got %d, want 303", r.status)
	}
}
