package caddymodule

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store"
)

// countingStore counts the store calls a request makes.
type countingStore struct {
	store.Store
	reads, writes atomic.Int64
}

func (c *countingStore) Account(ctx context.Context, u string) (store.Account, error) {
	c.reads.Add(1)
	return c.Store.Account(ctx, u)
}

func (c *countingStore) Session(ctx context.Context, k []byte) (store.Session, error) {
	c.reads.Add(1)
	return c.Store.Session(ctx, k)
}

func (c *countingStore) SessionAdmission(ctx context.Context, k []byte, now time.Time) (store.Admission, error) {
	c.reads.Add(1)
	return c.Store.SessionAdmission(ctx, k, now)
}

func (c *countingStore) User(ctx context.Context, n string) (store.User, error) {
	c.reads.Add(1)
	return c.Store.User(ctx, n)
}

func (c *countingStore) Users(ctx context.Context) ([]store.User, error) {
	c.reads.Add(1)
	return c.Store.Users(ctx)
}

func (c *countingStore) UserSessions(ctx context.Context, u string) ([]store.Session, error) {
	c.reads.Add(1)
	return c.Store.UserSessions(ctx, u)
}

func (c *countingStore) Meta(ctx context.Context, n string) ([]byte, error) {
	c.reads.Add(1)
	return c.Store.Meta(ctx, n)
}

func (c *countingStore) CountEnrolled(ctx context.Context) (int, error) {
	c.reads.Add(1)
	return c.Store.CountEnrolled(ctx)
}

func (c *countingStore) PutSession(ctx context.Context, s store.Session) error {
	c.writes.Add(1)
	return c.Store.PutSession(ctx, s)
}

func (c *countingStore) TouchSession(ctx context.Context, key []byte, seen, expires time.Time) error {
	c.writes.Add(1)
	return c.Store.TouchSession(ctx, key, seen, expires)
}

func (c *countingStore) UpdateSession(ctx context.Context, s store.Session) error {
	c.writes.Add(1)
	return c.Store.UpdateSession(ctx, s)
}

func (c *countingStore) DeleteSession(ctx context.Context, k []byte) error {
	c.writes.Add(1)
	return c.Store.DeleteSession(ctx, k)
}

func (c *countingStore) RehashPassword(ctx context.Context, n, o, h string) (bool, error) {
	c.writes.Add(1)
	return c.Store.RehashPassword(ctx, n, o, h)
}

// TestProxiedRequestReadsOnce: a request of a logged-in user, configured
// or kept in the store, costs one store read (the session) and no write,
// but for the coarse last-seen refresh; the store user's name comes from
// the session record.
func TestProxiedRequestReadsOnce(t *testing.T) {
	h := &Handler{Argon2idMemory: 1024}
	provisionHandler(t, h)
	at := testNow()
	if err := h.db.AddUser(context.Background(), store.User{Name: "carol", Display: "Carol", PasswordHash: testHash, Created: at, PasswordChanged: at}); err != nil {
		t.Fatal(err)
	}
	cs := &countingStore{}
	replaceStore(h, func(s store.Store) store.Store { cs.Store = s; return cs })
	for _, tc := range []struct{ login, want string }{{"alice", "alice"}, {"CAROL", "Carol"}} {
		w, err, _ := serve(h, form("/.auth/login", url.Values{"username": {tc.login}, "password": {testPassword}}))
		if err != nil || w.Code != http.StatusSeeOther {
			t.Fatalf("login %s: got %d %v", tc.login, w.Code, err)
		}
		cookie := w.Result().Cookies()[0]
		var got string
		request := func() {
			t.Helper()
			r := httptest.NewRequest(http.MethodGet, "/app", nil)
			r.AddCookie(cookie)
			cs.reads.Store(0)
			cs.writes.Store(0)
			rec := httptest.NewRecorder()
			ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer())
			err := h.ServeHTTP(rec, r.WithContext(ctx), caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
				got = r.Header.Get("Remote-User")
				return nil
			}))
			if err != nil {
				t.Fatalf("proxied request of %s: %v", tc.login, err)
			}
		}
		request()
		if got != tc.want {
			t.Errorf("Remote-User of %s: got %q, want %q", tc.login, got, tc.want)
		}
		if r, w := cs.reads.Load(), cs.writes.Load(); r != 1 || w != 0 {
			t.Errorf("proxied request of %s: %d store reads and %d writes, want 1 and 0", tc.login, r, w)
		}
		advance(2 * time.Minute)
		request()
		if r, w := cs.reads.Load(), cs.writes.Load(); r != 1 || w != 1 {
			t.Errorf("proxied request of %s after two minutes: %d store reads and %d writes, want 1 and 1 (the last-seen refresh)", tc.login, r, w)
		}
	}
}
