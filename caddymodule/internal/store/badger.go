package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// testHookBeforeCommit, when set by a test, runs in every read-write
// transaction after its work is done and before it commits.
var testHookBeforeCommit atomic.Pointer[func(b *Badger)]

// testHookSessionRead, when set by a test, runs in Session after a record
// was read from disk and before it is put in the cache.
var testHookSessionRead atomic.Pointer[func()]

// Compile-time check that Badger implements Store.
var _ Store = (*Badger)(nil)

const (
	// maxAttempts bounds how often a transaction is retried after
	// badger.ErrConflict before the operation gives up.
	maxAttempts = 16
	// defaultGCInterval is how often the value log is garbage collected.
	defaultGCInterval = 10 * time.Minute
	// gcDiscardRatio: a value log file is rewritten when at least this
	// share of it is garbage (badger's recommended value).
	gcDiscardRatio = 0.5
)

// errClosed is returned by every operation on a closed Badger.
var errClosed = errors.New("store is closed")

// Options tunes OpenBadger. The zero Options is the production setting.
type Options struct {
	// NoSync turns off the fsync of each commit. It breaks the Store's
	// durability promise and is meant for throwaway stores in tests and
	// benchmarks only.
	NoSync bool
	// Logger receives badger's log lines; level is "debug", "info",
	// "warning" or "error". Nil discards them.
	Logger func(level, msg string)
	// GCInterval is how often the value log is garbage collected: zero
	// means every 10 minutes, a negative value turns the collector off.
	GCInterval time.Duration
	// SessionCache is how many sessions are kept decoded in memory for
	// Session (see cache.go): zero means DefaultSessionCache, a negative
	// value turns the cache off.
	SessionCache int
	// MaxSessionsPerUser caps each user's live sessions: when a new one
	// would go past it, the oldest (by Created) end. Zero means
	// DefaultMaxSessionsPerUser (100), a negative value means no cap.
	MaxSessionsPerUser int
	// Now is the clock of every time the store reads: expiry, sweeps,
	// creation times. Nil means time.Now. Badger's own TTLs follow the real
	// clock whatever Now says.
	Now func() time.Time
}

// Badger is the embedded Store, kept in a badger database in one folder.
// Only one process at a time can open the folder.
type Badger struct {
	db  *badger.DB
	dir string

	// mu is held shared by every operation and exclusively by Close, so
	// Close waits for operations in flight and later ones see closed.
	mu     sync.RWMutex
	closed bool

	space *spaceGuard // refuses writes on a (nearly) full file system

	now func() time.Time // the store's clock (Options.Now)

	stopGC chan struct{} // closed by Close to stop runGC
	gcDone chan struct{} // closed by runGC when it returns

	closeOnce sync.Once
	closeErr  error

	// sessions caches session records for Session. Every write goes
	// through write (update, updateAccount, or a session method), which
	// invalidates it; a write that went around it would have to call
	// sessions.clear() itself.
	sessions *sessionCache

	// gens holds the users' current session generations (generation.go);
	// bumpMu serialises the changes that move them.
	gens   *genTable
	bumpMu sync.Mutex

	// The sweeper deletes the sessions of old generations of the users
	// in sweepQueue; sweepWake wakes it, sweepDone is closed when it has
	// stopped (after stopGC is closed).
	sweepMu    sync.Mutex
	sweepQueue map[string]struct{}
	sweepWake  chan struct{}
	sweepDone  chan struct{}

	// maxSessions is the cap on a user's live sessions; 0 for none.
	maxSessions atomic.Int64
}

