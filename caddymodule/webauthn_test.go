package caddymodule

import (
	"encoding/json"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	pqotp "github.com/pquerna/otp"
	"golang.org/x/net/html"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/audit"
)

// postJSON sends a JSON body (a string as it is, anything else encoded) as
// a same-origin fetch would.
func (b *browser) postJSON(path string, body any, headers ...string) response {
	b.t.Helper()
	var s string
	switch v := body.(type) {
	case string:
		s = v
	default:
		raw, err := json.Marshal(v)
		if err != nil {
			b.t.Fatal(err)
		}
		s = string(raw)
	}
	req, err := http.NewRequest(http.MethodPost, b.g.base+path, strings.NewReader(s))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return b.do(req)
}

// jsonOf decodes a JSON response, failing the test unless the status is
// want.
func jsonOf[T any](t *testing.T, r response, want int) T {
	t.Helper()
	var v T
	if r.status != want {
		t.Fatalf("got %d, want %d: %.400s", r.status, want, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type %q, want application/json: %.200s", ct, r.body)
	}
	if err := json.Unmarshal([]byte(r.body), &v); err != nil {
		t.Fatalf("not JSON: %v: %.400s", err, r.body)
	}
	return v
}

type keyAnswer struct {
	Error, Message, Redirect string
}

// addKey registers k for a logged-in browser through the JSON contract,
// with extra members (password, code), and returns the answer.
func (b *browser) addKey(k *softKey, name string, extra map[string]any) response {
	b.t.Helper()
	o := jsonOf[creationOptions](b.t, b.postJSON("/.auth/webauthn/register/options", "{}"), http.StatusOK)
	if extra == nil {
		extra = map[string]any{"password": testPassword}
	}
	extra["name"] = name
	return b.postJSON("/.auth/webauthn/register", k.register(o, extra))
}

// keyLogin asserts with k at the code step and returns the answer.
func (b *browser) keyLogin(k *softKey) response {
	b.t.Helper()
	o := jsonOf[requestOptions](b.t, b.postJSON("/.auth/webauthn/login/options", "{}"), http.StatusOK)
	return b.postJSON("/.auth/webauthn/login", k.assert(o))
}

// TestWebAuthnRegisterAndLogin: through the JSON contract, with a software
// authenticator of each algorithm, a user with 2FA off adds a key (2FA
// comes on, backup codes shown once, other sessions ended), the Security
// page lists it, the code step offers it and a login with it reaches the
// site; codes keep working; the counter and the backup state are kept.
func TestWebAuthnRegisterAndLogin(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "audit.log")
	g := newGate(t, gateOpts{global: auditLog(logFile)})
	for _, tc := range []struct {
		user string
		alg  int64
	}{{"alice", -7}, {"Bob", -8}} {
		t.Run(tc.user, func(t *testing.T) {
			b := g.browser()
			b.t = t
			b.login(tc.user, testPassword, "/")
			other := g.browser()
			other.t = t
			other.login(tc.user, testPassword, "/")

			o := jsonOf[creationOptions](t, b.postJSON("/.auth/webauthn/register/options", "{}"), http.StatusOK)
			if o.RP.ID != "localhost" || o.Attestation != "none" || o.AuthenticatorSelection.UserVerification != "preferred" ||
				len(unb64u(t, o.Challenge)) < 16 || len(unb64u(t, o.User.ID)) != 32 || o.User.Name != tc.user || o.Timeout != 300000 {
				t.Errorf("creation options: %+v", o)
			}
			algs := map[int64]bool{}
			for _, p := range o.PubKeyCredParams {
				algs[p.Alg] = true
			}
			if !algs[-7] || !algs[-8] {
				t.Errorf("pubKeyCredParams %v lack ES256 or EdDSA", o.PubKeyCredParams)
			}
			k := newSoftKey(t, tc.alg)
			k.flags |= flagBE // a synced passkey, not synced yet
			a := jsonOf[keyAnswer](t, b.postJSON("/.auth/webauthn/register", k.register(o, map[string]any{"name": "Blue key", "password": testPassword})), http.StatusOK)
			if a.Redirect != codesPage {
				t.Fatalf("register: redirect %q, want %q", a.Redirect, codesPage)
			}
			page := b.get(codesPage)
			codes := backupCodesOn(t, page.body)
			if len(codes) != 10 {
				t.Fatalf("first key: %d backup codes shown, want 10", len(codes))
			}
			if r := other.get("/app"); r.status != http.StatusFound {
				t.Errorf("another session after the first key: %d, want 302 (ended)", r.status)
			}
			sec := b.get(securityPage)
			if !strings.Contains(sec.body, "Blue key") || !strings.Contains(sec.body, `class="badge badge-on"`) {
				t.Errorf("Security page does not list the key or 2FA on: %.2000s", sec.body)
			}

			// The second step offers the key; a login with it reaches the
			// site.
			c := g.browser()
			c.t = t
			c.login(tc.user, testPassword, "/.auth/code")
			if page := c.get("/.auth/code"); !strings.Contains(page.body, "Use your security key") || !strings.Contains(page.body, `name="code"`) {
				t.Errorf("code page: no key offered or no backup code field: %.2000s", page.body)
			}
			ro := jsonOf[requestOptions](t, c.postJSON("/.auth/webauthn/login/options", "{}"), http.StatusOK)
			if len(ro.AllowCredentials) != 1 || ro.AllowCredentials[0].ID != b64u(k.id) || ro.RPID != "localhost" {
				t.Errorf("request options: %+v", ro)
			}
			k.flags |= flagBS // synced meanwhile: the backup state changes
			a = jsonOf[keyAnswer](t, c.postJSON("/.auth/webauthn/login", k.assert(ro)), http.StatusOK)
			if a.Redirect != "/" {
				t.Errorf("login: redirect %q, want /", a.Redirect)
			}
			before := g.up.count()
			if r := c.get("/app"); r.status != http.StatusOK || g.up.count() != before+1 {
				t.Errorf("after the key login: %d, upstream %d→%d", r.status, before, g.up.count())
			}
			if r := c.get(securityPage); !strings.Contains(r.body, "Synced passkey") || strings.Contains(r.body, "never used") {
				t.Errorf("the key's backup state or last use was not kept: %.3000s", r.body)
			}
			// A backup code still works at the code step.
			d := g.browser()
			d.t = t
			d.login(tc.user, testPassword, "/.auth/code")
			if r := d.post("/.auth/code", url.Values{"code": {codes[0]}}); r.status != http.StatusSeeOther {
				t.Errorf("backup code at the code step: %d", r.status)
			}
		})
	}
	_, events := auditEvents(t, logFile)
	for _, w := range []struct {
		event string
		want  map[string]any
	}{
		{audit.EvKeyAdded, map[string]any{"user": "alice", "key": "Blue key"}},
		{audit.EvEnabled, map[string]any{"user": "Bob", "method": "webauthn"}},
		{audit.EvCodeOK, map[string]any{"user": "alice", "step": "code", "method": "webauthn"}},
	} {
		if len(find(events, w.event, w.want)) == 0 {
			t.Errorf("no audit event %s with %v", w.event, w.want)
		}
	}
}

