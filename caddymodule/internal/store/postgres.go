package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Postgres is the Store kept in a PostgreSQL database, which several
// Caddy instances can share: every operation is a transaction of its own
// (or one statement), so the database's row locks give the atomicity each
// Store method promises across instances, not only within one process.
//
// The tables are those of schemaSteps, all named tf_*. Times are the
// store's clock (Options.Now), passed as parameters, never the database
// server's clock, so that every decision about expiry is made by one
// clock. Sessions are stored as the badger store stores them (the binary
// record of codec.go), with the user, generation, creation and expiry in
// columns of their own for the queries.
type Postgres struct {
	pool       *pgxpool.Pool
	connConfig *pgx.ConnConfig // for the notification connection
	now        func() time.Time
	logf       func(level, msg string)
	// maxSessions is the cap on a user's live sessions; 0 for none.
	maxSessions atomic.Int64

	// sessions caches session records while listening is true: see
	// postgres_cache.go.
	sessions  *sessionCache
	listening atomic.Bool
	// Tests: called each time listening starts, and with each
	// notification once applied.
	listenHook atomic.Pointer[func()]
	applyHook  atomic.Pointer[func(payload string)]

	stop        context.CancelFunc
	listenDone  chan struct{}
	janitorDone chan struct{}
	closeOnce   sync.Once
}

var _ Store = (*Postgres)(nil)

// schemaSteps are the migrations of the schema, in order: the schema's
// version is the number of steps applied. A step is never edited once
// released; a change is a new step.
var schemaSteps = []string{
	// 1: the first schema.
	`CREATE TABLE tf_meta (
		name  text PRIMARY KEY,
		value bytea NOT NULL
	);
	CREATE TABLE tf_accounts (
		user_id text PRIMARY KEY,
		data    bytea NOT NULL
	);
	CREATE TABLE tf_generations (
		user_id text PRIMARY KEY,
		gen     bigint NOT NULL
	);
	CREATE TABLE tf_sessions (
		key     bytea PRIMARY KEY,
		user_id text NOT NULL,
		gen     bigint NOT NULL,
		created timestamptz NOT NULL,
		expires timestamptz NOT NULL,
		record  bytea NOT NULL
	);
	CREATE INDEX tf_sessions_user ON tf_sessions (user_id, gen, created);
	CREATE INDEX tf_sessions_expires ON tf_sessions (expires);
	CREATE TABLE tf_users (
		name text PRIMARY KEY,
		data bytea NOT NULL
	);
	CREATE TABLE tf_browsers (
		user_id text NOT NULL,
		hash    bytea NOT NULL,
		created timestamptz NOT NULL,
		expires timestamptz NOT NULL,
		data    bytea NOT NULL,
		PRIMARY KEY (user_id, hash)
	);
	CREATE TABLE tf_events (
		user_id text NOT NULL,
		stamp   bigint NOT NULL,
		id      bytea NOT NULL,
		data    bytea NOT NULL,
		PRIMARY KEY (user_id, stamp, id)
	);
	CREATE TABLE tf_attempts (
		key      bytea PRIMARY KEY,
		failures integer NOT NULL,
		last     timestamptz NOT NULL
	);
	CREATE INDEX tf_attempts_last ON tf_attempts (last);
	CREATE TABLE tf_challenges (
		session_key bytea NOT NULL,
		purpose     text NOT NULL,
		expires     timestamptz NOT NULL,
		data        bytea NOT NULL,
		PRIMARY KEY (session_key, purpose)
	);`,
}

// schemaLock is the key of the advisory lock under which a starting
// instance reads and migrates the schema, so that instances starting at
// once migrate it once.
const schemaLock = 0x7466_5f73_6368 // "tf_sch"

// OpenPostgres connects to the database at url (a PostgreSQL connection
// string or URL), creates or migrates the schema, and returns the store.
// A schema newer than this build knows is refused: an older instance
// must not write into tables it does not understand.
func OpenPostgres(ctx context.Context, url string, opt Options) (*Postgres, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx's message can quote the string; it holds no password in
		// our wrapping, but say only what is wrong.
		return nil, fmt.Errorf("store: postgres connection string: %w", redact(err))
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: postgres: %w", redact(err))
	}
	p := &Postgres{pool: pool, connConfig: cfg.ConnConfig, now: opt.Now, logf: opt.Logger,
		listenDone: make(chan struct{}), janitorDone: make(chan struct{})}
	if p.now == nil {
		p.now = time.Now
	}
	if p.logf == nil {
		p.logf = func(string, string) {}
	}
	size := opt.SessionCache
	if size == 0 {
		size = DefaultSessionCache
	}
	p.sessions = newSessionCache(size)
	p.SetMaxSessionsPerUser(opt.MaxSessionsPerUser)
	if err := p.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	bg, stop := context.WithCancel(context.Background())
	p.stop = stop
	go p.listen(bg)
	go p.janitor(bg)
	return p, nil
}