// OpenBadger opens (creating it if needed, with mode 0700) the store in dir.
// If another process holds the folder, the error wraps ErrLocked.
func OpenBadger(dir string, opt Options) (*Badger, error) {
	if dir == "" {
		return nil, errors.New("open store: empty folder name")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open store: create folder: %w", err)
	}
	now := opt.Now
	if now == nil {
		now = time.Now
	}
	// Opening replays the write-ahead log through memory-mapped files:
	// on a full file system that would be a SIGBUS, so refuse first.
	space := newSpaceGuard(dir, now)
	if err := space.measure(); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}

	bo := badger.DefaultOptions(dir).
		// Every commit is fsynced before it returns: the Store promises
		// durable changes.
		WithSyncWrites(!opt.NoSync).
		// Sessions and accounts are small and few; an 8 MiB memtable (the
		// default is 64 MiB) keeps memory low. It also bounds one
		// transaction to about 1.2 MiB (15% of it).
		WithMemTableSize(8 << 20).
		// Two memtables: one being written, one being flushed.
		WithNumMemtables(2).
		// An 8 MiB block cache (default 256 MiB) holds the whole hot set.
		WithBlockCacheSize(8 << 20).
		// Cap the table-index cache at 4 MiB; zero would keep every
		// table's index in memory without bound.
		WithIndexCacheSize(4 << 20).
		// 64 MiB value log files (default 1 GiB) so value log GC can
		// reclaim space in small steps. Our values are far below the
		// value threshold and live in the LSM tree, so the value log
		// stays almost empty anyway.
		WithValueLogFileSize(64 << 20).
		// Only the newest version of a key is ever read.
		WithNumVersionsToKeep(1).
		// Two compactors, the least badger accepts besides zero; the
		// default four is too many for a store this size.
		WithNumCompactors(2).
		// No expvar metrics: nothing reads them.
		WithMetricsEnabled(false).
		WithLogger(newBadgerLogger(opt.Logger))
	// Tables of every level stay at the base size (2 MiB) instead of
	// doubling with each level. A compaction builds up to 13 tables at once
	// per compactor, each in a buffer of twice the table size: with
	// 1,000,000 users the deepest levels' tables grew big enough for a
	// compaction to take over a GB of RSS (docs/benchmarks.md).
	bo.TableSizeMultiplier = 1

	db, err := badger.Open(bo)
	if err != nil {
		if isLockError(err) {
			return nil, fmt.Errorf("open store: folder %s is in use by another Caddy (or a `caddy two-factor` command): %w", dir, ErrLocked)
		}
		return nil, fmt.Errorf("open store in %s: %w", dir, err)
	}

	cacheSize := opt.SessionCache
	if cacheSize == 0 {
		cacheSize = DefaultSessionCache
	}
	b := &Badger{
		db:         db,
		dir:        dir,
		space:      space,
		now:        now,
		stopGC:     make(chan struct{}),
		gcDone:     make(chan struct{}),
		sessions:   newSessionCache(cacheSize),
		gens:       newGenTable(),
		sweepQueue: make(map[string]struct{}),
		sweepWake:  make(chan struct{}, 1),
		sweepDone:  make(chan struct{}),
	}
	b.SetMaxSessionsPerUser(opt.MaxSessionsPerUser)
	go b.runSweeper(opt.Logger)
	interval := opt.GCInterval
	if interval == 0 {
		interval = defaultGCInterval
	}
	if interval > 0 {
		go b.runGC(interval, opt.Logger)
	} else {
		close(b.gcDone)
	}
	return b, nil
}

// isLockError reports whether err is badger's failure to lock the folder.
// Badger formats the cause into its message (its error wrapping drops the
// chain), so its wording is all there is to go by; a test pins it.
func isLockError(err error) bool {
	return strings.Contains(err.Error(), "Another process is using this Badger database")
}

// runGC garbage collects the value log every interval until Close.
func (b *Badger) runGC(interval time.Duration, logf func(level, msg string)) {
	defer close(b.gcDone)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-b.stopGC:
			return
		case <-t.C:
		}
		// Each successful run rewrites one file; repeat while there is
		// something to reclaim, but stop promptly on Close.
		for {
			select {
			case <-b.stopGC:
				return
			default:
			}
			err := b.db.RunValueLogGC(gcDiscardRatio)
			if err == nil {
				continue
			}
			if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) && logf != nil {
				logf("error", "value log GC: "+err.Error())
			}
			break
		}
	}
}

