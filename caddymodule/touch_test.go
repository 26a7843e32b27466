package caddymodule

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store"
)

// proxied runs one logged-in request for the site through h and returns
// the handler's error and whether it reached next.
func proxied(h *Handler, c *http.Cookie) (error, bool) {
	r := httptest.NewRequest(http.MethodGet, "/app", nil)
	r.Header.Set("Accept", "application/json")
	r.AddCookie(c)
	w := httptest.NewRecorder()
	r = caddyhttp.PrepareRequest(r, caddy.NewReplacer(), w, nil)
	reached := false
	err := h.ServeHTTP(w, r, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		reached = true
		return nil
	}))
	return err, reached
}

// TestTouchUnderConcurrentRequests: when a session's last-seen time is due
// for its refresh, many requests of that session arrive at once (a page
// with its assets, a single-page app); none of them may fail.
func TestTouchUnderConcurrentRequests(t *testing.T) {
	h := &Handler{}
	provisionBench(t, h)
	c := loginCookie(t, h, "alice", testPassword)
	for range 3 {
		advance(2 * time.Minute) // past the refresh interval, within the idle timeout
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for range 64 {
			wg.Go(func() {
				if err, reached := proxied(h, c); err != nil || !reached {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		n := 0
		for err := range errs {
			if n++; n == 1 {
				t.Errorf("a concurrent request of a live session failed: %v", err)
			}
		}
		if n > 1 {
			t.Errorf("%d of 64 concurrent requests failed", n)
		}
	}
}

// holdWrites holds the first session write (the proxied path's refresh of
// the last-seen time) until released, to let a logout land between a
// request's read of its session and its refresh.
type holdWrites struct {
	store.Store
	armed   chan struct{} // closed when a write is waiting
	release chan struct{}
	once    sync.Once
}

func (s *holdWrites) hold() {
	s.once.Do(func() {
		close(s.armed)
		<-s.release
	})
}

func (s *holdWrites) PutSession(ctx context.Context, sess store.Session) error {
	s.hold()
	return s.Store.PutSession(ctx, sess)
}

func (s *holdWrites) TouchSession(ctx context.Context, key []byte, seen, expires time.Time) error {
	s.hold()
	return s.Store.TouchSession(ctx, key, seen, expires)
}

// TestLogoutRacingTouch: a request that read its session just before the
// user logged out must not bring the session back with its refresh.
func TestLogoutRacingTouch(t *testing.T) {
	h := &Handler{}
	provisionBench(t, h)
	c := loginCookie(t, h, "alice", testPassword)
	hw := &holdWrites{armed: make(chan struct{}), release: make(chan struct{})}
	replaceStore(h, func(s store.Store) store.Store { hw.Store = s; return hw })

	advance(2 * time.Minute)
	done := make(chan struct{})
	go func() {
		defer close(done)
		proxied(h, c) // its outcome does not matter; the session's does
	}()
	<-hw.armed
	r := form("/.auth/logout", url.Values{})
	r.AddCookie(c)
	if w, err, _ := serve(h, r); err != nil || w.Code != http.StatusSeeOther {
		t.Fatalf("logout: got %d %v, want 303", w.Code, err)
	}
	close(hw.release)
	<-done
	if err, reached := proxied(h, c); reached || err == nil {
		t.Errorf("the cookie worked after logout (got %v, reached %v): a racing refresh brought the session back", err, reached)
	}
	var he caddyhttp.HandlerError
	if err, _ := proxied(h, c); !errors.As(err, &he) || he.StatusCode != http.StatusUnauthorized {
		t.Errorf("after logout: got %v, want 401", err)
	}
}

// countTouches counts the refreshes of the last-seen time and holds the
// first one until released.
type countTouches struct {
	store.Store
	n       atomic.Int64
	armed   chan struct{}
	release chan struct{}
}

func (s *countTouches) TouchSession(ctx context.Context, key []byte, seen, expires time.Time) error {
	if s.n.Add(1) == 1 {
		close(s.armed)
		<-s.release
	}
	return s.Store.TouchSession(ctx, key, seen, expires)
}

// TestTouchCoalesced: while one request refreshes a session's last-seen
// time, the session's other requests go through without writing too.
func TestTouchCoalesced(t *testing.T) {
	h := &Handler{}
	provisionBench(t, h)
	c := loginCookie(t, h, "alice", testPassword)
	ct := &countTouches{armed: make(chan struct{}), release: make(chan struct{})}
	replaceStore(h, func(s store.Store) store.Store { ct.Store = s; return ct })
	advance(2 * time.Minute)
	first := make(chan error, 1)
	go func() {
		err, _ := proxied(h, c)
		first <- err
	}()
	<-ct.armed
	for i := range 10 {
		if err, reached := proxied(h, c); err != nil || !reached {
			t.Fatalf("request %d during the refresh: got %v, reached %v", i, err, reached)
		}
	}
	close(ct.release)
	if err := <-first; err != nil {
		t.Fatalf("the refreshing request: %v", err)
	}
	if got := ct.n.Load(); got != 1 {
		t.Errorf("got %d refreshes for 11 concurrent requests, want 1", got)
	}
}
