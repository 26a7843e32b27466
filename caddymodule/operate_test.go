package caddymodule

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/ops"
	"github.com/caddyserver/caddy/v2/caddytest"
)

// cheapArgon2 keeps the argon2id hashes of store users fast under the race
// detector.
const cheapArgon2 = "argon2id_memory 1024"

// dead checks that the browser's session no longer reaches the site.
func (b *browser) dead(what string) {
	b.t.Helper()
	if r := b.get("/x"); r.status != http.StatusFound || !strings.HasPrefix(r.header.Get("Location"), "/.auth/login") {
		b.t.Errorf("%s: the session still works: got %d %q, want a redirect to the login", what, r.status, r.header.Get("Location"))
	}
}

// alive checks that the browser's session reaches the site as user.
func (b *browser) alive(what, user string) {
	b.t.Helper()
	r := b.get("/x")
	if r.status != http.StatusOK {
		b.t.Fatalf("%s: got %d %q, want 200 from the upstream", what, r.status, r.header.Get("Location"))
	}
	if got := b.g.up.last().Header.Get("Remote-User"); got != user {
		b.t.Errorf("%s: upstream got Remote-User %q, want %q", what, got, user)
	}
}

func TestStoreUserLifecycle(t *testing.T) {
	g := newGate(t, gateOpts{extra: cheapArgon2})
	const pw1, pw2 = "first password 1", "second password 2"

	r := g.cli(pw1+"\n", "user", "add", "Carol")
	if !strings.Contains(r.out, "Added Carol") {
		t.Errorf("user add: got %q", r.out)
	}
	b := g.browser()
	b.login("carol", pw1, "/") // any spelling of the name
	b.alive("store user after login", "Carol")
	b2 := g.browser()
	b2.login("CAROL", pw1, "/")

	list := g.cli("", "user", "list").out
	for _, want := range []string{"alice", "Bob", "Carol", "config", "store"} {
		if !strings.Contains(list, want) {
			t.Errorf("user list lacks %q:\n%s", want, list)
		}
	}
	var ul ops.UserList
	_ = json.Unmarshal([]byte(g.cli("", "user", "list", "--json").out), &ul)
	if len(ul.Users) != 3 || ul.Users[2].User != "Carol" || ul.Users[2].Source != ops.SourceStore || ul.Users[0].Source != ops.SourceConfig {
		t.Errorf("user list --json: got %+v, want alice and Bob (config) then Carol (store)", ul.Users)
	}

	g.cliFails("is a user in the Caddy config", pw1+"\n", "user", "add", "ALICE")
	g.cliFails("already exists in the store", pw1+"\n", "user", "add", "carol")
	g.cliFails("at least 8 characters", "short\n", "user", "add", "dave")
	g.cliFails("is a user in the Caddy config", pw2+"\n", "user", "passwd", "alice")
	g.cliFails("is a user in the Caddy config", "", "user", "delete", "Bob")
	g.cliFails("no user dave in the store", pw2+"\n", "user", "passwd", "dave")
	g.cliFails("no user dave in the store", "", "user", "delete", "dave")

	// passwd: the old password fails, the new one works, and every session
	// of the user ended.
	r = g.cli(pw2+"\n", "user", "passwd", "carol")
	if !strings.Contains(r.out, "ended 2 sessions") {
		t.Errorf("user passwd: got %q, want it to say 2 sessions ended", r.out)
	}
	b.dead("after user passwd")
	b2.dead("after user passwd")
	if r := g.browser().post("/.auth/login", url.Values{"username": {"carol"}, "password": {pw1}}); r.status != http.StatusUnauthorized {
		t.Errorf("login with the old password: got %d, want 401", r.status)
	}
	b = g.browser()
	b.login("carol", pw2, "/")
	b.alive("after logging in with the new password", "Carol")
	// passwd with a hash from caddy hash-password (the test password).
	g.cli("", "user", "passwd", "carol", "--password-hash", testHash)
	b.dead("after user passwd --password-hash")
	b = g.browser()
	b.login("carol", testPassword, "/")

	// The store user enables 2FA; delete takes it and the sessions.
	b.enable()
	if st := g.statusOf("carol"); !st.TwoFactor || st.Source != ops.SourceStore || len(st.Sessions) != 1 {
		t.Errorf("status of carol: got %+v, want 2FA on, from the store, one session", st)
	}
	r = g.cli("", "user", "delete", "carol")
	if !strings.Contains(r.out, "Deleted Carol") || !strings.Contains(r.out, "second factor") {
		t.Errorf("user delete: got %q", r.out)
	}
	b.dead("after user delete")
	if r := g.browser().post("/.auth/login", url.Values{"username": {"carol"}, "password": {testPassword}}); r.status != http.StatusUnauthorized {
		t.Errorf("login of a deleted user: got %d, want 401", r.status)
	}
	g.cliFails("unknown user carol", "", "status", "carol")

	// Added again, the name starts afresh: no second factor.
	g.cli(pw1+"\n", "user", "add", "carol")
	g.browser().login("carol", pw1, "/")
}

