package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/backupcodes"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/secrets"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/users"
)

// stores shares each open store among the handlers that use its folder,
// across config reloads: Caddy provisions the new config before it cleans
// up the old one, and badger locks its folder, so the folder is opened once
// and closed when the last handler using it lets go.
var stores = caddy.NewUsagePool()

// sharedStore is an open store with the attempt counts of its accounts,
// which live as long as the store does, so that a reload does not reset
// them, and the handlers using it, which the admin API works through.
type sharedStore struct {
	store.Store
	// label names the store in messages: its folder, or the database
	// without a password.
	label    string
	attempts attemptCounts
	setCap   func(int) // the store's SetMaxSessionsPerUser

	mu       sync.Mutex
	handlers []*Handler // provisioned and not cleaned up, oldest first
	// storeUsers counts the users each realm keeps in the store: counted
	// when a handler is provisioned, kept up to date by the admin API
	// (nothing else writes users while Caddy holds the store).
	storeUsers map[string]*atomic.Int64
}

func (p *sharedStore) Destruct() error { return p.Close() }

// attemptCounts are a store's attempt counts: in memory for badger, in the
// database for PostgreSQL.
type attemptCounts interface {
	store.Attempts
	Configure(free int, maxDelay time.Duration)
}

// userCount returns the realm's count of store users.
func (p *sharedStore) userCount(realm string) *atomic.Int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.storeUsers[realm]
	if n == nil {
		n = new(atomic.Int64)
		p.storeUsers[realm] = n
	}
	return n
}

// attach records a handler that uses the store, after checking it against
// the other handlers of the same config that use it: two handlers share a
// realm only when both name it, and then their configured users must
// agree. Handlers of an older config (still attached during a reload) are
// not compared: they are about to go.
func (p *sharedStore) attach(h *Handler) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, o := range p.handlers {
		if o.config != h.config || o.realm != h.realm || o.configText == h.configText {
			continue
		}
		if o.Realm == "" || h.Realm == "" {
			return fmt.Errorf("%s and %s use the same store (%s) without naming a realm, so each would accept the other's sessions and users: "+
				"give each block its own `realm NAME` (the same name only for sites that really are one account system), or its own storage",
				o.label(), h.label(), p.label)
		}
		if err := o.users.Same(h.users); err != nil {
			return fmt.Errorf("%s and %s are both in realm %q, but their configured users differ (%v): a realm is one account system, so give them the same user lines, or different realms",
				o.label(), h.label(), h.realm, err)
		}
	}
	p.handlers = append(p.handlers, h)
	return nil
}

func (p *sharedStore) detach(h *Handler) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.handlers = slices.DeleteFunc(p.handlers, func(x *Handler) bool { return x == h })
}

// newestIn returns the handler of the realm provisioned last, or nil.
func (p *sharedStore) newestIn(realm string) *Handler {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(p.handlers) - 1; i >= 0; i-- {
		if p.handlers[i].realm == realm {
			return p.handlers[i]
		}
	}
	return nil
}

// realms returns the realms of the attached handlers, sorted.
func (p *sharedStore) realms() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, h := range p.handlers {
		if !slices.Contains(out, h.realm) {
			out = append(out, h.realm)
		}
	}
	slices.Sort(out)
	return out
}

// configured returns the configured user of that canonical name in any
// handler of the realm using the store, or nil.
func (p *sharedStore) configured(realm, key string) *users.Account {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(p.handlers) - 1; i >= 0; i-- {
		if p.handlers[i].realm != realm {
			continue
		}
		if a := p.handlers[i].users.Lookup(key); a != nil {
			return a
		}
	}
	return nil
}

