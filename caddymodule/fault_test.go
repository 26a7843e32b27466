package caddymodule

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	pqotp "github.com/pquerna/otp"
	"golang.org/x/net/html"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store"
)

// faultyStore wraps a real store; every method can be made to fail, and
// every call is recorded, so a test can fail each call a request makes in
// turn.
type faultyStore struct {
	store.Store
	mu      sync.Mutex
	failing map[string]bool
	calls   []string
}

// wrappedMethods are the store methods faultyStore can fail. A method
// added to store.Store must be added here (TestFaultyStoreWrapsEveryMethod).
var wrappedMethods = []string{
	"Account", "EnableTOTP", "DisableTOTP", "ReplaceBackupCodes", "UseTOTPStep", "UseBackupCode",
	"Session", "SessionAdmission", "PutSession", "DeleteSession", "DeleteUserSessions", "Meta", "PutMeta", "InitMeta", "Close",
}

func (f *faultyStore) call(m string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, m)
	if f.failing[m] {
		return errDisk
	}
	return nil
}

func (f *faultyStore) set(methods ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failing = map[string]bool{}
	for _, m := range methods {
		f.failing[m] = true
	}
	f.calls = nil
}

func (f *faultyStore) called() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	seen := map[string]bool{}
	var out []string
	for _, c := range f.calls {
		if !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	return out
}

func (f *faultyStore) Account(ctx context.Context, u string) (store.Account, error) {
	if err := f.call("Account"); err != nil {
		return store.Account{}, err
	}
	return f.Store.Account(ctx, u)
}

func (f *faultyStore) EnableTOTP(ctx context.Context, u string, t store.TOTP, c [][]byte) error {
	if err := f.call("EnableTOTP"); err != nil {
		return err
	}
	return f.Store.EnableTOTP(ctx, u, t, c)
}

func (f *faultyStore) DisableTOTP(ctx context.Context, u string, keep []byte) error {
	if err := f.call("DisableTOTP"); err != nil {
		return err
	}
	return f.Store.DisableTOTP(ctx, u, keep)
}

func (f *faultyStore) ReplaceBackupCodes(ctx context.Context, u string, c [][]byte) error {
	if err := f.call("ReplaceBackupCodes"); err != nil {
		return err
	}
	return f.Store.ReplaceBackupCodes(ctx, u, c)
}

func (f *faultyStore) UseTOTPStep(ctx context.Context, u string, s int64) error {
	if err := f.call("UseTOTPStep"); err != nil {
		return err
	}
	return f.Store.UseTOTPStep(ctx, u, s)
}

func (f *faultyStore) UseBackupCode(ctx context.Context, u string, h []byte) (int, error) {
	if err := f.call("UseBackupCode"); err != nil {
		return 0, err
	}
	return f.Store.UseBackupCode(ctx, u, h)
}

func (f *faultyStore) Session(ctx context.Context, k []byte) (store.Session, error) {
	if err := f.call("Session"); err != nil {
		return store.Session{}, err
	}
	return f.Store.Session(ctx, k)
}

func (f *faultyStore) SessionAdmission(ctx context.Context, k []byte, now time.Time) (store.Admission, error) {
	if err := f.call("SessionAdmission"); err != nil {
		return store.Admission{}, err
	}
	return f.Store.SessionAdmission(ctx, k, now)
}

func (f *faultyStore) PutSession(ctx context.Context, s store.Session) error {
	if err := f.call("PutSession"); err != nil {
		return err
	}
	return f.Store.PutSession(ctx, s)
}

func (f *faultyStore) DeleteSession(ctx context.Context, k []byte) error {
	if err := f.call("DeleteSession"); err != nil {
		return err
	}
	return f.Store.DeleteSession(ctx, k)
}

func (f *faultyStore) DeleteUserSessions(ctx context.Context, u string, keep []byte) (int, error) {
	if err := f.call("DeleteUserSessions"); err != nil {
		return 0, err
	}
	return f.Store.DeleteUserSessions(ctx, u, keep)
}

func (f *faultyStore) Meta(ctx context.Context, n string) ([]byte, error) {
	if err := f.call("Meta"); err != nil {
		return nil, err
	}
	return f.Store.Meta(ctx, n)
}

func (f *faultyStore) InitMeta(ctx context.Context, n string, v []byte) ([]byte, error) {
	if err := f.call("InitMeta"); err != nil {
		return nil, err
	}
	return f.Store.InitMeta(ctx, n, v)
}

