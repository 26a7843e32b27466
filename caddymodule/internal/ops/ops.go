// Package ops is what an operator does to a store: list, add, change and
// delete users, a user's status, reset and revoke, clearing throttle
// counts, backup and restore, both as functions on a Target and as the
// JSON routes of the admin API (/two-factor/...) that `caddy two-factor`
// calls. A Target is a store a running server has open (Running is set)
// or one the CLI opened itself while the server is stopped.
package ops

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/agent"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/users"
)

// Target is a store an operator's command works on: one a running server
// has open (Running is set), or one the CLI opened itself while the server
// is stopped (Running is nil: no throttle counts, no configured users).
type Target struct {
	// DB is the realm's view of the store; Realm names it, Dir is the
	// store's folder.
	DB    store.Store
	Realm string
	Dir   string
	// Running is the server's side of the store; nil when it is stopped.
	Running Running
	// Hash makes the hash of a new password.
	Hash func(ctx context.Context, password string) (string, error)
	// KeyCheck verifies a backup's key check against the encryption key
	// in use; nil when the key is not known.
	KeyCheck func(check []byte) error
	Now      func() time.Time
}

// Running is what a running server knows of a realm beside its store.
type Running interface {
	// Configured returns the configured user of a canonical name, or nil;
	// ConfiguredUsers all of them, by canonical name.
	Configured(key string) *users.Account
	ConfiguredUsers() []*users.Account
	// Attempts are the realm's throttle counts.
	Attempts() store.Attempts
	// CountUsers has the gates count the store's users again.
	CountUsers(ctx context.Context)
}

// Error is a refusal with the HTTP status the admin API answers with.
type Error struct {
	Status int
	Msg    string
}

func (e *Error) Error() string { return e.Msg }

func refuse(status int, format string, args ...any) error {
	return &Error{Status: status, Msg: fmt.Sprintf(format, args...)}
}

// storeError turns a store failure into a refusal that says so.
func storeError(err error) error {
	if err == nil {
		return nil
	}
	var oe *Error
	if errors.As(err, &oe) {
		return err
	}
	return &Error{Status: http.StatusServiceUnavailable, Msg: "store: " + err.Error()}
}

// Sources of a user.
const (
	SourceConfig = "config"
	SourceStore  = "store"
)

// UserInfo is one line of the user list.
type UserInfo struct {
	User      string `json:"user"`
	Source    string `json:"source"`
	TwoFactor bool   `json:"two_factor"`
	// Shadowed marks a store user that a configured user of the same
	// name hides: it cannot log in.
	Shadowed        bool       `json:"shadowed,omitempty"`
	Created         *time.Time `json:"created,omitempty"`
	PasswordChanged *time.Time `json:"password_changed,omitempty"`
}

// UserList is the answer of GET /two-factor/users.
type UserList struct {
	StorageDir string     `json:"storage_dir"`
	Users      []UserInfo `json:"users"`
	// Note says what the list may lack (when Caddy is not running, the
	// users of its config are unknown).
	Note string `json:"note,omitempty"`
}

// SessionInfo describes a session without anything that would let one
// use it.
type SessionInfo struct {
	Stage    string    `json:"stage"`
	Created  time.Time `json:"created"`
	LastSeen time.Time `json:"last_seen"`
	Expires  time.Time `json:"expires"`
}

// SessionList is the answer of GET /two-factor/sessions: a user's live
// sessions and remembered browsers, with nothing that would let one use
// them (no cookie, no store key, no token or its hash).
type SessionList struct {
	User     string          `json:"user"`
	Sessions []SessionDetail `json:"sessions"`
	Browsers []BrowserDetail `json:"remembered_browsers"`
	Note     string          `json:"note,omitempty"`
}

// SessionDetail is one session of a SessionList.
type SessionDetail struct {
	SessionInfo
	// Browser and System are read from the User-Agent at sign-in
	// (empty when unknown); Address is the client's address then.
	Browser string `json:"browser,omitempty"`
	System  string `json:"system,omitempty"`
	Address string `json:"address,omitempty"`
}

