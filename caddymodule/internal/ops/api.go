package ops

import (
	"encoding/json"
	"mime"
	"net/http"
	"strings"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/audit"
	"go.uber.org/zap"
)

// API serves the /two-factor/ routes of the admin API on the target
// Resolve finds: a running server's store, or the store the CLI opened
// itself when the server is stopped.
type API struct {
	Resolve func(r *http.Request) (t *Target, auditLog *zap.Logger, release func(), err error)
}

// Bounds of what the admin routes read.
const (
	maxAdminJSON = 64 << 10
	// MaxRestoreBytes bounds a backup.
	MaxRestoreBytes = 600 << 20
)

// BackupTrailer is set after a backup's last byte, so a client can tell a
// whole backup from one cut short.
const BackupTrailer = "Two-Factor-Backup"

type adminRoute struct {
	method string
	serve  func(o *API, w http.ResponseWriter, r *http.Request, t *Target, auditLog *zap.Logger) error
}

var adminRoutes = map[string]adminRoute{
	"/two-factor/users":           {http.MethodGet, (*API).users},
	"/two-factor/users/add":       {http.MethodPost, (*API).userAdd},
	"/two-factor/users/passwd":    {http.MethodPost, (*API).userPasswd},
	"/two-factor/users/delete":    {http.MethodPost, (*API).userDelete},
	"/two-factor/status":          {http.MethodGet, (*API).status},
	"/two-factor/reset":           {http.MethodPost, (*API).reset},
	"/two-factor/sessions/revoke": {http.MethodPost, (*API).revoke},
	"/two-factor/sessions":        {http.MethodGet, (*API).sessions},
	"/two-factor/browsers/forget": {http.MethodPost, (*API).forgetBrowsers},
	"/two-factor/unthrottle":      {http.MethodPost, (*API).unthrottle},
	"/two-factor/backup":          {http.MethodGet, (*API).backup},
	"/two-factor/restore":         {http.MethodPost, (*API).restore},
}

// Serve serves one request of the admin API's /two-factor/ routes. A
// refusal is an *Error with its HTTP status; any other error is the
// server's.
func (o *API) Serve(w http.ResponseWriter, r *http.Request) error {
	route, ok := adminRoutes[strings.TrimSuffix(r.URL.Path, "/")]
	if !ok {
		return refuse(http.StatusNotFound, "no such route: %s (see docs/operations.md, \"Admin API\")", r.URL.Path)
	}
	if r.Method != route.method {
		w.Header().Set("Allow", route.method)
		return refuse(http.StatusMethodNotAllowed, "%s needs %s, not %s", r.URL.Path, route.method, r.Method)
	}
	// A browser on another site could send a simple POST to a local admin
	// endpoint; such a request never gets here with the content types the
	// routes require, and is refused by its fetch metadata too.
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return refuse(http.StatusForbidden, "cross-site requests are refused")
	}
	t, auditLog, release, err := o.Resolve(r)
	if err != nil {
		return err
	}
	defer release()
	return route.serve(o, w, r, t, auditLog)
}

