package caddymodule

import (
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/ops"
)

// User-Agents of the browsers in these tests.
const (
	uaFirefoxLinux  = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
	uaChromeWindows = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
	uaSafariIPhone  = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"
)

// loginWith does the password step with a User-Agent and checks where it
// leads.
func (b *browser) loginWith(ua, user, password, wantLocation string) {
	b.t.Helper()
	r := b.post("/.auth/login", url.Values{"username": {user}, "password": {password}}, "User-Agent", ua)
	if r.status != http.StatusSeeOther || r.header.Get("Location") != wantLocation {
		b.t.Fatalf("login %s: got %d Location %q, want 303 %q; body: %.300s", user, r.status, r.header.Get("Location"), wantLocation, r.body)
	}
}

// device is one entry of a list on the Security page.
type device struct {
	current bool
	handle  string
	text    string // the entry's markup
}

var (
	deviceRe = regexp.MustCompile(`(?s)<li class="device"( aria-current="true")?>(.*?)</li>`)
	handleRe = regexp.MustCompile(`name="(?:session|browser)" value="([^"]+)"`)
)

// devices reads the entries of the list under the heading with that id
// (sessions-heading or browsers-heading) on a Security page.
func devices(t *testing.T, page, heading string) []device {
	t.Helper()
	i := strings.Index(page, `id="`+heading+`"`)
	if i < 0 {
		return nil
	}
	section := page[i:]
	if j := strings.Index(section, "</section>"); j >= 0 {
		section = section[:j]
	}
	var out []device
	for _, m := range deviceRe.FindAllStringSubmatch(section, -1) {
		h := handleRe.FindStringSubmatch(m[2])
		if h == nil {
			t.Fatalf("an entry without a handle: %s", m[2])
		}
		out = append(out, device{current: m[1] != "", handle: h[1], text: m[2]})
	}
	return out
}

func (b *browser) sessions() []device {
	b.t.Helper()
	r := b.get(securityPage)
	if r.status != http.StatusOK {
		b.t.Fatalf("Security page: got %d", r.status)
	}
	return devices(b.t, r.body, "sessions-heading")
}

// other returns the one entry that is not the current one.
func other(t *testing.T, ds []device) device {
	t.Helper()
	var out []device
	for _, d := range ds {
		if !d.current {
			out = append(out, d)
		}
	}
	if len(out) != 1 {
		t.Fatalf("got %d entries besides the current one, want 1", len(out))
	}
	return out[0]
}

