package caddymodule

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/gate"
)

// crossSiteHeaders are what a browser sends with a form posted from
// another origin (or what an attacker's page can make it send).
var crossSiteHeaders = [][]string{
	{"Sec-Fetch-Site", "cross-site"},
	{"Sec-Fetch-Site", "same-site"},
	{"Sec-Fetch-Site", "cross-site", "Origin", "https://localhost:9443"},
	{"Sec-Fetch-Site", "same-site", "Origin", "https://sub.localhost:9443"},
	{"Origin", "https://evil.example"},
	{"Origin", "null"},
	{"Origin", "https://localhost:9444"},
	{"Origin", "https://localhost.evil.example"},
	{"Origin", "https://evil.example", "Referer", "https://localhost:9443/.auth/security"},
	{"Origin", "https://LOCALHOST:9443.evil.example"},
}

// TestCrossSiteFormsChangeNothing posts every state-changing form with
// right answers (valid password, unused code) from every cross-site
// variant: each is refused with 403 and nothing changes; the same code
// still works afterwards from this site. A request with neither
// Sec-Fetch-Site nor Origin is not a browser's and is let through: a
// cross-site form from a browser always carries one of them, and the
// session cookie is SameSite=Lax on top.
func TestCrossSiteFormsChangeNothing(t *testing.T) {
	g := newGate(t, gateOpts{extra: "free_failures 50"})
	owner := g.browser()
	owner.login("alice", testPassword, "/")
	enr := owner.enable()
	nextStep()
	full := g.browser()
	full.login("alice", testPassword, "/.auth/code")
	if r := full.post("/.auth/code", formOf("code", enr.codes[0])); r.status != http.StatusSeeOther {
		t.Fatalf("backup-code login: got %d", r.status)
	}
	pending := g.browser()
	pending.login("alice", testPassword, "/.auth/code")

	me := func() gate.MeInfo {
		var m gate.MeInfo
		_ = json.Unmarshal([]byte(full.get("/.auth/me").body), &m)
		return m
	}
	tried := 0
	for _, hdr := range crossSiteHeaders {
		code := totpCode(t, enr.secret, testNow())
		for _, tc := range []struct {
			b    *browser
			path string
			form []string
		}{
			{g.browser(), "/.auth/login", []string{"username", "alice", "password", testPassword}},
			{pending, "/.auth/code", []string{"code", code}},
			{pending, "/.auth/code", []string{"code", enr.codes[1]}},
			{full, "/.auth/security/disable", []string{"password", testPassword, "code", code}},
			{full, "/.auth/security/backup-codes", []string{"password", testPassword, "code", enr.codes[1]}},
			{full, "/.auth/logout", nil},
			{owner, "/.auth/security/enable", []string{"password", testPassword, "code", code}},
		} {
			before := tc.b.cookie()
			r := tc.b.post(tc.path, formOf(tc.form...), hdr...)
			tried++
			if r.status != http.StatusForbidden {
				t.Errorf("POST %s with %v: got %d, want 403", tc.path, hdr, r.status)
			}
			if r.header.Get("Set-Cookie") != "" || tc.b.cookie() != before {
				t.Errorf("POST %s with %v: the refused request set a cookie", tc.path, hdr)
			}
		}
		if m := me(); !m.TwoFactor || m.BackupCodesLeft != 9 {
			t.Fatalf("after cross-site posts with %v: got %+v, want 2FA on with 9 codes, the session alive", hdr, m)
		}
	}
	// The code and the backup code offered cross-site were not used up.
	if r := pending.post("/.auth/code", formOf("code", totpCode(t, enr.secret, testNow()))); r.status != http.StatusSeeOther {
		t.Errorf("the code refused cross-site, then sent from this site: got %d, want 303", r.status)
	}
	p2 := g.browser()
	p2.login("alice", testPassword, "/.auth/code")
	if r := p2.post("/.auth/code", formOf("code", enr.codes[1])); r.status != http.StatusSeeOther {
		t.Errorf("the backup code refused cross-site, then sent from this site: got %d, want 303", r.status)
	}

	// What passes: this site's own forms, and requests that are not a
	// browser's (no Sec-Fetch-Site, no Origin). A user-typed navigation
	// (Sec-Fetch-Site: none) cannot carry a POST body from another site.
	for _, hdr := range [][]string{
		{"Sec-Fetch-Site", "same-origin"}, {"Origin", "https://localhost:9443"}, {"Sec-Fetch-Site", "none"}, nil,
	} {
		r := g.browser().post("/.auth/login", formOf("username", "alice", "password", testPassword), hdr...)
		tried++
		if r.status != http.StatusSeeOther {
			t.Errorf("login with %v: got %d, want 303", hdr, r.status)
		}
	}
	t.Logf("%d cross-site form posts", tried)
}

// TestStateChangesNeedAFormPost: the same answers sent by GET, in the
// query string of a POST, or in a body that is not a urlencoded form
// change nothing.
func TestStateChangesNeedAFormPost(t *testing.T) {
	g := newGate(t, gateOpts{extra: "free_failures 50"})
	b := g.browser()
	b.login("alice", testPassword, "/")
	enr := b.enable()
	nextStep()
	code := totpCode(t, enr.secret, testNow())
	q := "?password=" + strings.ReplaceAll(testPassword, " ", "+") + "&code=" + code
	if r := b.get("/.auth/logout"); r.status != http.StatusMethodNotAllowed {
		t.Errorf("GET logout: got %d, want 405", r.status)
	}
	for _, path := range []string{"/.auth/security/disable", "/.auth/security/backup-codes", "/.auth/security/enable"} {
		b.get(path + q)
		req, _ := http.NewRequest(http.MethodPost, g.base+path+q, nil)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		b.do(req)
		for _, ct := range []string{"text/plain", "application/json", "multipart/form-data; boundary=x"} {
			body := "password=" + testPassword + "&code=" + code
			if strings.HasPrefix(ct, "application/json") {
				body = `{"password":"` + testPassword + `","code":"` + code + `"}`
			}
			req, _ := http.NewRequest(http.MethodPost, g.base+path, strings.NewReader(body))
			req.Header.Set("Content-Type", ct)
			b.do(req)
		}
	}
	var m gate.MeInfo
	if r := b.get("/.auth/me"); json.Unmarshal([]byte(r.body), &m) != nil || !m.TwoFactor || m.BackupCodesLeft != 10 {
		t.Fatalf("after GETs, query strings and non-form bodies: got %q, want alice still logged in with 2FA on and 10 codes", r.body)
	}
	// The code itself was never used, so it still works.
	s := g.browser()
	s.login("alice", testPassword, "/.auth/code")
	if r := s.post("/.auth/code", formOf("code", code)); r.status != http.StatusSeeOther {
		t.Errorf("the code after those requests: got %d, want 303 (it must not have been used)", r.status)
	}
	// Logging in through the query string does not work either.
	req, _ := http.NewRequest(http.MethodPost, g.base+"/.auth/login?username=alice&password="+strings.ReplaceAll(testPassword, " ", "+"), nil)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if r := g.browser().do(req); r.status == http.StatusSeeOther {
		t.Errorf("login with the fields in the query string: got 303, want a refusal")
	}
}
