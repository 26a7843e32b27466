package caddymodule

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/gate"
)

func TestAnonymousRequestsNeverReachUpstream(t *testing.T) {
	g := newGate(t, gateOpts{})
	b := g.browser()

	r := b.get("/account/settings?tab=1")
	if r.status != http.StatusFound {
		t.Fatalf("navigation: got %d, want 302", r.status)
	}
	if got, want := r.header.Get("Location"), "/.auth/login?next=%2Faccount%2Fsettings%3Ftab%3D1"; got != want {
		t.Errorf("navigation: got Location %q, want %q", got, want)
	}
	for _, m := range []string{"GET", "POST", "HEAD", "OPTIONS", "PUT", "DELETE", "PATCH"} {
		req, _ := http.NewRequest(m, g.base+"/api/data", nil)
		req.Header.Set("Accept", "application/json")
		if r := b.do(req); r.status != http.StatusUnauthorized {
			t.Errorf("%s /api/data: got %d, want 401", m, r.status)
		}
	}
	if n := g.up.count(); n != 0 {
		t.Fatalf("upstream got %d requests from an anonymous client, want 0", n)
	}
}

func TestPasswordLoginWithoutTwoFactor(t *testing.T) {
	g := newGate(t, gateOpts{})
	b := g.browser()

	r := b.get("/.auth/login?next=%2Fdocs%3Fa%3D1")
	if r.status != http.StatusOK || !strings.Contains(r.body, `name="next" value="/docs?a=1"`) {
		t.Fatalf("login page: got %d, want 200 with next carried in the form: %.400s", r.status, r.body)
	}
	r = b.post("/.auth/login", url.Values{"username": {"alice"}, "password": {testPassword}, "next": {"/docs?a=1"}})
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/docs?a=1" {
		t.Fatalf("login: got %d %q, want 303 /docs?a=1", r.status, r.header.Get("Location"))
	}
	set := r.header.Get("Set-Cookie")
	for _, attr := range []string{"__Host-two_factor=", "Path=/", "HttpOnly", "Secure", "SameSite=Lax", "Max-Age="} {
		if !strings.Contains(set, attr) {
			t.Errorf("Set-Cookie %q lacks %q", set, attr)
		}
	}
	if strings.Contains(strings.ToLower(set), "domain=") {
		t.Errorf("Set-Cookie %q has a Domain: the cookie must be host-only", set)
	}

	r = b.rawGet("/docs", "Remote-User: mallory", "remote_user: mallory", "REMOTE-USER: mallory", "Remote_User: mallory",
		"X-Forwarded-User: mallory", "x_forwarded_user: mallory", "Cookie: theme=dark")
	if r.status != http.StatusOK {
		t.Fatalf("upstream via gate: got %d, want 200: %s", r.status, r.body)
	}
	up := g.up.last()
	if got := up.Header.Values("Remote-User"); len(got) != 1 || got[0] != "alice" {
		t.Errorf("upstream Remote-User: got %q, want exactly [alice]", got)
	}
	for name := range up.Header {
		if strings.EqualFold(strings.ReplaceAll(name, "_", "-"), "remote-user") && name != "Remote-User" {
			t.Errorf("upstream got a client copy of the identity header: %s", name)
		}
	}
	for name := range up.Header {
		if strings.EqualFold(strings.ReplaceAll(name, "_", "-"), "x-forwarded-user") {
			t.Errorf("upstream got a client copy of an identity header: %s", name)
		}
	}
	if got := up.Header.Get("Cookie"); got != "theme=dark" {
		t.Errorf("upstream Cookie: got %q, want the site's own cookie only: theme=dark", got)
	}
	if got := up.Header.Get("X-Auth-Id"); got != "alice" {
		t.Errorf("{http.auth.user.id}: got %q, want alice", got)
	}
	if c := up.Header.Get("Cookie"); strings.Contains(c, "two_factor") {
		t.Errorf("upstream got the gate's cookie: %q", c)
	}

	r = b.get("/.auth/me")
	var me gate.MeInfo
	if err := json.Unmarshal([]byte(r.body), &me); err != nil || r.status != 200 {
		t.Fatalf("/me: got %d %q (%v)", r.status, r.body, err)
	}
	if me.User != "alice" || me.TwoFactor || me.BackupCodesLeft != 0 {
		t.Errorf("/me: got %+v, want alice without 2FA", me)
	}
}

func TestLoginFailuresLookAlike(t *testing.T) {
	g := newGate(t, gateOpts{})
	type attempt struct{ name, user, password string }
	var bodies []string
	for _, a := range []attempt{
		{"wrong password", "alice", "nope"},
		{"unknown user", "zed", "nope"},
		{"unknown user with the right password", "zed", testPassword},
		{"invalid name", "a b\x00", "nope"},
	} {
		b := g.browser()
		r := b.post("/.auth/login", url.Values{"username": {a.user}, "password": {a.password}})
		if r.status != http.StatusUnauthorized {
			t.Errorf("%s: got %d, want 401", a.name, r.status)
		}
		if c := r.header.Values("Set-Cookie"); len(c) != 0 {
			t.Errorf("%s: got Set-Cookie %q, want none", a.name, c)
		}
		if !strings.Contains(r.body, catalogueText(t, "en", gate.GenericFailure)) {
			t.Errorf("%s: page lacks the generic message", a.name)
		}
		bodies = append(bodies, r.body)
	}
	for i := range bodies {
		if bodies[i] != bodies[0] {
			t.Errorf("attempt %d: body differs from attempt 0", i)
		}
	}
	if g.up.count() != 0 {
		t.Errorf("upstream reached by failed logins")
	}
}

func TestNameSpellingsAreOneAccount(t *testing.T) {
	g := newGate(t, gateOpts{})
	for _, name := range []string{"ALICE", "Alice", "ａｌｉｃｅ", "bob", "BOB"} {
		b := g.browser()
		b.login(name, testPassword, "/")
		r := b.get("/x")
		want := "alice"
		if strings.EqualFold(name, "bob") {
			want = "Bob"
		}
		if r.status != 200 || g.up.last().Header.Get("Remote-User") != want {
			t.Errorf("login as %q: got %d, Remote-User %q, want %q", name, r.status, g.up.last().Header.Get("Remote-User"), want)
		}
	}
}
