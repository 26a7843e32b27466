package store

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store/pgtest"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct{ ns atomic.Int64 }

// attemptKinds are the implementations of Attempts every test runs on.
var attemptKinds = []string{"memory", "postgres"}

// newAttempts returns attempt counts of the kind, on a new database for
// PostgreSQL.
func newAttempts(t *testing.T, kind string, free int, maxDelay time.Duration, now func() time.Time) Attempts {
	if kind == "memory" {
		return NewMemoryAttempts(free, maxDelay, now)
	}
	p, err := OpenPostgres(context.Background(), pgtest.URL(t), Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return NewPostgresAttempts(p, free, maxDelay)
}

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func TestAttemptsDelaysGrowAndCap(t *testing.T) {
	for _, kind := range attemptKinds {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			clk := newFakeClock()
			a := newAttempts(t, kind, 2, 10*time.Second, clk.now)
			g := Guess{Realm: DefaultRealm, Factor: "password", Account: "alice", Client: "192.0.2.1"}
			var waits []time.Duration
			for range 8 {
				res, wait, err := a.Reserve(ctx, g)
				if err != nil || wait != 0 {
					t.Fatalf("reserve: wait %v, err %v", wait, err)
				}
				if err := a.Settle(ctx, res, Failed); err != nil {
					t.Fatal(err)
				}
				_, w, _ := a.AccountState(ctx, DefaultRealm, "password", "alice")
				waits = append(waits, w)
				clk.advance(w)
				g.Client = "192.0.2." + strconv.Itoa(len(waits)+1) // keep the client's own budget out of it
			}
			want := []time.Duration{0, 0, 1 * time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second}
			for i := range want {
				if waits[i] != want[i] {
					t.Fatalf("waits after each failure: got %v, want %v", waits, want)
				}
			}
			// At the hard limit an account waits a day, however many addresses try.
			for i := len(want); i < AccountHardLimit; i++ {
				g.Client = "198.51.100." + strconv.Itoa(i%250)
				res, wait, _ := a.Reserve(ctx, g)
				if wait > 0 {
					clk.advance(wait)
					res, _, _ = a.Reserve(ctx, g)
				}
				_ = a.Settle(ctx, res, Failed)
			}
			if _, w, _ := a.AccountState(ctx, DefaultRealm, "password", "alice"); w < 23*time.Hour {
				t.Errorf("after %d failures: got a wait of %v, want about 24h", AccountHardLimit, w)
			}
		})
	}
}

// TestAttemptsConcurrentBurst: N concurrent reservations are limited
// exactly like N sequential ones, refused ones count nothing, and taking
// back an unchecked one restores the count.
func TestAttemptsConcurrentBurst(t *testing.T) {
	for _, kind := range attemptKinds {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			for _, free := range []int{0, 1, 5} {
				clk := newFakeClock()
				a := newAttempts(t, kind, free, time.Hour, clk.now)
				var granted atomic.Int64
				var wg sync.WaitGroup
				for i := range 300 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						g := Guess{Factor: "totp", Account: "bob", Client: "203.0.113." + strconv.Itoa(i%200)}
						res, wait, err := a.Reserve(ctx, g)
						if err != nil {
							t.Error(err)
							return
						}
						if wait == 0 {
							granted.Add(1)
							_ = a.Settle(ctx, res, Failed)
						}
					}()
				}
				wg.Wait()
				// Sequentially, free failures cost nothing and the one after them
				// is still let through; then the account waits.
				if got, want := granted.Load(), int64(free+1); got != want {
					t.Errorf("free %d: %d of 300 concurrent guesses were let through, want %d", free, got, want)
				}
				n, wait, _ := a.AccountState(ctx, DefaultRealm, "totp", "bob")
				if n != free+1 || wait != time.Second {
					t.Errorf("free %d: after the burst %d failures and a wait of %v, want %d and 1s", free, n, wait, free+1)
				}
			}

			clk := newFakeClock()
			a := newAttempts(t, kind, 0, time.Hour, clk.now)
			g := Guess{Factor: "password", Account: "carol", Client: "192.0.2.7"}
			res, _, _ := a.Reserve(ctx, g)
			if _, wait, _ := a.Reserve(ctx, g); wait == 0 {
				t.Fatal("a second guess while the first is pending was let through")
			}
			_ = a.Settle(ctx, res, Unchecked)
			if n, wait, _ := a.AccountState(ctx, DefaultRealm, "password", "carol"); n != 0 || wait != 0 {
				t.Fatalf("after taking back the only reservation: %d failures, wait %v; want none", n, wait)
			}
			res, _, _ = a.Reserve(ctx, g)
			_ = a.Settle(ctx, res, Succeeded)
			if n, _, _ := a.AccountState(ctx, DefaultRealm, "password", "carol"); n != 0 {
				t.Fatalf("after a success: %d failures, want 0", n)
			}
		})
	}
}

