package caddymodule

// BenchmarkScale measures the gate's store work with a store of many
// enrolled users, made through the store API (not through HTTP) the first
// time and reused afterwards. bench/scale.sh runs it at 100 and at
// 1,000,000 users:
//
//	go test -run '^$' -bench Scale -benchmem ./caddymodule/ \
//		-args -scale.users 1000000 -scale.dir /tmp/tf-scale-1000000

import (
	"context"
	crand "crypto/rand"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/backupcodes"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/gate"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/otp"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/secrets"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store"
)

var (
	scaleDir   = flag.String("scale.dir", "", "BenchmarkScale: store folder, filled on first use (default: a temporary one)")
	scaleUsers = flag.Int("scale.users", 100, "BenchmarkScale: enrolled users in the store")
)

// scaleKey is the encryption key of the benchmark stores (bench/load.sh
// starts Caddy on them with it). A benchmark key, not a secret.
const scaleKey = "YmVuY2htYXJrIGtleSwgbm90IGEgc2VjcmV0ISEhISE="

// scaleMeta records in a benchmark store how many users it was filled with.
const scaleMeta = "bench-users"

func scaleUser(i int) string { return fmt.Sprintf("user%07d", i) }

// scaleSessionKey is the store key of the i-th background session.
func scaleSessionKey(i int) []byte {
	sum := sha256.Sum256([]byte("bench-session-" + strconv.Itoa(i)))
	return sum[:]
}

// fillScaleStore makes sure the store in dir holds n enrolled users (each
// with a sealed TOTP secret and 10 backup-code hashes, as enabling on the
// Security page leaves them) and n/10 live sessions. It fills an empty
// store and reuses one filled before with the same n.
func fillScaleStore(b *testing.B, dir string, n int) {
	b.Helper()
	ctx := context.Background()
	// Unsynced: a crash while filling just means filling again.
	db, err := store.OpenBadger(dir, store.Options{NoSync: true, GCInterval: -1, SessionCache: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		if err := db.Close(); err != nil {
			b.Fatal(err)
		}
	}()
	have, err := db.Meta(ctx, scaleMeta)
	switch {
	case err == nil && string(have) == strconv.Itoa(n):
		return
	case err == nil:
		b.Fatalf("%s holds %s users, not %d: remove it or use another -scale.dir", dir, have, n)
	case !errors.Is(err, store.ErrNotFound):
		b.Fatal(err)
	}
	if _, err := db.Meta(ctx, store.MetaKeyCheck); err == nil {
		b.Fatalf("%s holds a store that was not filled completely: remove it", dir)
	}
	key, err := secrets.ParseKey(scaleKey)
	if err != nil {
		b.Fatal(err)
	}
	g := &Handler{codes: backupcodes.NewHasher(key.Derive("backup-codes"))}
	if g.sealer, err = key.Sealer(); err != nil {
		b.Fatal(err)
	}
	if err := db.PutMeta(ctx, store.MetaKeyCheck, g.sealer.Check()); err != nil {
		b.Fatal(err)
	}

	start := time.Now()
	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	now := time.Now()
	for range 2 * runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || failed.Load() != nil {
					return
				}
				if err := fillOne(ctx, db, g, i, now); err != nil {
					failed.Store(err)
					return
				}
				if i > 0 && i%100_000 == 0 {
					b.Logf("%d users in %s", i, time.Since(start).Round(time.Second))
				}
			}
		})
	}
	wg.Wait()
	if err, ok := failed.Load().(error); ok {
		b.Fatal(err)
	}
	// Compacted as a store grown over time would be, rather than with a
	// whole store's compaction ahead of the next start.
	if err := db.Compact(); err != nil {
		b.Fatal(err)
	}
	if err := db.PutMeta(ctx, scaleMeta, []byte(strconv.Itoa(n))); err != nil {
		b.Fatal(err)
	}
	b.Logf("filled %s with %d users and %d sessions in %s", dir, n, n/10, time.Since(start).Round(time.Millisecond))
	if err := os.WriteFile(dir+".users", []byte(strconv.Itoa(n)), 0o600); err != nil {
		b.Fatal(err)
	}
}

// fillOne enrols user i, and gives every tenth user a session.
func fillOne(ctx context.Context, db store.Store, g *Handler, i int, now time.Time) error {
	name := scaleUser(i)
	secret, err := otp.NewSecret()
	if err != nil {
		return err
	}
	sealed, err := gate.SealTOTP(g.sealer, name, secret)
	if err != nil {
		return err
	}
	_, hashes, err := gate.NewBackupCodes(g.codes, name)
	if err != nil {
		return err
	}
	t := store.TOTP{SealedSecret: sealed, Algorithm: "SHA1", Digits: 6, Period: 30, LastStep: otp.Step(now, 30), EnabledAt: now}
	if err := db.EnableTOTP(ctx, name, t, hashes); err != nil {
		return err
	}
	if i%10 != 0 {
		return nil
	}
	return db.PutSession(ctx, store.Session{
		Key: scaleSessionKey(i / 10), User: name, Stage: store.StageFull,
		Created: now, Seen: now, Expires: now.Add(DefaultSessionLifetime),
	})
}

