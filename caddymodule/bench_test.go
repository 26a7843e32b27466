package caddymodule

// Benchmarks of the gate's hot paths. They report numbers and never pass or
// fail on time; docs/benchmarks.md records the figures of a run and how to
// rerun them:
//
//	go test -run '^$' -bench . -benchmem ./caddymodule/

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/caddyauth"
	pqotp "github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/gate"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/otp"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store"
)

// provisionBench provisions h outside of a server on a temporary store,
// with the users already set on h (alice with the test hash if none).
func provisionBench(tb testing.TB, h *Handler) {
	tb.Helper()
	if len(h.Users) == 0 {
		h.Users = []User{{Username: "alice", Password: testHash}}
	}
	if h.StorageDir == "" {
		h.StorageDir = tb.TempDir() + "/store"
	}
	swappableStore(h)
	h.now = testNow
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	tb.Cleanup(cancel)
	if err := h.Provision(ctx); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = h.Cleanup() })
}

// loginCookie logs in with the password (2FA off) and returns the session
// cookie.
func loginCookie(tb testing.TB, h *Handler, user, password string) *http.Cookie {
	tb.Helper()
	w, err, _ := serve(h, form("/.auth/login", url.Values{"username": {user}, "password": {password}}))
	if err != nil || w.Code != http.StatusSeeOther {
		tb.Fatalf("login: got %d %v, want 303", w.Code, err)
	}
	for _, c := range w.Result().Cookies() {
		if c.Name == h.CookieName {
			return c
		}
	}
	tb.Fatal("login set no session cookie")
	return nil
}

