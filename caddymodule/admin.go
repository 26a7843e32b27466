package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"time"

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
	ops adminOps
}

// CaddyModule returns the Caddy module information.
func (AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.two_factor",
		New: func() caddy.Module { return &AdminAPI{ops: adminOps{resolve: runningTarget}} },
	}
}

// Routes returns the admin routes.
func (a *AdminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: "/two-factor/", Handler: caddy.AdminHandlerFunc(a.ops.serve)}}
}

// adminOps serves the /two-factor/ routes on the target resolve finds:
// a running handler's store in Caddy, or the store the CLI opened itself
// when Caddy is stopped.
type adminOps struct {
	resolve func(r *http.Request) (t *target, audit *zap.Logger, release func(), err error)
}

// Bounds of what the admin routes read.
const (
	maxAdminJSON    = 64 << 10
	maxRestoreBytes = 600 << 20
)

// backupTrailer is set after a backup's last byte, so a client can tell a
// whole backup from one cut short.
const backupTrailer = "Two-Factor-Backup"

type adminRoute struct {
	method string
	serve  func(o *adminOps, w http.ResponseWriter, r *http.Request, t *target, audit *zap.Logger) error
}

var adminRoutes = map[string]adminRoute{
	"/two-factor/users":           {http.MethodGet, (*adminOps).users},
	"/two-factor/users/add":       {http.MethodPost, (*adminOps).userAdd},
	"/two-factor/users/passwd":    {http.MethodPost, (*adminOps).userPasswd},
	"/two-factor/users/delete":    {http.MethodPost, (*adminOps).userDelete},
	"/two-factor/status":          {http.MethodGet, (*adminOps).status},
	"/two-factor/reset":           {http.MethodPost, (*adminOps).reset},
	"/two-factor/sessions/revoke": {http.MethodPost, (*adminOps).revoke},
	"/two-factor/unthrottle":      {http.MethodPost, (*adminOps).unthrottle},
	"/two-factor/backup":          {http.MethodGet, (*adminOps).backup},
	"/two-factor/restore":         {http.MethodPost, (*adminOps).restore},
}

func apiError(status int, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	return caddy.APIError{HTTPStatus: status, Err: err, Message: err.Error()}
}

// asAPIError gives every failure a status and a message that say what went
// wrong; a refusal keeps its own.
func asAPIError(err error) error {
	var oe *opError
	if errors.As(err, &oe) {
		return caddy.APIError{HTTPStatus: oe.status, Err: err, Message: oe.msg}
	}
	return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: err, Message: err.Error()}
}

func (o *adminOps) serve(w http.ResponseWriter, r *http.Request) error {
	route, ok := adminRoutes[strings.TrimSuffix(r.URL.Path, "/")]
	if !ok {
		return apiError(http.StatusNotFound, "no such route: %s (see docs/operations.md, \"Admin API\")", r.URL.Path)
	}
	if r.Method != route.method {
		w.Header().Set("Allow", route.method)
		return apiError(http.StatusMethodNotAllowed, "%s needs %s, not %s", r.URL.Path, route.method, r.Method)
	}
	// A browser on another site could send a simple POST to a local admin
	// endpoint; such a request never gets here with the content types the
	// routes require, and is refused by its fetch metadata too.
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return apiError(http.StatusForbidden, "cross-site requests are refused")
	}
	t, audit, release, err := o.resolve(r)
	if err != nil {
		return asAPIError(err)
	}
	defer release()
	if err := route.serve(o, w, r, t, audit); err != nil {
		return asAPIError(err)
	}
	return nil
}

// userRequest is the JSON body of the routes that act on one user.
type userRequest struct {
	User         string `json:"user"`
	Password     string `json:"password,omitempty"`
	PasswordHash string `json:"password_hash,omitempty"`
}

// decode reads a JSON request body strictly: one object, known fields,
// bounded, sent as application/json.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct != "application/json" {
		return refuse(http.StatusUnsupportedMediaType, "send the request body as application/json")
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxAdminJSON))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return refuse(http.StatusBadRequest, "reading the JSON body: %v", err)
	}
	if dec.More() {
		return refuse(http.StatusBadRequest, "the body must be one JSON object")
	}
	return nil
}