func (f *faultyStore) PutMeta(ctx context.Context, n string, v []byte) error {
	if err := f.call("PutMeta"); err != nil {
		return err
	}
	return f.Store.PutMeta(ctx, n, v)
}

// TestFaultyStoreWrapsEveryMethod: a new store method must be wrapped, so
// the fault matrix below covers it.
func TestFaultyStoreWrapsEveryMethod(t *testing.T) {
	iface := reflect.TypeOf((*store.Store)(nil)).Elem()
	wrapped := map[string]bool{}
	for _, m := range wrappedMethods {
		wrapped[m] = true
	}
	for i := range iface.NumMethod() {
		if name := iface.Method(i).Name; !wrapped[name] {
			t.Errorf("store.Store.%s is not wrapped by faultyStore: add it, so that its failures are tested", name)
		}
	}
}

// faultEnv is a provisioned handler on a store that can fail, driven by
// direct calls of ServeHTTP.
type faultEnv struct {
	t  *testing.T
	h  *Handler
	fs *faultyStore
}

func newFaultEnv(t *testing.T, require bool) *faultEnv {
	h := &Handler{FreeFailures: 50, RequireTwoFactor: require, Argon2idMemory: 1024, RememberBrowser: rememberForFaults}
	provisionHandler(t, h)
	fs := &faultyStore{}
	replaceStore(h, func(s store.Store) store.Store { fs.Store = s; return fs })
	return &faultEnv{t: t, h: h, fs: fs}
}

// result is one request's outcome.
type result struct {
	w       *httptest.ResponseRecorder
	err     error
	reached bool
	// others are sessions of the user that the request's change (2FA on
	// or off) must end.
	others []*http.Cookie
}

func (r result) status() int {
	var he caddyhttp.HandlerError
	if errors.As(r.err, &he) {
		return he.StatusCode
	}
	if r.err != nil {
		return 500
	}
	return r.w.Code
}

func (r result) cookie() *http.Cookie {
	for _, c := range r.w.Result().Cookies() {
		if c.Name == DefaultCookieName && c.MaxAge >= 0 && c.Value != "" {
			return c
		}
	}
	return nil
}

func (e *faultEnv) do(r *http.Request, c *http.Cookie) result {
	if c != nil {
		r.AddCookie(c)
	}
	w, err, reached := serve(e.h, r)
	return result{w: w, err: err, reached: reached}
}

func (e *faultEnv) get(path string, c *http.Cookie) result {
	r := httptest.NewRequest(http.MethodGet, path, nil)
	r.Header.Set("Accept", "text/html")
	return e.do(r, c)
}

func (e *faultEnv) post(path string, c *http.Cookie, kv ...string) result {
	return e.do(form(path, formOf(kv...)), c)
}

// must runs a setup step that has to succeed.
func (e *faultEnv) must(r result, want int) result {
	e.t.Helper()
	if r.status() != want {
		e.t.Fatalf("setup: got %d, want %d: %.300s", r.status(), want, r.w.Body.String())
	}
	return r
}

func (e *faultEnv) login() *http.Cookie {
	e.t.Helper()
	return e.must(e.post("/.auth/login", nil, "username", "alice", "password", testPassword), http.StatusSeeOther).cookie()
}

// enable turns 2FA on from a logged-in session and returns the session's
// new cookie, the key and the backup codes.
func (e *faultEnv) enable(c *http.Cookie) (*http.Cookie, string, []string) {
	e.t.Helper()
	r := e.must(e.get("/.auth/security/enable", c), http.StatusOK)
	m := otpauthRe.FindStringSubmatch(r.w.Body.String())
	key, err := pqotp.NewKeyFromURL(html.UnescapeString(m[1]))
	if err != nil {
		e.t.Fatal(err)
	}
	c = e.must(e.post("/.auth/security/enable", c, "password", testPassword, "code", totpCode(e.t, key.Secret(), testNow())), http.StatusSeeOther).cookie()
	r = e.must(e.get("/.auth/security/backup-codes", c), http.StatusOK)
	return c, key.Secret(), backupCodesOn(e.t, r.w.Body.String())
}

// fullLogin logs in with both factors.
func (e *faultEnv) fullLogin(secret string) *http.Cookie {
	e.t.Helper()
	p := e.must(e.post("/.auth/login", nil, "username", "alice", "password", testPassword), http.StatusSeeOther).cookie()
	nextStep()
	return e.must(e.post("/.auth/code", p, "code", totpCode(e.t, secret, testNow())), http.StatusSeeOther).cookie()
}

