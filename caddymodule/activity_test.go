package caddymodule

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/ops"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store"
)

const (
	firefoxLinux = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"
	curlUA       = "curl/8.5.0"
)

// uaTransport sends every request of a browser with one User-Agent.
type uaTransport struct {
	ua   string
	base http.RoundTripper
}

func (u uaTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("User-Agent", u.ua)
	return u.base.RoundTrip(r)
}

// browserAs is a browser whose requests carry the User-Agent ua.
func (g *testGate) browserAs(ua string) *browser {
	b := g.browser()
	b.client.Transport = uaTransport{ua: ua, base: b.client.Transport}
	return b
}

// activityItem is one entry of the Security page's recent activity: what
// happened, and all of the entry's text.
type activityItem struct{ what, text string }

// activityOn reads the recent activity list of a Security page, in order.
func activityOn(t *testing.T, page string) []activityItem {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	var items []activityItem
	var text func(n *html.Node) string
	text = func(n *html.Node) string {
		if n.Type == html.TextNode {
			return n.Data
		}
		var b strings.Builder
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			b.WriteString(text(c))
		}
		return b.String()
	}
	hasClass := func(n *html.Node, class string) bool {
		for _, a := range n.Attr {
			if a.Key == "class" && strings.Contains(" "+a.Val+" ", " "+class+" ") {
				return true
			}
		}
		return false
	}
	var find func(n *html.Node, class string) *html.Node
	find = func(n *html.Node, class string) *html.Node {
		if n.Type == html.ElementNode && hasClass(n, class) {
			return n
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			if f := find(c, class); f != nil {
				return f
			}
		}
		return nil
	}
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == "li" && hasClass(n, "activity-item") {
			it := activityItem{text: strings.Join(strings.Fields(text(n)), " ")}
			if w := find(n, "activity-what"); w != nil {
				it.what = strings.TrimSpace(text(w))
			}
			items = append(items, it)
			return
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	return items
}

// plainText is a catalogue message as text (not HTML-escaped).
func plainText(t *testing.T, lang, key string, args ...any) string {
	t.Helper()
	return html.UnescapeString(catalogueText(t, lang, key, args...))
}

