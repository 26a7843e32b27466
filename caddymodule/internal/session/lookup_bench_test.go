package session

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store"
)

// BenchmarkLookupMany reads the sessions of many users in a random order,
// as a busy site does: 12,288 live sessions (three quarters of the store's
// default cache, so that no shard of it overflows), each of its own user,
// all served from the cache. Unlike BenchmarkLookup, which reads one
// session whose record stays in the CPU's caches, most reads here find the
// cache entry, the record and the user's generation in memory, not in the
// CPU's caches: what a proxied request meets under load, when Caddy's own
// work has evicted them. The request is one, with the cookie changed each
// time, as a request just parsed is in the CPU's caches.
func BenchmarkLookupMany(b *testing.B) {
	const n = 12288
	db, err := store.OpenBadger(b.TempDir(), store.Options{NoSync: true, GCInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = db.Close() })
	s := New(db, Config{Cookie: testCookie, Idle: 30 * time.Minute, Lifetime: 12 * time.Hour, Pending: 5 * time.Minute, Now: time.Now})
	cookies := make([]string, n)
	for i := range cookies {
		w := httptest.NewRecorder()
		rec := &store.Session{User: fmt.Sprintf("user-%05d", i), Stage: store.StageFull, Origin: store.OriginConfig}
		if err := s.Start(w, httptest.NewRequest(http.MethodPost, "/.auth/login", nil), rec); err != nil {
			b.Fatal(err)
		}
		c := w.Result().Cookies()[0]
		cookies[i] = c.Name + "=" + c.Value
	}
	rand.New(rand.NewPCG(1, 2)).Shuffle(n, func(i, j int) { cookies[i], cookies[j] = cookies[j], cookies[i] })
	r := httptest.NewRequest(http.MethodGet, "/app", nil)
	r.Header.Set("Cookie", "")
	line := r.Header["Cookie"]
	for _, c := range cookies { // into the cache
		line[0] = c
		if _, ok, err := s.Lookup(r, time.Now()); err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		line[0] = cookies[i%n]
		if _, ok, err := s.Lookup(r, time.Now()); err != nil || !ok {
			b.Fatal(ok, err)
		}
		i += 7919 // a prime: every session, in an order the prefetcher cannot follow
	}
}