// SetMaxSessionsPerUser changes the cap on each user's live sessions (see
// Options.MaxSessionsPerUser); it applies to the sessions put from then on.
func (b *Badger) SetMaxSessionsPerUser(n int) {
	switch {
	case n == 0:
		n = DefaultMaxSessionsPerUser
	case n < 0:
		n = 0
	}
	b.maxSessions.Store(int64(n))
}

// Close stops the value log GC, waits for operations in flight and closes
// the database. It is safe to call more than once and from several
// goroutines; every call returns the first call's result.
func (b *Badger) Close() error {
	b.closeOnce.Do(func() {
		close(b.stopGC)
		<-b.gcDone
		<-b.sweepDone
		b.mu.Lock()
		defer b.mu.Unlock()
		b.closed = true
		b.sessions.clear()
		if err := b.db.Close(); err != nil {
			b.closeErr = fmt.Errorf("close store in %s: %w", b.dir, err)
		}
	})
	return b.closeErr
}

// Compact pushes every table down to one level of the tree, as
// compactions would over time. After a bulk load (the scale benchmark's
// generator), this leaves the store as one grown over months would be, so
// that the next start does not begin by compacting the whole of it
// (docs/benchmarks.md, Memory). Writes should not run meanwhile; they
// would compete with it.
func (b *Badger) Compact() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return errClosed
	}
	if err := b.db.Flatten(2); err != nil {
		return fmt.Errorf("compact store in %s: %w", b.dir, err)
	}
	return nil
}

// view runs fn in a read-only transaction.
func (b *Badger) view(ctx context.Context, fn func(txn *badger.Txn) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return errClosed
	}
	return b.db.View(fn)
}

// update runs fn in a read-write transaction and commits it, retrying from
// the start when the commit conflicts with a concurrent one. fn must not
// keep state across calls. Not knowing which sessions fn changes, it drops
// every cached session afterwards; updateAccount and the session methods
// say more precisely what they change.
func (b *Badger) update(ctx context.Context, fn func(txn *badger.Txn) error) error {
	return b.write(ctx, fn, b.sessions.clear)
}

// updateAccount is update for a transaction that writes no session record
// and no index entry (accounts and meta values only), so no cached session
// needs to go.
func (b *Badger) updateAccount(ctx context.Context, fn func(txn *badger.Txn) error) error {
	return b.write(ctx, fn, nil)
}

