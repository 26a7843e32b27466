package gate

import (
	"context"
	"net/http"
	"testing"
	"time"

	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/backupcodes"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/otp"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/secrets"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/ui"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/users"
)

// testClock is the clock of test gates: real time moved on by advance.
type testClock struct{ offset time.Duration }

func (c *testClock) now() time.Time          { return time.Now().Add(c.offset) }
func (c *testClock) advance(d time.Duration) { c.offset += d }

// newTestGate is a gate with alice (password "password1") on a badger
// store in a temporary folder, open, with its clock.
func newTestGate(tb testing.TB) (*Gate, *testClock) {
	tb.Helper()
	clock := &testClock{}
	hash, err := bcrypt.GenerateFromPassword([]byte("password1"), bcrypt.MinCost)
	if err != nil {
		tb.Fatal(err)
	}
	dir, err := users.New([]users.User{{Username: "alice", Password: string(hash)}}, 1,
		users.Argon2id{Time: 1, Memory: 1024, Threads: 1}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	pages, err := ui.Load(ui.Config{LanguageCookie: "lang", Prefix: "/.auth", Digits: 6, Logger: zap.NewNop()})
	if err != nil {
		tb.Fatal(err)
	}
	g := New(Config{
		Prefix: "/.auth", Issuer: "Test", Product: "Test", Realm: store.DefaultRealm, Cookie: "__Host-two_factor",
		UserHeader: "Remote-User", TOTP: otp.Default, Skew: 1,
		Idle: 30 * time.Minute, Lifetime: 12 * time.Hour, CodeTimeout: 5 * time.Minute,
		Users: dir, Pages: pages, Now: clock.now, ClientIP: func(r *http.Request) string { return "192.0.2.1" },
		Logger: zap.NewNop(), Audit: zap.NewNop(),
	})
	db, err := store.OpenBadger(tb.TempDir(), store.Options{Now: clock.now})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = db.Close() })
	key, err := secrets.NewKey()
	if err != nil {
		tb.Fatal(err)
	}
	sealer, err := key.Sealer()
	if err != nil {
		tb.Fatal(err)
	}
	g.Open(State{DB: db, Attempts: store.NewMemoryAttempts(5, 15*time.Minute, clock.now), Sealer: sealer,
		Codes: backupcodes.NewHasher(key.Derive("backup-codes"))})
	return g, clock
}

// enrol turns 2FA on for user directly in the store and returns the TOTP
// secret and the backup codes.
func enrol(tb testing.TB, g *Gate, user string) ([]byte, []string) {
	tb.Helper()
	secret, err := otp.NewSecret()
	if err != nil {
		tb.Fatal(err)
	}
	sealed, err := SealTOTP(g.sealer, user, secret)
	if err != nil {
		tb.Fatal(err)
	}
	codes, hashes, err := NewBackupCodes(g.codes, user)
	if err != nil {
		tb.Fatal(err)
	}
	t := store.TOTP{SealedSecret: sealed, Algorithm: "SHA1", Digits: 6, Period: 30, EnabledAt: g.now()}
	if err := g.db.EnableTOTP(context.Background(), user, t, hashes); err != nil {
		tb.Fatal(err)
	}
	return secret, codes
}
