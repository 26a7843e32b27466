package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store/pgtest"
)

// openInstances opens n PostgreSQL stores on one database, as n Caddy
// instances would, each listening for notifications before it returns.
func openInstances(t *testing.T, n int) (string, []*Postgres) {
	t.Helper()
	url := pgtest.URL(t)
	var out []*Postgres
	for range n {
		p, err := OpenPostgres(context.Background(), url, Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Close() })
		waitListening(t, p)
		out = append(out, p)
	}
	return url, out
}

func waitListening(t *testing.T, p *Postgres) {
	t.Helper()
	for i := 0; !p.listening.Load(); i++ {
		if i > 500 {
			t.Fatal("the store never started listening")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// settle waits until p has applied every notification committed before
// the call: notifications arrive in the order of their commits, so it
// sends one of its own and waits for it.
func settle(t *testing.T, p *Postgres) {
	t.Helper()
	mark := fmt.Sprintf("k%016x", time.Now().UnixNano()) // a key no session has
	seen := make(chan struct{})
	var once sync.Once
	hook := func(payload string) {
		if payload == mark {
			once.Do(func() { close(seen) })
		}
	}
	p.applyHook.Store(&hook)
	defer p.applyHook.Store(nil)
	if _, err := p.pool.Exec(context.Background(), `SELECT pg_notify($1, $2)`, notifyChannel, mark); err != nil {
		t.Fatal(err)
	}
	select {
	case <-seen:
	case <-time.After(10 * time.Second):
		t.Fatal("no notification arrived")
	}
}

// readCached reads the session until the store has it cached: a read
// right after a write may not cache it, because the write's own
// notification, arriving after the read began, stops the read from
// caching what it read (as it must). The notifications of earlier writes
// are applied first, so that none drops it afterwards.
func readCached(t *testing.T, p *Postgres, key string) {
	t.Helper()
	settle(t, p)
	for i := 0; ; i++ {
		if _, err := p.Session(context.Background(), []byte(key)); err != nil {
			t.Fatal(err)
		}
		if _, ok, _ := p.sessions.get([]byte(key)); ok {
			return
		}
		if i > 200 {
			t.Fatalf("%s is not cached after %d reads", key, i)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// goneWithin polls s until the session is gone, and returns how long that
// took; it fails the test past the limit.
func goneWithin(t *testing.T, s Store, key []byte, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		_, err := s.Session(context.Background(), key)
		if errors.Is(err, ErrNotFound) {
			return time.Since(start)
		}
		if err != nil {
			t.Fatal(err)
		}
		if time.Since(start) > limit {
			t.Fatalf("the session was still accepted %v after it ended on another instance", limit)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestInstancesEndSessionsAtOnce: a session ended on one instance (a
// logout, a revocation of all of a user's sessions) is refused by the
// others, which had it cached, as soon as the notification arrives.
func TestInstancesEndSessionsAtOnce(t *testing.T) {
	ctx := context.Background()
	_, st := openInstances(t, 3)
	a, b, c := st[0], st[1], st[2]
	now := time.Now()
	for _, k := range []string{"s1", "s2", "s3"} {
		if err := a.PutSession(ctx, sessionOf("alice", k, now)); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []*Postgres{b, c} {
		for _, k := range []string{"s1", "s2", "s3"} {
			readCached(t, s, k)
		}
	}
	if err := c.DeleteSession(ctx, []byte("s1")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Session(ctx, []byte("s1")); !errors.Is(err, ErrNotFound) {
		t.Errorf("on the instance that ended it: got %v", err)
	}
	for _, s := range []*Postgres{a, b} {
		d := goneWithin(t, s, []byte("s1"), StalenessBound)
		t.Logf("logout on C: refused on another instance after %v", d)
	}
	if _, err := c.DeleteUserSessions(ctx, "alice", nil); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*Postgres{a, b} {
		for _, k := range []string{"s2", "s3"} {
			d := goneWithin(t, s, []byte(k), StalenessBound)
			t.Logf("revocation on C: %s refused on another instance after %v", k, d)
		}
	}
}

// TestInstancesCacheOnlyWhileListening: the cache answers without the
// database (a row deleted behind the store's back stays readable from
// it), but only while its notification connection lives: when that
// connection is cut, the instance reads from the database at once, and
// caches again once it listens again.
func TestInstancesCacheOnlyWhileListening(t *testing.T) {
	ctx := context.Background()
	url, st := openInstances(t, 1)
	p := st[0]
	if err := p.PutSession(ctx, sessionOf("alice", "k", time.Now())); err != nil {
		t.Fatal(err)
	}
	readCached(t, p, "k")
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `DELETE FROM tf_sessions`); err != nil { // no notification
		t.Fatal(err)
	}
	if _, err := p.Session(ctx, []byte("k")); err != nil {
		t.Fatalf("a cached session: got %v; the cache is not answering", err)
	}
	relistened := make(chan struct{}, 1)
	hook := func() {
		select {
		case relistened <- struct{}{}:
		default:
		}
	}
	p.listenHook.Store(&hook)
	// Cut the notification connection, as a network failure would.
	if _, err := conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()`); err != nil {
		t.Fatal(err)
	}
	d := goneWithin(t, p, []byte("k"), StalenessBound)
	t.Logf("notification connection cut: the cache stopped answering after %v", d)
	select {
	case <-relistened:
	case <-time.After(10 * time.Second):
		t.Fatal("the store did not listen again")
	}
	if err := p.PutSession(ctx, sessionOf("alice", "k2", time.Now())); err != nil {
		t.Fatal(err)
	}
	readCached(t, p, "k2")
}

// TestInstancesDatabaseDown: with PostgreSQL stopped, sessions and
// changes fail (closed: an error, never an answer from memory); started
// again, the same store works without reopening.
func TestInstancesDatabaseDown(t *testing.T) {
	ctx := context.Background()
	cl, err := pgtest.Start()
	if err != nil {
		pgtest.Shared(t) // skips or fails as the shared cluster would
		t.Fatal(err)
	}
	defer cl.Stop()
	p, err := OpenPostgres(ctx, cl.URL("postgres"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	waitListening(t, p)
	if err := p.EnableTOTP(ctx, "alice", testTOTP(), nil); err != nil {
		t.Fatal(err)
	}
	if err := p.PutSession(ctx, sessionOf("alice", "k", time.Now())); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Session(ctx, []byte("k")); err != nil {
		t.Fatal(err)
	}
	if err := cl.StopServer(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for {
		_, err := p.Session(ctx, []byte("k"))
		if err != nil {
			if errors.Is(err, ErrNotFound) {
				t.Fatalf("database down: got %v, want a failure of the store", err)
			}
			break
		}
		if time.Since(start) > StalenessBound+time.Second {
			t.Fatal("sessions were still served from memory with the database down")
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("database down: sessions refused after %v", time.Since(start))
	if err := p.UseTOTPStep(ctx, "alice", 500); err == nil || isSentinel(err) {
		t.Errorf("a change with the database down: got %v, want a failure", err)
	}
	if err := cl.StartServer(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := p.Session(ctx, []byte("k"))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("database back: still %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := p.UseTOTPStep(ctx, "alice", 500); err != nil {
		t.Errorf("a change with the database back: %v", err)
	}
	waitListening(t, p)
}
