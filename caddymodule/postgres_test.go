package caddymodule

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store/pgtest"
)

// Two keys of the PostgreSQL tests, base64.
const (
	pgKeyA = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE="
	pgKeyB = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAI="
)

// TestPostgresStorage: the whole flow through a real Caddy whose store is
// PostgreSQL (storage postgres, the connection string from an
// environment variable): enable 2FA, log out, log in with a code and with
// a backup code, reach the upstream as the user; a code used once is
// refused the second time.
func TestPostgresStorage(t *testing.T) {
	dbURL := pgtest.URL(t)
	t.Setenv("TWO_FACTOR_TEST_DATABASE_URL", dbURL)
	g := newGate(t, gateOpts{
		storage: "storage postgres {env.TWO_FACTOR_TEST_DATABASE_URL}",
		extra:   "encryption_key " + pgKeyA,
	})
	e := g.enrolAlice()

	b := g.browser()
	b.login("alice", testPassword, "/.auth/code")
	code := totpCode(t, e.secret, testNow())
	if r := b.post("/.auth/code", url.Values{"code": {code}}); r.status != http.StatusSeeOther {
		t.Fatalf("code: got %d: %.300s", r.status, r.body)
	}
	if r := b.get("/app"); r.status != http.StatusOK {
		t.Fatalf("the site after the code: got %d", r.status)
	}
	if got := g.up.last().Header.Get("Remote-User"); got != "alice" {
		t.Errorf("upstream saw Remote-User %q, want alice", got)
	}

	// The same code again, on a new login: refused (the step is used up in
	// the database).
	b2 := g.browser()
	b2.login("alice", testPassword, "/.auth/code")
	if r := b2.post("/.auth/code", url.Values{"code": {code}}); r.status == http.StatusSeeOther {
		t.Fatal("a used code was accepted again")
	}
	// A backup code works once.
	if r := b2.post("/.auth/code", url.Values{"code": {e.codes[0]}}); r.status != http.StatusSeeOther {
		t.Fatalf("backup code: got %d: %.300s", r.status, r.body)
	}
	b3 := g.browser()
	b3.login("alice", testPassword, "/.auth/code")
	if r := b3.post("/.auth/code", url.Values{"code": {e.codes[0]}}); r.status == http.StatusSeeOther {
		t.Fatal("a used backup code was accepted again")
	}

	// A logout ends the session in the database and in the cache.
	if r := b.post("/.auth/logout", url.Values{}); r.status != http.StatusSeeOther {
		t.Fatalf("logout: got %d", r.status)
	}
	if r := b.get("/app", "Accept", "application/json"); r.status != http.StatusUnauthorized {
		t.Errorf("after logout: got %d, want 401", r.status)
	}
}