// account is alice's account as the store holds it.
func (e *faultEnv) account() store.Account {
	a, err := e.fs.Store.Account(context.Background(), "alice")
	if err != nil {
		e.t.Fatal(err)
	}
	return a
}

// subset reports whether every code of a is in b.
func hashSubset(a, b [][]byte) bool {
	for _, x := range a {
		if !slices.ContainsFunc(b, func(y []byte) bool { return bytes.Equal(x, y) }) {
			return false
		}
	}
	return true
}

// faultScenario is one request, with the state it needs set up first.
type faultScenario struct {
	name    string
	require bool
	// setup prepares the state (no faults) and returns the request to run
	// and the cookie it was sent with.
	setup func(e *faultEnv) (req func() result, old *http.Cookie)
}

var faultScenarios = []faultScenario{
	{"proxied request", false, func(e *faultEnv) (func() result, *http.Cookie) {
		c := e.login()
		return func() result { return e.get("/app", c) }, c
	}},
	{"proxied request refreshing the session", false, func(e *faultEnv) (func() result, *http.Cookie) {
		c := e.login()
		advance(2 * time.Minute)
		return func() result { return e.get("/app", c) }, c
	}},
	{"login, 2FA off", false, func(e *faultEnv) (func() result, *http.Cookie) {
		return func() result { return e.post("/.auth/login", nil, "username", "alice", "password", testPassword) }, nil
	}},
	{"login, 2FA on", false, func(e *faultEnv) (func() result, *http.Cookie) {
		e.enable(e.login())
		return func() result { return e.post("/.auth/login", nil, "username", "alice", "password", testPassword) }, nil
	}},
	{"code page", false, func(e *faultEnv) (func() result, *http.Cookie) {
		e.enable(e.login())
		p := e.login()
		return func() result { return e.get("/.auth/code", p) }, p
	}},
	{"TOTP code", false, func(e *faultEnv) (func() result, *http.Cookie) {
		_, secret, _ := e.enable(e.login())
		p := e.login()
		nextStep()
		code := totpCode(e.t, secret, testNow())
		return func() result { return e.post("/.auth/code", p, "code", code) }, p
	}},
	{"backup code", false, func(e *faultEnv) (func() result, *http.Cookie) {
		_, _, codes := e.enable(e.login())
		p := e.login()
		return func() result { return e.post("/.auth/code", p, "code", codes[0]) }, p
	}},
	{"security page", false, func(e *faultEnv) (func() result, *http.Cookie) {
		c := e.login()
		return func() result { return e.get("/.auth/security", c) }, c
	}},
	{"me", false, func(e *faultEnv) (func() result, *http.Cookie) {
		c := e.login()
		return func() result { return e.get("/.auth/me", c) }, c
	}},
	{"enable page", false, func(e *faultEnv) (func() result, *http.Cookie) {
		c := e.login()
		return func() result { return e.get("/.auth/security/enable", c) }, c
	}},
	{"enable", false, enableScenario},
	{"enable, 2FA required", true, enableScenario},
	{"disable", false, disableScenario("code")},
	{"disable with a backup code", false, disableScenario("backup")},
	{"disable, 2FA required", true, disableScenario("code")},
	{"new backup codes", false, func(e *faultEnv) (func() result, *http.Cookie) {
		c, secret, _ := e.enable(e.login())
		nextStep()
		code := totpCode(e.t, secret, testNow())
		return func() result {
			return e.post("/.auth/security/backup-codes", c, "password", testPassword, "code", code)
		}, c
	}},
	{"logout", false, func(e *faultEnv) (func() result, *http.Cookie) {
		c := e.login()
		return func() result { return e.post("/.auth/logout", c) }, c
	}},
}

func enableScenario(e *faultEnv) (func() result, *http.Cookie) {
	c := e.login()
	r := e.must(e.get("/.auth/security/enable", c), http.StatusOK)
	m := otpauthRe.FindStringSubmatch(r.w.Body.String())
	key, err := pqotp.NewKeyFromURL(html.UnescapeString(m[1]))
	if err != nil {
		e.t.Fatal(err)
	}
	// Another session that got in with the password alone: enabling must
	// end it, whatever fails.
	other := e.login()
	code := totpCode(e.t, key.Secret(), testNow())
	return func() result {
		res := e.post("/.auth/security/enable", c, "password", testPassword, "code", code)
		res.others = []*http.Cookie{other}
		return res
	}, c
}