// TestStoreUserShadowedByConfig: a configured user of the same name wins,
// and a session of the store user does not carry over to it.
func TestStoreUserShadowedByConfig(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "module.log")
	g := newGate(t, gateOpts{extra: cheapArgon2, global: strings.ReplaceAll(auditLog(logFile), ".audit", "")})
	const pw = "store password 1"
	g.cli(pw+"\n", "user", "add", "Dave")
	b := g.browser()
	b.login("dave", pw, "/")
	b.alive("store user", "Dave")

	// The operator adds dave to the Caddyfile with another password.
	g.config = strings.Replace(g.config, "user Bob ", "user dave "+testHash+"\n\t\tuser Bob ", 1)
	g.reload()
	b.dead("store user's session once the config has a user of that name")
	if r := g.browser().post("/.auth/login", url.Values{"username": {"dave"}, "password": {pw}}); r.status != http.StatusUnauthorized {
		t.Errorf("the hidden store user's password: got %d, want 401", r.status)
	}
	g.browser().login("dave", testPassword, "/")
	_, events := auditEvents(t, logFile)
	warned := false
	for _, e := range events {
		if e["level"] == "warn" && e["user"] == "dave" && e["store_user"] == "Dave" && strings.Contains(fmt.Sprint(e["msg"]), "the configuration wins") {
			warned = true
		}
	}
	if !warned {
		t.Error("no warning in the log naming the store user hidden by the configuration")
	}
	var ul ops.UserList
	_ = json.Unmarshal([]byte(g.cli("", "user", "list", "--json").out), &ul)
	var shadowed bool
	for _, u := range ul.Users {
		if u.User == "Dave" && u.Shadowed {
			shadowed = true
		}
	}
	if !shadowed {
		t.Errorf("user list does not mark the store user as hidden: %+v", ul.Users)
	}
}

