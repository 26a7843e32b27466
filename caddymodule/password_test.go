package caddymodule

import (
	"context"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/users"
)

func TestPasswordChangePage(t *testing.T) {
	g := newGate(t, gateOpts{extra: cheapArgon2})
	const pw1, pw2 = "first password 1", "second password 2"
	g.cli(pw1+"\n", "user", "add", "dave")
	b, other := g.browser(), g.browser()
	b.login("dave", pw1, "/")
	other.login("dave", pw1, "/")

	if r := b.get("/.auth/security"); !strings.Contains(r.body, `href="/.auth/security/password"`) {
		t.Errorf("the Security page of a store user has no link to change the password")
	}
	r := b.get("/.auth/security/password")
	for _, want := range []string{`<label for="current_password">Current password</label>`, `<label for="new_password">New password</label>`,
		`<label for="confirm_password">Confirm new password</label>`, `autocomplete="new-password"`, `minlength="8"`} {
		if !strings.Contains(r.body, want) {
			t.Errorf("password page lacks %q", want)
		}
	}
	if strings.Contains(r.body, `name="code"`) {
		t.Error("password page asks for a code while 2FA is off")
	}

	post := func(cur, nw, confirm string) response {
		return b.post("/.auth/security/password", url.Values{"current_password": {cur}, "new_password": {nw}, "confirm_password": {confirm}})
	}
	for _, tc := range []struct {
		cur, nw, confirm string
		status           int
		want             string
	}{
		{pw1, pw2, pw2 + "x", http.StatusBadRequest, "do not match"},
		{pw1, "short", "short", http.StatusBadRequest, "at least 8 characters"},
		{pw1, strings.Repeat("y", 1025), strings.Repeat("y", 1025), http.StatusBadRequest, "at most 1024 bytes"},
		{"wrong password", pw2, pw2, http.StatusUnauthorized, "not correct"},
	} {
		r := post(tc.cur, tc.nw, tc.confirm)
		if r.status != tc.status || !strings.Contains(r.body, tc.want) || !strings.Contains(r.body, `aria-invalid="true"`) {
			t.Errorf("change with %q/%.10q/%.10q: got %d, want %d with %q", tc.cur, tc.nw, tc.confirm, r.status, tc.status, tc.want)
		}
	}
	other.alive("after refused changes", "dave")
	old := b.cookie()
	r = post(pw1, pw2, pw2)
	if r.status != http.StatusOK || !strings.Contains(r.body, "Your password has been changed") {
		t.Fatalf("change: got %d: %.300s", r.status, r.body)
	}
	if b.cookie() == old || b.cookie() == "" {
		t.Error("the session ID did not change with the password")
	}
	b.alive("the session that changed the password", "dave")
	other.dead("another session after a password change")
	if r := g.browser().post("/.auth/login", url.Values{"username": {"dave"}, "password": {pw1}}); r.status != http.StatusUnauthorized {
		t.Errorf("login with the old password: got %d, want 401", r.status)
	}
	g.browser().login("dave", pw2, "/")
}

func TestPasswordChangeNeedsCode(t *testing.T) {
	g := newGate(t, gateOpts{extra: cheapArgon2})
	g.cli("", "user", "add", "erin", "--password-hash", testHash)
	b := g.browser()
	b.login("erin", testPassword, "/")
	e := b.enable()
	if r := b.get("/.auth/security/password"); !strings.Contains(r.body, `name="code"`) {
		t.Fatal("password page asks for no code while 2FA is on")
	}
	const nw = "a new password"
	form := url.Values{"current_password": {testPassword}, "new_password": {nw}, "confirm_password": {nw}}
	if r := b.post("/.auth/security/password", form); r.status != http.StatusUnauthorized {
		t.Errorf("change without the code: got %d, want 401", r.status)
	}
	nextStep()
	form.Set("code", totpCode(t, e.secret, testNow()))
	if r := b.post("/.auth/security/password", form); r.status != http.StatusOK {
		t.Fatalf("change with the code: got %d", r.status)
	}
	g.browser().login("erin", nw, "/.auth/code")
}

