package caddymodule

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/gate"
)

// pathSpellings are ways to write a path to the upstream that a naive
// prefix check might take for something else.
var pathSpellings = []string{
	"/", "/secret", "//secret", "/./secret", "/.auth/../secret", "/.auth/%2e%2e/secret",
	"/.auth%2f..%2fsecret", "/%2e%2e/secret", "/.auth/..\\secret", "/.AUTH/login", "/.auth/login/../../secret",
	"/secret?/.auth/login", "/secret#/.auth/login", "/SECRET", "/.auth/logout/..",
}

func TestFullTwoFactorFlow(t *testing.T) {
	g := newGate(t, gateOpts{})
	b := g.browser()
	b.login("alice", testPassword, "/")

	r := b.get("/.auth/security")
	if r.status != 200 || !strings.Contains(r.body, "Enable security") {
		t.Fatalf("security page with 2FA off: got %d, want 200 offering Enable security: %.300s", r.status, r.body)
	}
	enrolled := b.enable()
	if r := b.get("/.auth/security"); !strings.Contains(r.body, "Disable security") {
		t.Fatalf("security page with 2FA on lacks Disable security: %.300s", r.body)
	}
	var me gate.MeInfo
	_ = json.Unmarshal([]byte(b.get("/.auth/me").body), &me)
	if !me.TwoFactor || me.BackupCodesLeft != 10 {
		t.Fatalf("/me after enabling: got %+v, want 2FA on with 10 codes", me)
	}

	// The code used to enable cannot be used again at the first login.
	enableCode := totpCode(t, enrolled.secret, testNow())
	old := b.cookie()
	if r := b.post("/.auth/logout", nil); r.status != http.StatusSeeOther {
		t.Fatalf("logout: got %d, want 303", r.status)
	}
	replay := g.browser()
	replay.jar.SetCookies(mustURL(g.base), []*http.Cookie{{Name: DefaultCookieName, Value: old, Path: "/"}})
	if r := replay.get("/secret"); r.status != http.StatusFound || !strings.HasPrefix(r.header.Get("Location"), "/.auth/login") {
		t.Fatalf("cookie replayed after logout: got %d %q, want a redirect to login", r.status, r.header.Get("Location"))
	}

	b2 := g.browser()
	b2.login("alice", testPassword, "/.auth/code")
	// A password-only session reaches nothing but the code page.
	for _, p := range pathSpellings {
		for _, m := range []string{"GET", "HEAD", "POST", "OPTIONS", "PUT"} {
			req, _ := http.NewRequest(m, g.base+p, nil)
			if r := b2.do(req); r.status < 300 || r.status == http.StatusOK {
				t.Errorf("%s %s with only the password: got %d", m, p, r.status)
			}
		}
	}
	req, _ := http.NewRequest("GET", g.base+"/ws", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	if r := b2.do(req); r.status != http.StatusUnauthorized {
		t.Errorf("websocket upgrade with only the password: got %d, want 401", r.status)
	}
	for _, p := range []string{"/.auth/security", "/.auth/security/enable", "/.auth/security/disable"} {
		if r := b2.get(p); r.status != http.StatusFound || r.header.Get("Location") != "/.auth/code" {
			t.Errorf("GET %s with only the password: got %d %q, want 302 /.auth/code", p, r.status, r.header.Get("Location"))
		}
	}
	if r := b2.get("/.auth/me"); r.status != http.StatusUnauthorized {
		t.Errorf("/me with only the password: got %d, want 401", r.status)
	}
	if n := g.up.count(); n != 0 {
		t.Fatalf("upstream got %d requests, want 0", n)
	}

	if r := b2.post("/.auth/code", url.Values{"code": {enableCode}}); r.status != http.StatusUnauthorized {
		t.Fatalf("replaying the enabling code: got %d, want 401", r.status)
	}
	nextStep()
	code := totpCode(t, enrolled.secret, testNow())
	pending := b2.cookie()
	r = b2.post("/.auth/code", url.Values{"code": {code}})
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/" {
		t.Fatalf("code: got %d %q, want 303 /", r.status, r.header.Get("Location"))
	}
	if b2.cookie() == pending || b2.cookie() == "" {
		t.Errorf("the session ID did not change after the code")
	}
	if r := b2.get("/secret"); r.status != 200 || g.up.last().Header.Get("Remote-User") != "alice" {
		t.Fatalf("after both factors: got %d, want 200 as alice", r.status)
	}

	// The same code, in another session, is refused.
	b3 := g.browser()
	b3.login("alice", testPassword, "/.auth/code")
	if r := b3.post("/.auth/code", url.Values{"code": {code}}); r.status != http.StatusUnauthorized {
		t.Fatalf("same code in another session: got %d, want 401", r.status)
	}
	// A backup code works once, in any spelling.
	bc := strings.ToUpper(strings.ReplaceAll(enrolled.codes[0], "-", " "))
	if r := b3.post("/.auth/code", url.Values{"code": {bc}}); r.status != http.StatusSeeOther {
		t.Fatalf("backup code %q: got %d, want 303", bc, r.status)
	}
	b4 := g.browser()
	b4.login("alice", testPassword, "/.auth/code")
	if r := b4.post("/.auth/code", url.Values{"code": {enrolled.codes[0]}}); r.status != http.StatusUnauthorized {
		t.Fatalf("reused backup code: got %d, want 401", r.status)
	}
	_ = json.Unmarshal([]byte(b3.get("/.auth/me").body), &me)
	if me.BackupCodesLeft != 9 {
		t.Errorf("backup codes left: got %d, want 9", me.BackupCodesLeft)
	}

	// New backup codes: password and code; the old set stops working.
	nextStep()
	r = b3.postSeeOther("/.auth/security/backup-codes", url.Values{"password": {testPassword}, "code": {totpCode(t, enrolled.secret, testNow())}}, codesPage)
	fresh := backupCodesOn(t, r.body)
	if r.status != 200 || len(fresh) != 10 {
		t.Fatalf("new backup codes: got %d with %d codes, want 200 with 10", r.status, len(fresh))
	}
	if !strings.Contains(r.body, `download="backup-codes.txt"`) {
		t.Errorf("backup codes page offers no text file")
	}
	// Shown once: a reload shows them no more, and leads to Security.
	if r := b3.get(codesPage); (r.status != http.StatusFound && r.status != http.StatusSeeOther) || r.header.Get("Location") != securityPage || len(backupCodesOn(t, r.body)) != 0 {
		t.Errorf("reloading the backup codes page: got %d Location %q with %d codes, want a redirect to Security and none", r.status, r.header.Get("Location"), len(backupCodesOn(t, r.body)))
	}
	if r := b4.post("/.auth/code", url.Values{"code": {enrolled.codes[1]}}); r.status != http.StatusUnauthorized {
		t.Errorf("old backup code after regeneration: got %d, want 401", r.status)
	}

	// Turn off: wrong factors change nothing; right ones end the other sessions.
	if r := b3.post("/.auth/security/disable", url.Values{"password": {"wrong"}, "code": {fresh[0]}}); r.status != http.StatusUnauthorized {
		t.Fatalf("disable with a wrong password: got %d, want 401", r.status)
	}
	if r := b3.post("/.auth/security/disable", url.Values{"password": {testPassword}, "code": {"000000"}}); r.status != http.StatusUnauthorized {
		t.Fatalf("disable with a wrong code: got %d, want 401", r.status)
	}
	_ = json.Unmarshal([]byte(b3.get("/.auth/me").body), &me)
	if !me.TwoFactor || me.BackupCodesLeft != 10 {
		t.Fatalf("after failed disables: got %+v, want 2FA still on with 10 codes (the wrong password must not use up the code)", me)
	}
	r = b3.postSeeOther("/.auth/security/disable", url.Values{"password": {testPassword}, "code": {fresh[0]}}, securityPage)
	if r.status != 200 || !strings.Contains(r.body, "Enable security") || !strings.Contains(r.body, `class="message message-success"`) {
		t.Fatalf("disable: got %d, want 200 with the security page and its notice: %.300s", r.status, r.body)
	}
	if r := b3.get(securityPage); r.status != 200 || strings.Contains(r.body, `class="message message-success"`) {
		t.Errorf("reloading Security after disabling: got %d, want 200 without the notice again", r.status)
	}
	if r := b2.get("/secret"); r.status != http.StatusFound {
		t.Errorf("another session after disabling 2FA: got %d, want it ended (302 to login)", r.status)
	}
	if r := b3.get("/secret"); r.status != 200 {
		t.Errorf("the disabling session: got %d, want 200", r.status)
	}
	// Password alone logs in again.
	g.browser().login("alice", testPassword, "/")
}