// TestSecurityPageSessions: the Security page lists the user's own live
// sessions, with the browser and system, the address, the times and this
// session marked, and ends one of them (dead at once), or all but this
// one; a handle of another user's session ends nothing; the CLI lists
// them without a secret.
func TestSecurityPageSessions(t *testing.T) {
	g := newGate(t, gateOpts{})
	b1, b2, bob := g.browser(), g.browser(), g.browser()
	b1.loginWith(uaFirefoxLinux, "alice", testPassword, "/")
	b2.loginWith(uaChromeWindows, "alice", testPassword, "/")
	bob.loginWith(uaSafariIPhone, "Bob", testPassword, "/")
	// A session that still owes the code is not listed; none here, but a
	// pending login of Bob must not show up for alice either.
	ds := b1.sessions()
	if len(ds) != 2 {
		t.Fatalf("alice's Security page lists %d sessions, want 2", len(ds))
	}
	page := b1.get(securityPage).body
	for _, want := range []string{"Firefox</strong>, Linux", "Chrome</strong>, Windows", "127.0.0.1", "This session",
		"Log out of all other sessions", `<time datetime="`} {
		if !strings.Contains(page, want) {
			t.Errorf("the sessions list lacks %q", want)
		}
	}
	if strings.Contains(page, "Safari") || strings.Contains(page, "iOS") {
		t.Error("alice's Security page shows Bob's session")
	}
	if strings.Contains(page, b1.cookie()) || strings.Contains(page, b2.cookie()) {
		t.Fatal("the Security page shows a session cookie")
	}
	cur := 0
	for _, d := range ds {
		if d.current {
			cur++
			if !strings.Contains(d.text, "Firefox") {
				t.Errorf("the session marked as this one is not b1's: %s", d.text)
			}
		}
	}
	if cur != 1 {
		t.Errorf("%d sessions marked as this one, want 1", cur)
	}

	// Bob's handle is worth nothing to alice, and so is garbage.
	bobHandle := bob.sessions()[0].handle
	for _, h := range []string{bobHandle, "", "x", strings.Repeat("A", 5000), "<script>"} {
		r := b1.post("/.auth/security/sessions/end", url.Values{"session": {h}})
		if r.status != http.StatusNotFound || !strings.Contains(r.body, "not one of your live sessions") {
			t.Errorf("ending handle %.20q: got %d, want 404 with a message", h, r.status)
		}
	}
	bob.alive("Bob after alice sent his session's handle", "Bob")

	// A cross-site form ends nothing.
	target := other(t, ds)
	if r := b1.post("/.auth/security/sessions/end", url.Values{"session": {target.handle}}, "Sec-Fetch-Site", "cross-site"); r.status != http.StatusForbidden {
		t.Errorf("cross-site end: got %d, want 403", r.status)
	}
	if r := b1.post("/.auth/security/sessions/end-others", nil, "Origin", "https://evil.example"); r.status != http.StatusForbidden {
		t.Errorf("cross-site end-others: got %d, want 403", r.status)
	}
	b2.alive("b2 after cross-site posts", "alice")

	// The CLI lists them, and prints no secret.
	out := g.cli("", "sessions", "list", "alice").out
	for _, want := range []string{"Sessions of alice: 2", "Firefox on Linux from 127.0.0.1", "Chrome on Windows from 127.0.0.1", "Remembered browsers: 0"} {
		if !strings.Contains(out, want) {
			t.Errorf("sessions list lacks %q:\n%s", want, out)
		}
	}
	js := g.cli("", "sessions", "list", "alice", "--json").out
	var list ops.SessionList
	if err := json.Unmarshal([]byte(js), &list); err != nil || len(list.Sessions) != 2 || list.Sessions[0].Address != "127.0.0.1" {
		t.Errorf("sessions list --json: %v: %s", err, js)
	}
	for _, secret := range []string{b1.cookie(), b2.cookie(), target.handle} {
		if strings.Contains(out+js, secret) {
			t.Errorf("sessions list prints %q", secret)
		}
	}

	// b1 ends b2: dead at once.
	r := b1.postSeeOther("/.auth/security/sessions/end", url.Values{"session": {target.handle}}, securityPage)
	if !strings.Contains(r.body, "The session has been logged out.") {
		t.Error("no notice after ending a session")
	}
	b2.dead("the session ended from another one")
	b1.alive("the session that ended another", "alice")
	if ds := b1.sessions(); len(ds) != 1 || !ds[0].current {
		t.Errorf("after ending b2: %d sessions listed, want only this one", len(ds))
	}

	// "Log out of all other sessions" keeps this one.
	b3, b4 := g.browser(), g.browser()
	b3.login("alice", testPassword, "/")
	b4.login("alice", testPassword, "/")
	r = b1.postSeeOther("/.auth/security/sessions/end-others", nil, securityPage)
	if !strings.Contains(r.body, "All your other sessions have been logged out.") {
		t.Error("no notice after ending the other sessions")
	}
	b3.dead("b3 after log out of all others")
	b4.dead("b4 after log out of all others")
	b1.alive("the session that ended all others", "alice")
	bob.alive("Bob after alice ended her other sessions", "Bob")

	// Ending this session is a logout.
	own := b1.sessions()[0]
	if !own.current {
		t.Fatal("the one session left is not marked as this one")
	}
	r = b1.post("/.auth/security/sessions/end", url.Values{"session": {own.handle}})
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/.auth/login" {
		t.Errorf("ending this session: got %d %q, want 303 to the login", r.status, r.header.Get("Location"))
	}
	b1.dead("the session that ended itself")
}

// TestSessionsListRealm: the Security page and the CLI list only the
// realm's sessions of a name.
func TestSessionsListRealm(t *testing.T) {
	s := newTwoSites(t, "realm a\n\t\tuser admin "+testHash, "realm b\n\t\tuser admin "+testHash)
	ba, bb := s.a.browser(), s.b.browser()
	ba.loginWith(uaFirefoxLinux, "admin", testPassword, "/")
	bb.loginWith(uaChromeWindows, "admin", testPassword, "/")
	if ds := ba.sessions(); len(ds) != 1 || !strings.Contains(ds[0].text, "Firefox") {
		t.Fatalf("A's admin sees %d sessions, want their one", len(ds))
	}
	// B's session handle ends nothing on A.
	h := bb.sessions()[0].handle
	if r := ba.post("/.auth/security/sessions/end", url.Values{"session": {h}}); r.status != http.StatusNotFound {
		t.Errorf("ending B's session from A: got %d, want 404", r.status)
	}
	if r := bb.get("/app"); !reachedUpstream(r) {
		t.Errorf("B's session after A sent its handle: got %d", r.status)
	}
	out := s.a.cli("", "sessions", "list", "admin", "--realm", "b").out
	if !strings.Contains(out, "Chrome on Windows") || strings.Contains(out, "Firefox") {
		t.Errorf("sessions list of realm b:\n%s", out)
	}
}