func TestOperatorReset(t *testing.T) {
	g := newGate(t, gateOpts{})
	b := g.browser()
	b.login("alice", testPassword, "/")
	b.enable()
	st := g.statusOf("alice")
	if !st.TwoFactor || st.BackupCodesLeft != 10 || st.Source != ops.SourceConfig || len(st.Sessions) != 1 || st.Sessions[0].Stage != "full" || st.Throttle == nil || st.Throttle.Throttled {
		t.Fatalf("status after enabling: got %+v", st)
	}
	human := g.cli("", "status", "alice").out
	for _, want := range []string{"alice (in the Caddy config)", "Two-factor authentication:  on", "Backup codes left:          10", "Throttled:                  no", "Sessions:                   1"} {
		if !strings.Contains(human, want) {
			t.Errorf("status lacks %q:\n%s", want, human)
		}
	}
	// A second session waits at the code step.
	pending := g.browser()
	pending.login("alice", testPassword, "/.auth/code")

	r := g.cli("", "reset", "alice")
	if !strings.Contains(r.out, "is off") || !strings.Contains(r.out, "ended 2 sessions") {
		t.Errorf("reset: got %q", r.out)
	}
	b.dead("after reset")
	if r := pending.post("/.auth/code", url.Values{"code": {"000000"}}); r.status != http.StatusSeeOther || r.header.Get("Location") != "/.auth/login" {
		t.Errorf("the code step after reset: got %d %q, want a redirect to the login", r.status, r.header.Get("Location"))
	}
	// The password alone is enough now.
	b = g.browser()
	b.login("alice", testPassword, "/")
	b.alive("after reset", "alice")
	if st := g.statusOf("alice"); st.TwoFactor || st.BackupCodesLeft != 0 {
		t.Errorf("status after reset: got %+v, want 2FA off", st)
	}
	// Reset with 2FA off still ends the sessions.
	r = g.cli("", "reset", "alice", "--json")
	var res ops.ChangeResult
	_ = json.Unmarshal([]byte(r.out), &res)
	if res.TwoFactorWasOn == nil || *res.TwoFactorWasOn || res.SessionsEnded != 1 {
		t.Errorf("reset with 2FA off: got %+v", res)
	}
	b.dead("after the second reset")
	g.cliFails("unknown user nobody", "", "reset", "nobody")
}

func TestOperatorRevokeSessions(t *testing.T) {
	g := newGate(t, gateOpts{})
	a1, a2, bob := g.browser(), g.browser(), g.browser()
	a1.login("alice", testPassword, "/")
	a2.login("Alice", testPassword, "/")
	bob.login("bob", testPassword, "/")
	r := g.cli("", "sessions", "revoke", "ALICE")
	if !strings.Contains(r.out, "Ended 2 sessions of alice") {
		t.Errorf("sessions revoke: got %q", r.out)
	}
	a1.dead("after sessions revoke")
	a2.dead("after sessions revoke")
	bob.alive("another user's session", "Bob")
	if st := g.statusOf("alice"); len(st.Sessions) != 0 {
		t.Errorf("status after revoke: %d sessions, want 0", len(st.Sessions))
	}
}

func TestOperatorUnthrottle(t *testing.T) {
	g := newGate(t, gateOpts{})
	b := g.browser()
	for i := range 6 {
		if r := b.post("/.auth/login", url.Values{"username": {"bob"}, "password": {"wrong"}}); r.status != http.StatusUnauthorized {
			t.Fatalf("wrong password %d: got %d, want 401", i+1, r.status)
		}
	}
	if r := b.post("/.auth/login", url.Values{"username": {"bob"}, "password": {testPassword}}); r.status != http.StatusTooManyRequests {
		t.Fatalf("right password while throttled: got %d, want 429", r.status)
	}
	st := g.statusOf("Bob")
	if st.Throttle == nil || !st.Throttle.Throttled || st.Throttle.Factors["password"].Failures != 6 || st.Throttle.Factors["password"].RetryAfterSeconds < 1 {
		t.Fatalf("status while throttled: got %+v", st.Throttle)
	}
	if !strings.Contains(g.cli("", "status", "bob").out, "Throttled:                  yes (password: 6 failures, wait") {
		t.Errorf("status does not say bob is throttled")
	}
	r := g.cli("", "unthrottle", "bob")
	if !strings.Contains(r.out, "Cleared 6 failed attempts of Bob") {
		t.Errorf("unthrottle: got %q", r.out)
	}
	b.login("bob", testPassword, "/")
	if st := g.statusOf("bob"); st.Throttle.Throttled {
		t.Errorf("status after unthrottle: still throttled")
	}
}

