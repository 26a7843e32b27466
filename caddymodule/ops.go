package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/users"
)

// target is a store an operator's command works on: one a running Caddy
// has open (shared is set), or one the CLI opened itself while Caddy is
// stopped (shared is nil: no throttle counts, no configured users).
type target struct {
	// db is the realm's view of the store; realm names it.
	db     store.Store
	realm  string
	dir    string
	shared *sharedStore
	// hash makes the hash of a new password.
	hash func(ctx context.Context, password string) (string, error)
	// keyCheck verifies a backup's key check against the encryption key
	// in use; nil when the key is not known.
	keyCheck func(check []byte) error
	now      func() time.Time
}

// opError is a refusal with the HTTP status the admin API answers with.
type opError struct {
	status int
	msg    string
}

func (e *opError) Error() string { return e.msg }

func refuse(status int, format string, args ...any) error {
	return &opError{status: status, msg: fmt.Sprintf(format, args...)}
}

// storeError turns a store failure into a refusal that says so.
func storeError(err error) error {
	if err == nil {
		return nil
	}
	var oe *opError
	if errors.As(err, &oe) {
		return err
	}
	return &opError{status: http.StatusServiceUnavailable, msg: "store: " + err.Error()}
}

// Sources of a user.
const (
	sourceConfig = "config"
	sourceStore  = "store"
)

// userInfo is one line of the user list.
type userInfo struct {
	User      string `json:"user"`
	Source    string `json:"source"`
	TwoFactor bool   `json:"two_factor"`
	// Shadowed marks a store user that a configured user of the same
	// name hides: it cannot log in.
	Shadowed        bool       `json:"shadowed,omitempty"`
	Created         *time.Time `json:"created,omitempty"`
	PasswordChanged *time.Time `json:"password_changed,omitempty"`
}

// userList is the answer of GET /two-factor/users.
type userList struct {
	StorageDir string     `json:"storage_dir"`
	Users      []userInfo `json:"users"`
	// Note says what the list may lack (when Caddy is not running, the
	// users of its config are unknown).
	Note string `json:"note,omitempty"`
}

// sessionInfo describes a session without anything that would let one
// use it.
type sessionInfo struct {
	Stage    string    `json:"stage"`
	Created  time.Time `json:"created"`
	LastSeen time.Time `json:"last_seen"`
	Expires  time.Time `json:"expires"`
}

// factorThrottle is an account's count for one factor.
type factorThrottle struct {
	Failures          int `json:"failures"`
	RetryAfterSeconds int `json:"retry_after_seconds"`
}

// throttleInfo is an account's throttling state.
type throttleInfo struct {
	Throttled bool                      `json:"throttled"`
	Factors   map[string]factorThrottle `json:"factors"`
}

// statusInfo is the answer of GET /two-factor/status.
type statusInfo struct {
	User            string        `json:"user"`
	Source          string        `json:"source,omitempty"`
	TwoFactor       bool          `json:"two_factor"`
	EnabledAt       *time.Time    `json:"enabled_at,omitempty"`
	BackupCodesLeft int           `json:"backup_codes_left"`
	Throttle        *throttleInfo `json:"throttle,omitempty"`
	Sessions        []sessionInfo `json:"sessions"`
	Note            string        `json:"note,omitempty"`
}

// changeResult is the answer of the commands that change a user.
type changeResult struct {
	User          string `json:"user"`
	SessionsEnded int    `json:"sessions_ended"`
	// TwoFactorWasOn is set by reset and delete.
	TwoFactorWasOn *bool `json:"two_factor_was_on,omitempty"`
	// FailuresCleared is set by unthrottle.
	FailuresCleared *int   `json:"failures_cleared,omitempty"`
	Note            string `json:"note,omitempty"`
}