func decodeUser(w http.ResponseWriter, r *http.Request, passwordAllowed bool) (userRequest, error) {
	var req userRequest
	if err := decode(w, r, &req); err != nil {
		return req, err
	}
	if req.User == "" {
		return req, refuse(http.StatusBadRequest, "missing \"user\"")
	}
	if !passwordAllowed && (req.Password != "" || req.PasswordHash != "") {
		return req, refuse(http.StatusBadRequest, "this route takes no password")
	}
	if passwordAllowed && req.Password == "" && req.PasswordHash == "" {
		return req, refuse(http.StatusBadRequest, "missing \"password\" (or \"password_hash\")")
	}
	return req, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

func (o *adminOps) users(w http.ResponseWriter, r *http.Request, t *target, _ *zap.Logger) error {
	list, err := t.listUsers(r.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, list)
}

func (o *adminOps) userAdd(w http.ResponseWriter, r *http.Request, t *target, audit *zap.Logger) error {
	req, err := decodeUser(w, r, true)
	if err != nil {
		return err
	}
	info, err := t.addUser(r.Context(), req.User, req.Password, req.PasswordHash)
	if err != nil {
		return err
	}
	auditAdmin(audit, r, evUserAdded, "user added to the store", zap.String("user", info.User))
	return writeJSON(w, http.StatusCreated, info)
}

func (o *adminOps) userPasswd(w http.ResponseWriter, r *http.Request, t *target, audit *zap.Logger) error {
	req, err := decodeUser(w, r, true)
	if err != nil {
		return err
	}
	res, err := t.passwd(r.Context(), req.User, req.Password, req.PasswordHash)
	if err != nil {
		return err
	}
	auditAdmin(audit, r, evPasswordChanged, "password changed", zap.String("user", res.User), zap.Int("sessions_ended", res.SessionsEnded))
	return writeJSON(w, http.StatusOK, res)
}

func (o *adminOps) userDelete(w http.ResponseWriter, r *http.Request, t *target, audit *zap.Logger) error {
	req, err := decodeUser(w, r, false)
	if err != nil {
		return err
	}
	res, err := t.deleteUser(r.Context(), req.User)
	if err != nil {
		return err
	}
	auditAdmin(audit, r, evUserDeleted, "user deleted from the store", zap.String("user", res.User), zap.Int("sessions_ended", res.SessionsEnded))
	return writeJSON(w, http.StatusOK, res)
}

func (o *adminOps) status(w http.ResponseWriter, r *http.Request, t *target, _ *zap.Logger) error {
	name := r.URL.Query().Get("user")
	if name == "" {
		return refuse(http.StatusBadRequest, "missing the query parameter user")
	}
	st, err := t.status(r.Context(), name)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, st)
}

func (o *adminOps) reset(w http.ResponseWriter, r *http.Request, t *target, audit *zap.Logger) error {
	req, err := decodeUser(w, r, false)
	if err != nil {
		return err
	}
	res, err := t.reset(r.Context(), req.User)
	if err != nil {
		return err
	}
	auditAdmin(audit, r, evReset, "two-factor authentication reset by the operator", zap.String("user", res.User),
		zap.Bool("two_factor_was_on", *res.TwoFactorWasOn), zap.Int("sessions_ended", res.SessionsEnded))
	return writeJSON(w, http.StatusOK, res)
}

func (o *adminOps) revoke(w http.ResponseWriter, r *http.Request, t *target, audit *zap.Logger) error {
	req, err := decodeUser(w, r, false)
	if err != nil {
		return err
	}
	res, err := t.revoke(r.Context(), req.User)
	if err != nil {
		return err
	}
	auditAdmin(audit, r, evSessionsRevoked, "sessions revoked", zap.String("user", res.User), zap.Int("sessions_ended", res.SessionsEnded))
	return writeJSON(w, http.StatusOK, res)
}

func (o *adminOps) unthrottle(w http.ResponseWriter, r *http.Request, t *target, audit *zap.Logger) error {
	req, err := decodeUser(w, r, false)
	if err != nil {
		return err
	}
	res, err := t.unthrottle(r.Context(), req.User)
	if err != nil {
		return err
	}
	auditAdmin(audit, r, evThrottleCleared, "throttle counts cleared", zap.String("user", res.User), zap.Int("failures_cleared", *res.FailuresCleared))
	return writeJSON(w, http.StatusOK, res)
}

