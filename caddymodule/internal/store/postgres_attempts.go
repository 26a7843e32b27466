package store

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/ratelimit"
)

// PostgresAttempts keeps the attempt counts in the database (tf_attempts),
// so that every instance on it spends one budget per account and client:
// a guess on instance A and the next on instance B count as two. It
// follows MemoryAttempts' policy exactly (ratelimit.Policy); each Reserve,
// Settle or Clear is one transaction with the counts' rows locked.
type PostgresAttempts struct {
	p                *Postgres
	account, clients ratelimit.Policy
}

var _ Attempts = (*PostgresAttempts)(nil)

// sharedReservation is what Settle needs to take a reservation back.
type sharedReservation struct {
	accountKey, clientKey       string
	at, accountPrev, clientPrev time.Time
}

// NewPostgresAttempts returns the attempt counts kept in p's database.
func NewPostgresAttempts(p *Postgres, free int, maxDelay time.Duration) *PostgresAttempts {
	a := &PostgresAttempts{p: p}
	a.Configure(free, maxDelay)
	return a
}

// Configure sets the policy, as MemoryAttempts.Configure does. Call it
// before the counts are used.
func (a *PostgresAttempts) Configure(free int, maxDelay time.Duration) {
	a.account = ratelimit.Policy{
		Free: free, Base: time.Second, Max: maxDelay,
		HardLimit: AccountHardLimit, Lockout: AccountLockout, Forget: AccountLockout,
	}
	a.clients = ratelimit.Policy{Free: 4 * free, Base: time.Second, Max: maxDelay, Forget: time.Hour}
}

// now is the store's clock to the database's precision (microseconds), so
// that a reservation's time compares equal to the one stored.
func (a *PostgresAttempts) now() time.Time { return a.p.now().Truncate(time.Microsecond) }

// count reads a key's count within tx, locking its row until the
// transaction ends. It is one upsert that leaves a row as it is and
// returns it, locked: a missing row is made (with no failures), so that
// two first guesses at once do not both read none and both go through,
// and a row another transaction deletes meanwhile (a success clears the
// account's count) is made again rather than read as missing.
func count(ctx context.Context, tx pgx.Tx, key string) (failures int, last time.Time, err error) {
	err = tx.QueryRow(ctx, `INSERT INTO tf_attempts (key, failures, last) VALUES ($1, 0, 'epoch')
		ON CONFLICT (key) DO UPDATE SET failures = tf_attempts.failures
		RETURNING failures, last`, []byte(key)).Scan(&failures, &last)
	return failures, last, err
}

// Reserve implements Attempts.
func (a *PostgresAttempts) Reserve(ctx context.Context, g Guess) (Reservation, time.Duration, error) {
	ak := attemptKey(g.Realm, g.Factor, g.Account)
	ck := attemptKey(g.Realm, g.Factor, ratelimit.ClientKey(g.Client))
	var (
		res Reservation
		d   time.Duration
	)
	err := a.p.tx(ctx, func(tx pgx.Tx) error {
		res, d = Reservation{}, 0
		// Always the account first, then the client: one order of
		// locking for every caller.
		af, al, err := count(ctx, tx, ak)
		if err != nil {
			return err
		}
		cf, cl, err := count(ctx, tx, ck)
		if err != nil {
			return err
		}
		// The time is read with both rows locked: a reservation that
		// waited for the lock must not be older than the one it waited
		// for, or it would wait for a moment already past.
		now := a.now()
		if d = a.account.Wait(af, al, now); d > 0 {
			return nil
		}
		if d = a.clients.Wait(cf, cl, now); d > 0 {
			return nil
		}
		if a.account.Forget > 0 && now.Sub(al) > a.account.Forget {
			af = 0
		}
		if a.clients.Forget > 0 && now.Sub(cl) > a.clients.Forget {
			cf = 0
		}
		for _, c := range []struct {
			key      string
			failures int
		}{{ak, af + 1}, {ck, cf + 1}} {
			if _, err := tx.Exec(ctx, `INSERT INTO tf_attempts (key, failures, last) VALUES ($1, $2, $3)
				ON CONFLICT (key) DO UPDATE SET failures = EXCLUDED.failures, last = EXCLUDED.last`,
				[]byte(c.key), c.failures, now); err != nil {
				return err
			}
		}
		res = Reservation{accountKey: ak, shared: &sharedReservation{accountKey: ak, clientKey: ck, at: now, accountPrev: al, clientPrev: cl}}
		return nil
	})
	if err != nil {
		return Reservation{}, 0, wrap("reserve attempt", err)
	}
	return res, d, nil
}

// release takes one count back from key within tx, as ratelimit's
// Release does.
func release(ctx context.Context, tx pgx.Tx, key string, at, prev time.Time) error {
	_, err := tx.Exec(ctx, `UPDATE tf_attempts SET failures = failures - 1,
		last = CASE WHEN last = $2 THEN $3 ELSE last END
		WHERE key = $1 AND failures > 0`, []byte(key), at, prev)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `DELETE FROM tf_attempts WHERE key = $1 AND failures <= 0`, []byte(key))
	return err
}

// Settle implements Attempts.
func (a *PostgresAttempts) Settle(ctx context.Context, res Reservation, o Outcome) error {
	r := res.shared
	if o == Failed || r == nil {
		return nil // the reservation stays counted
	}
	err := a.p.tx(ctx, func(tx pgx.Tx) error {
		if o == Succeeded {
			if _, err := tx.Exec(ctx, `DELETE FROM tf_attempts WHERE key = $1`, []byte(r.accountKey)); err != nil {
				return err
			}
		} else if err := release(ctx, tx, r.accountKey, r.at, r.accountPrev); err != nil {
			return err
		}
		return release(ctx, tx, r.clientKey, r.at, r.clientPrev)
	})
	return wrap("settle attempt", err)
}

// AccountState implements Attempts.
func (a *PostgresAttempts) AccountState(ctx context.Context, realm, factor, account string) (int, time.Duration, error) {
	var (
		failures int
		last     time.Time
	)
	err := a.p.pool.QueryRow(ctx, `SELECT failures, last FROM tf_attempts WHERE key = $1`,
		[]byte(attemptKey(realm, factor, account))).Scan(&failures, &last)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, wrap("read attempts", err)
	}
	now := a.now()
	d := a.account.Wait(failures, last, now)
	if a.account.Forget > 0 && now.Sub(last) > a.account.Forget {
		failures = 0
	}
	return failures, d, nil
}

// ClearAccount implements Attempts.
func (a *PostgresAttempts) ClearAccount(ctx context.Context, realm, account string, factors []string) (int, error) {
	keys := make([][]byte, len(factors))
	for i, f := range factors {
		keys[i] = []byte(attemptKey(realm, f, account))
	}
	now := a.now()
	var n int
	err := a.p.pool.QueryRow(ctx, `WITH gone AS (DELETE FROM tf_attempts WHERE key = ANY($1) RETURNING failures, last)
		SELECT coalesce(sum(failures), 0) FROM gone WHERE last >= $2`, keys, now.Add(-a.account.Forget)).Scan(&n)
	if err != nil {
		return 0, wrap("clear attempts", err)
	}
	return n, nil
}