// TestAttemptsRealmsApart: one realm's failures do not slow another's
// account of the same name.
func TestAttemptsRealmsApart(t *testing.T) {
	for _, kind := range attemptKinds {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			clk := newFakeClock()
			a := newAttempts(t, kind, 0, time.Hour, clk.now)
			res, _, _ := a.Reserve(ctx, Guess{Realm: "a", Factor: "password", Account: "admin", Client: "192.0.2.1"})
			_ = a.Settle(ctx, res, Failed)
			if _, wait, _ := a.Reserve(ctx, Guess{Realm: "a", Factor: "password", Account: "admin", Client: "192.0.2.2"}); wait == 0 {
				t.Fatal("realm a: no wait after a failure with free 0")
			}
			if _, wait, _ := a.Reserve(ctx, Guess{Realm: "b", Factor: "password", Account: "admin", Client: "192.0.2.3"}); wait != 0 {
				t.Fatalf("realm b waits %v for realm a's failure", wait)
			}
		})
	}
}

// TestAttemptsFirstGuessesAtOnce: the first guesses at an account nobody
// has guessed at, all at once, are limited like any others: with no free
// failures, one of them goes through. (On PostgreSQL the account has no
// row to lock yet; a row is made first so that there is one.)
func TestAttemptsFirstGuessesAtOnce(t *testing.T) {
	ctx := context.Background()
	for _, kind := range attemptKinds {
		t.Run(kind, func(t *testing.T) {
			clk := newFakeClock()
			a := newAttempts(t, kind, 0, time.Hour, clk.now)
			for round := range 20 {
				var granted atomic.Int64
				var wg sync.WaitGroup
				start := make(chan struct{})
				for i := range 12 {
					wg.Go(func() {
						<-start
						g := Guess{Factor: "totp", Account: "new" + strconv.Itoa(round), Client: "10." + strconv.Itoa(round) + ".0." + strconv.Itoa(i)}
						res, wait, err := a.Reserve(ctx, g)
						if err != nil {
							t.Error(err)
							return
						}
						if wait == 0 {
							granted.Add(1)
							_ = a.Settle(ctx, res, Failed)
						}
					})
				}
				close(start)
				wg.Wait()
				if n := granted.Load(); n != 1 {
					t.Fatalf("round %d: %d of 12 first guesses went through, want 1", round, n)
				}
			}
		})
	}
}

// TestAttemptsReserveRacesSuccess: reservations of one account while
// others succeed (which clears the account's count, deleting its row on
// PostgreSQL) never fail: a row deleted under a waiting reservation is
// made again.
func TestAttemptsReserveRacesSuccess(t *testing.T) {
	ctx := context.Background()
	for _, kind := range attemptKinds {
		t.Run(kind, func(t *testing.T) {
			clk := newFakeClock()
			a := newAttempts(t, kind, 1000, time.Hour, clk.now)
			var wg sync.WaitGroup
			for i := range 4 {
				wg.Go(func() {
					for range 60 {
						g := Guess{Factor: "totp", Account: "erin", Client: "10.9.0." + strconv.Itoa(i)}
						res, _, err := a.Reserve(ctx, g)
						if err != nil {
							t.Error(err)
							return
						}
						if err := a.Settle(ctx, res, Succeeded); err != nil {
							t.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
		})
	}
}