func TestOperatorBackupRestore(t *testing.T) {
	g := newGate(t, gateOpts{extra: cheapArgon2})
	b := g.browser()
	b.login("alice", testPassword, "/")
	e := b.enable()
	g.cli("store user pw 1\n", "user", "add", "carol")
	file := filepath.Join(t.TempDir(), "two-factor.backup")
	r := g.cli("", "backup", file)
	if !strings.Contains(r.errOut, "1 store user and 1 second factor") {
		t.Errorf("backup: got %q", r.errOut)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v, mode %v; want mode 0600", err, fi.Mode().Perm())
	}

	// Restoring into a store that holds users or enrolments is refused.
	g.cliFails("not empty", "", "restore", file)

	// The enrolment and the store user go; the backup brings them back.
	g.cli("", "reset", "alice")
	g.cli("", "user", "delete", "carol")
	b = g.browser()
	b.login("alice", testPassword, "/")
	r = g.cli("", "restore", file)
	if !strings.Contains(r.out, "Restored 1 store user and 1 second factor") {
		t.Errorf("restore: got %q", r.out)
	}
	b.dead("a session after a restore")
	b = g.browser()
	b.login("alice", testPassword, "/.auth/code")
	nextStep()
	if r := b.post("/.auth/code", url.Values{"code": {totpCode(t, e.secret, testNow())}}); r.status != http.StatusSeeOther || r.header.Get("Location") != "/" {
		t.Fatalf("code from the restored enrolment: got %d %q", r.status, r.header.Get("Location"))
	}
	g.browser().login("carol", "store user pw 1", "/")
	if st := g.statusOf("alice"); !st.TwoFactor || st.BackupCodesLeft != 10 {
		t.Errorf("status after restore: got %+v", st)
	}

	// Not a backup: refused, nothing changed.
	junk := filepath.Join(t.TempDir(), "junk")
	_ = os.WriteFile(junk, []byte("not a backup at all"), 0o600)
	g.cli("", "reset", "alice")
	g.cli("", "user", "delete", "carol")
	g.cliFails("not a valid backup", "", "restore", junk)
	if st := g.statusOf("alice"); st.TwoFactor {
		t.Error("a refused restore changed the store")
	}
}

// TestOperatorWithoutCaddy works on the store folder directly once Caddy
// has let it go, and restores a backup into a new folder that a new Caddy
// then serves.
func TestOperatorWithoutCaddy(t *testing.T) {
	g := newGate(t, gateOpts{})
	b := g.browser()
	b.login("alice", testPassword, "/")
	e := b.enable()
	file := filepath.Join(t.TempDir(), "b.backup")
	g.cli("", "backup", file)
	dir := filepath.Join(g.dir, "store")
	addr := nowhere(t)

	// While Caddy holds the folder, the commands cannot open it.
	r := runCLI(t, "", "status", "alice", "--address", addr, "--storage-dir", dir)
	if r.code != 1 || !strings.Contains(r.err, "is locked") || !strings.Contains(r.err, "--address") {
		t.Fatalf("status on a locked store: got exit %d %q", r.code, r.err)
	}

	unload(t)
	r = runCLI(t, "", "status", "alice", "--address", addr, "--storage-dir", dir)
	if r.code != 0 || !strings.Contains(r.out, "Two-factor authentication:  on") || !strings.Contains(r.out, "Caddy is not running") {
		t.Fatalf("status without Caddy: exit %d %q %s", r.code, r.err, r.out)
	}
	if r := runCLI(t, "", "unthrottle", "alice", "--address", addr, "--storage-dir", dir); r.code != 0 || !strings.Contains(r.out, "none to clear") {
		t.Errorf("unthrottle without Caddy: exit %d %q %s", r.code, r.err, r.out)
	}
	offline := filepath.Join(t.TempDir(), "offline.backup")
	if r := runCLI(t, "", "backup", offline, "--address", addr, "--storage-dir", dir); r.code != 0 || !strings.Contains(r.errOut, "1 second factor") {
		t.Errorf("backup without Caddy: exit %d %q %s", r.code, r.err, r.errOut)
	}

	// Restore into a new folder; a wrong key is caught before anything is
	// written.
	newDir := filepath.Join(t.TempDir(), "new")
	newStore := filepath.Join(newDir, "store")
	r = runCLI(t, "", "restore", file, "--address", addr, "--storage-dir", newStore, "--encryption-key", strings.Repeat("ab", 32))
	if r.code != 1 || !strings.Contains(r.err, "another key") {
		t.Fatalf("restore with the wrong key: got exit %d %q", r.code, r.err)
	}
	r = runCLI(t, "", "restore", file, "--address", addr, "--storage-dir", newStore, "--key-file", dir+".key")
	if r.code != 0 {
		t.Fatalf("restore without Caddy: exit %d %q", r.code, r.err)
	}
	key, err := os.ReadFile(dir + ".key")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(newStore+".key", key, 0o600); err != nil {
		t.Fatal(err)
	}
	g2 := newGate(t, gateOpts{dir: newDir})
	b2 := g2.browser()
	b2.login("alice", testPassword, "/.auth/code")
	nextStep()
	if r := b2.post("/.auth/code", url.Values{"code": {totpCode(t, e.secret, testNow())}}); r.status != http.StatusSeeOther {
		t.Fatalf("code from the enrolment restored into a new folder: got %d", r.status)
	}
}