func BenchmarkScale(b *testing.B) {
	n := *scaleUsers
	dir := *scaleDir
	if dir == "" {
		dir = b.TempDir() + "/store"
	}
	fillScaleStore(b, dir, n)
	ctx := context.Background()

	// The store alone, as Caddy opens it (synced writes), without the
	// session cache so that a read goes to disk structures every time.
	b.Run(fmt.Sprintf("users=%d/store-open", n), func(b *testing.B) {
		for b.Loop() {
			db, err := store.OpenBadger(dir, store.Options{GCInterval: -1})
			if err != nil {
				b.Fatal(err)
			}
			if err := db.Close(); err != nil {
				b.Fatal(err)
			}
		}
	})
	db, err := store.OpenBadger(dir, store.Options{GCInterval: -1, SessionCache: -1})
	if err != nil {
		b.Fatal(err)
	}
	sessions := max(1, n/10)
	b.Run(fmt.Sprintf("users=%d/session-read-uncached", n), func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			s, err := db.Session(ctx, scaleSessionKey(rand.IntN(sessions)))
			if err != nil && !errors.Is(err, store.ErrNotFound) { // expired after 12h
				b.Fatal(err)
			}
			_ = s
		}
	})
	b.Run(fmt.Sprintf("users=%d/account-read", n), func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			a, err := db.Account(ctx, scaleUser(rand.IntN(n)))
			if err != nil || !a.Enabled() {
				b.Fatalf("got %v %v, want an enrolled account", a.Enabled(), err)
			}
		}
	})
	// What a login with a TOTP code asks of the store, for a random user:
	// read the account, record the code's step, start the new session and
	// end the one from the password step. Synced, as in production.
	b.Run(fmt.Sprintf("users=%d/login-store-work", n), func(b *testing.B) {
		b.ReportAllocs()
		old := make([]byte, 32)
		for b.Loop() {
			user := scaleUser(rand.IntN(n))
			a, err := db.Account(ctx, user)
			if err != nil || !a.Enabled() {
				b.Fatalf("got %v %v, want an enrolled account", a.Enabled(), err)
			}
			if err := db.UseTOTPStep(ctx, user, time.Now().UnixNano()); err != nil {
				b.Fatal(err)
			}
			key := make([]byte, 32)
			_, _ = crand.Read(key)
			now := time.Now()
			s := store.Session{Key: key, User: user, Stage: store.StageFull, Created: now, Seen: now, Expires: now.Add(time.Hour)}
			if err := db.PutSession(ctx, s); err != nil {
				b.Fatal(err)
			}
			if err := db.DeleteSession(ctx, old); err != nil {
				b.Fatal(err)
			}
			old = key
		}
		if err := db.DeleteSession(ctx, old); err != nil {
			b.Fatal(err)
		}
	})
	if err := db.Close(); err != nil {
		b.Fatal(err)
	}

	// The gate on that store, as Caddy runs it.
	h := &Handler{StorageDir: dir, EncryptionKey: scaleKey}
	provisionBench(b, h)
	b.Run(fmt.Sprintf("users=%d/proxied", n), func(b *testing.B) {
		c := loginCookie(b, h, "alice", testPassword)
		r := httptest.NewRequest(http.MethodGet, "/app/page?tab=1", nil)
		browserHeaders(r)
		w := httptest.NewRecorder()
		r = caddyhttp.PrepareRequest(r, caddy.NewReplacer(), w, nil)
		cookies := []string{c.Name + "=" + c.Value}
		next := nextHandler{header: "Remote-User", want: "alice", tb: b}
		b.ReportAllocs()
		for b.Loop() {
			r.Header["Cookie"] = cookies
			if err := h.ServeHTTP(w, r, next); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run(fmt.Sprintf("users=%d/login", n), func(b *testing.B) {
		// A fresh account each run: a reused store keeps old enrolments.
		_ = h.Cleanup()
		name := "bench" + strconv.FormatInt(time.Now().UnixNano(), 36)
		h2 := &Handler{StorageDir: dir, EncryptionKey: scaleKey, Users: []User{{Username: name, Password: testHash}}}
		provisionBench(b, h2)
		secret, _ := enrol(b, h2, name)
		b.ReportAllocs()
		for b.Loop() {
			nextStep()
			w, err, _ := serve(h2, form("/.auth/login", url.Values{"username": {name}, "password": {testPassword}}))
			if err != nil || w.Code != http.StatusSeeOther {
				b.Fatalf("password: got %d %v, want 303", w.Code, err)
			}
			r := form("/.auth/code", url.Values{"code": {codeAt(b, secret, testNow())}})
			r.AddCookie(w.Result().Cookies()[0])
			if w, err, _ = serve(h2, r); err != nil || w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/" {
				b.Fatalf("code: got %d %v, want 303 to /", w.Code, err)
			}
		}
	})
}