// keyUser is alice with a key registered (2FA on), and a browser at her
// code step.
func keyUser(t *testing.T, g *testGate, k *softKey) *browser {
	t.Helper()
	b := g.browser()
	b.login("alice", testPassword, "/")
	if a := jsonOf[keyAnswer](t, b.addKey(k, "Key", nil), http.StatusOK); a.Redirect != codesPage {
		t.Fatalf("registering: %+v", a)
	}
	c := g.browser()
	c.login("alice", testPassword, "/.auth/code")
	return c
}

// stillPending fails unless the browser is still at the code step.
func stillPending(t *testing.T, b *browser, what string) {
	t.Helper()
	if r := b.get("/app"); r.status != http.StatusFound || r.header.Get("Location") != "/.auth/code" {
		t.Errorf("%s: the session got past the code step: %d %s", what, r.status, r.header.Get("Location"))
	}
}

// TestWebAuthnLoginRefusals: an assertion is refused (401, the session
// stays at the code step) for another origin, another RP ID, a replayed
// or expired challenge, another user's key, a broken signature and a
// counter that goes backwards (with its audit event); the refusals count
// against the key's attempt budget.
func TestWebAuthnLoginRefusals(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "audit.log")
	g := newGate(t, gateOpts{global: auditLog(logFile), extra: "code_timeout 30m\n\t\tfree_failures 50"})
	k := newSoftKey(t, -7)
	c := keyUser(t, g, k)
	// Bob's key, registered to Bob.
	bobKey := newSoftKey(t, -8)
	bob := g.browser()
	bob.login("Bob", testPassword, "/")
	jsonOf[keyAnswer](t, bob.addKey(bobKey, "Bob's key", nil), http.StatusOK)

	refuse := func(what string, body any) {
		t.Helper()
		a := jsonOf[keyAnswer](t, c.postJSON("/.auth/webauthn/login", body), http.StatusUnauthorized)
		if a.Error != "failed" || a.Message == "" {
			t.Errorf("%s: answer %+v", what, a)
		}
		stillPending(t, c, what)
	}
	options := func() requestOptions {
		return jsonOf[requestOptions](t, c.postJSON("/.auth/webauthn/login/options", "{}"), http.StatusOK)
	}

	wrong := *k
	wrong.origin = "https://evil.example"
	refuse("another origin", wrong.assert(options()))
	wrong = *k
	wrong.rpID = "evil.example"
	refuse("another RP ID", wrong.assert(options()))
	bobKey.handle = nil
	refuse("another user's key", bobKey.assert(options()))

	o := options()
	signed := k.assert(o)
	sig := unb64u(t, signed["response"].(map[string]any)["signature"].(string))
	sig[len(sig)-1] ^= 1
	signed["response"].(map[string]any)["signature"] = b64u(sig)
	refuse("a broken signature", signed)
	// The challenge was used by the refused attempt: a good assertion of
	// it is refused too.
	refuse("a used challenge", k.assertAt(o.Challenge))

	o = options()
	advance(5*time.Minute + time.Second)
	refuse("an expired challenge", k.assert(o))

	// No challenge asked for at all.
	refuse("no challenge", k.assertAt("AAAAAAAAAAAAAAAAAAAAAA"))

	// The counter: a good login moves it; an assertion whose counter is
	// not above it is refused and logged.
	good := k.assert(options())
	a := jsonOf[keyAnswer](t, c.postJSON("/.auth/webauthn/login", good), http.StatusOK)
	if a.Redirect != "/" {
		t.Fatalf("good assertion: %+v", a)
	}
	// Its replay, in a new session, is refused.
	c = g.browser()
	c.login("alice", testPassword, "/.auth/code")
	refuse("a replayed assertion", good)
	o = options()
	k.count -= 2
	refuse("a counter going backwards", k.assertAt(o.Challenge))

	_, events := auditEvents(t, logFile)
	if len(find(events, audit.EvKeySignCount, map[string]any{"user": "alice", "key": "Key"})) != 1 {
		t.Errorf("want one %s event for alice's key", audit.EvKeySignCount)
	}
	if n := len(find(events, audit.EvCodeFailed, map[string]any{"user": "alice", "step": "code", "method": "webauthn"})); n != 9 {
		t.Errorf("%d code.failed events of method webauthn, want 9", n)
	}
}