// write is update with the cache invalidation given: invalidate runs once
// the transaction has committed or failed, before write returns, so no
// caller sees a session it changed or ended served from the cache.
func (b *Badger) write(ctx context.Context, fn func(txn *badger.Txn) error, invalidate func()) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return errClosed
	}
	if invalidate != nil {
		defer invalidate()
	}
	if err := b.space.check(); err != nil {
		return err
	}
	txnFn := fn
	if hook := testHookBeforeCommit.Load(); hook != nil {
		txnFn = func(txn *badger.Txn) error {
			if err := fn(txn); err != nil {
				return err
			}
			(*hook)(b)
			return nil
		}
	}
	for attempt := 1; ; attempt++ {
		err := b.db.Update(txnFn)
		if !errors.Is(err, badger.ErrConflict) {
			return err
		}
		if attempt == maxAttempts {
			return fmt.Errorf("giving up after %d conflicting attempts: %w", attempt, err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		// A short random pause spreads out the goroutines that keep
		// colliding on the same key.
		time.Sleep(rand.N(time.Duration(attempt) * 100 * time.Microsecond))
	}
}

// isSentinel reports whether err is one of the package's expected outcomes,
// which are returned as they are rather than wrapped.
func isSentinel(err error) bool {
	switch err {
	case ErrNotFound, ErrAlreadyEnabled, ErrNotEnabled, ErrStepUsed, ErrCodeUnknown,
		ErrNoUser, ErrUserExists, ErrNotEmpty,
		ErrCredentialExists, ErrNoCredential, ErrSignCount, ErrHandleChanged:
		return true
	}
	return false
}

// Error is a failure of the store itself (as opposed to the sentinel
// outcomes above): a caller can tell it from other failures with
// errors.As.
type Error struct {
	Op  string // the operation that failed, such as "enable TOTP"
	Err error
}

func (e *Error) Error() string { return "store: " + e.Op + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// wrap adds the operation's name to a failure; sentinels pass unchanged.
func wrap(op string, err error) error {
	if err == nil || isSentinel(err) {
		return err
	}
	return &Error{Op: op, Err: err}
}

// getAccount reads the user's account within txn; a missing record gives
// the zero Account with Name set.
func getAccount(txn *badger.Txn, user string) (Account, error) {
	a := Account{Name: user}
	item, err := txn.Get(accountKey(user))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return a, nil
	}
	if err != nil {
		return a, err
	}
	err = item.Value(func(v []byte) error {
		if err := json.Unmarshal(v, &a); err != nil {
			return fmt.Errorf("decode account: %w", err)
		}
		return nil
	})
	if err != nil {
		return Account{}, err
	}
	a.Name = user
	return a, nil
}

// putAccount writes the account within txn; an account with the second
// factor off has nothing worth keeping, so its record is deleted.
func putAccount(txn *badger.Txn, a *Account) error {
	if !a.Enabled() {
		return txn.Delete(accountKey(a.Name))
	}
	v, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("encode account: %w", err)
	}
	return txn.Set(accountKey(a.Name), v)
}

// changeAccount is the read-check-modify-write of one account within txn:
// it reads the user's account, refuses with ErrNotEnabled (enabled true)
// or ErrAlreadyEnabled (enabled false) when the second factor is not in
// the state the change needs, lets change modify it, and writes it back.
func changeAccount(txn *badger.Txn, user string, enabled bool, change func(a *Account) error) error {
	a, err := getAccount(txn, user)
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
	return putAccount(txn, &a)
}

// checkUser rejects an empty user name.
func checkUser(user string) error {
	if user == "" {
		return errors.New("empty user name")
	}
	return nil
}

// cloneCodes deep-copies a set of backup-code hashes, rejecting empty ones.
func cloneCodes(codes [][]byte) ([][]byte, error) {
	if len(codes) == 0 {
		return nil, nil
	}
	out := make([][]byte, len(codes))
	for i, c := range codes {
		if len(c) == 0 {
			return nil, fmt.Errorf("backup code %d: empty hash", i)
		}
		out[i] = bytes.Clone(c)
	}
	return out, nil
}

// Account returns the user's second-factor state.
func (b *Badger) Account(ctx context.Context, user string) (Account, error) {
	if err := checkUser(user); err != nil {
		return Account{}, wrap("read account", err)
	}
	var a Account
	err := b.view(ctx, func(txn *badger.Txn) error {
		var err error
		a, err = getAccount(txn, user)
		return err
	})
	if err != nil {
		return Account{}, wrap("read account", err)
	}
	return a, nil
}

// EnableTOTP turns the second factor on and ends the user's sessions (the
// next session generation), in one transaction; ErrAlreadyEnabled if it
// is on.
func (b *Badger) EnableTOTP(ctx context.Context, user string, t TOTP, backupCodes [][]byte) error {
	const op = "enable TOTP"
	codes, err := enableArgs(user, t, backupCodes)
	if err != nil {
		return wrap(op, err)
	}
	t.SealedSecret = bytes.Clone(t.SealedSecret)
	_, err = b.endSessions(ctx, user, nil, func(txn *badger.Txn) error {
		if _, err := forgetAll(txn, user); err != nil {
			return err
		}
		return changeAccount(txn, user, false, func(a *Account) error {
			tt := t
			a.TOTP = &tt
			a.BackupCodes = codes
			return nil
		})
	})
	return wrap(op, err)
}

