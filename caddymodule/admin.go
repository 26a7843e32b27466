package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/ops"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/users"
	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(AdminAPI{})
}

// AdminAPI is the admin API module admin.api.two_factor: the routes under
// /two-factor/ on Caddy's admin endpoint through which `caddy two-factor`
// manages the users and the store of the running two_factor handlers.
// Caddy loads it by itself; it has no configuration. While Caddy runs,
// badger's lock keeps any other process out of the store, so these routes
// are the way in.
type AdminAPI struct {
	api ops.API
}

// CaddyModule returns the Caddy module information.
func (AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.two_factor",
		New: func() caddy.Module { return &AdminAPI{api: ops.API{Resolve: runningTarget}} },
	}
}

// Routes returns the admin routes.
func (a *AdminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: "/two-factor/", Handler: caddy.AdminHandlerFunc(a.serve)}}
}

// errNotOpen makes the usage pool drop a lookup of a folder no handler has
// open.
var errNotOpen = errors.New("not open")

// runningTarget finds the store of the running handlers: the one named by
// the query parameter storage_dir, or the only one open. It holds a
// reference to it until release, so that a reload does not close it in the
// middle of a command.
func runningTarget(r *http.Request) (*ops.Target, *zap.Logger, func(), error) {
	var open []string
	keys := map[string]string{} // label → pool key
	stores.Range(func(k, v any) bool {
		if s, ok := v.(*sharedStore); ok {
			open = append(open, s.label)
			keys[s.label] = k.(string)
		}
		return true
	})
	slices.Sort(open)
	dir := r.URL.Query().Get("storage_dir")
	if name := r.URL.Query().Get("store"); name != "" {
		dir = name // a store by its label: a folder, or "postgres host/database"
	} else if dir != "" {
		if abs, err := filepath.Abs(dir); err == nil {
			dir = abs
		}
	}
	switch {
	case len(open) == 0:
		return nil, nil, nil, opsError(http.StatusNotFound, "no two_factor handler is running in this Caddy")
	case dir == "" && len(open) > 1:
		return nil, nil, nil, opsError(http.StatusBadRequest, "several two_factor stores are open; choose one with storage_dir (--storage-dir): %s", strings.Join(open, ", "))
	case dir == "":
		dir = open[0]
	}
	key, ok := keys[dir]
	if !ok {
		return nil, nil, nil, opsError(http.StatusNotFound, ops.StoreNotOpen+" %s; open ones: %s", dir, strings.Join(open, ", "))
	}
	val, _, err := stores.LoadOrNew(key, func() (caddy.Destructor, error) { return nil, errNotOpen })
	if err != nil {
		return nil, nil, nil, opsError(http.StatusNotFound, ops.StoreNotOpen+" %s; open ones: %s", dir, strings.Join(open, ", "))
	}
	release := func() { _, _ = stores.Delete(key) }
	shared, ok := val.(*sharedStore)
	if !ok {
		release()
		return nil, nil, nil, opsError(http.StatusServiceUnavailable, "the store in %s is not open", dir)
	}
	realms := shared.realms()
	realm := r.URL.Query().Get("realm")
	switch {
	case len(realms) == 0:
		release()
		return nil, nil, nil, opsError(http.StatusServiceUnavailable, "the store in %s is being closed; try again", dir)
	case realm == "" && len(realms) > 1:
		release()
		return nil, nil, nil, opsError(http.StatusBadRequest, "the store in %s serves several realms; choose one with realm (--realm): %s", dir, strings.Join(realms, ", "))
	case realm == "":
		realm = realms[0]
	case !slices.Contains(realms, realm):
		release()
		return nil, nil, nil, opsError(http.StatusNotFound, "no running two_factor handler of the store in %s is in realm %q; its realms: %s", dir, realm, strings.Join(realms, ", "))
	}
	h := shared.newestIn(realm)
	if h == nil {
		release()
		return nil, nil, nil, opsError(http.StatusServiceUnavailable, "the store in %s is being closed; try again", dir)
	}
	t := &ops.Target{
		DB: h.db, Realm: realm, Dir: dir, Running: runningRealm{shared: shared, realm: realm},
		Hash:     func(ctx context.Context, pw string) (string, error) { return h.users.Hash(ctx, false, pw) },
		KeyCheck: h.sealer.VerifyCheck,
		Now:      h.now,
	}
	return t, h.audit, release, nil
}

// Interface guard
var _ caddy.AdminRouter = (*AdminAPI)(nil)

// serve answers the admin API's /two-factor/ routes, with each refusal's
// own status and message.
func (a *AdminAPI) serve(w http.ResponseWriter, r *http.Request) error {
	err := a.api.Serve(w, r)
	if err == nil {
		return nil
	}
	var oe *ops.Error
	if errors.As(err, &oe) {
		return caddy.APIError{HTTPStatus: oe.Status, Err: err, Message: oe.Msg}
	}
	return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: err, Message: err.Error()}
}

// opsError is a refusal of the admin API.
func opsError(status int, format string, args ...any) error {
	return &ops.Error{Status: status, Msg: fmt.Sprintf(format, args...)}
}

// runningRealm is a running realm's side of a store, for the operator's
// commands.
type runningRealm struct {
	shared *sharedStore
	realm  string
}

func (r runningRealm) Configured(key string) *users.Account { return r.shared.configured(r.realm, key) }
func (r runningRealm) ConfiguredUsers() []*users.Account    { return r.shared.configuredUsers(r.realm) }
func (r runningRealm) Attempts() store.Attempts             { return r.shared.attempts }

// CountUsers updates the running handlers' count of store users in every
// realm, which shapes the decoy hashes of unknown names.
func (r runningRealm) CountUsers(ctx context.Context) {
	for _, realm := range r.shared.realms() {
		db, err := store.InRealm(r.shared.Store, realm)
		if err != nil {
			continue
		}
		if list, err := db.Users(ctx); err == nil {
			r.shared.userCount(realm).Store(int64(len(list)))
		}
	}
}