// TestWebAuthnBadRequests: malformed, oversized or mistyped JSON is a
// clear 400 and stores nothing; a wrong password stores nothing; a
// cross-site POST is refused; without a session the answer is 401.
func TestWebAuthnBadRequests(t *testing.T) {
	g := newGate(t, gateOpts{})
	b := g.browser()
	if a := jsonOf[keyAnswer](t, b.postJSON("/.auth/webauthn/register/options", "{}"), http.StatusUnauthorized); a.Error != "not_logged_in" {
		t.Errorf("no session: %+v", a)
	}
	b.login("alice", testPassword, "/")
	k := newSoftKey(t, -7)
	o := jsonOf[creationOptions](t, b.postJSON("/.auth/webauthn/register/options", "{}"), http.StatusOK)
	good := k.register(o, map[string]any{"name": "Key", "password": testPassword})
	raw, _ := json.Marshal(good)
	big := strings.Replace(string(raw), `"name":"Key"`, `"name":"Key","pad":"`+strings.Repeat("x", 20<<10)+`"`, 1)
	for _, tc := range []struct {
		what, body string
		ct         string
	}{
		{"malformed", `{"id":`, "application/json"},
		{"not an object", `[1,2]`, "application/json"},
		{"trailing data", string(raw) + `{}`, "application/json"},
		{"oversized", big, "application/json"},
		{"a form, not JSON", string(raw), "application/x-www-form-urlencoded"},
		{"no credential", `{"name":"Key","password":"x"}`, "application/json"},
		{"a bad name", strings.Replace(string(raw), `"name":"Key"`, `"name":"`+strings.Repeat("n", 65)+`"`, 1), "application/json"},
	} {
		r := b.postJSON("/.auth/webauthn/register", tc.body, "Content-Type", tc.ct)
		a := jsonOf[keyAnswer](t, r, http.StatusBadRequest)
		if a.Error == "" || a.Message == "" {
			t.Errorf("%s: answer %+v", tc.what, a)
		}
	}
	for _, path := range []string{"/.auth/webauthn/login", "/.auth/webauthn/login/options"} {
		// At the full stage, malformed JSON to the login is 400 (a full
		// session may send a step-up's assertion: TestStepUpWithKey);
		// options answer 409 without keys.
		if r := b.postJSON(path, `{"id":`); r.status != http.StatusBadRequest && r.status != http.StatusConflict {
			t.Errorf("%s: %d", path, r.status)
		}
	}
	// A wrong password: nothing stored.
	o = jsonOf[creationOptions](t, b.postJSON("/.auth/webauthn/register/options", "{}"), http.StatusOK)
	if a := jsonOf[keyAnswer](t, b.postJSON("/.auth/webauthn/register", k.register(o, map[string]any{"name": "Key", "password": "wrong"})), http.StatusUnauthorized); a.Error != "wrong_details" {
		t.Errorf("wrong password: %+v", a)
	}
	// A registration for another origin or RP ID: refused.
	for _, tc := range []struct{ what, origin, rpID string }{
		{"another origin", "https://evil.example", "localhost"},
		{"another RP ID", "https://localhost:9443", "evil.example"},
	} {
		o = jsonOf[creationOptions](t, b.postJSON("/.auth/webauthn/register/options", "{}"), http.StatusOK)
		w := *k
		w.origin, w.rpID = tc.origin, tc.rpID
		if a := jsonOf[keyAnswer](t, b.postJSON("/.auth/webauthn/register", w.register(o, map[string]any{"name": "Key", "password": testPassword})), http.StatusBadRequest); a.Error != "failed" {
			t.Errorf("%s: %+v", tc.what, a)
		}
	}
	// A cross-site POST.
	o = jsonOf[creationOptions](t, b.postJSON("/.auth/webauthn/register/options", "{}"), http.StatusOK)
	if r := b.postJSON("/.auth/webauthn/register", k.register(o, map[string]any{"name": "Key", "password": testPassword}),
		"Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site"); r.status != http.StatusForbidden {
		t.Errorf("cross-site: %d, want 403", r.status)
	}
	// Nothing was stored by any of them.
	if r := b.get(securityPage); strings.Contains(r.body, `class="key-item"`) || !strings.Contains(r.body, `class="badge badge-off"`) {
		t.Errorf("a refused registration stored something: %.2000s", r.body)
	}
	if r := b.get("/.auth/me"); !strings.Contains(r.body, `"two_factor":false`) {
		t.Errorf("me: %s", r.body)
	}
	// The challenge was taken by the cross-site attempt? No: a refused
	// cross-site request never reaches the route, so the challenge still
	// works once.
	if a := jsonOf[keyAnswer](t, b.postJSON("/.auth/webauthn/register", k.register(o, map[string]any{"name": "Key", "password": testPassword})), http.StatusOK); a.Redirect != codesPage {
		t.Errorf("register after the refusals: %+v", a)
	}
	if a := jsonOf[keyAnswer](t, b.postJSON("/.auth/webauthn/register", k.register(o, map[string]any{"name": "Key", "password": testPassword})), http.StatusBadRequest); a.Error != "challenge" {
		t.Errorf("the same challenge again: %+v", a)
	}
}