// DisableTOTP turns the second factor off (the app and every security
// key), drops the backup codes and
// ends the user's sessions except keepSession, in one transaction.
// ErrNotEnabled if it is off.
func (b *Badger) DisableTOTP(ctx context.Context, user string, keepSession []byte) error {
	const op = "disable TOTP"
	if err := checkUser(user); err != nil {
		return wrap(op, err)
	}
	_, err := b.endSessions(ctx, user, keepSession, func(txn *badger.Txn) error {
		if _, err := forgetAll(txn, user); err != nil {
			return err
		}
		return changeAccount(txn, user, true, turnOff)
	})
	return wrap(op, err)
}

// ReplaceBackupCodes replaces the user's backup codes and forgets their
// remembered browsers, in one transaction; ErrNotEnabled if the second
// factor is off.
func (b *Badger) ReplaceBackupCodes(ctx context.Context, user string, backupCodes [][]byte) error {
	const op = "replace backup codes"
	codes, err := userAndCodes(user, backupCodes)
	if err != nil {
		return wrap(op, err)
	}
	err = b.updateAccount(ctx, func(txn *badger.Txn) error {
		if _, err := forgetAll(txn, user); err != nil {
			return err
		}
		return changeAccount(txn, user, true, func(a *Account) error {
			a.BackupCodes = codes
			return nil
		})
	})
	return wrap(op, err)
}

// UseTOTPStep records step as used if it is newer than the last accepted
// one; ErrStepUsed otherwise, ErrNotEnabled if the second factor is off.
func (b *Badger) UseTOTPStep(ctx context.Context, user string, step int64) error {
	const op = "use TOTP step"
	if err := checkUser(user); err != nil {
		return wrap(op, err)
	}
	err := b.updateAccount(ctx, func(txn *badger.Txn) error {
		return changeAccount(txn, user, true, useStep(step))
	})
	return wrap(op, err)
}

// UseBackupCode removes the backup code with that hash and returns how
// many are left; ErrCodeUnknown if there is none, ErrNotEnabled if the
// second factor is off.
func (b *Badger) UseBackupCode(ctx context.Context, user string, hash []byte) (int, error) {
	const op = "use backup code"
	if err := checkUser(user); err != nil {
		return 0, wrap(op, err)
	}
	var left int
	err := b.updateAccount(ctx, func(txn *badger.Txn) error {
		return changeAccount(txn, user, true, useCode(hash, &left))
	})
	if err != nil {
		return 0, wrap(op, err)
	}
	return left, nil
}

// Session returns the session record with that key; ErrNotFound if there
// is none, it has expired by the store's clock, or it is of an older
// generation than its user's (generation.go). The record's Key is key
// itself, not a copy: the caller must not change key afterwards (the
// proxied path reads a session per request, and the copy was one of its
// allocations).
func (b *Badger) Session(ctx context.Context, key []byte) (Session, error) {
	if len(key) == 0 {
		return Session{}, wrap("read session", errors.New("empty session key"))
	}
	c, gen, err := b.cachedSession(ctx, key, b.now())
	if err != nil {
		return Session{}, err
	}
	if c != nil {
		return handOut(*c, key), nil
	}
	var s Session
	var diskGen uint64
	err = b.view(ctx, func(txn *badger.Txn) error {
		item, err := txn.Get(sessionKey(key))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		err = item.Value(func(v []byte) error {
			s, err = decodeSession(v)
			return err
		})
		if err != nil {
			return err
		}
		diskGen, err = getGen(txn, s.User)
		return err
	})
	if err != nil {
		return Session{}, wrap("read session", err)
	}
	if !b.now().Before(s.Expires) {
		return Session{}, ErrNotFound
	}
	// The generation in memory is the newer one while a change commits.
	g, ok := b.gens.get(s.User)
	if !ok {
		g = b.gens.raise(s.User, diskGen)
	}
	if s.Gen != max(g, diskGen) {
		return Session{}, ErrNotFound
	}
	if hook := testHookSessionRead.Load(); hook != nil {
		(*hook)()
	}
	b.sessions.put(key, s, b.gens.cell(s.User), gen)
	return handOut(s, key), nil
}