// TestPasswordChangeConfigUser: a user from the Caddyfile is told why the
// password cannot be changed here, and a POST changes nothing.
func TestPasswordChangeConfigUser(t *testing.T) {
	g := newGate(t, gateOpts{})
	b := g.browser()
	b.login("alice", testPassword, "/")
	const why = "configuration, so it cannot be changed here"
	if r := b.get("/.auth/security"); !strings.Contains(r.body, why) || strings.Contains(r.body, "/security/password") {
		t.Errorf("the Security page of a configured user does not explain that the password is in the configuration")
	}
	if r := b.get("/.auth/security/password"); r.status != http.StatusOK || !strings.Contains(r.body, why) || strings.Contains(r.body, "<form class=\"form\"") {
		t.Errorf("password page of a configured user: got %d", r.status)
	}
	nw := "a new password"
	r := b.post("/.auth/security/password", url.Values{"current_password": {testPassword}, "new_password": {nw}, "confirm_password": {nw}})
	if r.status != http.StatusForbidden {
		t.Errorf("POST by a configured user: got %d, want 403", r.status)
	}
	g.browser().login("alice", testPassword, "/")
}

// TestRehashOnLogin: a store user's bcrypt hash becomes argon2id with the
// configured parameters at the next login, and again when they change.
func TestRehashOnLogin(t *testing.T) {
	g := newGate(t, gateOpts{extra: cheapArgon2})
	g.cli("", "user", "add", "frank", "--password-hash", testHash)
	keep := g.browser()
	keep.login("frank", testPassword, "/")

	hashOf := func() string {
		t.Helper()
		unload(t)
		db, err := store.OpenBadger(filepath.Join(g.dir, "store"), store.Options{NoSync: true, GCInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		u, err := db.User(context.Background(), "frank")
		if err != nil {
			t.Fatal(err)
		}
		return u.PasswordHash
	}
	if h := hashOf(); !strings.HasPrefix(h, "$argon2id$v=19$m=1024,t=1,p=1$") {
		t.Fatalf("after a login: stored hash %.35s, want argon2id with the configured parameters", h)
	}
	g.config = strings.Replace(g.config, cheapArgon2, "argon2id_memory 2048\n\t\targon2id_time 2", 1)
	g.reload()
	keep.alive("a session across the rehash", "frank")
	g.browser().login("frank", testPassword, "/")
	if h := hashOf(); !strings.HasPrefix(h, "$argon2id$v=19$m=2048,t=2,p=1$") {
		t.Fatalf("after the parameters changed: stored hash %.35s, want m=2048,t=2", h)
	}
	g.reload()
	g.browser().login("frank", testPassword, "/")
	if r := g.browser().post("/.auth/login", url.Values{"username": {"frank"}, "password": {"wrong password"}}); r.status != http.StatusUnauthorized {
		t.Errorf("a wrong password after the rehash: got %d, want 401", r.status)
	}
}

// TestStoreOnlyUsers: with no user in the config, an unknown name is
// checked against an argon2id hash with the configured parameters, the
// kind of hash every store user ends up with.
func TestStoreOnlyUsers(t *testing.T) {
	h := &Handler{StorageDir: t.TempDir() + "/store", Argon2idMemory: 1024, Argon2idTime: 2}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := h.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Cleanup() })
	login := func(user, pw string) int {
		w, err, _ := serve(h, form("/.auth/login", url.Values{"username": {user}, "password": {pw}}))
		if err != nil {
			t.Fatal(err)
		}
		return w.Code
	}
	if got := login("nobody", "some password"); got != http.StatusUnauthorized {
		t.Errorf("unknown name: got %d, want 401", got)
	}
	hash, _ := users.Argon2id{Time: 2, Memory: 1024, Threads: 1}.Hash("store password")
	at := testNow()
	if err := h.db.AddUser(context.Background(), store.User{Name: "gina", Display: "Gina", PasswordHash: hash, Created: at, PasswordChanged: at}); err != nil {
		t.Fatal(err)
	}
	if got := login("GINA", "store password"); got != http.StatusSeeOther {
		t.Errorf("store user: got %d, want 303", got)
	}
	if got := login("gina", "wrong password"); got != http.StatusUnauthorized {
		t.Errorf("store user, wrong password: got %d, want 401", got)
	}
}