// redact drops the connection string from pgx's parse errors, which can
// carry a password.
func redact(err error) error {
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) {
		return errors.New("cannot parse it (check its form: postgres://user:password@host:port/database)")
	}
	return err
}

// migrate brings the schema to len(schemaSteps) under the advisory lock.
func (p *Postgres) migrate(ctx context.Context) error {
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(schemaLock)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS tf_schema (version integer NOT NULL)`); err != nil {
			return err
		}
		var v int
		switch err := tx.QueryRow(ctx, `SELECT version FROM tf_schema`).Scan(&v); {
		case errors.Is(err, pgx.ErrNoRows):
			if _, err := tx.Exec(ctx, `INSERT INTO tf_schema (version) VALUES (0)`); err != nil {
				return err
			}
		case err != nil:
			return err
		}
		if v > len(schemaSteps) {
			return fmt.Errorf("the database's schema is version %d, newer than this build knows (%d): upgrade this instance", v, len(schemaSteps))
		}
		for i := v; i < len(schemaSteps); i++ {
			if _, err := tx.Exec(ctx, schemaSteps[i]); err != nil {
				return fmt.Errorf("schema step %d: %w", i+1, err)
			}
		}
		_, err := tx.Exec(ctx, `UPDATE tf_schema SET version = $1`, len(schemaSteps))
		return err
	})
	return wrap("postgres schema", err)
}

// SchemaVersion returns the version of the database's schema.
func (p *Postgres) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := p.pool.QueryRow(ctx, `SELECT version FROM tf_schema`).Scan(&v)
	return v, wrap("postgres schema", err)
}

// SetMaxSessionsPerUser sets the cap on each user's live sessions, as
// Options.MaxSessionsPerUser does.
func (p *Postgres) SetMaxSessionsPerUser(n int) {
	switch {
	case n == 0:
		n = DefaultMaxSessionsPerUser
	case n < 0:
		n = 0
	}
	p.maxSessions.Store(int64(n))
}

// Close stops the notifications and the clean-up, and closes the
// connections.
func (p *Postgres) Close() error {
	p.closeOnce.Do(func() {
		p.stop()
		<-p.listenDone
		<-p.janitorDone
		p.pool.Close()
	})
	return nil
}

// tx runs fn in a transaction; a serialization failure or deadlock (the
// database chose this transaction to fail so that another could go on) is
// retried a few times, as badger's conflicts are.
func (p *Postgres) tx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	var err error
	for range 8 {
		err = pgx.BeginFunc(ctx, p.pool, fn)
		var pe *pgconn.PgError
		if errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01") {
			continue
		}
		return err
	}
	return err
}

// accountFor reads the user's account within tx, locking its row (if any)
// until the transaction ends; a missing row gives the zero Account.
func accountFor(ctx context.Context, tx pgx.Tx, user string) (Account, bool, error) {
	a := Account{Name: user}
	var data []byte
	err := tx.QueryRow(ctx, `SELECT data FROM tf_accounts WHERE user_id = $1 FOR UPDATE`, user).Scan(&data)
	if errors.Is(err, pgx.ErrNoRows) {
		return a, false, nil
	}
	if err != nil {
		return a, false, err
	}
	if err := json.Unmarshal(data, &a); err != nil {
		return Account{}, false, fmt.Errorf("decode account: %w", err)
	}
	a.Name = user
	return a, true, nil
}

// changeAccountPG is changeAccount for PostgreSQL: the read-check-modify-
// write of one account, its row locked from the read to the commit. Two
// enables racing on a user without a row both find none; the second
// insert fails on the primary key and is answered ErrAlreadyEnabled.
func changeAccountPG(ctx context.Context, tx pgx.Tx, user string, enabled bool, change func(a *Account) error) error {
	a, exists, err := accountFor(ctx, tx, user)
	if err != nil {
		return err
	}
	switch {
	case enabled && !a.Enabled():
		return ErrNotEnabled
	case !enabled && a.Enabled():
		return ErrAlreadyEnabled
	}
	if err := change(&a); err != nil {
		return err
	}
	if !a.Enabled() {
		_, err := tx.Exec(ctx, `DELETE FROM tf_accounts WHERE user_id = $1`, user)
		return err
	}
	v, err := json.Marshal(&a)
	if err != nil {
		return fmt.Errorf("encode account: %w", err)
	}
	if exists {
		_, err = tx.Exec(ctx, `UPDATE tf_accounts SET data = $2 WHERE user_id = $1`, user, v)
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO tf_accounts (user_id, data) VALUES ($1, $2)`, user, v)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" { // unique_violation
		return ErrAlreadyEnabled
	}
	return err
}

// Account implements Store.
func (p *Postgres) Account(ctx context.Context, user string) (Account, error) {
	if err := checkUser(user); err != nil {
		return Account{}, wrap("read account", err)
	}
	a := Account{Name: user}
	var data []byte
	err := p.pool.QueryRow(ctx, `SELECT data FROM tf_accounts WHERE user_id = $1`, user).Scan(&data)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return a, nil
	case err != nil:
		return Account{}, wrap("read account", err)
	}
	if err := json.Unmarshal(data, &a); err != nil {
		return Account{}, wrap("read account", fmt.Errorf("decode account: %w", err))
	}
	a.Name = user
	return a, nil
}

