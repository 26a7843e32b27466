package caddymodule

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store/pgtest"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/ui"
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/net/html"
)

// clockOffset moves the clock of every test config (the clock module
// two_factor.clocks.offset, set by the global option two_factor_test_clock
// in testGlobals) and of every handler a test provisions by hand.
var clockOffset atomic.Int64

func advance(d time.Duration) { clockOffset.Add(int64(d)) }

func testNow() time.Time { return time.Now().Add(time.Duration(clockOffset.Load())) }

// testPassword is every test user's password; hashed at the lowest bcrypt
// cost so that tests stay fast.
const testPassword = "correct horse battery staple"

var testHash string

func TestMain(m *testing.M) {
	h, err := bcrypt.GenerateFromPassword([]byte(testPassword), bcrypt.MinCost)
	if err != nil {
		panic(err)
	}
	testHash = string(h)
	var missing missingKeys
	ui.OnMissingMessage(missing.add)
	code := m.Run()
	pgtest.StopShared()
	if keys := missing.list(); len(keys) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: pages asked for message keys that no catalogue has:\n  %s\n", strings.Join(keys, "\n  "))
		code = 1
	}
	os.Exit(code)
}

// upstream is the protected application: it records what reaches it.
type upstream struct {
	srv  *httptest.Server
	mu   sync.Mutex
	reqs []*http.Request
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.reqs = append(u.reqs, r.Clone(r.Context()))
		u.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"path": r.URL.Path, "headers": r.Header})
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.reqs)
}

func (u *upstream) last() *http.Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.reqs) == 0 {
		return nil
	}
	return u.reqs[len(u.reqs)-1]
}

// gate is a real Caddy (in this process) with the module in front of an
// upstream, served over HTTPS on localhost:9443.
type testGate struct {
	t        *testing.T
	up       *upstream
	dir      string
	config   string
	tester   *caddytest.Tester
	base     string
	userLine string
}

// gateOpts tweaks a test gate's Caddyfile.
// testGlobals are the global options of every test config: the admin API
// and ports the tests use, no change to the system's trust store, and no
// grace period at a reload.
const testGlobals = `	two_factor_test_clock
	skip_install_trust
	admin localhost:2999
	http_port 9080
	https_port 9443
	grace_period 1ns
`

type gateOpts struct {
	extra  string // more lines inside two_factor
	global string // more global options
	dir    string // storage folder; a new temporary one when empty
	// storage replaces the storage_dir line (storage postgres ...).
	storage string
	hash    string // password hash of alice and Bob; testHash when empty

	up *upstream // the upstream; a new recording one when nil
}

func newGate(t *testing.T, o gateOpts) *testGate {
	t.Helper()
	g := &testGate{t: t, up: o.up, dir: o.dir, base: "https://localhost:9443"}
	if g.up == nil {
		g.up = newUpstream(t)
	}
	if g.dir == "" {
		g.dir = t.TempDir()
	}
	hash := testHash
	if o.hash != "" {
		hash = o.hash
	}
	storage := "storage_dir " + g.dir + "/store"
	if o.storage != "" {
		storage = o.storage
	}
	g.config = fmt.Sprintf(`{
`+testGlobals+`	%s
}
localhost:9443 {
	tls internal
	two_factor {
		user alice %s
		user Bob %s
		%s
		issuer "Test Cloud"
		%s
	}
	reverse_proxy %s {
		header_up X-Auth-Id {http.auth.user.id}
	}
}
`, o.global, hash, hash, storage, o.extra, strings.TrimPrefix(g.up.srv.URL, "http://"))
	g.tester = caddytest.NewTester(t)
	g.tester.InitServer(g.config, "caddyfile")
	// Unload the config before the temporary folder goes, so that the
	// store is closed first (cleanups run last-in, first-out).
	t.Cleanup(func() { unload(t) })
	if t.Failed() {
		t.FailNow()
	}
	g.waitReady()
	return g
}