// TestRecentActivity walks a store user through a login, 2FA on, a wrong
// code and new backup codes, a logout, a wrong code at the login and a
// right one, a password change, 2FA off with a backup code and an
// operator's revocation: the Security page lists each, newest first, with
// the address and browser of the user's own events. Another user's page
// lists none of them, and theirs are not on dave's.
func TestRecentActivity(t *testing.T) {
	g := newGate(t, gateOpts{extra: "argon2id_memory 1024"})
	var added ops.UserInfo
	if status := adminPost(t, "/two-factor/users/add", ops.UserRequest{User: "dave", PasswordHash: testHash}, &added); status != http.StatusCreated {
		t.Fatalf("adding dave: %d", status)
	}
	b := g.browserAs(firefoxLinux)
	b.login("dave", testPassword, "/")
	e := b.enable()
	nextStep()
	code := totpCode(t, e.secret, testNow())
	if r := b.post("/.auth/security/backup-codes", url.Values{"password": {testPassword}, "code": {"000000"}}); r.status != http.StatusUnauthorized {
		t.Fatalf("new codes with a wrong code: got %d, want 401", r.status)
	}
	fresh := backupCodesOn(t, b.postSeeOther("/.auth/security/backup-codes", url.Values{"password": {testPassword}, "code": {code}}, codesPage).body)
	if len(fresh) != 10 {
		t.Fatalf("new backup codes: got %d", len(fresh))
	}
	if r := b.post("/.auth/logout", url.Values{}); r.status != http.StatusSeeOther {
		t.Fatalf("logout: got %d", r.status)
	}
	b.login("dave", testPassword, "/.auth/code")
	if r := b.post("/.auth/code", url.Values{"code": {"000000"}}); r.status != http.StatusUnauthorized {
		t.Fatalf("wrong code: got %d, want 401", r.status)
	}
	nextStep()
	if r := b.post("/.auth/code", url.Values{"code": {totpCode(t, e.secret, testNow())}}); r.status != http.StatusSeeOther {
		t.Fatalf("right code: got %d, want 303", r.status)
	}
	nextStep()
	const newPassword = "a brand new password"
	r := b.post("/.auth/security/password", url.Values{"current_password": {testPassword}, "code": {totpCode(t, e.secret, testNow())},
		"new_password": {newPassword}, "confirm_password": {newPassword}})
	if r.status != http.StatusOK {
		t.Fatalf("password change: got %d: %.300s", r.status, r.body)
	}
	// The page after the change lists it already.
	if items := activityOn(t, r.body); len(items) == 0 || items[0].what != plainText(t, "en", "activity.password") {
		t.Fatalf("the page after the password change: %+v", items)
	}
	// The backup codes of the enrolment stopped working with the new set.
	if r := b.post("/.auth/security/disable", url.Values{"password": {newPassword}, "code": {e.codes[0]}}); r.status != http.StatusUnauthorized {
		t.Fatalf("disable with an old backup code: got %d, want 401", r.status)
	}
	b.postSeeOther("/.auth/security/disable", url.Values{"password": {newPassword}, "code": {fresh[0]}}, securityPage)
	var res ops.ChangeResult
	if status := adminPost(t, "/two-factor/sessions/revoke", ops.UserRequest{User: "dave"}, &res); status != http.StatusOK || res.Note != "" {
		t.Fatalf("revoke: %d %+v", status, res)
	}
	b.login("dave", newPassword, "/")

	// alice does things of her own, with another browser.
	a := g.browserAs(curlUA)
	a.login("alice", testPassword, "/")
	aliceItems := activityOn(t, a.get(securityPage).body)
	if len(aliceItems) != 1 || aliceItems[0].what != plainText(t, "en", "activity.login_password") || !strings.Contains(aliceItems[0].text, "curl") {
		t.Errorf("alice's activity: got %+v, want only her login with curl", aliceItems)
	}

	page := b.get(securityPage)
	if page.status != http.StatusOK {
		t.Fatalf("security page: %d", page.status)
	}
	items := activityOn(t, page.body)
	want := []string{
		plainText(t, "en", "activity.login_password"),
		plainText(t, "en", "activity.revoked"),
		plainText(t, "en", "activity.disabled"),
		plainText(t, "en", "activity.backup_used", "count", 9),
		plainText(t, "en", "activity.code_failed_security"),
		plainText(t, "en", "activity.password"),
		plainText(t, "en", "activity.login_code"),
		plainText(t, "en", "activity.code_failed_login"),
		plainText(t, "en", "activity.logout"),
		plainText(t, "en", "activity.backup_codes"),
		plainText(t, "en", "activity.code_failed_security"),
		plainText(t, "en", "activity.enabled"),
		plainText(t, "en", "activity.login_password"),
	}
	if len(items) != len(want) {
		t.Fatalf("got %d activity entries, want %d: %+v", len(items), len(want), items)
	}
	for i, w := range want {
		if items[i].what != w {
			t.Errorf("entry %d: got %q, want %q", i, items[i].what, w)
		}
		if strings.Contains(items[i].text, "curl") {
			t.Errorf("entry %d is alice's: %q", i, items[i].text)
		}
	}
	for _, i := range []int{0, 6, 7, 12} { // the user's own logins and wrong code
		if !strings.Contains(items[i].text, "127.0.0.1") || !strings.Contains(items[i].text, "Firefox, Linux") {
			t.Errorf("entry %d lacks the address or the browser: %q", i, items[i].text)
		}
	}
	if !strings.Contains(items[1].text, plainText(t, "en", "activity.by_operator")) || strings.Contains(items[1].text, "127.0.0.1") {
		t.Errorf("the revocation is not marked as an administrator's: %q", items[1].text)
	}
	if !strings.Contains(items[7].text, plainText(t, "en", "activity.code_failed_note")) {
		t.Errorf("the wrong code after the password does not say what it means: %q", items[7].text)
	}
	if !strings.Contains(page.body, `<time datetime="`) || !strings.Contains(page.body, `aria-labelledby="activity-heading"`) {
		t.Errorf("the list lacks machine-readable times or its labelled section")
	}
	// The operator's password change and reset are listed too.
	var changed ops.ChangeResult
	if status := adminPost(t, "/two-factor/users/passwd", ops.UserRequest{User: "dave", Password: testPassword}, &changed); status != http.StatusOK || changed.Note != "" {
		t.Fatalf("passwd: %d %+v", status, changed)
	}
	b.login("dave", testPassword, "/")
	b.enable()
	if status := adminPost(t, "/two-factor/reset", ops.UserRequest{User: "dave"}, &changed); status != http.StatusOK || changed.Note != "" {
		t.Fatalf("reset: %d %+v", status, changed)
	}
	b.login("dave", testPassword, "/")
	later := activityOn(t, b.get(securityPage).body)
	wantLater := []string{
		plainText(t, "en", "activity.login_password"),
		plainText(t, "en", "activity.reset"),
		plainText(t, "en", "activity.enabled"),
		plainText(t, "en", "activity.login_password"),
		plainText(t, "en", "activity.password_operator"),
	}
	for i, w := range wantLater {
		if i >= len(later) || later[i].what != w {
			t.Fatalf("after passwd and reset: entry %d: got %+v, want %q", i, later, w)
		}
	}
	if !strings.Contains(later[1].text, plainText(t, "en", "activity.sessions_count", "count", 1)) {
		t.Errorf("the reset does not say how many sessions it ended: %q", later[1].text)
	}

	// In Russian too.
	ru := b.get(securityPage, "Accept-Language", "ru")
	if items := activityOn(t, ru.body); len(items) < 2 || items[1].what != plainText(t, "ru", "activity.reset") {
		t.Errorf("the Russian page: %+v", items)
	}
}

