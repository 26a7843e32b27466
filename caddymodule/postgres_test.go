package caddymodule

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddytest"

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
