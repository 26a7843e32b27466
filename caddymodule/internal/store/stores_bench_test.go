package store

import (
	"context"
	"crypto/rand"
	"slices"
	"testing"
	"time"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store/pgtest"
)

// BenchmarkStores compares the two stores on the work of a login and of a
// code check, with each operation's latency distribution (p50-µs, p99-µs
// beside ns/op), and on the proxied path's session read (served from each
// store's cache). The badger store here syncs every commit, as in
// service; PostgreSQL is the tests' throwaway cluster (fsync off), so its
// figures are its round trips and locking, not a disk's.
//
//	go test -run '^$' -bench BenchmarkStores ./caddymodule/internal/store
func BenchmarkStores(b *testing.B) {
	kinds := []struct {
		name string
		open func(b *testing.B) Store
	}{
		{"badger", func(b *testing.B) Store {
			db, err := OpenBadger(b.TempDir(), Options{GCInterval: -1})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = db.Close() })
			return db
		}},
		{"postgres", func(b *testing.B) Store {
			p, err := OpenPostgres(context.Background(), pgtest.URL(b), Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = p.Close() })
			for !p.listening.Load() {
				time.Sleep(time.Millisecond)
			}
			return p
		}},
	}
	ctx := context.Background()
	for _, k := range kinds {
		// The login's store work: read the account, use the TOTP step,
		// write the new session, end the one of the password step.
		b.Run(k.name+"/login-store-work", func(b *testing.B) {
			s := k.open(b)
			if err := s.EnableTOTP(ctx, "alice", testTOTP(), testCodes(10)); err != nil {
				b.Fatal(err)
			}
			step := int64(1000)
			latencies(b, func() {
				key := randomKey(b)
				old := randomKey(b)
				if _, err := s.Account(ctx, "alice"); err != nil {
					b.Fatal(err)
				}
				step++
				if err := s.UseTOTPStep(ctx, "alice", step); err != nil {
					b.Fatal(err)
				}
				if err := s.PutSession(ctx, sessionFor("alice", key)); err != nil {
					b.Fatal(err)
				}
				if err := s.DeleteSession(ctx, old); err != nil {
					b.Fatal(err)
				}
			})
		})
		// A code check's store work: the TOTP step used once.
		b.Run(k.name+"/code-check", func(b *testing.B) {
			s := k.open(b)
			if err := s.EnableTOTP(ctx, "alice", testTOTP(), testCodes(10)); err != nil {
				b.Fatal(err)
			}
			step := int64(1000)
			latencies(b, func() {
				step++
				if err := s.UseTOTPStep(ctx, "alice", step); err != nil {
					b.Fatal(err)
				}
			})
		})
		// The proxied path's read of a live session, from the cache.
		b.Run(k.name+"/session-read", func(b *testing.B) {
			s := k.open(b)
			key := randomKey(b)
			if err := s.PutSession(ctx, sessionFor("alice", key)); err != nil {
				b.Fatal(err)
			}
			for range 100 { // until cached (a write's notification may drop it once)
				_, _ = s.Session(ctx, key)
				time.Sleep(time.Millisecond)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.SessionAdmission(ctx, key, time.Now()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func randomKey(b *testing.B) []byte {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		b.Fatal(err)
	}
	return k
}

func sessionFor(user string, key []byte) Session {
	now := time.Now()
	return Session{Key: key, User: user, Stage: StageFull, Created: now, Seen: now, Expires: now.Add(time.Hour), Origin: OriginConfig}
}

// latencies runs op b.N times and reports the median and the 99th
// percentile of its latency.
func latencies(b *testing.B, op func()) {
	var d []time.Duration
	for b.Loop() {
		t0 := time.Now()
		op()
		d = append(d, time.Since(t0))
	}
	slices.Sort(d)
	if len(d) == 0 {
		return
	}
	at := func(q float64) float64 { return float64(d[min(len(d)-1, int(q*float64(len(d))))]) / 1e3 }
	b.ReportMetric(at(0.50), "p50-µs")
	b.ReportMetric(at(0.99), "p99-µs")
}