// TestRecentActivityBoundedAndPruned: the page lists at most 50 events,
// the newest; an event older than 30 days is never shown.
func TestRecentActivityBoundedAndPruned(t *testing.T) {
	g := newGate(t, gateOpts{})
	b := g.browser()
	for range 30 { // 60 events: a login and a logout each
		b.login("alice", testPassword, "/")
		if r := b.post("/.auth/logout", url.Values{}); r.status != http.StatusSeeOther {
			t.Fatalf("logout: %d", r.status)
		}
	}
	b.login("alice", testPassword, "/")
	items := activityOn(t, b.get(securityPage).body)
	if len(items) != 50 {
		t.Fatalf("got %d entries, want the 50 newest", len(items))
	}
	if items[0].what != plainText(t, "en", "activity.login_password") || items[1].what != plainText(t, "en", "activity.logout") {
		t.Errorf("not newest first: %+v", items[:2])
	}
	// Bob's page is his own: one login.
	bob := g.browser()
	bob.login("Bob", testPassword, "/")
	if items := activityOn(t, bob.get(securityPage).body); len(items) != 1 {
		t.Errorf("Bob sees %d entries, want his one login", len(items))
	}

	advance(store.EventRetention + time.Hour)
	b = g.browser()
	b.login("alice", testPassword, "/")
	items = activityOn(t, b.get(securityPage).body)
	if len(items) != 1 || items[0].what != plainText(t, "en", "activity.login_password") {
		t.Errorf("after 30 days: got %+v, want only the new login", items)
	}
}

// TestRecentActivityRealmsApart: two sites of two realms on one store,
// each with a user admin: each admin's page lists only their own realm's
// events.
func TestRecentActivityRealmsApart(t *testing.T) {
	s := newTwoSites(t, "realm a\n\t\tuser admin "+testHash, "realm b\n\t\tuser admin "+testHash)
	a := s.a.browserAs(curlUA)
	a.login("admin", testPassword, "/")
	if r := a.post("/.auth/logout", url.Values{}); r.status != http.StatusSeeOther {
		t.Fatalf("logout on A: %d", r.status)
	}
	a.login("admin", testPassword, "/")
	b := s.b.browserAs(firefoxLinux)
	b.login("admin", testPassword, "/")

	onA := activityOn(t, a.get(securityPage).body)
	onB := activityOn(t, b.get(securityPage).body)
	if len(onA) != 3 || len(onB) != 1 {
		t.Fatalf("A's admin sees %d entries (want 3), B's admin %d (want 1): %+v / %+v", len(onA), len(onB), onA, onB)
	}
	for _, it := range onA {
		if strings.Contains(it.text, "Firefox") {
			t.Errorf("A's page lists B's login: %q", it.text)
		}
	}
	if strings.Contains(onB[0].text, "curl") {
		t.Errorf("B's page lists A's events: %q", onB[0].text)
	}
}