// EnableTOTP implements Store: the account, the user's next session
// generation and the forgetting of their remembered browsers commit
// together.
func (p *Postgres) EnableTOTP(ctx context.Context, user string, t TOTP, backupCodes [][]byte) error {
	const op = "enable TOTP"
	codes, err := enableArgs(user, t, backupCodes)
	if err != nil {
		return wrap(op, err)
	}
	_, err = p.endSessions(ctx, user, nil, func(tx pgx.Tx) error {
		if err := forgetAllPG(ctx, tx, user); err != nil {
			return err
		}
		return changeAccountPG(ctx, tx, user, false, func(a *Account) error {
			tt := t
			a.TOTP = &tt
			a.BackupCodes = codes
			return nil
		})
	})
	return wrap(op, err)
}

// DisableTOTP implements Store.
func (p *Postgres) DisableTOTP(ctx context.Context, user string, keepSession []byte) error {
	const op = "disable TOTP"
	if err := checkUser(user); err != nil {
		return wrap(op, err)
	}
	_, err := p.endSessions(ctx, user, keepSession, func(tx pgx.Tx) error {
		if err := forgetAllPG(ctx, tx, user); err != nil {
			return err
		}
		return changeAccountPG(ctx, tx, user, true, turnOff)
	})
	return wrap(op, err)
}

// ReplaceBackupCodes implements Store.
func (p *Postgres) ReplaceBackupCodes(ctx context.Context, user string, backupCodes [][]byte) error {
	const op = "replace backup codes"
	codes, err := userAndCodes(user, backupCodes)
	if err != nil {
		return wrap(op, err)
	}
	err = p.tx(ctx, func(tx pgx.Tx) error {
		if err := forgetAllPG(ctx, tx, user); err != nil {
			return err
		}
		return changeAccountPG(ctx, tx, user, true, func(a *Account) error {
			a.BackupCodes = codes
			return nil
		})
	})
	return wrap(op, err)
}

// UseTOTPStep implements Store. The account's row is locked from the read
// to the commit, so of many callers with the same step, across instances,
// exactly one wins.
func (p *Postgres) UseTOTPStep(ctx context.Context, user string, step int64) error {
	const op = "use TOTP step"
	if err := checkUser(user); err != nil {
		return wrap(op, err)
	}
	err := p.tx(ctx, func(tx pgx.Tx) error {
		return changeAccountPG(ctx, tx, user, true, useStep(step))
	})
	return wrap(op, err)
}

// UseBackupCode implements Store, comparing with every code in constant
// time as the badger store does.
func (p *Postgres) UseBackupCode(ctx context.Context, user string, hash []byte) (int, error) {
	const op = "use backup code"
	if err := checkUser(user); err != nil {
		return 0, wrap(op, err)
	}
	var left int
	err := p.tx(ctx, func(tx pgx.Tx) error {
		return changeAccountPG(ctx, tx, user, true, useCode(hash, &left))
	})
	if err != nil {
		return 0, wrap(op, err)
	}
	return left, nil
}

// forgetAllPG forgets the user's remembered browsers within tx.
func forgetAllPG(ctx context.Context, tx pgx.Tx, user string) error {
	_, err := tx.Exec(ctx, `DELETE FROM tf_browsers WHERE user_id = $1`, user)
	return err
}

// Meta implements Store.
func (p *Postgres) Meta(ctx context.Context, name string) ([]byte, error) {
	if name == "" {
		return nil, wrap("read meta", errors.New("empty name"))
	}
	var v []byte
	err := p.pool.QueryRow(ctx, `SELECT value FROM tf_meta WHERE name = $1`, name).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, wrap("read meta", err)
	}
	if v == nil {
		v = []byte{}
	}
	return v, nil
}

// PutMeta implements Store.
func (p *Postgres) PutMeta(ctx context.Context, name string, value []byte) error {
	if name == "" {
		return wrap("write meta", errors.New("empty name"))
	}
	if value == nil {
		value = []byte{}
	}
	_, err := p.pool.Exec(ctx, `INSERT INTO tf_meta (name, value) VALUES ($1, $2)
		ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value`, name, value)
	return wrap("write meta", err)
}

// InitMeta implements Store.
func (p *Postgres) InitMeta(ctx context.Context, name string, value []byte) ([]byte, error) {
	if name == "" {
		return nil, wrap("init meta", errors.New("empty name"))
	}
	if value == nil {
		value = []byte{}
	}
	var cur []byte
	err := p.tx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO tf_meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`, name, value); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `SELECT value FROM tf_meta WHERE name = $1`, name).Scan(&cur)
	})
	if err != nil {
		return nil, wrap("init meta", err)
	}
	return cur, nil
}