// TestWebAuthnThrottled: failed assertions count against a budget of their
// own: past free_failures the key is refused with 429 and Retry-After
// before anything is checked, while a code is still checked.
func TestWebAuthnThrottled(t *testing.T) {
	g := newGate(t, gateOpts{extra: "free_failures 2"})
	k := newSoftKey(t, -7)
	c := keyUser(t, g, k)
	wrong := *k
	wrong.origin = "https://evil.example"
	for i := range 3 { // free_failures, then one that starts the delay
		o := jsonOf[requestOptions](t, c.postJSON("/.auth/webauthn/login/options", "{}"), http.StatusOK)
		if r := c.postJSON("/.auth/webauthn/login", wrong.assert(o)); r.status != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d", i+1, r.status)
		}
	}
	o := jsonOf[requestOptions](t, c.postJSON("/.auth/webauthn/login/options", "{}"), http.StatusOK)
	r := c.postJSON("/.auth/webauthn/login", k.assert(o))
	if a := jsonOf[keyAnswer](t, r, http.StatusTooManyRequests); a.Error != "throttled" || r.header.Get("Retry-After") == "" {
		t.Errorf("past the budget: %+v, Retry-After %q", a, r.header.Get("Retry-After"))
	}
	stillPending(t, c, "throttled")
	// The code's budget is its own: a wrong code is checked (401), not
	// throttled.
	if r := c.post("/.auth/code", url.Values{"code": {"000000"}}); r.status != http.StatusUnauthorized {
		t.Errorf("a code while the key is throttled: %d, want 401", r.status)
	}
}