func TestConcurrentReplayExactlyOneWins(t *testing.T) {
	g := newGate(t, gateOpts{})
	b := g.browser()
	b.login("alice", testPassword, "/")
	enrolled := b.enable()
	nextStep()
	code := totpCode(t, enrolled.secret, testNow())

	for _, tc := range []struct{ name, code string }{{"totp", code}, {"backup", enrolled.codes[3]}} {
		const n = 12
		browsers := make([]*browser, n)
		for i := range browsers {
			browsers[i] = g.browser()
			browsers[i].login("alice", testPassword, "/.auth/code")
		}
		var wg sync.WaitGroup
		statuses := make([]int, n)
		for i := range browsers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				statuses[i] = browsers[i].post("/.auth/code", url.Values{"code": {tc.code}}).status
			}()
		}
		wg.Wait()
		wins := 0
		for _, s := range statuses {
			if s == http.StatusSeeOther {
				wins++
			}
		}
		if wins != 1 {
			t.Errorf("%s code submitted by %d sessions at once: %d accepted (%v), want exactly 1", tc.name, n, wins, statuses)
		}
	}
}

func TestOlderStepAfterNewerIsRefused(t *testing.T) {
	g := newGate(t, gateOpts{})
	b := g.browser()
	b.login("alice", testPassword, "/")
	enrolled := b.enable()
	nextStep()
	nextStep()
	older := totpCode(t, enrolled.secret, testNow().Add(-30*time.Second)) // still inside the skew window
	newer := totpCode(t, enrolled.secret, testNow())
	b1 := g.browser()
	b1.login("alice", testPassword, "/.auth/code")
	if r := b1.post("/.auth/code", url.Values{"code": {newer}}); r.status != http.StatusSeeOther {
		t.Fatalf("current code: got %d, want 303", r.status)
	}
	b2 := g.browser()
	b2.login("alice", testPassword, "/.auth/code")
	if r := b2.post("/.auth/code", url.Values{"code": {older}}); r.status != http.StatusUnauthorized {
		t.Fatalf("older step after a newer one: got %d, want 401", r.status)
	}
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}