// waitReady waits (bounded) until the site answers over TLS: Caddy issues
// its internal certificate in the background after a config load.
func (g *testGate) waitReady() {
	g.t.Helper()
	client := &http.Client{Transport: caddytest.CreateTestingTransport(), Timeout: 2 * time.Second}
	var last error
	for range 100 {
		res, err := client.Get(g.base + "/.auth/assets/style.css")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
			err = fmt.Errorf("status %d", res.StatusCode)
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	g.t.Fatalf("the site did not come up: %v", last)
}

// unload replaces the running config with one that has no server.
func unload(t *testing.T) {
	const idle = `{"admin":{"listen":"localhost:2999"}}`
	res, err := http.Post("http://localhost:2999/load", "application/json", strings.NewReader(idle))
	if err != nil {
		t.Errorf("unloading the config: %v", err)
		return
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		t.Errorf("unloading the config: %d %s", res.StatusCode, b)
	}
}

// reload loads the gate's config again into the running Caddy.
func (g *testGate) reload() {
	g.t.Helper()
	caddytest.NewTester(g.t).InitServer(g.config, "caddyfile")
}

// browser is one client with its own cookie jar; it does not follow
// redirects, so tests see every step.
type browser struct {
	t      *testing.T
	g      *testGate
	client *http.Client
	jar    *cookiejar.Jar
}

func (g *testGate) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: g.t, g: g, jar: jar, client: &http.Client{
		Transport:     caddytest.CreateTestingTransport(),
		Jar:           jar,
		Timeout:       20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

type response struct {
	status int
	header http.Header
	body   string
}

func (b *browser) do(req *http.Request) response {
	b.t.Helper()
	res, err := b.client.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return response{status: res.StatusCode, header: res.Header, body: string(body)}
}

// get loads a page as a browser navigation would.
func (b *browser) get(path string, headers ...string) response {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodGet, b.g.base+path, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Accept", "text/html,application/xhtml+xml")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return b.do(req)
}

// post submits a form, as a same-origin browser form would.
func (b *browser) post(path string, form url.Values, headers ...string) response {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.g.base+path, strings.NewReader(form.Encode()))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "text/html")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return b.do(req)
}

func (b *browser) cookie() string {
	u, _ := url.Parse(b.g.base)
	for _, c := range b.jar.Cookies(u) {
		if c.Name == DefaultCookieName {
			return c.Value
		}
	}
	return ""
}

// postSeeOther submits a form whose success answers 303 (POST-redirect-
// GET), checks where it leads, and loads that page as the browser would.
func (b *browser) postSeeOther(path string, form url.Values, wantLocation string, headers ...string) response {
	b.t.Helper()
	r := b.post(path, form, headers...)
	if r.status != http.StatusSeeOther || r.header.Get("Location") != wantLocation {
		b.t.Fatalf("POST %s: got %d Location %q, want 303 %q; body: %.300s", path, r.status, r.header.Get("Location"), wantLocation, r.body)
	}
	return b.get(wantLocation, headers...)
}

// Where the Security forms lead after a success.
const (
	codesPage    = "/.auth/security/backup-codes"
	securityPage = "/.auth/security"
)

// login does the password step and checks where it leads.
func (b *browser) login(user, password, wantLocation string) response {
	b.t.Helper()
	r := b.post("/.auth/login", url.Values{"username": {user}, "password": {password}})
	if r.status != http.StatusSeeOther || r.header.Get("Location") != wantLocation {
		b.t.Fatalf("login %s: got %d Location %q, want 303 %q; body: %.300s", user, r.status, r.header.Get("Location"), wantLocation, r.body)
	}
	return r
}

// enrolment is what the enable page gave the user.
type enrolment struct {
	secret string // Base32
	codes  []string
}

var otpauthRe = regexp.MustCompile(`href="(otpauth://[^"]+)"`)