// SessionAdmission implements Store: a cached session is read in place,
// only its first fields.
func (b *Badger) SessionAdmission(ctx context.Context, key []byte, now time.Time) (Admission, error) {
	// An empty key is never cached: Session refuses it on the miss.
	c, _, err := b.cachedSession(ctx, key, now)
	if err != nil {
		return Admission{}, err
	}
	if c == nil {
		return readAdmission(ctx, b, key)
	}
	return admission(c), nil
}

// cachedSession returns the cached record under key, which the caller must
// not change, checked as a read from disk is: ErrNotFound once it has
// expired at now or its user has moved to another generation. On a miss it
// returns nil and the shard's generation, for sessions.put.
func (b *Badger) cachedSession(ctx context.Context, key []byte, now time.Time) (*Session, uint64, error) {
	e, ok, gen := b.sessions.get(key)
	if !ok {
		return nil, gen, nil
	}
	s := e.s
	if !now.Before(s.Expires) {
		b.sessions.drop(key)
		return nil, 0, ErrNotFound
	}
	g, ok := e.gen.current()
	if !ok {
		var err error
		if g, err = b.currentGen(ctx, s.User); err != nil {
			return nil, 0, wrap("read session", err)
		}
	}
	if s.Gen != g {
		b.sessions.drop(key)
		return nil, 0, ErrNotFound
	}
	return s, 0, nil
}

// getSession reads and decodes the session record under sk within txn:
// ErrNotFound if there is none; a record that does not decode is an error
// wrapping errMalformed.
func getSession(txn *badger.Txn, sk []byte) (Session, error) {
	item, err := txn.Get(sk)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return Session{}, ErrNotFound
	}
	if err != nil {
		return Session{}, err
	}
	var s Session
	err = item.Value(func(v []byte) error {
		s, err = decodeSession(v)
		return err
	})
	return s, err
}

// sessionEntry returns a badger entry that expires with the session. Badger
// counts expiry in whole seconds and drops an entry once the clock reaches
// ExpiresAt, so the time is rounded up: the store's own check in Session
// decides the exact moment.
func sessionEntry(k, v []byte, expires time.Time) *badger.Entry {
	e := badger.NewEntry(k, v)
	sec := expires.Unix()
	if expires.Nanosecond() > 0 {
		sec++
	}
	e.ExpiresAt = uint64(sec)
	return e
}

// PutSession creates or replaces a session record.
func (b *Badger) PutSession(ctx context.Context, s Session) error {
	return b.writeSession(ctx, s, false)
}

// UpdateSession implements Store.
func (b *Badger) UpdateSession(ctx context.Context, s Session) error {
	return b.writeSession(ctx, s, true)
}

