package store

import (
	"context"
	"sync"
	"time"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/ratelimit"
)

// Guess names what one attempt at a factor is counted against: the account
// (the user ID within the realm, so every spelling of a name shares one
// count) and the client address, each per factor and per realm.
type Guess struct {
	Realm   string
	Factor  string // one of Factors
	Account string
	Client  string
}

// The factors guesses are counted for, each separately.
const (
	FactorPassword = "password"
	FactorTOTP     = "totp"
	FactorBackup   = "backup"
	// FactorWebAuthn: a security key's assertion (credentials.go).
	FactorWebAuthn = "webauthn"
)

// Factors lists every separately counted factor.
var Factors = []string{FactorPassword, FactorTOTP, FactorBackup, FactorWebAuthn}

// Outcome is what came of a reserved attempt.
type Outcome uint8

const (
	// Failed: the attempt was checked and wrong; it stays counted.
	Failed Outcome = iota
	// Succeeded: the attempt was right; the account's count of the factor
	// is cleared, and the client's reservation taken back.
	Succeeded
	// Unchecked: the attempt was never checked (the client went away, the
	// hashing budget or the store refused); its reservation is taken back.
	Unchecked
)

// Reservation is an attempt counted before it was checked; Settle it.
type Reservation struct {
	account, client ratelimit.Reservation
	accountKey      string
	// shared is PostgresAttempts' reservation.
	shared *sharedReservation
}

// Attempts throttles guessing. An attempt is reserved (counted as a
// failure) before the password or code is checked, atomically with the
// check of the wait, and settled after; so N concurrent guesses are limited
// exactly like N sequential ones. A refused attempt is not counted.
//
// It sits behind this interface, beside Store, so that a store shared by
// several instances can keep the counts where all of them see them.
type Attempts interface {
	// Reserve counts g as a failure of the account and of the client, or,
	// when either must still wait, returns that wait and counts nothing.
	Reserve(ctx context.Context, g Guess) (Reservation, time.Duration, error)
	// Settle records what came of a reserved attempt.
	Settle(ctx context.Context, res Reservation, o Outcome) error
	// AccountState returns the account's consecutive failures of the
	// factor and how long it must still wait.
	AccountState(ctx context.Context, realm, factor, account string) (int, time.Duration, error)
	// ClearAccount forgets the account's failures of the factors and
	// returns how many there were. Client addresses keep theirs.
	ClearAccount(ctx context.Context, realm, account string, factors []string) (int, error)
}

// Throttle policy: AccountHardLimit is the most consecutive failures of one
// factor an account may have (NIST SP 800-63B §5.2.2 allows at most 100)
// before every attempt waits AccountLockout; maxTracked is how many keys
// are tracked in memory.
const (
	AccountHardLimit = 100
	AccountLockout   = 24 * time.Hour
	maxTracked       = 200_000
)

// MemoryAttempts keeps the counts in this process's memory: right for the
// embedded store, which one process holds. Counts survive config reloads
// (the store outlives them) but not a restart.
type MemoryAttempts struct {
	// mu makes the reservation of the account and of the client one step,
	// so that one refused by the client's wait leaves no trace on the
	// account's count that a concurrent attempt could see.
	mu       sync.Mutex
	accounts *ratelimit.Limiter
	clients  *ratelimit.Limiter
}

var _ Attempts = (*MemoryAttempts)(nil)

// NewMemoryAttempts returns counts under the policy: free failures of a
// factor cost nothing (client addresses get four times as many), then each
// further one doubles the wait from a second up to maxDelay.
func NewMemoryAttempts(free int, maxDelay time.Duration, now func() time.Time) *MemoryAttempts {
	a := &MemoryAttempts{
		accounts: ratelimit.New(ratelimit.Policy{}, maxTracked),
		clients:  ratelimit.New(ratelimit.Policy{}, maxTracked),
	}
	a.accounts.SetClock(now)
	a.clients.SetClock(now)
	a.Configure(free, maxDelay)
	return a
}

// Configure sets the policy, keeping the counts: a reload with new
// settings does not wipe an attacker's record.
func (a *MemoryAttempts) Configure(free int, maxDelay time.Duration) {
	a.accounts.SetPolicy(ratelimit.Policy{
		Free: free, Base: time.Second, Max: maxDelay,
		HardLimit: AccountHardLimit, Lockout: AccountLockout, Forget: AccountLockout,
	})
	a.clients.SetPolicy(ratelimit.Policy{
		Free: 4 * free, Base: time.Second, Max: maxDelay, Forget: time.Hour,
	})
}

func attemptKey(realm, factor, id string) string {
	if realm == "" {
		realm = DefaultRealm
	}
	return realm + "\x00" + factor + "\x00" + id
}

// Reserve implements Attempts.
func (a *MemoryAttempts) Reserve(ctx context.Context, g Guess) (Reservation, time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return Reservation{}, 0, err
	}
	ak := attemptKey(g.Realm, g.Factor, g.Account)
	ck := attemptKey(g.Realm, g.Factor, ratelimit.ClientKey(g.Client))
	a.mu.Lock()
	defer a.mu.Unlock()
	ra, wait := a.accounts.Reserve(ak)
	if wait > 0 {
		return Reservation{}, wait, nil
	}
	rc, wait := a.clients.Reserve(ck)
	if wait > 0 {
		a.accounts.Release(ra)
		return Reservation{}, wait, nil
	}
	return Reservation{account: ra, client: rc, accountKey: ak}, 0, nil
}

// Settle implements Attempts.
func (a *MemoryAttempts) Settle(_ context.Context, res Reservation, o Outcome) error {
	if o == Failed {
		return nil // the reservation stays counted
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if o == Succeeded {
		a.accounts.Reset(res.accountKey)
	} else {
		a.accounts.Release(res.account)
	}
	a.clients.Release(res.client)
	return nil
}

// AccountState implements Attempts.
func (a *MemoryAttempts) AccountState(_ context.Context, realm, factor, account string) (int, time.Duration, error) {
	k := attemptKey(realm, factor, account)
	return a.accounts.Failures(k), a.accounts.Wait(k), nil
}

// ClearAccount implements Attempts.
func (a *MemoryAttempts) ClearAccount(_ context.Context, realm, account string, factors []string) (int, error) {
	n := 0
	for _, f := range factors {
		k := attemptKey(realm, f, account)
		n += a.accounts.Failures(k)
		a.accounts.Reset(k)
	}
	return n, nil
}