// TestRestoreIntoNewFolderWhileCaddyRuns: with a Caddy running on another
// store, `restore --storage-dir NEW` works on the new folder directly, as
// the docs show it, instead of failing on the running Caddy's stores.
func TestRestoreIntoNewFolderWhileCaddyRuns(t *testing.T) {
	g := newGate(t, gateOpts{})
	b := g.browser()
	b.login("alice", testPassword, "/")
	b.enable()
	file := filepath.Join(t.TempDir(), "b.backup")
	g.cli("", "backup", file)
	newStore := filepath.Join(t.TempDir(), "new", "store")
	r := g.cli("", "restore", file, "--storage-dir", newStore, "--key-file", filepath.Join(g.dir, "store.key"))
	if !strings.Contains(r.out, "1 second factor") {
		t.Fatalf("restore into a new folder while Caddy runs: %q %q", r.out, r.errOut)
	}
	// A folder that holds no store is named as such.
	g.cliFails("there is no store in", "", "status", "alice", "--storage-dir", filepath.Join(t.TempDir(), "none"))
}

// TestAdminAPI checks the routes' answers to malformed or misdirected
// requests: a status that says what is wrong and a JSON error.
func TestAdminAPI(t *testing.T) {
	g := newGate(t, gateOpts{})
	call := func(method, path, ctype, body string, headers ...string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+adminAddr+path, strings.NewReader(body))
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(res.Body).Decode(&m)
		return res.StatusCode, m
	}
	const js = "application/json"
	for _, tc := range []struct {
		method, path, ctype, body string
		headers                   []string
		status                    int
		want                      string
	}{
		{"GET", "/two-factor/nope", "", "", nil, 404, "no such route"},
		{"POST", "/two-factor/users", js, "{}", nil, 405, "needs GET"},
		{"GET", "/two-factor/reset", "", "", nil, 405, "needs POST"},
		{"POST", "/two-factor/reset", "text/plain", `{"user":"alice"}`, nil, 415, "application/json"},
		{"POST", "/two-factor/reset", js, `{"user":"alice"`, nil, 400, "reading the JSON body"},
		{"POST", "/two-factor/reset", js, `{"user":"alice","admin":true}`, nil, 400, "unknown field"},
		{"POST", "/two-factor/reset", js, `{"user":"alice"}{"user":"bob"}`, nil, 400, "one JSON object"},
		{"POST", "/two-factor/reset", js, `{}`, nil, 400, `missing "user"`},
		{"POST", "/two-factor/reset", js, `{"user":"alice","password":"x"}`, nil, 400, "takes no password"},
		{"POST", "/two-factor/reset", js, `{"user":"a b"}`, nil, 400, "invalid user name"},
		{"POST", "/two-factor/reset", js, `{"user":"` + strings.Repeat("x", 70000) + `"}`, nil, 400, "reading the JSON body"},
		{"POST", "/two-factor/users/add", js, `{"user":"erin"}`, nil, 400, "missing \"password\""},
		{"POST", "/two-factor/users/add", js, `{"user":"erin","password":"long enough","password_hash":"` + testHash + `"}`, nil, 400, "not both"},
		{"POST", "/two-factor/users/add", js, `{"user":"erin","password_hash":"$2a$nope"}`, nil, 400, "password_hash"},
		{"GET", "/two-factor/status", "", "", nil, 400, "missing the query parameter user"},
		{"GET", "/two-factor/status?user=nobody", "", "", nil, 404, "unknown user nobody"},
		{"GET", "/two-factor/status?user=alice&storage_dir=/elsewhere", "", "", nil, 404, "no running two_factor handler uses the storage_dir /elsewhere"},
		{"POST", "/two-factor/restore", js, "{}", nil, 415, "application/octet-stream"},
		{"POST", "/two-factor/reset", js, `{"user":"alice"}`, []string{"Sec-Fetch-Site", "cross-site"}, 403, "cross-site"},
	} {
		status, m := call(tc.method, tc.path, tc.ctype, tc.body, tc.headers...)
		msg, _ := m["error"].(string)
		if status != tc.status || !strings.Contains(msg, tc.want) {
			t.Errorf("%s %s %.60s: got %d %q, want %d with %q", tc.method, tc.path, tc.body, status, msg, tc.status, tc.want)
		}
	}
	// The add route answers 201 with the user, never the hash.
	status, m := call("POST", "/two-factor/users/add", js, `{"user":"Erin","password":"long enough"}`)
	if status != http.StatusCreated || m["user"] != "Erin" || m["source"] != "store" {
		t.Errorf("add: got %d %v", status, m)
	}
	for k, v := range m {
		if s, _ := v.(string); strings.Contains(s, "$argon2id$") || strings.Contains(k, "hash") {
			t.Errorf("add answered with a hash: %s=%v", k, v)
		}
	}
	_ = g
}