// browserHeaders are what a browser sends with a page request, so that the
// header work (identity headers stripped, cookie removed) is done on a
// realistic header map.
func browserHeaders(r *http.Request) {
	r.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0")
	r.Header.Set("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
	r.Header.Set("Accept-Language", "en-GB,en;q=0.5")
	r.Header.Set("Accept-Encoding", "gzip, deflate, br, zstd")
	r.Header.Set("Sec-Fetch-Mode", "navigate")
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	r.Header.Set("Sec-Fetch-Dest", "document")
	r.Header.Set("Referer", "https://example.com/app/")
}

// nextHandler stands for the reverse proxy: it only checks that the gate
// passed the user on, so a broken gate fails the benchmark.
type nextHandler struct {
	header string
	want   string
	tb     testing.TB
}

func (n nextHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	if got := r.Header.Get(n.header); got != n.want {
		n.tb.Fatalf("upstream got %s %q, want %q", n.header, got, n.want)
	}
	return nil
}

// BenchmarkAuthenticated is a logged-in request for the site: session
// cookie decoded, the record read from the store, identity headers
// stripped, the cookie removed, Remote-User and the placeholders set, and
// next called.
//
// handler: the request is prepared once, as Caddy's server would, and
// restored between iterations, so the figure is the gate's own cost.
// request: a new request is made and prepared by caddyhttp.PrepareRequest
// each time, as Caddy does for every request; compare it with
// BenchmarkNoGate/request, the same work without the gate.
func BenchmarkAuthenticated(b *testing.B) {
	for _, tc := range []struct {
		name    string
		cookies string // other cookies besides the gate's
	}{
		{"handler", ""},
		{"handler/other-cookies", "theme=dark; lang=en"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			h := &Handler{}
			provisionBench(b, h)
			c := loginCookie(b, h, "alice", testPassword)
			cookieLine := c.Name + "=" + c.Value
			if tc.cookies != "" {
				cookieLine = tc.cookies + "; " + cookieLine
			}
			cookies := []string{cookieLine}
			r := httptest.NewRequest(http.MethodGet, "/app/page?tab=1", nil)
			browserHeaders(r)
			w := httptest.NewRecorder()
			r = caddyhttp.PrepareRequest(r, caddy.NewReplacer(), w, nil)
			next := nextHandler{header: "Remote-User", want: "alice", tb: b}
			b.ReportAllocs()
			for b.Loop() {
				r.Header["Cookie"] = cookies
				if err := h.ServeHTTP(w, r, next); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("request", func(b *testing.B) {
		h := &Handler{}
		provisionBench(b, h)
		c := loginCookie(b, h, "alice", testPassword)
		next := nextHandler{header: "Remote-User", want: "alice", tb: b}
		b.ReportAllocs()
		for b.Loop() {
			w, r := newPreparedRequest(c)
			if err := h.ServeHTTP(w, r, next); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// newPreparedRequest makes a browser's page request as Caddy's server
// hands it to the first handler.
func newPreparedRequest(c *http.Cookie) (http.ResponseWriter, *http.Request) {
	r := httptest.NewRequest(http.MethodGet, "/app/page?tab=1", nil)
	browserHeaders(r)
	if c != nil {
		r.Header.Set("Cookie", c.Name+"="+c.Value)
	}
	w := httptest.NewRecorder()
	return w, caddyhttp.PrepareRequest(r, caddy.NewReplacer(), w, nil)
}

// BenchmarkNoGate is the request set-up of BenchmarkAuthenticated/request
// with next called directly: the difference between the two is what the
// gate adds to a request.
func BenchmarkNoGate(b *testing.B) {
	b.Run("request", func(b *testing.B) {
		c := &http.Cookie{Name: DefaultCookieName, Value: "unused"}
		next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
		b.ReportAllocs()
		for b.Loop() {
			w, r := newPreparedRequest(c)
			if err := next.ServeHTTP(w, r); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkAnonymous is a request without a session: a browser navigation
// is redirected to the login page, anything else gets 401.
func BenchmarkAnonymous(b *testing.B) {
	h := &Handler{}
	provisionBench(b, h)
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		b.Fatal("an anonymous request reached the upstream")
		return nil
	})
	b.Run("redirect", func(b *testing.B) {
		r := httptest.NewRequest(http.MethodGet, "/app/page?tab=1", nil)
		browserHeaders(r)
		r = caddyhttp.PrepareRequest(r, caddy.NewReplacer(), httptest.NewRecorder(), nil)
		b.ReportAllocs()
		for b.Loop() {
			w := httptest.NewRecorder()
			if err := h.ServeHTTP(w, r, next); err != nil || w.Code != http.StatusFound {
				b.Fatalf("got %d %v, want 302", w.Code, err)
			}
		}
	})
	b.Run("401", func(b *testing.B) {
		r := httptest.NewRequest(http.MethodGet, "/api/items", nil)
		r.Header.Set("Accept", "application/json")
		r = caddyhttp.PrepareRequest(r, caddy.NewReplacer(), httptest.NewRecorder(), nil)
		b.ReportAllocs()
		for b.Loop() {
			if err := h.ServeHTTP(httptest.NewRecorder(), r, next); err == nil {
				b.Fatal("got no error, want 401")
			}
		}
	})
	b.Run("stale-cookie", func(b *testing.B) {
		// A well-formed cookie naming no session: one store miss.
		r := httptest.NewRequest(http.MethodGet, "/app/page", nil)
		browserHeaders(r)
		r.Header.Set("Cookie", h.CookieName+"=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
		r = caddyhttp.PrepareRequest(r, caddy.NewReplacer(), httptest.NewRecorder(), nil)
		b.ReportAllocs()
		for b.Loop() {
			w := httptest.NewRecorder()
			if err := h.ServeHTTP(w, r, next); err != nil || w.Code != http.StatusFound {
				b.Fatalf("got %d %v, want 302", w.Code, err)
			}
		}
	})
}

// enrol turns 2FA on for user directly in the store and returns the TOTP
// secret and the backup codes.
func enrol(tb testing.TB, h *Handler, user string) ([]byte, []string) {
	tb.Helper()
	secret, err := otp.NewSecret()
	if err != nil {
		tb.Fatal(err)
	}
	sealed, err := gate.SealTOTP(h.sealer, user, secret)
	if err != nil {
		tb.Fatal(err)
	}
	codes, hashes, err := gate.NewBackupCodes(h.codes, user)
	if err != nil {
		tb.Fatal(err)
	}
	t := store.TOTP{SealedSecret: sealed, Algorithm: "SHA1", Digits: 6, Period: 30, EnabledAt: h.now()}
	if err := h.db.EnableTOTP(context.Background(), user, t, hashes); err != nil {
		tb.Fatal(err)
	}
	return secret, codes
}

// codeAt is the TOTP code of secret at t.
func codeAt(tb testing.TB, secret []byte, t time.Time) string {
	tb.Helper()
	code, err := totp.GenerateCodeCustom(otp.EncodeSecret(secret), t, totp.ValidateOpts{Period: 30, Digits: pqotp.DigitsSix, Algorithm: pqotp.AlgorithmSHA1})
	if err != nil {
		tb.Fatal(err)
	}
	return code
}

// demoArgon2idHash is the demo's hash of testPassword from
// `caddy hash-password --algorithm argon2id` with its default settings
// (m=47104 KiB, t=1, p=1).
const demoArgon2idHash = "$argon2id$v=19$m=47104,t=1,p=1$wqHe2YOcSpqRJUOx1Gzy8g$ggVYDsJ8FiCQdlI88xzuU3UxdOwa9qpjLx0zJMNLUJI"

// BenchmarkLogin is a whole login through the pages: the password (with
// the hash settings `caddy hash-password` uses by default) then a TOTP
// code, each with its new session. The password hash is nearly all of it,
// by design.
func BenchmarkLogin(b *testing.B) {
	// The zero BcryptHash hashes at Caddy's default cost (14).
	bc, err := caddyauth.BcryptHash{}.Hash([]byte(testPassword))
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct{ name, hash string }{
		{"bcrypt-default", string(bc)},
		{"argon2id-default", demoArgon2idHash},
		{"bcrypt-min-cost", testHash},
	} {
		b.Run(tc.name, func(b *testing.B) {
			h := &Handler{Users: []User{{Username: "alice", Password: tc.hash}}}
			provisionBench(b, h)
			secret, _ := enrol(b, h, "alice")
			b.ReportAllocs()
			for b.Loop() {
				nextStep()
				w, err, _ := serve(h, form("/.auth/login", url.Values{"username": {"alice"}, "password": {testPassword}}))
				if err != nil || w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/.auth/code" {
					b.Fatalf("password: got %d %v %q, want 303 to the code page", w.Code, err, w.Header().Get("Location"))
				}
				r := form("/.auth/code", url.Values{"code": {codeAt(b, secret, testNow())}})
				r.AddCookie(w.Result().Cookies()[0])
				w, err, _ = serve(h, r)
				if err != nil || w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/" {
					b.Fatalf("code: got %d %v %q, want 303 to /", w.Code, err, w.Header().Get("Location"))
				}
			}
		})
	}
}