// enable turns 2FA on for a logged-in browser, as a person would: reads the
// key off the page, computes a code, types it with the password.
func (b *browser) enable() enrolment {
	b.t.Helper()
	r := b.get("/.auth/security/enable")
	if r.status != http.StatusOK {
		b.t.Fatalf("enable page: got %d, want 200: %.300s", r.status, r.body)
	}
	m := otpauthRe.FindStringSubmatch(r.body)
	if m == nil {
		b.t.Fatalf("enable page has no otpauth link: %.500s", r.body)
	}
	key, err := otp.NewKeyFromURL(html.UnescapeString(m[1]))
	if err != nil {
		b.t.Fatal(err)
	}
	code := totpCode(b.t, key.Secret(), testNow())
	r = b.postSeeOther("/.auth/security/enable", url.Values{"code": {code}, "password": {testPassword}}, codesPage)
	if r.status != http.StatusOK {
		b.t.Fatalf("enable: got %d, want 200: %.500s", r.status, r.body)
	}
	codes := backupCodesOn(b.t, r.body)
	if len(codes) != 10 {
		b.t.Fatalf("enable: got %d backup codes, want 10", len(codes))
	}
	return enrolment{secret: key.Secret(), codes: codes}
}

// enrolAlice turns 2FA on for alice, as a person would, and moves the
// clock to the next time step, so that a fresh code is not the one used
// to enrol.
func (g *testGate) enrolAlice() enrolment {
	g.t.Helper()
	b := g.browser()
	b.login("alice", testPassword, "/")
	e := b.enable()
	nextStep()
	return e
}

// totpCode computes a code with pquerna/otp directly, independent of the
// module's own TOTP code.
func totpCode(t *testing.T, secret string, at time.Time) string {
	t.Helper()
	c, err := totp.GenerateCodeCustom(secret, at, totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// backupCodesOn reads the codes in <code> elements inside .backup-codes.
func backupCodesOn(t *testing.T, page string) []string {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	var codes []string
	var walk func(n *html.Node, inside bool)
	walk = func(n *html.Node, inside bool) {
		if n.Type == html.ElementNode {
			for _, a := range n.Attr {
				if a.Key == "class" && strings.Contains(" "+a.Val+" ", " backup-codes ") {
					inside = true
				}
			}
			if inside && n.Data == "code" && n.FirstChild != nil {
				codes = append(codes, n.FirstChild.Data)
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c, inside)
		}
	}
	walk(doc, false)
	return codes
}

// nextStep moves the clock to the next TOTP step, so a new code exists.
func nextStep() { advance(30 * time.Second) }

// rawGet sends a GET over HTTP/1.1 exactly as written, header lines and
// all (HTTP/2 clients normalise header names), with the browser's session
// cookie, and returns the response.
func (b *browser) rawGet(path string, headerLines ...string) response {
	b.t.Helper()
	conn, err := tls.Dial("tcp", "127.0.0.1:9443", &tls.Config{InsecureSkipVerify: true, ServerName: "localhost", NextProtos: []string{"http/1.1"}})
	if err != nil {
		b.t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	var sb strings.Builder
	fmt.Fprintf(&sb, "GET %s HTTP/1.1\r\nHost: localhost:9443\r\nAccept: text/html\r\nConnection: close\r\n", path)
	if c := b.cookie(); c != "" {
		fmt.Fprintf(&sb, "Cookie: %s=%s\r\n", DefaultCookieName, c)
	}
	for _, l := range headerLines {
		sb.WriteString(l + "\r\n")
	}
	sb.WriteString("\r\n")
	if _, err := conn.Write([]byte(sb.String())); err != nil {
		b.t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		b.t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return response{status: res.StatusCode, header: res.Header, body: string(body)}
}

func init() {
	caddy.RegisterModule(offsetClock{})
	httpcaddyfile.RegisterGlobalOption("two_factor_test_clock", func(d *caddyfile.Dispenser, _ any) (any, error) {
		for d.Next() {
		}
		return httpcaddyfile.App{Name: appID, Value: caddyconfig.JSON(map[string]any{"clock": map[string]string{"source": "offset"}}, nil)}, nil
	})
}

// offsetClock is the clock of test configs: the real time moved on by
// clockOffset.
type offsetClock struct{}

func (offsetClock) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "two_factor.clocks.offset", New: func() caddy.Module { return new(offsetClock) }}
}

func (offsetClock) Now() time.Time { return testNow() }