// UserRequest is the JSON body of the routes that act on one user.
type UserRequest struct {
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

func decodeUser(w http.ResponseWriter, r *http.Request, passwordAllowed bool) (UserRequest, error) {
	var req UserRequest
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

// WriteJSON answers with v as JSON, never cached.
func WriteJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

func (o *API) users(w http.ResponseWriter, r *http.Request, t *Target, _ *zap.Logger) error {
	list, err := t.listUsers(r.Context())
	if err != nil {
		return err
	}
	return WriteJSON(w, http.StatusOK, list)
}

func (o *API) userAdd(w http.ResponseWriter, r *http.Request, t *Target, auditLog *zap.Logger) error {
	req, err := decodeUser(w, r, true)
	if err != nil {
		return err
	}
	info, err := t.addUser(r.Context(), req.User, req.Password, req.PasswordHash)
	if err != nil {
		return err
	}
	audit.Admin(auditLog, r, audit.EvUserAdded, "user added to the store", zap.String("user", info.User))
	return WriteJSON(w, http.StatusCreated, info)
}

func (o *API) userPasswd(w http.ResponseWriter, r *http.Request, t *Target, auditLog *zap.Logger) error {
	req, err := decodeUser(w, r, true)
	if err != nil {
		return err
	}
	res, err := t.passwd(r.Context(), req.User, req.Password, req.PasswordHash)
	if err != nil {
		return err
	}
	audit.Admin(auditLog, r, audit.EvPasswordChanged, "password changed", zap.String("user", res.User), zap.Int("sessions_ended", res.SessionsEnded))
	return WriteJSON(w, http.StatusOK, res)
}

func (o *API) userDelete(w http.ResponseWriter, r *http.Request, t *Target, auditLog *zap.Logger) error {
	req, err := decodeUser(w, r, false)
	if err != nil {
		return err
	}
	res, err := t.deleteUser(r.Context(), req.User)
	if err != nil {
		return err
	}
	audit.Admin(auditLog, r, audit.EvUserDeleted, "user deleted from the store", zap.String("user", res.User), zap.Int("sessions_ended", res.SessionsEnded))
	return WriteJSON(w, http.StatusOK, res)
}

func (o *API) status(w http.ResponseWriter, r *http.Request, t *Target, _ *zap.Logger) error {
	name := r.URL.Query().Get("user")
	if name == "" {
		return refuse(http.StatusBadRequest, "missing the query parameter user")
	}
	st, err := t.status(r.Context(), name)
	if err != nil {
		return err
	}
	return WriteJSON(w, http.StatusOK, st)
}

func (o *API) reset(w http.ResponseWriter, r *http.Request, t *Target, auditLog *zap.Logger) error {
	req, err := decodeUser(w, r, false)
	if err != nil {
		return err
	}
	res, err := t.reset(r.Context(), req.User)
	if err != nil {
		return err
	}
	audit.Admin(auditLog, r, audit.EvReset, "two-factor authentication reset by the operator", zap.String("user", res.User),
		zap.Bool("two_factor_was_on", *res.TwoFactorWasOn), zap.Int("sessions_ended", res.SessionsEnded))
	return WriteJSON(w, http.StatusOK, res)
}

func (o *API) sessions(w http.ResponseWriter, r *http.Request, t *Target, _ *zap.Logger) error {
	name := r.URL.Query().Get("user")
	if name == "" {
		return refuse(http.StatusBadRequest, "missing the query parameter user")
	}
	list, err := t.sessions(r.Context(), name)
	if err != nil {
		return err
	}
	return WriteJSON(w, http.StatusOK, list)
}

func (o *API) forgetBrowsers(w http.ResponseWriter, r *http.Request, t *Target, auditLog *zap.Logger) error {
	req, err := decodeUser(w, r, false)
	if err != nil {
		return err
	}
	res, err := t.forgetBrowsers(r.Context(), req.User)
	if err != nil {
		return err
	}
	audit.Admin(auditLog, r, audit.EvBrowsersForgotten, "remembered browsers forgotten by the operator", zap.String("user", res.User), zap.Int("browsers", *res.BrowsersForgotten))
	return WriteJSON(w, http.StatusOK, res)
}

func (o *API) revoke(w http.ResponseWriter, r *http.Request, t *Target, auditLog *zap.Logger) error {
	req, err := decodeUser(w, r, false)
	if err != nil {
		return err
	}
	res, err := t.revoke(r.Context(), req.User)
	if err != nil {
		return err
	}
	audit.Admin(auditLog, r, audit.EvSessionsRevoked, "sessions revoked", zap.String("user", res.User), zap.Int("sessions_ended", res.SessionsEnded))
	return WriteJSON(w, http.StatusOK, res)
}

func (o *API) unthrottle(w http.ResponseWriter, r *http.Request, t *Target, auditLog *zap.Logger) error {
	req, err := decodeUser(w, r, false)
	if err != nil {
		return err
	}
	res, err := t.unthrottle(r.Context(), req.User)
	if err != nil {
		return err
	}
	audit.Admin(auditLog, r, audit.EvThrottleCleared, "throttle counts cleared", zap.String("user", res.User), zap.Int("failures_cleared", *res.FailuresCleared))
	return WriteJSON(w, http.StatusOK, res)
}

// backup streams the snapshot, and sets the trailer only once all of it is
// written.
func (o *API) backup(w http.ResponseWriter, r *http.Request, t *Target, auditLog *zap.Logger) error {
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="two-factor.backup"`)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Trailer", BackupTrailer)
	w.WriteHeader(http.StatusOK)
	if err := t.DB.Backup(r.Context(), w); err != nil {
		// The status is sent; the missing trailer tells the client.
		if auditLog != nil {
			auditLog.Error("backup failed", zap.String("event", audit.EvBackedUp), zap.Error(err))
		}
		return nil
	}
	w.Header().Set(BackupTrailer, "complete")
	audit.Admin(auditLog, r, audit.EvBackedUp, "store backed up", zap.String("storage_dir", t.Dir))
	return nil
}

func (o *API) restore(w http.ResponseWriter, r *http.Request, t *Target, auditLog *zap.Logger) error {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct != "application/octet-stream" {
		return refuse(http.StatusUnsupportedMediaType, "send the backup as application/octet-stream")
	}
	res, err := t.restore(r.Context(), http.MaxBytesReader(w, r.Body, MaxRestoreBytes))
	if err != nil {
		return err
	}
	audit.Admin(auditLog, r, audit.EvRestored, "store restored from a backup; every session ended", zap.String("storage_dir", t.Dir),
		zap.Int("users", res.Users), zap.Int("enrolments", res.Enrolments))
	return WriteJSON(w, http.StatusOK, res)
}

// StoreNotOpen starts the refusal of a storage_dir that no running handler
// uses; the CLI then opens that folder itself.
const StoreNotOpen = "no running two_factor handler uses the storage_dir"