// writeSession creates or replaces a session record, under the user's
// current generation; with mustExist it only replaces a live record of the
// same user and generation, checked in the same transaction, so that an
// update racing a logout or a revocation cannot bring the session back.
// Creating one ends the user's oldest sessions past the cap.
func (b *Badger) writeSession(ctx context.Context, s Session, mustExist bool) error {
	const op = "write session"
	if err := checkSession(&s); err != nil {
		return wrap(op, err)
	}
	sk := sessionKey(s.Key)
	ik := indexKey(s.User, s.Key)
	limit := int(b.maxSessions.Load())
	var evicted [][]byte // over every attempt, for the cache
	err := b.write(ctx, func(txn *badger.Txn) error {
		g, err := getGen(txn, s.User)
		if err != nil {
			return err
		}
		// A record being replaced under another user leaves that
		// user's index entry behind; drop it.
		old, err := getSession(txn, sk)
		replaces := false // a live session of the user's generation
		switch {
		case errors.Is(err, ErrNotFound):
			if mustExist {
				return ErrNotFound
			}
		case err != nil:
			return err
		default:
			replaces = old.User == s.User && old.Gen == g && b.now().Before(old.Expires)
			if mustExist && !replaces {
				return ErrNotFound
			}
			if old.User != s.User {
				if err := txn.Delete(indexKey(old.User, s.Key)); err != nil {
					return err
				}
			}
		}
		if !mustExist && limit > 0 {
			keys, err := b.overCap(s.User, s.Key, g, limit)
			if err != nil {
				return err
			}
			for _, k := range keys {
				if err := txn.Delete(sessionKey(k)); err != nil {
					return err
				}
				if err := txn.Delete(indexKey(s.User, k)); err != nil {
					return err
				}
			}
			evicted = append(evicted, keys...)
		}
		ns := s
		ns.Gen = g
		if err := txn.SetEntry(sessionEntry(sk, encodeSession(nil, &ns), ns.Expires)); err != nil {
			return err
		}
		return txn.SetEntry(sessionEntry(ik, encodeIndex(&ns), ns.Expires))
	}, func() {
		b.sessions.drop(s.Key)
		for _, k := range evicted {
			b.sessions.drop(k)
		}
	})
	return wrap(op, err)
}