// restoreResult is the answer of POST /two-factor/restore.
type restoreResult struct {
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
func (t *target) configured(key string) *users.Account {
	if t.shared == nil {
		return nil
	}
	return t.shared.configured(t.realm, key)
}

// whoIs names the user for a command: the configured user, the store user,
// or (for state left behind) the name as given. source is "" for a name
// that only has state in the store (an enrolment or sessions).
func (t *target) whoIs(ctx context.Context, name, key string) (display, source string, err error) {
	if a := t.configured(key); a != nil {
		return a.Name, sourceConfig, nil
	}
	u, err := t.db.User(ctx, key)
	switch {
	case err == nil:
		return u.Display, sourceStore, nil
	case errors.Is(err, store.ErrNoUser):
		return name, "", nil
	}
	return "", "", storeError(err)
}

func (t *target) offlineNote() string {
	if t.shared != nil {
		return ""
	}
	return "Caddy is not running: users in its configuration are not known, and throttle counts (kept in its memory) are gone"
}

// listUsers lists the configured users and the store users.
func (t *target) listUsers(ctx context.Context) (userList, error) {
	out := userList{StorageDir: t.dir, Users: []userInfo{}, Note: t.offlineNote()}
	keys := map[string]*userInfo{}
	var order []string
	if t.shared != nil {
		for _, a := range t.shared.configuredUsers(t.realm) {
			keys[a.Key] = &userInfo{User: a.Name, Source: sourceConfig}
			order = append(order, a.Key)
		}
	}
	stored, err := t.db.Users(ctx)
	if err != nil {
		return out, storeError(err)
	}
	var shadowed []userInfo
	for _, u := range stored {
		info := userInfo{User: u.Display, Source: sourceStore, Created: &u.Created, PasswordChanged: &u.PasswordChanged}
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
		a, err := t.db.Account(ctx, k)
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
func (t *target) newHash(ctx context.Context, password, hash string) (string, error) {
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
	h, err := t.hash(ctx, password)
	if err != nil {
		return "", fmt.Errorf("hashing the password: %w", err)
	}
	return h, nil
}

// addUser adds a user to the store.
func (t *target) addUser(ctx context.Context, name, password, hash string) (userInfo, error) {
	key, err := userKey(name)
	if err != nil {
		return userInfo{}, err
	}
	if a := t.configured(key); a != nil {
		return userInfo{}, refuse(http.StatusConflict, "%s is a user in the Caddy config; a store user of that name could not log in", a.Name)
	}
	h, err := t.newHash(ctx, password, hash)
	if err != nil {
		return userInfo{}, err
	}
	at := t.now()
	err = t.db.AddUser(ctx, store.User{Name: key, Display: name, PasswordHash: h, Created: at, PasswordChanged: at})
	if errors.Is(err, store.ErrUserExists) {
		return userInfo{}, refuse(http.StatusConflict, "a user %s already exists in the store (to change the password: user passwd)", name)
	}
	if err != nil {
		return userInfo{}, storeError(err)
	}
	t.countUsers(ctx)
	return userInfo{User: name, Source: sourceStore, Created: &at, PasswordChanged: &at}, nil
}

// storeUser refuses a command that only applies to store users for a
// configured one or an unknown one.
func (t *target) storeUser(name, key string) error {
	if a := t.configured(key); a != nil {
		return refuse(http.StatusConflict, "%s is a user in the Caddy config: change or remove it there", a.Name)
	}
	return nil
}

// passwd sets a store user's password and ends all their sessions.
func (t *target) passwd(ctx context.Context, name, password, hash string) (changeResult, error) {
	key, err := userKey(name)
	if err != nil {
		return changeResult{}, err
	}
	if err := t.storeUser(name, key); err != nil {
		return changeResult{}, err
	}
	if _, err := t.db.User(ctx, key); errors.Is(err, store.ErrNoUser) {
		return changeResult{}, refuse(http.StatusNotFound, "no user %s in the store", name)
	}
	h, err := t.newHash(ctx, password, hash)
	if err != nil {
		return changeResult{}, err
	}
	n, err := t.db.SetPassword(ctx, key, h, t.now(), nil)
	if errors.Is(err, store.ErrNoUser) {
		return changeResult{}, refuse(http.StatusNotFound, "no user %s in the store", name)
	}
	if err != nil {
		return changeResult{}, storeError(err)
	}
	return changeResult{User: name, SessionsEnded: n}, nil
}

// deleteUser removes a store user with their enrolment and sessions.
func (t *target) deleteUser(ctx context.Context, name string) (changeResult, error) {
	key, err := userKey(name)
	if err != nil {
		return changeResult{}, err
	}
	if err := t.storeUser(name, key); err != nil {
		return changeResult{}, err
	}
	u, err := t.db.User(ctx, key)
	if errors.Is(err, store.ErrNoUser) {
		return changeResult{}, refuse(http.StatusNotFound, "no user %s in the store", name)
	}
	if err != nil {
		return changeResult{}, storeError(err)
	}
	a, err := t.db.Account(ctx, key)
	if err != nil {
		return changeResult{}, storeError(err)
	}
	n, err := t.db.DeleteUser(ctx, key)
	if errors.Is(err, store.ErrNoUser) {
		return changeResult{}, refuse(http.StatusNotFound, "no user %s in the store", name)
	}
	if err != nil {
		return changeResult{}, storeError(err)
	}
	if t.shared != nil {
		_, _ = t.shared.attempts.ClearAccount(ctx, t.realm, key, factors)
	}
	t.countUsers(ctx)
	on := a.Enabled()
	return changeResult{User: u.Display, SessionsEnded: n, TwoFactorWasOn: &on}, nil
}

// known finds a user for status, reset and sessions revoke: configured, in
// the store, or with state left in the store. Anything else is unknown.
func (t *target) known(ctx context.Context, name string) (key, display, source string, a store.Account, sessions []store.Session, err error) {
	if key, err = userKey(name); err != nil {
		return
	}
	if display, source, err = t.whoIs(ctx, name, key); err != nil {
		return
	}
	if a, err = t.db.Account(ctx, key); err != nil {
		err = storeError(err)
		return
	}
	if sessions, err = t.db.UserSessions(ctx, key); err != nil {
		err = storeError(err)
		return
	}
	if source == "" && !a.Enabled() && len(sessions) == 0 {
		err = refuse(http.StatusNotFound, "unknown user %s: not in the Caddy config, not in the store, and nothing stored for that name", name)
		if t.shared == nil {
			err = refuse(http.StatusNotFound, "unknown user %s: not in the store, and nothing stored for that name (Caddy is not running, so the users of its config are not known)", name)
		}
	}
	return
}

var stageNames = map[store.Stage]string{
	store.StagePassword: "code_pending", store.StageEnrol: "enrolment_required", store.StageFull: "full",
}

// status reports a user's second factor, throttling and sessions.
func (t *target) status(ctx context.Context, name string) (statusInfo, error) {
	key, display, source, a, sessions, err := t.known(ctx, name)
	if err != nil {
		return statusInfo{}, err
	}
	out := statusInfo{User: display, Source: source, TwoFactor: a.Enabled(), BackupCodesLeft: len(a.BackupCodes), Sessions: []sessionInfo{}, Note: t.offlineNote()}
	if a.Enabled() {
		at := a.TOTP.EnabledAt
		out.EnabledAt = &at
	}
	for _, s := range sessions {
		out.Sessions = append(out.Sessions, sessionInfo{Stage: stageNames[s.Stage], Created: s.Created, LastSeen: s.Seen, Expires: s.Expires})
	}
	slices.SortFunc(out.Sessions, func(x, y sessionInfo) int { return x.Created.Compare(y.Created) })
	if t.shared != nil {
		th := &throttleInfo{Factors: map[string]factorThrottle{}}
		for _, f := range factors {
			n, wait, err := t.shared.attempts.AccountState(ctx, t.realm, f, key)
			if err != nil {
				return out, storeError(err)
			}
			secs := int((wait + time.Second - 1) / time.Second)
			th.Factors[f] = factorThrottle{Failures: n, RetryAfterSeconds: secs}
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
func (t *target) reset(ctx context.Context, name string) (changeResult, error) {
	key, display, _, a, _, err := t.known(ctx, name)
	if err != nil {
		return changeResult{}, err
	}
	on := a.Enabled()
	n := 0
	if on {
		// One transaction: the enrolment, the backup codes and every
		// session go together. DisableTOTP does not count the sessions.
		sessions, err := t.db.UserSessions(ctx, key)
		if err != nil {
			return changeResult{}, storeError(err)
		}
		err = t.db.DisableTOTP(ctx, key, nil)
		switch {
		case err == nil:
			n = len(sessions)
		case errors.Is(err, store.ErrNotEnabled):
			on = false
		default:
			return changeResult{}, storeError(err)
		}
	}
	if !on {
		if n, err = t.db.DeleteUserSessions(ctx, key, nil); err != nil {
			return changeResult{}, storeError(err)
		}
	}
	return changeResult{User: display, SessionsEnded: n, TwoFactorWasOn: &on}, nil
}

// revoke ends every session of a user.
func (t *target) revoke(ctx context.Context, name string) (changeResult, error) {
	key, display, _, _, _, err := t.known(ctx, name)
	if err != nil {
		return changeResult{}, err
	}
	n, err := t.db.DeleteUserSessions(ctx, key, nil)
	if err != nil {
		return changeResult{}, storeError(err)
	}
	return changeResult{User: display, SessionsEnded: n}, nil
}

// unthrottle forgets an account's failures, for every factor.
func (t *target) unthrottle(ctx context.Context, name string) (changeResult, error) {
	key, err := userKey(name)
	if err != nil {
		return changeResult{}, err
	}
	if t.shared == nil {
		zero := 0
		return changeResult{User: name, FailuresCleared: &zero, Note: "Caddy is not running: throttle counts are kept in its memory, so there are none to clear"}, nil
	}
	display, _, err := t.whoIs(ctx, name, key)
	if err != nil {
		return changeResult{}, err
	}
	n, err := t.shared.attempts.ClearAccount(ctx, t.realm, key, factors)
	if err != nil {
		return changeResult{}, storeError(err)
	}
	return changeResult{User: display, FailuresCleared: &n}, nil
}

// restore reads a backup into the store, which must hold no users and no
// enrolments.
func (t *target) restore(ctx context.Context, r io.Reader) (restoreResult, error) {
	snap, err := t.db.Restore(ctx, r, func(s store.Snapshot) error {
		check, ok := s.Meta[keyCheckMeta]
		if !ok {
			return refuse(http.StatusBadRequest, "not a backup of a two_factor store: it has no encryption-key check")
		}
		if t.keyCheck != nil {
			if err := t.keyCheck(check); err != nil {
				return refuse(http.StatusConflict, "the backup's secrets are encrypted with another key than the one in use here; restore it where its key is configured (%v)", err)
			}
		}
		return nil
	})
	var oe *opError
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &oe):
		return restoreResult{}, err
	case errors.As(err, &tooBig):
		return restoreResult{}, refuse(http.StatusRequestEntityTooLarge, "the backup is larger than %d bytes", tooBig.Limit)
	case errors.Is(err, store.ErrBadBackup):
		return restoreResult{}, refuse(http.StatusBadRequest, "%s", strings.TrimPrefix(err.Error(), "store: restore: "))
	case errors.Is(err, store.ErrNotEmpty):
		return restoreResult{}, refuse(http.StatusConflict, "%s", strings.TrimPrefix(err.Error(), "store: restore: "))
	case err != nil:
		return restoreResult{}, storeError(err)
	}
	t.countUsers(ctx)
	return restoreResult{Users: snap.Users, Enrolments: snap.Accounts, SessionsSkipped: snap.Sessions}, nil
}

// countUsers updates the running handlers' count of store users, which
// shapes the decoy hashes of unknown names.
func (t *target) countUsers(ctx context.Context) {
	if t.shared == nil {
		return
	}
	for _, realm := range t.shared.realms() {
		db, err := store.InRealm(t.shared.Badger, realm)
		if err != nil {
			continue
		}
		if users, err := db.Users(ctx); err == nil {
			t.shared.userCount(realm).Store(int64(len(users)))
		}
	}
}