// TestAdminAPIWithoutHandler: a Caddy without a two_factor handler says so.
func TestAdminAPIWithoutHandler(t *testing.T) {
	g := newGate(t, gateOpts{})
	unload(t)
	g.cliFails("no two_factor handler is running", "", "status", "alice")
}

// TestOperatorSeveralStores: with two stores open, a command must say
// which, and the error lists them.
func TestOperatorSeveralStores(t *testing.T) {
	up := newUpstream(t)
	d1, d2 := filepath.Join(t.TempDir(), "one"), filepath.Join(t.TempDir(), "two")
	cfg := `{
` + testGlobals + `}
localhost:9443 {
	tls internal
	handle /one/* {
		two_factor {
			user alice ` + testHash + `
			storage_dir ` + d1 + `
			prefix /one/.auth
		}
		reverse_proxy ` + strings.TrimPrefix(up.srv.URL, "http://") + `
	}
	handle {
		two_factor {
			user bob ` + testHash + `
			storage_dir ` + d2 + `
		}
		reverse_proxy ` + strings.TrimPrefix(up.srv.URL, "http://") + `
	}
}
`
	caddytest.NewTester(t).InitServer(cfg, "caddyfile")
	t.Cleanup(func() { unload(t) })
	g := &testGate{t: t}
	g.cliFails("several two_factor stores are open; choose one with storage_dir (--storage-dir): "+d1+", "+d2, "", "status", "alice")
	if st := g.statusOf2("alice", d1); st.Source != ops.SourceConfig {
		t.Errorf("status of alice in %s: got %+v", d1, st)
	}
	g.cliFails("unknown user alice", "", "status", "alice", "--storage-dir", d2)
	g.cli("", "status", "bob", "--storage-dir", d2)
}

// statusOf2 is status --json on the store in dir.
func (g *testGate) statusOf2(user, dir string) ops.StatusInfo {
	g.t.Helper()
	r := g.cli("", "status", user, "--json", "--storage-dir", dir)
	var st ops.StatusInfo
	if err := json.Unmarshal([]byte(r.out), &st); err != nil {
		g.t.Fatalf("status --json: %v: %s", err, r.out)
	}
	return st
}