// TestPostgresStorageRefusals: what an operator gets wrong about storage
// postgres is refused at start, with a message that says what to do, and
// changes nothing: no key, a key file that is not there (none is made up),
// another key than the database's, storage and storage_dir together, an
// unknown backend.
func TestPostgresStorageRefusals(t *testing.T) {
	dbURL := pgtest.URL(t)
	for _, c := range []struct{ body, want string }{
		{"storage postgres " + dbURL, "not enough"},
		{"storage mysql x", "unknown backend \"mysql\""},
		{"storage postgres", "want a backend and where"},
	} {
		err := adaptError(t, "\t\t"+c.body)
		if c.want == "not enough" {
			if err != nil {
				t.Errorf("%s: adapting failed: %v", c.body, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "Caddyfile:3") {
			t.Errorf("%s: got %v, want %q at Caddyfile:3", c.body, err, c.want)
		}
	}

	site := func(lines string) string {
		return "{\n" + testGlobals + "}\nlocalhost:9443 {\n\ttls internal\n\ttwo_factor {\n\t\tuser alice " + testHash + "\n" + lines + "\n\t}\n\trespond ok\n}\n"
	}
	assertLoadError(t, site("\t\tstorage postgres "+dbURL), "set encryption_key")
	assertLoadError(t, site("\t\tstorage postgres "+dbURL+"\n\t\tstorage_dir "+t.TempDir()), "storage and storage_dir both set")
	missing := filepath.Join(t.TempDir(), "none.key")
	assertLoadError(t, site("\t\tstorage postgres "+dbURL+"\n\t\tencryption_key_file "+missing), "is missing: with storage postgres the key is not made up")
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("a key file was made: %v", err)
	}

	// The database takes the first key; another is refused.
	caddytest.NewTester(t).InitServer(site("\t\tstorage postgres "+dbURL+"\n\t\tencryption_key "+pgKeyA), "caddyfile")
	unload(t)
	assertLoadError(t, site("\t\tstorage postgres "+dbURL+"\n\t\tencryption_key "+pgKeyB), "does not match the database")
	caddytest.NewTester(t).InitServer(site("\t\tstorage postgres "+dbURL+"\n\t\tencryption_key "+pgKeyA), "caddyfile")
	unload(t)
}

// TestMigrateBetweenStores: a populated badger store (an enrolment with a
// used code step and a used backup code, a store user) is moved with
// `caddy two-factor migrate` into PostgreSQL, and a Caddy on the database
// logs the same users in with the same authenticator, refusing what was
// used before the move; then back into a new badger store the same way.
// A target that is not empty is refused, and nothing is written to it.
func TestMigrateBetweenStores(t *testing.T) {
	dir := t.TempDir()
	dbURL := pgtest.URL(t)
	key := "encryption_key " + pgKeyA
	g := newGate(t, gateOpts{dir: dir, extra: key})
	e := g.enrolAlice()
	b := g.browser()
	b.login("alice", testPassword, "/.auth/code")
	used := totpCode(t, e.secret, testNow())
	if r := b.post("/.auth/code", url.Values{"code": {used}}); r.status != http.StatusSeeOther {
		t.Fatalf("code: got %d", r.status)
	}
	b2 := g.browser()
	b2.login("alice", testPassword, "/.auth/code")
	if r := b2.post("/.auth/code", url.Values{"code": {e.codes[1]}}); r.status != http.StatusSeeOther {
		t.Fatalf("backup code: got %d", r.status)
	}
	g.cli("", "user", "add", "carol", "--password-hash", testHash)
	unload(t)

	// Into PostgreSQL.
	addr := nowhere(t)
	r := runCLI(t, "", "migrate", "--from", "badger:"+dir+"/store", "--to", "postgres:"+dbURL, "--address", addr)
	if r.code != 0 || !strings.Contains(r.out, "Copied 1 store user and 1 second factor") {
		t.Fatalf("migrate to postgres: exit %d, %q %q", r.code, r.out, r.err)
	}
	check := func(g *testGate) {
		t.Helper()
		b := g.browser()
		b.login("alice", testPassword, "/.auth/code")
		if r := b.post("/.auth/code", url.Values{"code": {used}}); r.status == http.StatusSeeOther {
			t.Fatal("a code step used before the move was accepted after it")
		}
		if r := b.post("/.auth/code", url.Values{"code": {e.codes[1]}}); r.status == http.StatusSeeOther {
			t.Fatal("a backup code used before the move was accepted after it")
		}
		nextStep()
		if r := b.post("/.auth/code", url.Values{"code": {totpCode(t, e.secret, testNow())}}); r.status != http.StatusSeeOther {
			t.Fatalf("the same authenticator after the move: got %d: %.300s", r.status, r.body)
		}
		g.browser().login("carol", testPassword, "/")
	}
	pg := newGate(t, gateOpts{storage: "storage postgres " + dbURL, extra: key})
	check(pg)
	unload(t)

	// Into a store that is not empty: refused, nothing written.
	r = runCLI(t, "", "migrate", "--from", "postgres:"+dbURL, "--to", "badger:"+dir+"/store", "--address", addr)
	if r.code != 1 || !strings.Contains(r.err, "not empty") || !strings.Contains(r.err, "nothing was written") {
		t.Fatalf("migrate into a store with users: exit %d %q", r.code, r.err)
	}
	// Back into a new badger store.
	back := t.TempDir()
	r = runCLI(t, "", "migrate", "--from", "postgres:"+dbURL, "--to", "badger:"+back+"/store", "--address", addr)
	if r.code != 0 {
		t.Fatalf("migrate to badger: exit %d %q", r.code, r.err)
	}
	check(newGate(t, gateOpts{dir: back, extra: key}))

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"migrate", "--from", "badger:" + back + "/store"}, "give both --from and --to"},
		{[]string{"migrate", "--from", "mysql:x", "--to", "badger:/x"}, "--from: \"mysql:x\": want badger:<dir> or postgres:<connection string>"},
		{[]string{"migrate", "--from", "badger:" + back + "/none", "--to", "badger:" + back + "/other"}, "there is no store in"},
	} {
		if r := runCLI(t, "", append(c.args, "--address", addr)...); r.code != 1 || !strings.Contains(r.err, c.want) {
			t.Errorf("%v: got exit %d %q, want %q", c.args, r.code, r.err, c.want)
		}
	}
}