func disableScenario(kind string) func(e *faultEnv) (func() result, *http.Cookie) {
	return func(e *faultEnv) (func() result, *http.Cookie) {
		c, secret, codes := e.enable(e.login())
		other := e.fullLogin(secret)
		nextStep()
		code := totpCode(e.t, secret, testNow())
		if kind == "backup" {
			code = codes[0]
		}
		return func() result {
			res := e.post("/.auth/security/disable", c, "password", testPassword, "code", code)
			res.others = []*http.Cookie{other}
			return res
		}, c
	}
}

// committing are the store methods that make a request's change; when one
// of them fails, nothing may have changed.
var committing = map[string]bool{"EnableTOTP": true, "DisableTOTP": true, "ReplaceBackupCodes": true, "UseTOTPStep": true, "UseBackupCode": true}

// TestStoreFaultMatrix fails, one at a time, every store call each request
// makes, on a real store otherwise. Every time: 503, nothing reaches the
// site, no session cookie is handed out, and a failed commit changes
// nothing. Where the change did commit before a later call failed (as if
// the process had died before answering), the sessions that change must
// end are gone all the same.
func TestStoreFaultMatrix(t *testing.T) {
	faults := 0
	for _, sc := range faultScenarios {
		e := newFaultEnv(t, sc.require)
		req, _ := sc.setup(e)
		e.fs.set()
		clean := req()
		if clean.status() >= 500 {
			t.Fatalf("%s without faults: got %d", sc.name, clean.status())
		}
		methods := e.fs.called()
		sort.Strings(methods)
		for _, m := range methods {
			e := newFaultEnv(t, sc.require)
			req, old := sc.setup(e)
			before := e.account()
			e.fs.set(m)
			r := req()
			e.fs.set()
			faults++
			what := sc.name + " with " + m + " failing"
			if bestEffort[m] {
				// Logged, and the request goes on as without the fault.
				if r.status() != clean.status() {
					t.Errorf("%s: got %d, want %d as without the fault", what, r.status(), clean.status())
				}
				continue
			}
			if r.status() != http.StatusServiceUnavailable {
				t.Errorf("%s: got %d, want 503", what, r.status())
			}
			if r.reached {
				t.Errorf("%s: the request reached the site", what)
			}
			if c := r.cookie(); c != nil {
				t.Errorf("%s: a session cookie was handed out", what)
			}
			if !strings.Contains(r.w.Body.String(), "Temporarily unavailable") && !strings.Contains(r.w.Body.String(), "store unavailable") && r.err == nil {
				t.Errorf("%s: the page does not say the service is unavailable: %.200s", what, r.w.Body.String())
			}
			after := e.account()
			// A failed check-and-use changes nothing. A failed change
			// leaves 2FA as it was and the codes of the old set; the code
			// offered for it may be used up (failing safe).
			switch {
			case (m == "UseTOTPStep" || m == "UseBackupCode") && !reflect.DeepEqual(after, before):
				t.Errorf("%s: the account changed from %+v to %+v", what, before, after)
			case committing[m] && (after.Enabled() != before.Enabled() || !hashSubset(after.BackupCodes, before.BackupCodes) || len(before.BackupCodes)-len(after.BackupCodes) > 1):
				t.Errorf("%s: the account changed from %+v to %+v", what, before, after)
			}
			mustEnd := r.others
			if sc.require || strings.HasPrefix(sc.name, "enable") {
				mustEnd = append(mustEnd, old)
			}
			if before.Enabled() != after.Enabled() {
				for i, c := range mustEnd {
					if res := e.get("/app", c); res.reached {
						t.Errorf("%s: 2FA went from %v to %v, but session %d it must end still reaches the site", what, before.Enabled(), after.Enabled(), i)
					}
				}
			}
			// The store recovered: a login works again.
			if res := e.post("/.auth/login", nil, "username", "alice", "password", testPassword); res.status() != http.StatusSeeOther {
				t.Errorf("%s: after the fault cleared, login got %d", what, res.status())
			}
		}
		t.Logf("%s: calls %v", sc.name, methods)
	}
	t.Logf("%d scenarios, %d faults injected", len(faultScenarios), faults)
}
