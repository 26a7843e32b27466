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
)

// stores shares each open store among the handlers that use its folder,
// across config reloads: Caddy provisions the new config before it cleans
// up the old one, and badger locks its folder, so the folder is opened once
// and closed when the last handler using it lets go.
var stores = caddy.NewUsagePool()

// sharedStore is an open store with the failure counts of its accounts,
// which live as long as the store does, so that a reload does not reset
// them, and the handlers using it, which the admin API works through.
type sharedStore struct {
	*store.Badger
	dir    string
	limits *limits
	// storeUsers is how many users the store keeps: counted when a
	// handler is provisioned, kept up to date by the admin API (nothing
	// else writes users while Caddy holds the store).
	storeUsers atomic.Int64

	mu       sync.Mutex
	handlers []*Handler // provisioned and not cleaned up, oldest first
}

func (p *sharedStore) Destruct() error { return p.Close() }

// attach records a handler that uses the store; detach forgets it.
func (p *sharedStore) attach(h *Handler) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.handlers = append(p.handlers, h)
}

func (p *sharedStore) detach(h *Handler) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.handlers = slices.DeleteFunc(p.handlers, func(x *Handler) bool { return x == h })
}

// newest returns the handler provisioned last (the current config's), or
// nil if none is attached.
func (p *sharedStore) newest() *Handler {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.handlers) == 0 {
		return nil
	}
	return p.handlers[len(p.handlers)-1]
}

// configured returns the configured user of that canonical name in any
// handler using the store, or nil.
func (p *sharedStore) configured(key string) *account {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(p.handlers) - 1; i >= 0; i-- {
		if a := p.handlers[i].users.lookup(key); a != nil {
			return a
		}
	}
	return nil
}

// configuredUsers returns the configured users of every handler using the
// store, one per canonical name.
func (p *sharedStore) configuredUsers() []*account {
	p.mu.Lock()
	defer p.mu.Unlock()
	seen := map[string]bool{}
	var out []*account
	for i := len(p.handlers) - 1; i >= 0; i-- {
		for key, a := range p.handlers[i].users.byKey {
			if !seen[key] {
				seen[key] = true
				out = append(out, a)
			}
		}
	}
	slices.SortFunc(out, func(a, b *account) int { return strings.Compare(a.key, b.key) })
	return out
}

// keyCheckMeta is the store's record of which key its secrets are
// encrypted with.
const keyCheckMeta = "key-check"

// openStore opens (or shares) the store and sets up the encryption key,
// refusing to start with a key that does not match the store's secrets.
func (h *Handler) openStore(ctx caddy.Context) error {
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
	val, _, err := stores.LoadOrNew(h.StorageDir, func() (caddy.Destructor, error) {
		db, err := store.OpenBadger(h.StorageDir, store.Options{Logger: logf, MaxSessionsPerUser: h.MaxSessionsPerUser})
		if err != nil {
			return nil, err
		}
		return &sharedStore{Badger: db, dir: h.StorageDir, limits: newLimits(h.FreeFailures, time.Duration(h.MaxDelay), func() time.Time { return clock() })}, nil
	})
	if err != nil {
		return fmt.Errorf("storage_dir %s: %w", h.StorageDir, err)
	}
	h.dbKey = h.StorageDir
	h.shared = val.(*sharedStore)
	h.db = h.shared.Badger
	h.limits = h.shared.limits
	h.limits.configure(h.FreeFailures, time.Duration(h.MaxDelay))
	h.shared.SetMaxSessionsPerUser(h.MaxSessionsPerUser)
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
	h.shared.attach(h)
	return nil
}

// warnShadowed logs each store user that a configured user of the same
// name hides: the configuration wins.
func (h *Handler) warnShadowed(ctx context.Context) error {
	users, err := h.db.Users(ctx)
	if err != nil {
		return fmt.Errorf("storage_dir %s: reading the users: %w", h.StorageDir, err)
	}
	h.shared.storeUsers.Store(int64(len(users)))
	h.users.storeUsers = func() int { return int(h.shared.storeUsers.Load()) }
	for _, u := range users {
		if a := h.users.lookup(u.Name); a != nil {
			h.logger.Warn("a user in the configuration has the name of a user in the store; the configuration wins, and the store user cannot log in",
				zap.String("user", a.name), zap.String("store_user", u.Display))
		}
	}
	return nil
}

func (h *Handler) loadKey(ctx context.Context) error {
	check, err := h.db.Meta(ctx, keyCheckMeta)
	fresh := errors.Is(err, store.ErrNotFound)
	if err != nil && !fresh {
		return fmt.Errorf("storage_dir %s: reading the key check: %w", h.StorageDir, err)
	}
	var key secrets.Key
	if h.EncryptionKey != "" {
		if key, err = secrets.ParseKey(h.EncryptionKey); err != nil {
			return fmt.Errorf("encryption_key: %w", err)
		}
	} else {
		var created bool
		key, created, err = secrets.LoadOrCreateKeyFile(h.EncryptionKeyFile, fresh)
		if errors.Is(err, secrets.ErrNoKeyFile) {
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
		if err := h.db.PutMeta(ctx, keyCheckMeta, h.sealer.Check()); err != nil {
			return fmt.Errorf("storage_dir %s: saving the key check: %w", h.StorageDir, err)
		}
	} else if err := h.sealer.VerifyCheck(check); err != nil {
		return fmt.Errorf("the encryption key does not match the store in %s (its secrets were encrypted with another key): %w", h.StorageDir, err)
	}
	h.codes = backupcodes.NewHasher(key.Derive("backup-codes"))
	return nil
}
