package caddymodule

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store"
)

// brokenStore wraps a real store and fails every call while broken is set,
// as a store on a failed disk would.
type brokenStore struct {
	store.Store
	broken atomic.Bool
}

var errDisk = errors.New("input/output error")

func (b *brokenStore) fail() error {
	if b.broken.Load() {
		return errDisk
	}
	return nil
}

func (b *brokenStore) Account(ctx context.Context, u string) (store.Account, error) {
	if err := b.fail(); err != nil {
		return store.Account{}, err
	}
	return b.Store.Account(ctx, u)
}

func (b *brokenStore) Session(ctx context.Context, k []byte) (store.Session, error) {
	if err := b.fail(); err != nil {
		return store.Session{}, err
	}
	return b.Store.Session(ctx, k)
}

func (b *brokenStore) SessionAdmission(ctx context.Context, k []byte, now time.Time) (store.Admission, error) {
	if err := b.fail(); err != nil {
		return store.Admission{}, err
	}
	return b.Store.SessionAdmission(ctx, k, now)
}

func (b *brokenStore) PutSession(ctx context.Context, s store.Session) error {
	if err := b.fail(); err != nil {
		return err
	}
	return b.Store.PutSession(ctx, s)
}

func (b *brokenStore) TouchSession(ctx context.Context, key []byte, seen, expires time.Time) error {
	if err := b.fail(); err != nil {
		return err
	}
	return b.Store.TouchSession(ctx, key, seen, expires)
}

func (b *brokenStore) UpdateSession(ctx context.Context, s store.Session) error {
	if err := b.fail(); err != nil {
		return err
	}
	return b.Store.UpdateSession(ctx, s)
}

func (b *brokenStore) DeleteSession(ctx context.Context, k []byte) error {
	if err := b.fail(); err != nil {
		return err
	}
	return b.Store.DeleteSession(ctx, k)
}

func (b *brokenStore) UseTOTPStep(ctx context.Context, u string, s int64) error {
	if err := b.fail(); err != nil {
		return err
	}
	return b.Store.UseTOTPStep(ctx, u, s)
}

// provisionHandler provisions a handler outside of a server, on a
// temporary store, for tests that call ServeHTTP directly.
func provisionHandler(t testing.TB, h *Handler) {
	t.Helper()
	h.Users = []User{{Username: "alice", Password: testHash}}
	h.StorageDir = t.TempDir() + "/store"
	swappableStore(h)
	h.now = testNow
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := h.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Cleanup() })
}

// serve runs one request through the handler; next records whether the
// request got through.
func serve(h *Handler, r *http.Request) (*httptest.ResponseRecorder, error, bool) {
	w := httptest.NewRecorder()
	reached := false
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		reached = true
		return nil
	})
	repl := caddy.NewReplacer()
	r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
	err := h.ServeHTTP(w, r, next)
	return w, err, reached
}

func form(path string, v url.Values) *http.Request {
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(v.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return r
}

func TestStoreFailureFailsClosed(t *testing.T) {
	h := &Handler{}
	provisionHandler(t, h)
	bs := &brokenStore{}
	replaceStore(h, func(s store.Store) store.Store { bs.Store = s; return bs })

	w, err, _ := serve(h, form("/.auth/login", url.Values{"username": {"alice"}, "password": {testPassword}}))
	if err != nil || w.Code != http.StatusSeeOther {
		t.Fatalf("login: got %d %v, want 303", w.Code, err)
	}
	cookie := w.Result().Cookies()[0]
	withCookie := func(r *http.Request) *http.Request { r.AddCookie(cookie); return r }

	bs.broken.Store(true)
	// The proxied path: 503 through Caddy's error handling, nothing through.
	_, err, reached := serve(h, withCookie(httptest.NewRequest(http.MethodGet, "/app", nil)))
	var he caddyhttp.HandlerError
	if !errors.As(err, &he) || he.StatusCode != http.StatusServiceUnavailable || reached {
		t.Errorf("proxied request with a broken store: got %v (reached upstream: %v), want a 503 error", err, reached)
	}
	for _, tc := range []struct {
		name string
		req  *http.Request
	}{
		{"login", form("/.auth/login", url.Values{"username": {"alice"}, "password": {testPassword}})},
		{"security", withCookie(httptest.NewRequest(http.MethodGet, "/.auth/security", nil))},
		{"me", withCookie(httptest.NewRequest(http.MethodGet, "/.auth/me", nil))},
		{"enable", withCookie(httptest.NewRequest(http.MethodGet, "/.auth/security/enable", nil))},
		{"code", withCookie(form("/.auth/code", url.Values{"code": {"123456"}}))},
	} {
		w, err, reached := serve(h, tc.req)
		if err != nil || w.Code != http.StatusServiceUnavailable || reached {
			t.Errorf("%s with a broken store: got %d %v, want a 503 page", tc.name, w.Code, err)
		}
		if len(w.Result().Cookies()) != 0 {
			t.Errorf("%s with a broken store set a cookie", tc.name)
		}
	}
	bs.broken.Store(false)
	if _, err, reached := serve(h, withCookie(httptest.NewRequest(http.MethodGet, "/app", nil))); err != nil || !reached {
		t.Errorf("after the store recovered: got %v, reached %v; want through", err, reached)
	}
}

// swappable is the store under a handler provisioned by a test, which the
// test may wrap later (replaceStore).
type swappable struct{ store.Store }

// swaps holds the swappable store of each handler a test provisioned.
var swaps sync.Map // *Handler → *swappable

// swappableStore has h, about to be provisioned, use a swappable store.
func swappableStore(h *Handler) {
	sw := &swappable{}
	swaps.Store(h, sw)
	h.wrapStore = func(s store.Store) store.Store { sw.Store = s; return sw }
}

// replaceStore puts wrap(its store) under h, a handler provisioned with
// provisionHandler or provisionBench, from the next request on.
func replaceStore(h *Handler, wrap func(store.Store) store.Store) {
	v, _ := swaps.Load(h)
	sw := v.(*swappable)
	sw.Store = wrap(sw.Store)
}