// configuredUsers returns the configured users of every handler of the
// realm using the store, one per canonical name.
func (p *sharedStore) configuredUsers(realm string) []*users.Account {
	p.mu.Lock()
	defer p.mu.Unlock()
	seen := map[string]bool{}
	var out []*users.Account
	for i := len(p.handlers) - 1; i >= 0; i-- {
		if p.handlers[i].realm != realm {
			continue
		}
		for _, a := range p.handlers[i].users.All() {
			if !seen[a.Key] {
				seen[a.Key] = true
				out = append(out, a)
			}
		}
	}
	slices.SortFunc(out, func(a, b *users.Account) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// openStore opens (or shares) the store and sets up the encryption key,
// refusing to start with a key that does not match the store's secrets.
func (h *Handler) openStore(ctx context.Context) error {
	logger := h.logger.Named("badger")
	logf := func(level, msg string) {
		switch level {
		case "error":
			logger.Error(msg)
		case "warning":
			logger.Warn(msg)
		default:
			logger.Debug(msg)
		}
	}
	opts := store.Options{Logger: logf, MaxSessionsPerUser: h.MaxSessionsPerUser, Now: h.now}
	val, _, err := stores.LoadOrNew(h.storeKey, func() (caddy.Destructor, error) {
		shared := &sharedStore{label: h.storeLabel, storeUsers: map[string]*atomic.Int64{}}
		if h.backend == backendPostgres {
			pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			db, err := store.OpenPostgres(pctx, h.connection, opts)
			if err != nil {
				return nil, err
			}
			shared.Store, shared.setCap = db, db.SetMaxSessionsPerUser
			shared.attempts = store.NewPostgresAttempts(db, h.FreeFailures, time.Duration(h.MaxDelay))
			return shared, nil
		}
		db, err := store.OpenBadger(h.StorageDir, opts)
		if err != nil {
			return nil, err
		}
		shared.Store, shared.setCap = db, db.SetMaxSessionsPerUser
		shared.attempts = store.NewMemoryAttempts(h.FreeFailures, time.Duration(h.MaxDelay), h.now)
		return shared, nil
	})
	if err != nil {
		return fmt.Errorf("%s: %w", h.storeOption(), err)
	}
	h.dbKey = h.storeKey
	h.shared = val.(*sharedStore)
	if h.db, err = store.InRealm(h.shared.Store, h.realm); err != nil {
		_ = h.Cleanup()
		h.dbKey = ""
		return fmt.Errorf("realm: %w", err)
	}
	if h.wrapStore != nil {
		h.db = h.wrapStore(h.db)
	}
	h.attempts = h.shared.attempts
	h.shared.attempts.Configure(h.FreeFailures, time.Duration(h.MaxDelay))
	h.shared.setCap(h.MaxSessionsPerUser)
	if err := h.loadKey(ctx); err != nil {
		_ = h.Cleanup()
		h.dbKey = ""
		return err
	}
	if err := h.warnShadowed(ctx); err != nil {
		_ = h.Cleanup()
		h.dbKey = ""
		return err
	}
	if err := h.shared.attach(h); err != nil {
		_ = h.Cleanup()
		h.dbKey = ""
		return err
	}
	return nil
}

// storeOption names the store's option and where it points, for messages.
func (h *Handler) storeOption() string {
	if h.backend == backendPostgres {
		return "storage " + h.storeLabel
	}
	return "storage_dir " + h.StorageDir
}

// warnShadowed logs each store user that a configured user of the same
// name hides: the configuration wins.
func (h *Handler) warnShadowed(ctx context.Context) error {
	users, err := h.db.Users(ctx)
	if err != nil {
		return fmt.Errorf("%s: reading the users: %w", h.storeOption(), err)
	}
	count := h.shared.userCount(h.realm)
	count.Store(int64(len(users)))
	h.users.SetStoreUsers(func() int { return int(count.Load()) })
	for _, u := range users {
		if a := h.users.Lookup(u.Name); a != nil {
			h.logger.Warn("a user in the configuration has the name of a user in the store; the configuration wins, and the store user cannot log in",
				zap.String("user", a.Name), zap.String("store_user", u.Display))
		}
	}
	return nil
}

func (h *Handler) loadKey(ctx context.Context) error {
	check, err := h.db.Meta(ctx, store.MetaKeyCheck)
	fresh := errors.Is(err, store.ErrNotFound)
	if err != nil && !fresh {
		return fmt.Errorf("%s: reading the key check: %w", h.storeOption(), err)
	}
	var key secrets.Key
	if h.EncryptionKey != "" {
		if key, err = secrets.ParseKey(h.EncryptionKey); err != nil {
			return fmt.Errorf("encryption_key: %w", err)
		}
	} else {
		var created bool
		// A key file is made only beside a new badger store: instances
		// sharing a database must share a key, so none makes one up.
		mayCreate := fresh && h.backend == backendBadger
		key, created, err = secrets.LoadOrCreateKeyFile(h.EncryptionKeyFile, mayCreate)
		switch {
		case errors.Is(err, secrets.ErrNoKeyFile) && h.backend == backendPostgres:
			return fmt.Errorf("encryption_key_file %s is missing: with storage postgres the key is not made up, since every instance must have the same; "+
				"make one (32 random bytes, base64: head -c 32 /dev/urandom | base64), give it to each instance, or set encryption_key", h.EncryptionKeyFile)
		case errors.Is(err, secrets.ErrNoKeyFile):
			return fmt.Errorf("encryption_key_file %s is missing, but the store in %s already holds secrets encrypted with a key: restore the key file or set encryption_key", h.EncryptionKeyFile, h.StorageDir)
		}
		if err != nil {
			return fmt.Errorf("encryption_key_file: %w", err)
		}
		if created {
			h.logger.Info("created a new encryption key file; back it up with the store", zap.String("file", h.EncryptionKeyFile))
		}
	}
	if h.sealer, err = key.Sealer(); err != nil {
		return fmt.Errorf("encryption key: %w", err)
	}
	if fresh {
		// Of instances starting at once on a new database, the first to
		// write its check decides; the others check their key against it.
		if check, err = h.db.InitMeta(ctx, store.MetaKeyCheck, h.sealer.Check()); err != nil {
			return fmt.Errorf("%s: saving the key check: %w", h.storeOption(), err)
		}
	}
	if err := h.sealer.VerifyCheck(check); err != nil {
		if h.backend == backendPostgres {
			return fmt.Errorf("the encryption key does not match the database %s (its secrets were encrypted with another key: every instance sharing it must have the same encryption key): %w", h.storeLabel, err)
		}
		return fmt.Errorf("the encryption key does not match the store in %s (its secrets were encrypted with another key): %w", h.StorageDir, err)
	}
	h.codes = backupcodes.NewHasher(key.Derive("backup-codes"))
	return nil
}