// backup streams the snapshot, and sets the trailer only once all of it is
// written.
func (o *adminOps) backup(w http.ResponseWriter, r *http.Request, t *target, audit *zap.Logger) error {
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="two-factor.backup"`)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Trailer", backupTrailer)
	w.WriteHeader(http.StatusOK)
	if err := t.db.Backup(r.Context(), w); err != nil {
		// The status is sent; the missing trailer tells the client.
		if audit != nil {
			audit.Error("backup failed", zap.String("event", evBackedUp), zap.Error(err))
		}
		return nil
	}
	w.Header().Set(backupTrailer, "complete")
	auditAdmin(audit, r, evBackedUp, "store backed up", zap.String("storage_dir", t.dir))
	return nil
}

func (o *adminOps) restore(w http.ResponseWriter, r *http.Request, t *target, audit *zap.Logger) error {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct != "application/octet-stream" {
		return refuse(http.StatusUnsupportedMediaType, "send the backup as application/octet-stream")
	}
	res, err := t.restore(r.Context(), http.MaxBytesReader(w, r.Body, maxRestoreBytes))
	if err != nil {
		return err
	}
	auditAdmin(audit, r, evRestored, "store restored from a backup; every session ended", zap.String("storage_dir", t.dir),
		zap.Int("users", res.Users), zap.Int("enrolments", res.Enrolments))
	return writeJSON(w, http.StatusOK, res)
}

// storeNotOpen starts the refusal of a storage_dir that no running handler
// uses; the CLI then opens that folder itself.
const storeNotOpen = "no running two_factor handler uses the storage_dir"

// errNotOpen makes the usage pool drop a lookup of a folder no handler has
// open.
var errNotOpen = errors.New("not open")

// runningTarget finds the store of the running handlers: the one named by
// the query parameter storage_dir, or the only one open. It holds a
// reference to it until release, so that a reload does not close it in the
// middle of a command.
func runningTarget(r *http.Request) (*target, *zap.Logger, func(), error) {
	var open []string
	stores.Range(func(k, v any) bool {
		if _, ok := v.(*sharedStore); ok {
			open = append(open, k.(string))
		}
		return true
	})
	slices.Sort(open)
	dir := r.URL.Query().Get("storage_dir")
	switch {
	case len(open) == 0:
		return nil, nil, nil, refuse(http.StatusNotFound, "no two_factor handler is running in this Caddy")
	case dir == "" && len(open) > 1:
		return nil, nil, nil, refuse(http.StatusBadRequest, "several two_factor stores are open; choose one with storage_dir (--storage-dir): %s", strings.Join(open, ", "))
	case dir == "":
		dir = open[0]
	}
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	val, _, err := stores.LoadOrNew(dir, func() (caddy.Destructor, error) { return nil, errNotOpen })
	if err != nil {
		return nil, nil, nil, refuse(http.StatusNotFound, storeNotOpen+" %s; open ones: %s", dir, strings.Join(open, ", "))
	}
	release := func() { _, _ = stores.Delete(dir) }
	shared, ok := val.(*sharedStore)
	if !ok {
		release()
		return nil, nil, nil, refuse(http.StatusServiceUnavailable, "the store in %s is not open", dir)
	}
	realms := shared.realms()
	realm := r.URL.Query().Get("realm")
	switch {
	case len(realms) == 0:
		release()
		return nil, nil, nil, refuse(http.StatusServiceUnavailable, "the store in %s is being closed; try again", dir)
	case realm == "" && len(realms) > 1:
		release()
		return nil, nil, nil, refuse(http.StatusBadRequest, "the store in %s serves several realms; choose one with realm (--realm): %s", dir, strings.Join(realms, ", "))
	case realm == "":
		realm = realms[0]
	case !slices.Contains(realms, realm):
		release()
		return nil, nil, nil, refuse(http.StatusNotFound, "no running two_factor handler of the store in %s is in realm %q; its realms: %s", dir, realm, strings.Join(realms, ", "))
	}
	h := shared.newestIn(realm)
	if h == nil {
		release()
		return nil, nil, nil, refuse(http.StatusServiceUnavailable, "the store in %s is being closed; try again", dir)
	}
	t := &target{
		db: h.db, realm: realm, dir: dir, shared: shared,
		hash:     func(ctx context.Context, pw string) (string, error) { return h.users.Hash(ctx, false, pw) },
		keyCheck: h.sealer.VerifyCheck,
		now:      func() time.Time { return clock() },
	}
	return t, h.audit, release, nil
}

// Interface guard
var _ caddy.AdminRouter = (*AdminAPI)(nil)