// keyAssertionField asks for an assertion of k at the full stage (to
// confirm a change) and returns it as the forms' assertion field.
func (b *browser) keyAssertionField(k *softKey) string {
	b.t.Helper()
	o := jsonOf[requestOptions](b.t, b.postJSON("/.auth/webauthn/login/options", "{}"), http.StatusOK)
	raw, err := json.Marshal(k.assert(o))
	if err != nil {
		b.t.Fatal(err)
	}
	return string(raw)
}

// TestWebAuthnSecurityPage: a further key needs a second factor (a code or
// another key); keys are renamed and removed on the Security page, removal
// with the password and a code or a key, ending the other sessions; an app
// can be added beside keys without new codes; turning 2FA off removes the
// app and every key; an operator's status counts keys and reset removes
// them.
func TestWebAuthnSecurityPage(t *testing.T) {
	g := newGate(t, gateOpts{})
	b := g.browser()
	b.login("alice", testPassword, "/")
	k1, k2, k3 := newSoftKey(t, -7), newSoftKey(t, -8), newSoftKey(t, -7)
	jsonOf[keyAnswer](t, b.addKey(k1, "First", nil), http.StatusOK)
	codes := backupCodesOn(t, b.get(codesPage).body)

	// A second key: the password alone is not enough.
	if a := jsonOf[keyAnswer](t, b.addKey(k2, "Second", nil), http.StatusUnauthorized); a.Error != "wrong_details" {
		t.Errorf("a second key without a second factor: %+v", a)
	}
	if a := jsonOf[keyAnswer](t, b.addKey(k2, "Second", map[string]any{"password": testPassword, "code": codes[0]}), http.StatusOK); a.Redirect != securityPage {
		t.Errorf("a second key with a backup code: %+v", a)
	}
	// A third, confirmed with the first key.
	var assertion map[string]any
	if err := json.Unmarshal([]byte(b.keyAssertionField(k1)), &assertion); err != nil {
		t.Fatal(err)
	}
	if a := jsonOf[keyAnswer](t, b.addKey(k3, "Third", map[string]any{"password": testPassword, "assertion": assertion}), http.StatusOK); a.Redirect != securityPage {
		t.Errorf("a third key confirmed with the first: %+v", a)
	}
	// The same key again is refused.
	if a := jsonOf[keyAnswer](t, b.addKey(k3, "Again", map[string]any{"password": testPassword, "code": codes[1]}), http.StatusConflict); a.Error != "exists" {
		t.Errorf("the same key again: %+v", a)
	}
	page := b.get(securityPage).body
	for _, n := range []string{"First", "Second", "Third", "Your security key has been added."} {
		if !strings.Contains(page, n) {
			t.Errorf("Security page lacks %q", n)
		}
	}

	// Rename.
	id2 := b64u(k2.id)
	b.postSeeOther("/.auth/security/keys/rename", url.Values{"id": {id2}, "name": {"Work laptop"}}, securityPage+"#keys-heading")
	if page := b.get(securityPage).body; !strings.Contains(page, "<strong>Work laptop</strong>") || strings.Contains(page, "<strong>Second</strong>") {
		t.Errorf("rename did not show")
	}
	if r := b.post("/.auth/security/keys/rename", url.Values{"id": {id2}, "name": {" "}}); r.status != http.StatusBadRequest {
		t.Errorf("an empty name: %d", r.status)
	}

	// Remove: a wrong password changes nothing; a backup code or another
	// key confirms; other sessions end.
	other := g.browser()
	other.login("alice", testPassword, "/.auth/code")
	if r := b.post("/.auth/security/keys/remove", url.Values{"id": {id2}, "password": {"wrong"}, "code": {codes[2]}}); r.status != http.StatusUnauthorized {
		t.Errorf("remove with a wrong password: %d", r.status)
	}
	b.postSeeOther("/.auth/security/keys/remove", url.Values{"id": {id2}, "password": {testPassword}, "code": {codes[3]}}, securityPage)
	if r := other.get("/.auth/code"); r.status != http.StatusFound {
		t.Errorf("another session after a key's removal: %d, want a redirect (ended)", r.status)
	}
	b.postSeeOther("/.auth/security/keys/remove", url.Values{"id": {b64u(k3.id)}, "password": {testPassword}, "assertion": {b.keyAssertionField(k1)}}, securityPage)
	page = b.get(securityPage).body
	if strings.Contains(page, "<strong>Work laptop</strong>") || strings.Contains(page, "<strong>Third</strong>") || !strings.Contains(page, "<strong>First</strong>") ||
		!strings.Contains(page, "Security key “Third” removed") {
		t.Errorf("after removing two keys the page lists: %.3000s", page)
	}
	// The removed key no longer logs in.
	c := g.browser()
	c.login("alice", testPassword, "/.auth/code")
	o := jsonOf[requestOptions](t, c.postJSON("/.auth/webauthn/login/options", "{}"), http.StatusOK)
	if len(o.AllowCredentials) != 1 {
		t.Errorf("allowCredentials after removals: %d, want 1", len(o.AllowCredentials))
	}
	k3.handle = nil
	if r := c.postJSON("/.auth/webauthn/login", k3.assert(o)); r.status != http.StatusUnauthorized {
		t.Errorf("a removed key: %d", r.status)
	}

	// An app beside the key: no new codes, the code step takes both.
	e := b.get("/.auth/security/enable")
	if e.status != http.StatusOK {
		t.Fatalf("enable page with a key: %d", e.status)
	}
	m := otpauthRe.FindStringSubmatch(e.body)
	key, err := pqotp.NewKeyFromURL(html.UnescapeString(m[1]))
	if err != nil {
		t.Fatal(err)
	}
	b.postSeeOther("/.auth/security/enable", url.Values{"code": {totpCode(t, key.Secret(), testNow())}, "password": {testPassword}}, securityPage)
	st := g.statusOf("alice")
	if !st.TwoFactor || !st.App || st.SecurityKeys != 1 || st.BackupCodesLeft != 7 {
		t.Errorf("status with an app and a key: %+v", st)
	}
	if human := g.cli("", "status", "alice").out; !strings.Contains(human, "Security keys:              1") {
		t.Errorf("status lacks the key count:\n%s", human)
	}

	// Turning 2FA off with the key removes the app and every key.
	b.postSeeOther("/.auth/security/disable", url.Values{"password": {testPassword}, "assertion": {b.keyAssertionField(k1)}}, securityPage)
	if st := g.statusOf("alice"); st.TwoFactor || st.App || st.SecurityKeys != 0 {
		t.Errorf("status after turning off: %+v", st)
	}
	// An operator's reset removes keys too.
	jsonOf[keyAnswer](t, b.addKey(newSoftKey(t, -7), "Again", nil), http.StatusOK)
	g.cli("", "reset", "alice")
	if st := g.statusOf("alice"); st.TwoFactor || st.SecurityKeys != 0 {
		t.Errorf("status after reset: %+v", st)
	}
}