// TestCLIOnPostgres: the commands work on a PostgreSQL store directly
// with --storage postgres:..., whether or not a Caddy runs on it, and
// what they change is seen by the running Caddy as soon as the change's
// notification arrives (store.StalenessBound at most).
func TestCLIOnPostgres(t *testing.T) {
	dbURL := pgtest.URL(t)
	g := newGate(t, gateOpts{storage: "storage postgres " + dbURL, extra: "encryption_key " + pgKeyA})
	addr := nowhere(t)
	if r := runCLI(t, "", "user", "add", "carol", "--password-hash", testHash, "--storage", "postgres:"+dbURL, "--address", addr); r.code != 0 {
		t.Fatalf("user add: exit %d %q", r.code, r.err)
	}
	b := g.browser()
	b.login("carol", testPassword, "/")
	if r := b.get("/app", "Accept", "application/json"); r.status != http.StatusOK {
		t.Fatalf("carol on the site: %d", r.status)
	}
	if r := runCLI(t, "", "sessions", "revoke", "carol", "--storage", "postgres:"+dbURL, "--address", addr); r.code != 0 {
		t.Fatalf("sessions revoke: exit %d %q", r.code, r.err)
	}
	// The command is another process: the running Caddy learns of the
	// revocation by the notification of its transaction, at once or within
	// the bound (as an instance learns of another's logout).
	for start, n := time.Now(), 1; ; n++ {
		r := b.get("/app", "Accept", "application/json")
		if r.status == http.StatusUnauthorized {
			t.Logf("sessions revoke from the command line: refused after %v, at request %d", time.Since(start), n)
			break
		}
		if r.status != http.StatusOK || time.Since(start) > store.StalenessBound {
			t.Fatalf("after sessions revoke from the command line: got %d after %v, want 401", r.status, time.Since(start))
		}
		time.Sleep(2 * time.Millisecond)
	}
	if r := runCLI(t, "", "user", "list", "--storage", "postgres:"+dbURL, "--address", addr); r.code != 0 || !strings.Contains(r.out, "carol") {
		t.Errorf("user list: exit %d %q %q", r.code, r.out, r.err)
	}
	// A backup of the database restores into a badger store.
	file := filepath.Join(t.TempDir(), "backup")
	if r := runCLI(t, "", "backup", file, "--storage", "postgres:"+dbURL, "--address", addr); r.code != 0 {
		t.Fatalf("backup: exit %d %q", r.code, r.err)
	}
	folder := filepath.Join(t.TempDir(), "store")
	if r := runCLI(t, "", "restore", file, "--storage", "badger:"+folder, "--encryption-key", pgKeyA, "--address", addr); r.code != 0 {
		t.Fatalf("restore into badger: exit %d %q %q", r.code, r.out, r.err)
	}
	if r := runCLI(t, "", "user", "list", "--storage-dir", folder, "--address", addr); r.code != 0 || !strings.Contains(r.out, "carol") {
		t.Errorf("user list of the restored store: exit %d %q %q", r.code, r.out, r.err)
	}
	if r := runCLI(t, "", "status", "carol", "--storage", "postgres:"+dbURL, "--storage-dir", "/x", "--address", addr); r.code != 1 || !strings.Contains(r.err, "both set") {
		t.Errorf("--storage with --storage-dir: exit %d %q", r.code, r.err)
	}
}

// TestPostgresSecurityKey: a security key registered and used through a
// Caddy whose store is PostgreSQL: the login with it reaches the site, and
// the same assertion sent again is refused (its counter is used up in the
// database).
func TestPostgresSecurityKey(t *testing.T) {
	dbURL := pgtest.URL(t)
	g := newGate(t, gateOpts{storage: "storage postgres " + dbURL, extra: "encryption_key " + pgKeyA})
	k := newSoftKey(t, -7)
	c := keyUser(t, g, k)
	o := jsonOf[requestOptions](t, c.postJSON("/.auth/webauthn/login/options", "{}"), http.StatusOK)
	assertion := k.assert(o)
	if a := jsonOf[keyAnswer](t, c.postJSON("/.auth/webauthn/login", assertion), http.StatusOK); a.Redirect == "" {
		t.Fatalf("key login: %+v", a)
	}
	if r := c.get("/app"); r.status != http.StatusOK {
		t.Fatalf("the site after a key login: got %d", r.status)
	}
	d := g.browser()
	d.login("alice", testPassword, "/.auth/code")
	if r := d.postJSON("/.auth/webauthn/login", assertion); r.status == http.StatusOK {
		t.Error("a replayed assertion was accepted")
	}
}
