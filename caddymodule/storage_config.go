package caddymodule

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/caddyserver/caddy/v2"
)

// Storage is the store a handler keeps its state in.
type Storage struct {
	// Backend is "badger" (the embedded store, the default) or
	// "postgres".
	Backend string `json:"backend,omitempty"`

	// Dir is the badger store's folder, as StorageDir.
	Dir string `json:"dir,omitempty"`

	// Connection is the PostgreSQL connection string, as a URL
	// (postgres://user:password@host:5432/database?sslmode=verify-full)
	// or as key=value pairs; placeholders such as
	// {env.TWO_FACTOR_DATABASE_URL} are expanded. Every instance that
	// shares the database must have the same encryption key
	// (encryption_key, or encryption_key_file naming an existing file):
	// the store keeps a check value of it and refuses another.
	Connection string `json:"connection,omitempty"`
}

const (
	backendBadger   = "badger"
	backendPostgres = "postgres"
)

// storage settles where the handler's store is, from storage or
// storage_dir: h.backend, and h.storeKey, which names the store among the
// open ones (the folder, or postgres: and the connection string), and
// h.storeLabel, which names it in messages (without a password).
func (h *Handler) storage(repl *caddy.Replacer) error {
	h.backend = backendBadger
	if s := h.Storage; s != nil {
		if h.StorageDir != "" {
			return errors.New("storage and storage_dir both set: use one (storage badger <dir> is storage_dir <dir>)")
		}
		switch s.Backend {
		case "", backendBadger:
			if s.Connection != "" {
				return errors.New("storage: a connection string is for the postgres backend")
			}
			h.StorageDir = s.Dir
		case backendPostgres:
			if s.Dir != "" {
				return errors.New("storage: a folder is for the badger backend")
			}
			raw := s.Connection
			conn := strings.TrimSpace(repl.ReplaceKnown(raw, ""))
			if conn == "" {
				return fmt.Errorf("storage postgres: the connection string %q is empty once expanded", raw)
			}
			h.backend, h.connection = backendPostgres, conn
			h.storeKey = "postgres:" + conn
			h.storeLabel = "postgres " + redactConnection(conn)
			if h.EncryptionKey == "" && h.EncryptionKeyFile == "" {
				return errors.New("storage postgres: set encryption_key (or encryption_key_file): every instance sharing the database must use the same key, so none is made up")
			}
			return nil
		default:
			return fmt.Errorf("storage: unknown backend %q (badger or postgres)", s.Backend)
		}
	}
	h.StorageDir = repl.ReplaceKnown(h.StorageDir, "")
	if h.StorageDir == "" {
		h.StorageDir = filepath.Join(caddy.AppDataDir(), "two_factor")
	}
	abs, err := filepath.Abs(h.StorageDir)
	if err != nil {
		return fmt.Errorf("storage_dir %q: %w", h.StorageDir, err)
	}
	h.StorageDir = abs
	h.storeKey, h.storeLabel = abs, abs
	return nil
}

// redactConnection names a database without its password: host, port and
// database of a URL, or the host and dbname of key=value pairs.
func redactConnection(conn string) string {
	if u, err := url.Parse(conn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		return u.Host + u.Path
	}
	var host, db string
	for _, f := range strings.Fields(conn) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "host":
			host = v
		case "dbname":
			db = "/" + v
		}
	}
	if host == "" && db == "" {
		return "(connection string)"
	}
	return host + db
}