// TestWebAuthnRequiredEnrolment: where two-factor authentication is
// required, a security key is enough to get through; a key's name is
// shown as text, whatever it holds.
func TestWebAuthnRequiredEnrolment(t *testing.T) {
	g := newGate(t, gateOpts{extra: "require_two_factor"})
	b := g.browser()
	b.login("alice", testPassword, "/.auth/security")
	if r := b.get("/app"); r.status != http.StatusFound {
		t.Fatalf("before enrolling: %d", r.status)
	}
	// A name with markup is shown as text.
	name := `<img src=x onerror=alert(1)><script>x</script>`
	if a := jsonOf[keyAnswer](t, b.addKey(newSoftKey(t, -8), name, nil), http.StatusOK); a.Redirect != codesPage {
		t.Fatalf("register: %+v", a)
	}
	if r := b.get("/app"); r.status != http.StatusOK {
		t.Errorf("after enrolling with a key: %d, want 200", r.status)
	}
	page := b.get(securityPage)
	assertNoMarkup(t, "Security page with a key named in markup", page.body)
	if !strings.Contains(page.body, "&lt;img src=x onerror=alert(1)&gt;") {
		t.Errorf("the key's name is not shown as text")
	}
}

// TestWebAuthnOptions: the relying party options adapt from the Caddyfile,
// a bad value is an error naming its line, and a JSON config is checked by
// the same functions.
func TestWebAuthnOptions(t *testing.T) {
	adapt := func(body string) (string, error) {
		src := "localhost {\n" + body + "\n}\n"
		out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src), map[string]any{"filename": "Caddyfile"})
		return string(out), err
	}
	out, err := adapt("two_factor {\n\twebauthn_rp_id example.com\n\twebauthn_origins https://example.com https://login.example.com:8443\n\twebauthn_user_verification required\n}")
	if err != nil {
		t.Fatalf("adapt: %v", err)
	}
	for _, want := range []string{`"webauthn_rp_id":"example.com"`, `"webauthn_origins":["https://example.com","https://login.example.com:8443"]`, `"webauthn_user_verification":"required"`} {
		if !strings.Contains(out, want) {
			t.Errorf("adapted JSON lacks %s: %s", want, out)
		}
	}
	for _, tc := range []struct{ body, want, line string }{
		{"two_factor {\n\twebauthn_rp_id https://example.com\n}", "webauthn_rp_id \"https://example.com\": want a domain name", "Caddyfile:3"},
		{"two_factor {\n\twebauthn_rp_id example.com:443\n}", "webauthn_rp_id \"example.com:443\"", "Caddyfile:3"},
		{"two_factor {\n\twebauthn_rp_id 192.0.2.1\n}", "webauthn_rp_id \"192.0.2.1\"", "Caddyfile:3"},
		{"two_factor {\n\twebauthn_rp_id\n}", "webauthn_rp_id: want exactly one value", "Caddyfile:3"},
		{"two_factor {\n\tissuer x\n\twebauthn_origins https://example.com example.com\n}", "webauthn_origins \"example.com\": want an origin", "Caddyfile:4"},
		{"two_factor {\n\twebauthn_origins http://example.com\n}", "webauthn_origins \"http://example.com\"", "Caddyfile:3"},
		{"two_factor {\n\twebauthn_origins https://example.com/login\n}", "webauthn_origins \"https://example.com/login\"", "Caddyfile:3"},
		{"two_factor {\n\twebauthn_origins\n}", "webauthn_origins: want one or more origins", "Caddyfile:3"},
		{"two_factor {\n\twebauthn_user_verification always\n}", "webauthn_user_verification \"always\": want required, preferred or discouraged", "Caddyfile:3"},
	} {
		_, err := adapt(tc.body)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasSuffix(err.Error(), "at "+tc.line) {
			t.Errorf("%q: got %v, want an error with %q at %s", tc.body, err, tc.want, tc.line)
		}
	}
	// An origin outside the RP ID: refused when the handler is checked.
	h := &Handler{WebAuthnRPID: "example.com", WebAuthnOrigins: []string{"https://example.org"}}
	if err := h.checkWebAuthn(); err == nil || !strings.Contains(err.Error(), "not example.com nor a subdomain") {
		t.Errorf("an origin outside the RP ID: %v", err)
	}
	h = &Handler{WebAuthnRPID: "example.com", WebAuthnOrigins: []string{"https://login.example.com"}, WebAuthnUserVerification: "discouraged"}
	if err := h.checkWebAuthn(); err != nil {
		t.Errorf("good options: %v", err)
	}
}

