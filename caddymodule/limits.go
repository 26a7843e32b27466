package caddymodule

import (
	"math"
	"strconv"
	"time"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/ratelimit"
)

// factor names a separately counted kind of guess.
type factor string

const (
	factorPassword factor = "password"
	factorTOTP     factor = "totp"
	factorBackup   factor = "backup"
)

// accountHardLimit is the most consecutive failures of one factor an
// account may have (NIST SP 800-63B §5.2.2 allows at most 100); past it,
// every attempt waits accountLockout.
const (
	accountHardLimit = 100
	accountLockout   = 24 * time.Hour
	maxTracked       = 200_000
)

// limits throttles guesses per account (canonical name, so every spelling
// shares one count) and per client address (as Caddy resolves it, behind
// trusted_proxies only), each factor on its own budget. An account's count
// survives new sessions and restarted logins, and a correct password does
// not reset the code budget.
type limits struct {
	accounts *ratelimit.Limiter
	clients  *ratelimit.Limiter
}

func newLimits(free int, maxDelay time.Duration, now func() time.Time) *limits {
	l := &limits{
		accounts: ratelimit.New(ratelimit.Policy{}, maxTracked),
		clients:  ratelimit.New(ratelimit.Policy{}, maxTracked),
	}
	l.configure(free, maxDelay)
	l.accounts.SetClock(now)
	l.clients.SetClock(now)
	return l
}

// configure sets the policies, keeping the counts: a reload with new
// settings does not wipe an attacker's record.
func (l *limits) configure(free int, maxDelay time.Duration) {
	l.accounts.SetPolicy(ratelimit.Policy{
		Free: free, Base: time.Second, Max: maxDelay,
		HardLimit: accountHardLimit, Lockout: accountLockout, Forget: accountLockout,
	})
	l.clients.SetPolicy(ratelimit.Policy{
		Free: 4 * free, Base: time.Second, Max: maxDelay, Forget: time.Hour,
	})
}

func limitKey(f factor, id string) string { return string(f) + "\x00" + id }

// wait returns how long the account and the client must still wait before
// trying the factor again; zero means go ahead.
func (l *limits) wait(f factor, account, client string) time.Duration {
	return max(l.accounts.Wait(limitKey(f, account)), l.clients.Wait(limitKey(f, ratelimit.ClientKey(client))))
}

// fail counts a failed attempt against both the account and the client.
func (l *limits) fail(f factor, account, client string) {
	l.accounts.Fail(limitKey(f, account))
	l.clients.Fail(limitKey(f, ratelimit.ClientKey(client)))
}

// succeed clears the account's count for the factor. The client's count
// is left to fade, so that an attacker's own account cannot clear it.
func (l *limits) succeed(f factor, account string) {
	l.accounts.Reset(limitKey(f, account))
}

// retryAfter renders a wait as whole seconds for the Retry-After header.
func retryAfter(d time.Duration) string {
	return strconv.FormatInt(int64(math.Ceil(d.Seconds())), 10)
}

// factors lists every separately counted factor.
var factors = []factor{factorPassword, factorTOTP, factorBackup}

// accountState returns the account's consecutive failures of the factor
// and how long it must still wait.
func (l *limits) accountState(f factor, account string) (int, time.Duration) {
	k := limitKey(f, account)
	return l.accounts.Failures(k), l.accounts.Wait(k)
}

// clearAccount forgets the account's failures of every factor and returns
// how many there were. Client addresses keep theirs.
func (l *limits) clearAccount(account string) int {
	n := 0
	for _, f := range factors {
		k := limitKey(f, account)
		n += l.accounts.Failures(k)
		l.accounts.Reset(k)
	}
	return n
}
