package caddymodule

import (
	"archive/tar"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/ops"
	"github.com/caddyserver/caddy/v2/caddytest"
	"golang.org/x/crypto/bcrypt"
)

// twoSites is a Caddy with two sites, a.localhost and b.localhost, each
// with its own two_factor block (extraA, extraB) over one storage folder.
type twoSites struct {
	a, b   *testGate
	config string
}

// twoSiteConfig writes the Caddyfile of two sites sharing dir/store.
func twoSiteConfig(dir, upstream, extraA, extraB string) string {
	site := func(host, extra string) string {
		return fmt.Sprintf(`%s:9443 {
	tls internal
	two_factor {
		storage_dir %s/store
		%s
	}
	reverse_proxy %s
}
`, host, dir, extra, upstream)
	}
	return "{\n" + testGlobals + "}\n" + site("a.localhost", extraA) + site("b.localhost", extraB)
}

func newTwoSites(t *testing.T, extraA, extraB string) *twoSites {
	t.Helper()
	up := newUpstream(t)
	dir := t.TempDir()
	s := &twoSites{config: twoSiteConfig(dir, strings.TrimPrefix(up.srv.URL, "http://"), extraA, extraB)}
	tester := caddytest.NewTester(t)
	tester.InitServer(s.config, "caddyfile")
	t.Cleanup(func() { unload(t) })
	if t.Failed() {
		t.FailNow()
	}
	s.a = &testGate{t: t, up: up, dir: dir, tester: tester, config: s.config, base: "https://a.localhost:9443"}
	s.b = &testGate{t: t, up: up, dir: dir, tester: tester, config: s.config, base: "https://b.localhost:9443"}
	s.a.waitReady()
	s.b.waitReady()
	return s
}

// otherPassword is the password of the b site's admin: another person.
const otherPassword = "a different person's password"