// TestWebAuthnLoginMethods: a login with a security key is recorded as
// such: the signed assertion's amr says pwd and hwk for a key bound to its
// device, swk for a passkey that may be synced; a step-up path accepts the
// session as fresh.
func TestWebAuthnLoginMethods(t *testing.T) {
	g := newGate(t, gateOpts{extra: "assertion_header X-Two-Factor-Assertion\n\t\tstep_up /admin/* 10m"})
	for _, tc := range []struct {
		name  string
		flags byte
		want  string
	}{{"device-bound", 0, "hwk"}, {"synced", flagBE, "swk"}} {
		t.Run(tc.name, func(t *testing.T) {
			k := newSoftKey(t, -7)
			k.flags |= tc.flags
			c := keyUser(t, g, k)
			c.t = t
			if a := jsonOf[keyAnswer](t, c.keyLogin(k), http.StatusOK); a.Redirect == "" {
				t.Fatalf("key login: %+v", a)
			}
			if r := c.get("/admin/panel"); r.status != http.StatusOK {
				t.Fatalf("a step-up path right after a key login: got %d, want 200", r.status)
			}
			tok := g.up.last().Header.Get("X-Two-Factor-Assertion")
			parts := strings.Split(tok, ".")
			if len(parts) != 3 {
				t.Fatalf("assertion: %q", tok)
			}
			var claims struct {
				AMR []string `json:"amr"`
			}
			if err := json.Unmarshal(unb64u(t, parts[1]), &claims); err != nil {
				t.Fatal(err)
			}
			if strings.Join(claims.AMR, " ") != "pwd "+tc.want {
				t.Errorf("amr after a key login: got %v, want [pwd %s]", claims.AMR, tc.want)
			}
			// The next user of the loop starts with 2FA off.
			g.cli("", "reset", "alice")
		})
	}
}