// overCap returns the user's sessions of generation g, other than key, that
// must end for one more to fit under limit: the oldest by creation (then
// by key), at most maxEvictions of them.
//
// It reads in a transaction of its own: had the writing transaction read
// the user's index, every batch the sweeper deletes from it, and every
// refresh of another session of the user, would make the put conflict and
// start again (a login right after a revocation of thousands of sessions
// failed so). So logins of one user that race each other may each end the
// same oldest session and leave the user one over the cap per racing
// login until the next one.
func (b *Badger) overCap(user string, key []byte, g uint64, limit int) ([][]byte, error) {
	type live struct {
		key     []byte
		created time.Time
	}
	var all []live
	txn := b.db.NewTransaction(false)
	defer txn.Discard()
	err := scanUser(txn, user, func(k []byte, gen uint64, s Session) (bool, error) {
		if gen == g && !bytes.Equal(k, key) {
			all = append(all, live{bytes.Clone(k), s.Created})
		}
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	excess := len(all) - (limit - 1)
	if excess <= 0 {
		return nil, nil
	}
	slices.SortFunc(all, func(a, b live) int {
		if c := a.created.Compare(b.created); c != 0 {
			return c
		}
		return bytes.Compare(a.key, b.key)
	})
	out := make([][]byte, 0, min(excess, maxEvictions))
	for _, l := range all[:min(excess, maxEvictions)] {
		out = append(out, l.key)
	}
	return out, nil
}

// TouchSession moves a live session's last-seen time and expiry forward;
// ErrNotFound if it is gone or expired. It never creates a record.
func (b *Badger) TouchSession(ctx context.Context, key []byte, seen, expires time.Time) error {
	const op = "touch session"
	switch {
	case len(key) == 0:
		return wrap(op, errors.New("empty session key"))
	case expires.Unix() <= 0:
		return wrap(op, fmt.Errorf("expiry time %v out of range", expires))
	}
	sk := sessionKey(key)
	err := b.write(ctx, func(txn *badger.Txn) error {
		s, err := getSession(txn, sk)
		if err != nil {
			return err
		}
		if !b.now().Before(s.Expires) {
			return ErrNotFound
		}
		g, err := getGen(txn, s.User)
		if err != nil {
			return err
		}
		if s.Gen != g {
			return ErrNotFound // ended by a newer generation
		}
		if !s.Seen.Before(seen) {
			return nil // a concurrent request refreshed it already
		}
		s.Seen, s.Expires = seen, expires
		if err := txn.SetEntry(sessionEntry(sk, encodeSession(nil, &s), expires)); err != nil {
			return err
		}
		return txn.SetEntry(sessionEntry(indexKey(s.User, key), encodeIndex(&s), expires))
	}, func() { b.sessions.drop(key) })
	return wrap(op, err)
}

// DeleteSession removes one session; no error if it is already gone.
func (b *Badger) DeleteSession(ctx context.Context, key []byte) error {
	const op = "delete session"
	if len(key) == 0 {
		return wrap(op, errors.New("empty session key"))
	}
	sk := sessionKey(key)
	err := b.write(ctx, func(txn *badger.Txn) error {
		s, err := getSession(txn, sk)
		switch {
		case errors.Is(err, ErrNotFound):
			return nil
		case err == nil:
			if err := txn.Delete(indexKey(s.User, key)); err != nil {
				return err
			}
		case !errors.Is(err, errMalformed):
			return err
		}
		// A record that cannot be decoded is still deleted; only its
		// index entry is left to expire.
		return txn.Delete(sk)
	}, func() { b.sessions.drop(key) })
	return wrap(op, err)
}

// DeleteUserSessions ends every session of the user except keepSession
// (the next session generation: one write, whatever their number) and
// returns how many it ended. The records go later (generation.go).
func (b *Badger) DeleteUserSessions(ctx context.Context, user string, keepSession []byte) (int, error) {
	const op = "delete user sessions"
	if err := checkUser(user); err != nil {
		return 0, wrap(op, err)
	}
	n, err := b.endSessions(ctx, user, keepSession, nil)
	if err != nil {
		return 0, wrap(op, err)
	}
	return n, nil
}

// Meta returns a value of the gate itself; ErrNotFound when unset.
func (b *Badger) Meta(ctx context.Context, name string) ([]byte, error) {
	if name == "" {
		return nil, wrap("read meta", errors.New("empty name"))
	}
	var v []byte
	err := b.view(ctx, func(txn *badger.Txn) error {
		item, err := txn.Get(metaKey(name))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		v, err = item.ValueCopy(nil)
		return err
	})
	if err != nil {
		return nil, wrap("read meta", err)
	}
	return v, nil
}

// PutMeta sets a value of the gate itself.
func (b *Badger) PutMeta(ctx context.Context, name string, value []byte) error {
	if name == "" {
		return wrap("write meta", errors.New("empty name"))
	}
	v := bytes.Clone(value)
	err := b.updateAccount(ctx, func(txn *badger.Txn) error {
		return txn.Set(metaKey(name), v)
	})
	return wrap("write meta", err)
}

// InitMeta implements Store.
func (b *Badger) InitMeta(ctx context.Context, name string, value []byte) ([]byte, error) {
	if name == "" {
		return nil, wrap("init meta", errors.New("empty name"))
	}
	var cur []byte
	err := b.updateAccount(ctx, func(txn *badger.Txn) error {
		item, err := txn.Get(metaKey(name))
		switch {
		case errors.Is(err, badger.ErrKeyNotFound):
			cur = bytes.Clone(value)
			return txn.Set(metaKey(name), cur)
		case err != nil:
			return err
		}
		cur, err = item.ValueCopy(nil)
		return err
	})
	if err != nil {
		return nil, wrap("init meta", err)
	}
	return cur, nil
}

// badgerLogger adapts a func(level, msg) to badger.Logger.
type badgerLogger struct {
	f func(level, msg string)
}

// newBadgerLogger returns nil (badger then logs nothing) when f is nil.
func newBadgerLogger(f func(level, msg string)) badger.Logger {
	if f == nil {
		return nil
	}
	return badgerLogger{f}
}

func (l badgerLogger) log(level, format string, args []any) {
	l.f(level, strings.TrimRight(fmt.Sprintf(format, args...), "\n"))
}

func (l badgerLogger) Errorf(format string, args ...any)   { l.log("error", format, args) }
func (l badgerLogger) Warningf(format string, args ...any) { l.log("warning", format, args) }
func (l badgerLogger) Infof(format string, args ...any)    { l.log("info", format, args) }
func (l badgerLogger) Debugf(format string, args ...any)   { l.log("debug", format, args) }