func otherHash(t *testing.T) string {
	h, err := bcrypt.GenerateFromPassword([]byte(otherPassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// withCookie fetches path on g with the given session cookie value, as a
// browser navigation.
func withCookie(g *testGate, path, cookie string) response {
	return g.browser().get(path, "Cookie", DefaultCookieName+"="+cookie)
}

// TestRealmsRequiredForSharedStore: two blocks of one Caddy on one store
// are refused unless each names a realm; one realm named by two blocks
// needs the same configured users. The error names both blocks.
func TestRealmsRequiredForSharedStore(t *testing.T) {
	newGate(t, gateOpts{}) // a running Caddy, whose admin API takes the loads
	dir := t.TempDir()
	hashB := otherHash(t)
	cases := []struct {
		name, a, b string
		want       []string
	}{
		{"no realm", "user admin " + testHash, "user admin " + hashB,
			[]string{"without naming a realm", "realm NAME"}},
		{"default realm named by one", "realm default\n\t\tuser admin " + testHash, "user admin " + hashB,
			[]string{"without naming a realm"}},
		{"one realm, other users", "realm corp\n\t\tuser admin " + testHash, "realm corp\n\t\tuser admin " + hashB,
			[]string{`realm \"corp\"`, "user admin has another password hash"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := twoSiteConfig(dir, "127.0.0.1:1", c.a, c.b)
			err := loadError(t, cfg)
			// Both blocks are named by their lines.
			if labels := blockLabel.FindAllString(err, -1); len(labels) != 2 || labels[0] == labels[1] {
				t.Errorf("the error does not name both blocks: %s", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err, w) {
					t.Errorf("load error lacks %q:\n%s", w, err)
				}
			}
		})
	}
}

var blockLabel = regexp.MustCompile(`two_factor block at Caddyfile:\d+`)

// loadError loads a Caddyfile into the test Caddy, which must refuse it,
// and returns the error.
func loadError(t *testing.T, caddyfile string) string {
	t.Helper()
	res, err := http.Post("http://"+adminAddr+"/load", "text/caddyfile", strings.NewReader(caddyfile))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode == http.StatusOK {
		unload(t)
		t.Fatalf("the config was accepted; want it refused")
	}
	return string(b)
}

// TestRealmsKeepSitesApart: two sites in two realms on one store. A
// session, a store user, an enrolment of one is nothing to the other, even
// for a user of the same name.
func TestRealmsKeepSitesApart(t *testing.T) {
	s := newTwoSites(t,
		"realm a\n\t\tuser admin "+testHash,
		"realm b\n\t\tuser admin "+otherHash(t)+"\n\t\trequire_two_factor")

	// A's admin is logged in on A, and copies the cookie to B.
	ba := s.a.browser()
	ba.login("admin", testPassword, "/")
	if r := ba.get("/app"); !reachedUpstream(r) {
		t.Fatalf("A's admin on A: got %d", r.status)
	}
	cookieA := ba.cookie()
	before := s.a.up.count()
	r := withCookie(s.b, "/app", cookieA)
	if s.a.up.count() != before || r.status != http.StatusFound || !strings.HasPrefix(r.header.Get("Location"), "/.auth/login") {
		t.Fatalf("A's cookie on B: got %d Location %q (upstream reached: %v), want a redirect to B's login", r.status, r.header.Get("Location"), s.a.up.count() != before)
	}
	// Nor does it open B's Security pages (where B's admin would enrol).
	if r := withCookie(s.b, "/.auth/security", cookieA); r.status != http.StatusSeeOther && r.status != http.StatusFound {
		t.Fatalf("A's cookie on B's Security page: got %d, want a redirect to the login", r.status)
	}

	// B's admin (another person) has B's password, and must enrol first.
	bb := s.b.browser()
	bb.post("/.auth/login", formOf("username", "admin", "password", testPassword))
	if r := bb.get("/app"); reachedUpstream(r) {
		t.Fatal("A's password logged in B's admin")
	}
	bb = s.b.browser()
	bb.login("admin", otherPassword, "/.auth/security")
	if r := bb.get("/app"); reachedUpstream(r) {
		t.Fatal("require_two_factor on B: reached the upstream before enrolling")
	}

	// A store user added for A logs in on A only.
	s.a.cli(testPassword+"\n", "user", "add", "carol", "--realm", "a")
	s.a.browser().login("carol", testPassword, "/")
	if r := s.b.browser().post("/.auth/login", formOf("username", "carol", "password", testPassword)); r.status != http.StatusUnauthorized {
		t.Fatalf("A's store user on B: got %d, want 401", r.status)
	}
	// The command needs a realm when the store serves two.
	s.a.cliFails("several realms", "", "user", "list")
	list := s.a.cli("", "user", "list", "--realm", "b", "--json").out
	if strings.Contains(list, "carol") {
		t.Fatalf("realm b lists A's store user: %s", list)
	}

	// A's admin turns 2FA on; B's admin is still without it (B still
	// sends them to enrol, not to the code step), and A's admin needs a
	// code on A.
	ba.enable()
	s.b.browser().login("admin", otherPassword, "/.auth/security")
	s.a.browser().login("admin", testPassword, "/.auth/code")
	var st ops.StatusInfo
	if err := json.Unmarshal([]byte(s.a.cli("", "status", "admin", "--realm", "b", "--json").out), &st); err != nil || st.TwoFactor {
		t.Fatalf("status of B's admin after A's admin enrolled: two_factor %v (%v)", st.TwoFactor, err)
	}
}

// TestRealmSharedByName: two sites that name one realm are one account
// system: a session and an enrolment of one hold on the other.
func TestRealmSharedByName(t *testing.T) {
	users := "realm corp\n\t\tuser admin " + testHash
	s := newTwoSites(t, users, users)
	ba := s.a.browser()
	ba.login("admin", testPassword, "/")
	if r := withCookie(s.b, "/app", ba.cookie()); !reachedUpstream(r) {
		t.Fatalf("a session of realm corp on the other site of corp: got %d", r.status)
	}
	ba.enable()
	s.b.browser().login("admin", testPassword, "/.auth/code")
}

// TestUpgradeKeepsSingleSiteState starts on a store written by the code
// before realms (commit 20e3c8f, testdata/upgrade-20e3c8f.tar.gz): alice
// (configured) and carol (a store user) enrolled, dave (a store user)
// without a second factor. Their enrolments, backup codes and passwords
// are all still there, with no realm named and with `realm default`.
func TestUpgradeKeepsSingleSiteState(t *testing.T) {
	dir := t.TempDir()
	untar(t, "testdata/upgrade-20e3c8f.tar.gz", dir)
	var secrets struct {
		AliceSecret string   `json:"alice_secret"`
		AliceCodes  []string `json:"alice_codes"`
		CarolSecret string   `json:"carol_secret"`
		CarolCodes  []string `json:"carol_codes"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "secrets.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &secrets); err != nil {
		t.Fatal(err)
	}
	for i, extra := range []string{"", "realm default"} {
		g := newGate(t, gateOpts{dir: dir, extra: extra})
		nextStep()
		a := g.browser()
		a.login("alice", testPassword, "/.auth/code")
		if r := a.post("/.auth/code", formOf("code", totpCode(t, secrets.AliceSecret, testNow()))); r.status != http.StatusSeeOther {
			t.Fatalf("%q: alice's TOTP code from before the upgrade: got %d", extra, r.status)
		}
		c := g.browser()
		c.login("carol", testPassword, "/.auth/code")
		if r := c.post("/.auth/code", formOf("code", secrets.CarolCodes[i])); r.status != http.StatusSeeOther {
			t.Fatalf("%q: carol's backup code from before the upgrade: got %d", extra, r.status)
		}
		if r := c.get("/app"); !reachedUpstream(r) {
			t.Fatalf("%q: carol after her backup code: got %d", extra, r.status)
		}
		a2 := g.browser()
		a2.login("alice", testPassword, "/.auth/code")
		if r := a2.post("/.auth/code", formOf("code", secrets.AliceCodes[i])); r.status != http.StatusSeeOther {
			t.Fatalf("%q: alice's backup code from before the upgrade: got %d", extra, r.status)
		}
		g.browser().login("dave", testPassword, "/")
		unload(t)
	}
}

// untar unpacks a .tar.gz of plain files and folders into dir.
func untar(t *testing.T, archive, dir string) {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	for range 100 {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Join(dir, filepath.Clean("/"+h.Name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(name, 0o700); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			b, err := io.ReadAll(io.LimitReader(tr, 16<<20))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(name, b, os.FileMode(h.Mode)&0o700); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Fatal("the archive has too many entries")
}

// TestRenamedRealmWarns: renaming a realm does not end it silently: the
// realm the store holds and no site serves is named in a warning at start,
// and naming it again brings its enrolments back.
func TestRenamedRealmWarns(t *testing.T) {
	dir := t.TempDir()
	logFile := filepath.Join(dir, "caddy.log")
	global := fmt.Sprintf(`log gate {
		output file %s
		format json
		include http.handlers.two_factor
	}`, logFile)
	g := newGate(t, gateOpts{dir: dir, global: global})
	a := g.browser()
	a.login("alice", testPassword, "/")
	a.enable()
	unload(t)

	g = newGate(t, gateOpts{dir: dir, global: global, extra: "realm renamed"})
	g.browser().login("alice", testPassword, "/")
	unload(t)
	var found bool
	for range 50 {
		b, _ := os.ReadFile(logFile)
		if found = strings.Contains(string(b), "the store holds a realm that no site serves") &&
			strings.Contains(string(b), `"realm":"default"`); found {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !found {
		t.Fatal("no warning names the default realm, which the store holds and no site serves after the rename")
	}
	g = newGate(t, gateOpts{dir: dir, global: global})
	g.browser().login("alice", testPassword, "/.auth/code")
}

// TestChangedUserLineEndsSessions: a configured user's session is good
// only while the configuration has the hash it was made with; the other
// users' sessions carry on through the reload.
func TestChangedUserLineEndsSessions(t *testing.T) {
	g := newGate(t, gateOpts{})
	alice := g.browser()
	alice.login("alice", testPassword, "/")
	bob := g.browser()
	bob.login("Bob", testPassword, "/")
	newHash := otherHash(t)
	g.config = strings.Replace(g.config, "user alice "+testHash, "user alice "+newHash, 1)
	if !strings.Contains(g.config, newHash) {
		t.Fatal("the test's config has no line for alice")
	}
	g.reload()
	g.waitReady()
	if r := alice.get("/app"); reachedUpstream(r) {
		t.Fatal("alice's session outlived the change of her password hash in the config")
	}
	if r := bob.get("/app"); !reachedUpstream(r) {
		t.Fatalf("Bob's session, whose line did not change, ended at the reload: %d", r.status)
	}
	g.browser().login("alice", otherPassword, "/")
}

// TestRealmProxiedIdentity: in a named realm, whose users the store keeps
// under longer names, what the proxied path passes on and checks names the
// user as the realm does: Remote-User and Remote-Name, the assertion's sub,
// and the step_up check, which reads the user's account (under the store's
// name it would find none, and send the user to enrol).
func TestRealmProxiedIdentity(t *testing.T) {
	g := newGate(t, gateOpts{extra: "realm corp\n\t\tassertion_header " + assertionHeader +
		"\n\t\tassertion_audience app.example\n\t\tstep_up /admin/* 10m\n\t\tauth_headers"})
	e := g.enrolAlice()
	b := fullLogin(t, g, e)
	if r := b.get("/app"); r.status != http.StatusOK {
		t.Fatalf("GET /app: %d", r.status)
	}
	up := g.up.last().Header
	if up.Get("Remote-User") != "alice" || up.Get("Remote-Name") != "alice" {
		t.Errorf("the upstream got Remote-User %q, Remote-Name %q, want alice", up.Get("Remote-User"), up.Get("Remote-Name"))
	}
	c, err := VerifyAssertion(tokenOf(t, g), fetchJWKS(t, g), "https://localhost:9443", "app.example", testNow())
	if err != nil || c.Subject != "alice" {
		t.Errorf("assertion: %+v (%v), want sub alice", c, err)
	}
	advance(11 * time.Minute)
	r := b.apiGet("/admin/api/items")
	if r.status != http.StatusUnauthorized || r.header.Get("Two-Factor-Reason") != "step_up_required" {
		t.Errorf("a stale session on a step_up path: %d %q, want 401 step_up_required", r.status, r.header.Get("Two-Factor-Reason"))
	}
}