// TestStepUpWithKey: a step-up path asks a session whose key login is too
// old for a fresh factor, and the security key gives it: the step-up page
// offers the key, its assertion (step_up, next) refreshes the session in
// place and returns to the URL; a step-up assertion needs a full session,
// and a login's needs one at the code step.
func TestStepUpWithKey(t *testing.T) {
	g := newGate(t, gateOpts{extra: "step_up /admin/* 10m"})
	k := newSoftKey(t, -7)
	c := keyUser(t, g, k)
	if a := jsonOf[keyAnswer](t, c.keyLogin(k), http.StatusOK); a.Redirect == "" {
		t.Fatalf("key login: %+v", a)
	}
	if r := c.get("/admin/panel"); r.status != http.StatusOK {
		t.Fatalf("a fresh key login on a step-up path: got %d", r.status)
	}
	advance(11 * time.Minute)
	r := c.get("/admin/panel")
	if r.status != http.StatusFound || !strings.HasPrefix(r.header.Get("Location"), "/.auth/code?next=") {
		t.Fatalf("after 11 minutes: got %d to %q, want the code step", r.status, r.header.Get("Location"))
	}
	page := c.get(r.header.Get("Location"))
	if !strings.Contains(page.body, `data-step-up="/admin/panel"`) || !strings.Contains(page.body, "Use your security key") {
		t.Fatalf("the step-up page does not offer the key: %.1500s", page.body)
	}
	o := jsonOf[requestOptions](t, c.postJSON("/.auth/webauthn/login/options", "{}"), http.StatusOK)
	plain := k.assert(o)
	if r := c.postJSON("/.auth/webauthn/login", plain); r.status != http.StatusUnauthorized {
		t.Errorf("a login's assertion from a full session: got %d, want 401", r.status)
	}
	o = jsonOf[requestOptions](t, c.postJSON("/.auth/webauthn/login/options", "{}"), http.StatusOK)
	up := k.assert(o)
	up["step_up"], up["next"] = true, "/admin/panel"
	if a := jsonOf[keyAnswer](t, c.postJSON("/.auth/webauthn/login", up), http.StatusOK); a.Redirect != "/admin/panel" {
		t.Fatalf("step-up with the key: redirect %q, want /admin/panel", a.Redirect)
	}
	if r := c.get("/admin/panel"); r.status != http.StatusOK {
		t.Errorf("the step-up path after the key: got %d, want 200", r.status)
	}
	// At the code step, a step-up assertion is refused.
	d := g.browser()
	d.login("alice", testPassword, "/.auth/code")
	o = jsonOf[requestOptions](t, d.postJSON("/.auth/webauthn/login/options", "{}"), http.StatusOK)
	up = k.assert(o)
	up["step_up"], up["next"] = true, "/admin/panel"
	if r := d.postJSON("/.auth/webauthn/login", up); r.status != http.StatusUnauthorized {
		t.Errorf("a step-up assertion at the code step: got %d, want 401", r.status)
	}
}

// TestPasswordChangeWithKey: a store user whose second factor is a
// security key changes their password confirming with the key (password
// plus the key's assertion, no code); the new password works, the old one
// does not, and a wrong current password with a good assertion changes
// nothing.
func TestPasswordChangeWithKey(t *testing.T) {
	g := newGate(t, gateOpts{})
	g.cli("", "user", "add", "carol", "--password-hash", testHash)
	k := newSoftKey(t, -7)
	b := g.browser()
	b.login("carol", testPassword, "/")
	if a := jsonOf[keyAnswer](t, b.addKey(k, "Key", nil), http.StatusOK); a.Redirect != codesPage {
		t.Fatalf("registering: %+v", a)
	}
	const newPassword = "a new and longer passphrase"
	form := func(current string) url.Values {
		return url.Values{"current_password": {current}, "new_password": {newPassword}, "confirm_password": {newPassword},
			"assertion": {b.keyAssertionField(k)}}
	}
	if r := b.post("/.auth/security/password", form("wrong password")); r.status != http.StatusUnauthorized {
		t.Fatalf("a wrong current password with the key: got %d, want 401", r.status)
	}
	if r := b.post("/.auth/security/password", form(testPassword)); r.status != http.StatusOK || !strings.Contains(r.body, "password") {
		t.Fatalf("password change confirmed with the key: got %d: %.300s", r.status, r.body)
	}
	if r := g.browser().post("/.auth/login", url.Values{"username": {"carol"}, "password": {testPassword}}); r.status != http.StatusUnauthorized {
		t.Errorf("the old password after the change: got %d, want 401", r.status)
	}
	g.browser().login("carol", newPassword, "/.auth/code")
}
