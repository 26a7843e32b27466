package caddymodule

import (
	"context"
	"errors"
	"fmt"
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

// pooledStore is an open store with the failure counts of its accounts,
// which live as long as the store does, so that a reload does not reset
// them.
type pooledStore struct {
	*store.Badger
	limits *limits
}

func (p pooledStore) Destruct() error { return p.Close() }

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
		db, err := store.OpenBadger(h.StorageDir, store.Options{Logger: logf})
		if err != nil {
			return nil, err
		}
		return pooledStore{Badger: db, limits: newLimits(h.FreeFailures, time.Duration(h.MaxDelay), func() time.Time { return clock() })}, nil
	})
	if err != nil {
		return fmt.Errorf("storage_dir %s: %w", h.StorageDir, err)
	}
	h.dbKey = h.StorageDir
	h.db = val.(pooledStore).Badger
	h.limits = val.(pooledStore).limits
	h.limits.configure(h.FreeFailures, time.Duration(h.MaxDelay))
	if err := h.loadKey(ctx); err != nil {
		_ = h.Cleanup()
		h.dbKey = ""
		return err
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