// BrowserDetail is one remembered browser of a SessionList.
type BrowserDetail struct {
	Browser string    `json:"browser,omitempty"`
	System  string    `json:"system,omitempty"`
	Address string    `json:"address,omitempty"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
}

// FactorThrottle is an account's count for one factor.
type FactorThrottle struct {
	Failures          int `json:"failures"`
	RetryAfterSeconds int `json:"retry_after_seconds"`
}

// ThrottleInfo is an account's throttling state.
type ThrottleInfo struct {
	Throttled bool                      `json:"throttled"`
	Factors   map[string]FactorThrottle `json:"factors"`
}

// StatusInfo is the answer of GET /two-factor/status.
type StatusInfo struct {
	User            string     `json:"user"`
	Source          string     `json:"source,omitempty"`
	TwoFactor       bool       `json:"two_factor"`
	EnabledAt       *time.Time `json:"enabled_at,omitempty"`
	BackupCodesLeft int        `json:"backup_codes_left"`
	// App says whether the user has an authenticator app; SecurityKeys
	// counts their security keys and passkeys.
	App          bool          `json:"app"`
	SecurityKeys int           `json:"security_keys"`
	Throttle     *ThrottleInfo `json:"throttle,omitempty"`
	Sessions     []SessionInfo `json:"sessions"`
	Note         string        `json:"note,omitempty"`
}

// ChangeResult is the answer of the commands that change a user.
type ChangeResult struct {
	User          string `json:"user"`
	SessionsEnded int    `json:"sessions_ended"`
	// TwoFactorWasOn is set by reset and delete.
	TwoFactorWasOn *bool `json:"two_factor_was_on,omitempty"`
	// FailuresCleared is set by unthrottle.
	FailuresCleared *int `json:"failures_cleared,omitempty"`
	// BrowsersForgotten is set by browsers forget and reset.
	BrowsersForgotten *int   `json:"browsers_forgotten,omitempty"`
	Note              string `json:"note,omitempty"`
}

// RestoreResult is the answer of POST /two-factor/restore.
type RestoreResult struct {
	Users           int `json:"users"`
	Enrolments      int `json:"enrolments"`
	SessionsSkipped int `json:"sessions_skipped"`
}

// userKey checks a user name given to a command and returns its key.
func userKey(name string) (string, error) {
	key, ok := users.CanonicalName(name)
	if !ok {
		return "", refuse(http.StatusBadRequest, "invalid user name %q: it must be non-empty UTF-8 without spaces or control characters, at most %d bytes", name, users.MaxUsernameLen)
	}
	return key, nil
}

// configured returns the configured user of that key, if Caddy runs.
func (t *Target) configured(key string) *users.Account {
	if t.Running == nil {
		return nil
	}
	return t.Running.Configured(key)
}

// whoIs names the user for a command: the configured user, the store user,
// or (for state left behind) the name as given. source is "" for a name
// that only has state in the store (an enrolment or sessions).
func (t *Target) whoIs(ctx context.Context, name, key string) (display, source string, err error) {
	if a := t.configured(key); a != nil {
		return a.Name, SourceConfig, nil
	}
	u, err := t.DB.User(ctx, key)
	switch {
	case err == nil:
		return u.Display, SourceStore, nil
	case errors.Is(err, store.ErrNoUser):
		return name, "", nil
	}
	return "", "", storeError(err)
}

func (t *Target) offlineNote() string {
	if t.Running != nil {
		return ""
	}
	return "Caddy is not running: users in its configuration are not known, and throttle counts (kept in its memory) are gone"
}

// listUsers lists the configured users and the store users.
func (t *Target) listUsers(ctx context.Context) (UserList, error) {
	out := UserList{StorageDir: t.Dir, Users: []UserInfo{}, Note: t.offlineNote()}
	keys := map[string]*UserInfo{}
	var order []string
	if t.Running != nil {
		for _, a := range t.Running.ConfiguredUsers() {
			keys[a.Key] = &UserInfo{User: a.Name, Source: SourceConfig}
			order = append(order, a.Key)
		}
	}
	stored, err := t.DB.Users(ctx)
	if err != nil {
		return out, storeError(err)
	}
	var shadowed []UserInfo
	for _, u := range stored {
		info := UserInfo{User: u.Display, Source: SourceStore, Created: &u.Created, PasswordChanged: &u.PasswordChanged}
		if _, clash := keys[u.Name]; clash {
			info.Shadowed = true
			shadowed = append(shadowed, info)
			continue
		}
		keys[u.Name] = &info
		order = append(order, u.Name)
	}
	slices.Sort(order)
	for _, k := range order {
		a, err := t.DB.Account(ctx, k)
		if err != nil {
			return out, storeError(err)
		}
		keys[k].TwoFactor = a.Enabled()
		out.Users = append(out.Users, *keys[k])
	}
	// A hidden store user shares its name, and so its second factor,
	// with the configured user: it is listed after the others.
	out.Users = append(out.Users, shadowed...)
	return out, nil
}

// newHash checks a new password or hash given to a command and returns the
// hash to store.
func (t *Target) newHash(ctx context.Context, password, hash string) (string, error) {
	switch {
	case password != "" && hash != "":
		return "", refuse(http.StatusBadRequest, "give either password or password_hash, not both")
	case hash != "":
		if err := users.CheckHash(hash); err != nil {
			return "", refuse(http.StatusBadRequest, "password_hash: %v", err)
		}
		return hash, nil
	}
	if err := users.CheckNewPassword(password); err != nil {
		return "", refuse(http.StatusBadRequest, "password: %v", err)
	}
	h, err := t.Hash(ctx, password)
	if err != nil {
		return "", fmt.Errorf("hashing the password: %w", err)
	}
	return h, nil
}

// addUser adds a user to the store.
func (t *Target) addUser(ctx context.Context, name, password, hash string) (UserInfo, error) {
	key, err := userKey(name)
	if err != nil {
		return UserInfo{}, err
	}
	if a := t.configured(key); a != nil {
		return UserInfo{}, refuse(http.StatusConflict, "%s is a user in the Caddy config; a store user of that name could not log in", a.Name)
	}
	h, err := t.newHash(ctx, password, hash)
	if err != nil {
		return UserInfo{}, err
	}
	at := t.Now()
	err = t.DB.AddUser(ctx, store.User{Name: key, Display: name, PasswordHash: h, Created: at, PasswordChanged: at})
	if errors.Is(err, store.ErrUserExists) {
		return UserInfo{}, refuse(http.StatusConflict, "a user %s already exists in the store (to change the password: user passwd)", name)
	}
	if err != nil {
		return UserInfo{}, storeError(err)
	}
	t.countUsers(ctx)
	return UserInfo{User: name, Source: SourceStore, Created: &at, PasswordChanged: &at}, nil
}

// storeUser refuses a command that only applies to store users for a
// configured one or an unknown one.
func (t *Target) storeUser(name, key string) error {
	if a := t.configured(key); a != nil {
		return refuse(http.StatusConflict, "%s is a user in the Caddy config: change or remove it there", a.Name)
	}
	return nil
}

// passwd sets a store user's password and ends all their sessions.
func (t *Target) passwd(ctx context.Context, name, password, hash string) (ChangeResult, error) {
	key, err := userKey(name)
	if err != nil {
		return ChangeResult{}, err
	}
	if err := t.storeUser(name, key); err != nil {
		return ChangeResult{}, err
	}
	if _, err := t.DB.User(ctx, key); errors.Is(err, store.ErrNoUser) {
		return ChangeResult{}, refuse(http.StatusNotFound, "no user %s in the store", name)
	}
	h, err := t.newHash(ctx, password, hash)
	if err != nil {
		return ChangeResult{}, err
	}
	n, err := t.DB.SetPassword(ctx, key, h, t.Now(), nil)
	if errors.Is(err, store.ErrNoUser) {
		return ChangeResult{}, refuse(http.StatusNotFound, "no user %s in the store", name)
	}
	if err != nil {
		return ChangeResult{}, storeError(err)
	}
	note := t.event(ctx, key, store.Event{Kind: store.EventPassword, Count: n})
	return ChangeResult{User: name, SessionsEnded: n, Note: note}, nil
}

// deleteUser removes a store user with their enrolment and sessions.
func (t *Target) deleteUser(ctx context.Context, name string) (ChangeResult, error) {
	key, err := userKey(name)
	if err != nil {
		return ChangeResult{}, err
	}
	if err := t.storeUser(name, key); err != nil {
		return ChangeResult{}, err
	}
	u, err := t.DB.User(ctx, key)
	if errors.Is(err, store.ErrNoUser) {
		return ChangeResult{}, refuse(http.StatusNotFound, "no user %s in the store", name)
	}
	if err != nil {
		return ChangeResult{}, storeError(err)
	}
	a, err := t.DB.Account(ctx, key)
	if err != nil {
		return ChangeResult{}, storeError(err)
	}
	n, err := t.DB.DeleteUser(ctx, key)
	if errors.Is(err, store.ErrNoUser) {
		return ChangeResult{}, refuse(http.StatusNotFound, "no user %s in the store", name)
	}
	if err != nil {
		return ChangeResult{}, storeError(err)
	}
	if t.Running != nil {
		_, _ = t.Running.Attempts().ClearAccount(ctx, t.Realm, key, store.Factors)
	}
	t.countUsers(ctx)
	on := a.Enabled()
	return ChangeResult{User: u.Display, SessionsEnded: n, TwoFactorWasOn: &on}, nil
}

// known finds a user for status, reset and sessions revoke: configured, in
// the store, or with state left in the store. Anything else is unknown.
func (t *Target) known(ctx context.Context, name string) (key, display, source string, a store.Account, sessions []store.Session, err error) {
	if key, err = userKey(name); err != nil {
		return
	}
	if display, source, err = t.whoIs(ctx, name, key); err != nil {
		return
	}
	if a, err = t.DB.Account(ctx, key); err != nil {
		err = storeError(err)
		return
	}
	if sessions, err = t.DB.UserSessions(ctx, key); err != nil {
		err = storeError(err)
		return
	}
	if source == "" && !a.Enabled() && len(sessions) == 0 {
		err = refuse(http.StatusNotFound, "unknown user %s: not in the Caddy config, not in the store, and nothing stored for that name", name)
		if t.Running == nil {
			err = refuse(http.StatusNotFound, "unknown user %s: not in the store, and nothing stored for that name (Caddy is not running, so the users of its config are not known)", name)
		}
	}
	return
}

var stageNames = map[store.Stage]string{
	store.StagePassword: "code_pending", store.StageEnrol: "enrolment_required", store.StageFull: "full",
}

// status reports a user's second factor, throttling and sessions.
func (t *Target) status(ctx context.Context, name string) (StatusInfo, error) {
	key, display, source, a, sessions, err := t.known(ctx, name)
	if err != nil {
		return StatusInfo{}, err
	}
	out := StatusInfo{User: display, Source: source, TwoFactor: a.Enabled(), BackupCodesLeft: len(a.BackupCodes), Sessions: []SessionInfo{}, Note: t.offlineNote()}
	out.App, out.SecurityKeys = a.TOTP != nil, len(a.Credentials)
	if a.TOTP != nil {
		at := a.TOTP.EnabledAt
		out.EnabledAt = &at
	} else if len(a.Credentials) > 0 {
		at := a.Credentials[0].Added
		out.EnabledAt = &at
	}
	for _, s := range sessions {
		out.Sessions = append(out.Sessions, SessionInfo{Stage: stageNames[s.Stage], Created: s.Created, LastSeen: s.Seen, Expires: s.Expires})
	}
	slices.SortFunc(out.Sessions, func(x, y SessionInfo) int { return x.Created.Compare(y.Created) })
	if t.Running != nil {
		th := &ThrottleInfo{Factors: map[string]FactorThrottle{}}
		for _, f := range store.Factors {
			n, wait, err := t.Running.Attempts().AccountState(ctx, t.Realm, f, key)
			if err != nil {
				return out, storeError(err)
			}
			secs := int((wait + time.Second - 1) / time.Second)
			th.Factors[f] = FactorThrottle{Failures: n, RetryAfterSeconds: secs}
			if wait > 0 {
				th.Throttled = true
			}
		}
		out.Throttle = th
	}
	return out, nil
}

// reset turns a user's second factor off and ends all their sessions, so
// that they log in with the password alone and can enrol again.
func (t *Target) reset(ctx context.Context, name string) (ChangeResult, error) {
	key, display, _, a, _, err := t.known(ctx, name)
	if err != nil {
		return ChangeResult{}, err
	}
	on := a.Enabled()
	n := 0
	if on {
		// One transaction: the enrolment, the backup codes and every
		// session go together. DisableTOTP does not count the sessions.
		sessions, err := t.DB.UserSessions(ctx, key)
		if err != nil {
			return ChangeResult{}, storeError(err)
		}
		err = t.DB.DisableTOTP(ctx, key, nil)
		switch {
		case err == nil:
			n = len(sessions)
		case errors.Is(err, store.ErrNotEnabled):
			on = false
		default:
			return ChangeResult{}, storeError(err)
		}
	}
	kind := store.EventDisabled
	if !on {
		if n, err = t.DB.DeleteUserSessions(ctx, key, nil); err != nil {
			return ChangeResult{}, storeError(err)
		}
		kind = store.EventSessionsEnded
	}
	// DisableTOTP forgot the remembered browsers in its transaction; with
	// two-factor authentication off there may be some left (harmless
	// while it is off: forgotten here so that none outlives the reset).
	if _, err := t.DB.ForgetBrowsers(ctx, key); err != nil {
		return ChangeResult{}, storeError(err)
	}
	note := t.event(ctx, key, store.Event{Kind: kind, Count: n})
	return ChangeResult{User: display, SessionsEnded: n, TwoFactorWasOn: &on, Note: note}, nil
}

// sessions lists a user's live sessions and remembered browsers.
func (t *Target) sessions(ctx context.Context, name string) (SessionList, error) {
	key, display, _, _, sessions, err := t.known(ctx, name)
	if err != nil {
		return SessionList{}, err
	}
	browsers, err := t.DB.RememberedBrowsers(ctx, key)
	if err != nil {
		return SessionList{}, storeError(err)
	}
	out := SessionList{User: display, Sessions: []SessionDetail{}, Browsers: []BrowserDetail{}, Note: t.offlineNote()}
	for _, s := range sessions {
		b, sys := agent.Parse(s.Agent)
		out.Sessions = append(out.Sessions, SessionDetail{
			SessionInfo: SessionInfo{Stage: stageNames[s.Stage], Created: s.Created, LastSeen: s.Seen, Expires: s.Expires},
			Browser:     b, System: sys, Address: s.Addr,
		})
	}
	slices.SortFunc(out.Sessions, func(x, y SessionDetail) int { return x.Created.Compare(y.Created) })
	for _, rb := range browsers {
		b, sys := agent.Parse(rb.Agent)
		out.Browsers = append(out.Browsers, BrowserDetail{Browser: b, System: sys, Address: rb.Addr, Created: rb.Created, Expires: rb.Expires})
	}
	return out, nil
}

// forgetBrowsers forgets every remembered browser of a user: each is
// asked for a code at its next login.
func (t *Target) forgetBrowsers(ctx context.Context, name string) (ChangeResult, error) {
	key, display, _, _, _, err := t.known(ctx, name)
	if err != nil {
		return ChangeResult{}, err
	}
	n, err := t.DB.ForgetBrowsers(ctx, key)
	if err != nil {
		return ChangeResult{}, storeError(err)
	}
	return ChangeResult{User: display, BrowsersForgotten: &n}, nil
}

// revoke ends every session of a user.
func (t *Target) revoke(ctx context.Context, name string) (ChangeResult, error) {
	key, display, _, _, _, err := t.known(ctx, name)
	if err != nil {
		return ChangeResult{}, err
	}
	n, err := t.DB.DeleteUserSessions(ctx, key, nil)
	if err != nil {
		return ChangeResult{}, storeError(err)
	}
	note := t.event(ctx, key, store.Event{Kind: store.EventSessionsEnded, Count: n})
	return ChangeResult{User: display, SessionsEnded: n, Note: note}, nil
}

// event keeps an operator's change in the user's recent activity (the
// Security page). The change is made already: a failure to keep it fails
// nothing, and the answer's note says so.
func (t *Target) event(ctx context.Context, key string, e store.Event) string {
	e.Time, e.By = t.Now(), store.ByOperator
	if err := t.DB.AddEvent(ctx, key, e); err != nil {
		return "done, but the change could not be added to the user's recent activity: " + err.Error()
	}
	return ""
}

// unthrottle forgets an account's failures, for every factor.
func (t *Target) unthrottle(ctx context.Context, name string) (ChangeResult, error) {
	key, err := userKey(name)
	if err != nil {
		return ChangeResult{}, err
	}
	if t.Running == nil {
		zero := 0
		return ChangeResult{User: name, FailuresCleared: &zero, Note: "Caddy is not running: throttle counts are kept in its memory, so there are none to clear"}, nil
	}
	display, _, err := t.whoIs(ctx, name, key)
	if err != nil {
		return ChangeResult{}, err
	}
	n, err := t.Running.Attempts().ClearAccount(ctx, t.Realm, key, store.Factors)
	if err != nil {
		return ChangeResult{}, storeError(err)
	}
	return ChangeResult{User: display, FailuresCleared: &n}, nil
}

// restore reads a backup into the store, which must hold no users and no
// enrolments.
func (t *Target) restore(ctx context.Context, r io.Reader) (RestoreResult, error) {
	snap, err := t.DB.Restore(ctx, r, func(s store.Snapshot) error {
		check, ok := s.Meta[store.MetaKeyCheck]
		if !ok {
			return refuse(http.StatusBadRequest, "not a backup of a two_factor store: it has no encryption-key check")
		}
		if t.KeyCheck != nil {
			if err := t.KeyCheck(check); err != nil {
				return refuse(http.StatusConflict, "the backup's secrets are encrypted with another key than the one in use here; restore it where its key is configured (%v)", err)
			}
		}
		return nil
	})
	var oe *Error
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &oe):
		return RestoreResult{}, err
	case errors.As(err, &tooBig):
		return RestoreResult{}, refuse(http.StatusRequestEntityTooLarge, "the backup is larger than %d bytes", tooBig.Limit)
	case errors.Is(err, store.ErrBadBackup):
		return RestoreResult{}, refuse(http.StatusBadRequest, "%s", strings.TrimPrefix(err.Error(), "store: restore: "))
	case errors.Is(err, store.ErrNotEmpty):
		return RestoreResult{}, refuse(http.StatusConflict, "%s", strings.TrimPrefix(err.Error(), "store: restore: "))
	case err != nil:
		return RestoreResult{}, storeError(err)
	}
	t.countUsers(ctx)
	return RestoreResult{Users: snap.Users, Enrolments: snap.Accounts, SessionsSkipped: snap.Sessions}, nil
}

// countUsers has the running gates count the store's users again, which
// shapes the decoy hashes of unknown names.
func (t *Target) countUsers(ctx context.Context) {
	if t.Running != nil {
		t.Running.CountUsers(ctx)
	}
}
