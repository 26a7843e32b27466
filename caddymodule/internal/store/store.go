// Package store keeps the gate's durable state: each user's second-factor
// enrolment, their backup-code hashes, and server-side sessions. Store is an
// interface of domain operations so that a second backend (PostgreSQL shared
// by several Caddy instances) can sit beside the embedded badger one.
//
// The store never sees a plaintext secret: TOTP secrets arrive sealed
// (encrypted by the caller) and backup codes arrive as keyed hashes.
package store

import (
	"context"
	"errors"
	"io"
	"time"
)

// MetaKeyCheck is the meta value that records which encryption key the
// store's secrets are sealed with (the key's check value).
const MetaKeyCheck = "key-check"

// Sentinel errors for expected outcomes. Anything else a Store returns is a
// failure of the store itself, and callers must fail closed on it.
var (
	// ErrNotFound: no such session (or it expired), or no such meta value.
	ErrNotFound = errors.New("not found")
	// ErrAlreadyEnabled: EnableTOTP on a user whose second factor is on.
	ErrAlreadyEnabled = errors.New("two-factor authentication is already enabled")
	// ErrNotEnabled: an operation that needs an enrolment on a user without one.
	ErrNotEnabled = errors.New("two-factor authentication is not enabled")
	// ErrStepUsed: the TOTP time step is not newer than the last one accepted.
	ErrStepUsed = errors.New("one-time code already used")
	// ErrCodeUnknown: no unused backup code has that hash.
	ErrCodeUnknown = errors.New("backup code not found or already used")
	// ErrLocked: the store's folder is held by another process.
	ErrLocked = errors.New("store is in use by another process")
	// ErrNoUser: the store keeps no user of that name.
	ErrNoUser = errors.New("no such user in the store")
	// ErrUserExists: AddUser for a name the store already keeps.
	ErrUserExists = errors.New("user already exists in the store")
	// ErrNotEmpty: Restore into a store that already holds users or
	// enrolments.
	ErrNotEmpty = errors.New("store is not empty")
	// ErrBadBackup: Restore was given something that is not a backup of
	// this kind of store.
	ErrBadBackup = errors.New("not a valid backup")
)

// TOTP is one user's authenticator-app enrolment. The parameters are stored
// with it so that a later change of the configured defaults does not break
// codes of users who are already enrolled.
type TOTP struct {
	// SealedSecret is the shared secret, encrypted by the caller.
	SealedSecret []byte `json:"sealed_secret"`
	// Algorithm is "SHA1", "SHA256" or "SHA512".
	Algorithm string `json:"algorithm"`
	// Digits is the code length (6 or 8).
	Digits int `json:"digits"`
	// Period is the time step in seconds.
	Period int `json:"period"`
	// LastStep is the newest time step accepted (at enrolment or login);
	// a code of this step or an older one is refused.
	LastStep int64 `json:"last_step"`
	// EnabledAt is when the user turned the second factor on.
	EnabledAt time.Time `json:"enabled_at"`
}

// Account is a user's second-factor state. The zero Account (TOTP nil, no
// backup codes) means two-factor authentication is off.
type Account struct {
	// Name is the canonical user name.
	Name string `json:"name"`
	// TOTP is nil when two-factor authentication is off.
	TOTP *TOTP `json:"totp,omitempty"`
	// BackupCodes are keyed hashes of the unused backup codes.
	BackupCodes [][]byte `json:"backup_codes,omitempty"`
	// Credentials are the user's security keys and passkeys (WebAuthn,
	// credentials.go); UserHandle the random user handle they were made
	// with (set with the first).
	Credentials []Credential `json:"credentials,omitempty"`
	UserHandle  []byte       `json:"user_handle,omitempty"`
}

// Enabled reports whether the second factor is on: an authenticator app
// or at least one security key.
func (a Account) Enabled() bool { return a.TOTP != nil || len(a.Credentials) > 0 }

// Stage says how far a session has come through the login.
type Stage uint8

const (
	// StagePassword: the password is done and the code is pending.
	StagePassword Stage = 1
	// StageEnrol: the password is done, the user has no second factor and
	// the site requires one, so only the Security pages are reachable.
	StageEnrol Stage = 2
	// StageFull: every factor the user needs is done.
	StageFull Stage = 3
)

// Origin says where the user of a session is defined.
type Origin uint8

const (
	// OriginConfig: the user is in the configuration (Caddyfile or JSON).
	OriginConfig Origin = 0
	// OriginStore: the user is kept in the store (see User).
	OriginStore Origin = 1
)

// User is an account kept in the store, beside those in the
// configuration. Its password can change at run time.
type User struct {
	// Name is the canonical user name, the key of every record of the user.
	Name string `json:"-"`
	// Display is the name as it was given: shown on the pages and sent
	// upstream.
	Display string `json:"display"`
	// PasswordHash is a bcrypt or argon2id hash in its usual text form.
	PasswordHash string `json:"password_hash"`
	// Created is when the user was added.
	Created time.Time `json:"created"`
	// PasswordChanged is when the password was last set.
	PasswordChanged time.Time `json:"password_changed"`
}

// Snapshot summarises a backup being restored.
type Snapshot struct {
	// Users and Accounts count the users and the enrolments in it.
	Users, Accounts int
	// Meta holds the backup's meta values by name.
	Meta map[string][]byte
	// Sessions counts session records found and left out: a restore
	// never brings a session back.
	Sessions int
}

// Session is a server-side session record. Its key is a hash of the
// cookie's random ID, so a copy of the store does not hold live cookies.
type Session struct {
	// The fields up to Cred are what the proxied path reads
	// (SessionAdmission): they come first, so that they share the first
	// cache lines of a cached record.

	// Key identifies the record (a hash of the session ID from the cookie).
	Key []byte
	// User is the canonical user name.
	User string
	// Name is the user's display name, kept for store users so that a
	// request needs no second read; empty for configured users.
	Name  string
	Stage Stage
	// Origin says where the user is defined. A session is only good for
	// a user of the same origin: a session of a store user does not
	// carry over to a configured user of the same name, or back.
	Origin Origin
	// Methods are the factors proved at AuthTime (RFC 8176 amr values).
	Methods Methods
	// Gen is the user's session generation the record was written under,
	// set by the store: ending all of a user's sessions moves the user to
	// the next generation, and a record of an older one is dead.
	Gen uint64
	// Created is when the session was created (absolute timeout).
	Created time.Time
	// Seen is when the session was last used (idle timeout); it is
	// refreshed coarsely, not on every request.
	Seen time.Time
	// Expires is when the record may be dropped by the store.
	Expires time.Time
	// AuthTime is when the session's user last proved a factor: the
	// second factor's check (the code step, or a step-up), or the password
	// when no second factor was asked. Zero in records older than version 6.
	AuthTime time.Time
	// Cred fingerprints the credential the session was made with: for a
	// configured user, their password hash as configured, so that a
	// handler accepts the session only while the configuration still has
	// that hash. Empty for store users, whose password changes end their
	// sessions in the store.
	Cred []byte

	// Next is where to send the user after the login.
	Next string
	// Pending holds a sealed TOTP secret offered on the enable page and
	// not yet confirmed; empty when none.
	Pending []byte
	// PendingAt is when Pending was generated.
	PendingAt time.Time
	// Notice is (the catalogue key of) a message for the next page the
	// session is shown after a change (POST-redirect-GET); empty when none.
	Notice string
	// Shown holds, sealed, backup codes just issued, until one page has
	// shown them; empty when none.
	Shown []byte
	// Agent is the browser's User-Agent at sign-in, cut to MaxAgentLen
	// bytes; Addr the client address the server resolved then. They are
	// shown to the user and the operator, never used to decide anything.
	Agent, Addr string
}

// Admission is a live session as the proxied path reads it
// (Store.SessionAdmission), with nothing copied: that path's cost under
// load is the memory it touches, and a Session is some 330 bytes, copied
// at every layer it is returned through by value.
type Admission struct {
	// Rec is the record, shared with the store's cache: the caller must
	// not change it, and reads only the fields up to Cred (the others may
	// be set or zero). Its User is the name as the store keeps it, which
	// in a realm's view is not the realm's name of the user: read User.
	Rec *Session
	// User is the session's user, as the caller's view of the store
	// names it.
	User string
}

// Methods is a set of authentication methods, as RFC 8176 names them.
type Methods uint8

// The methods a session records.
const (
	MethodPassword    Methods = 1 << iota // pwd
	MethodOTP                             // otp: a TOTP code or a backup code
	MethodHardwareKey                     // hwk: a security key
	MethodSoftwareKey                     // swk: a passkey kept in software
)

// SecondFactor reports whether a second factor was proved.
func (m Methods) SecondFactor() bool { return m&(MethodOTP|MethodHardwareKey|MethodSoftwareKey) != 0 }

// AMR returns the methods as RFC 8176 values, in a fixed order.
func (m Methods) AMR() []string {
	var out []string
	for _, x := range []struct {
		m    Methods
		name string
	}{{MethodPassword, "pwd"}, {MethodOTP, "otp"}, {MethodHardwareKey, "hwk"}, {MethodSoftwareKey, "swk"}} {
		if m&x.m != 0 {
			out = append(out, x.name)
		}
	}
	return out
}

// MaxAgentLen bounds the User-Agent kept with a session or a remembered
// browser; MaxAddrLen the address.
const (
	MaxAgentLen = 256
	MaxAddrLen  = 64
)

// Store is the gate's durable state. Every method is safe for concurrent
// use; every method that changes an account is atomic and durable (synced
// to disk) before it returns.
type Store interface {
	// Account returns the user's second-factor state; a user never seen
	// before gets the zero Account with Name set and a nil error.
	Account(ctx context.Context, user string) (Account, error)

	// EnableTOTP turns the second factor on with the given enrolment and
	// backup-code hashes and deletes every session of the user (they got
	// in without the second factor), in one transaction. ErrAlreadyEnabled
	// if it is on.
	EnableTOTP(ctx context.Context, user string, t TOTP, backupCodes [][]byte) error
	// DisableTOTP turns the second factor off (the app and every security
	// key), drops its backup codes and
	// deletes every session of the user except keepSession (may be nil), in
	// one transaction. ErrNotEnabled if it is off.
	DisableTOTP(ctx context.Context, user string, keepSession []byte) error
	// ReplaceBackupCodes replaces the whole set and forgets the user's
	// remembered browsers, in one transaction. ErrNotEnabled if 2FA is off.
	ReplaceBackupCodes(ctx context.Context, user string, backupCodes [][]byte) error
	// UseTOTPStep records step as used if it is newer than the last one,
	// checked and advanced atomically; ErrStepUsed otherwise, ErrNotEnabled
	// if 2FA is off.
	UseTOTPStep(ctx context.Context, user string, step int64) error
	// UseBackupCode removes the code with that hash, atomically, and returns
	// how many are left; ErrCodeUnknown if there is none, ErrNotEnabled if
	// 2FA is off.
	UseBackupCode(ctx context.Context, user string, hash []byte) (left int, err error)

	// Session returns the session record; ErrNotFound if there is none or it
	// has expired. The record's Key is key itself: the caller must not
	// change key afterwards.
	Session(ctx context.Context, key []byte) (Session, error)
	// SessionAdmission reads the session under key as Session does, with
	// the same refusals (expiry as of now, the caller's reading of the
	// store's clock), for the proxied path: without copying the record
	// (see Admission).
	SessionAdmission(ctx context.Context, key []byte, now time.Time) (Admission, error)
	// PutSession creates or replaces a session record.
	PutSession(ctx context.Context, s Session) error
	// UpdateSession replaces a live session record of the same user, and
	// returns ErrNotFound if it has gone (logged out, revoked, expired)
	// meanwhile: an update never brings a session back.
	UpdateSession(ctx context.Context, s Session) error
	// TouchSession moves a live session's last-seen time to seen and its
	// expiry to expires, leaving the rest of the record as it is, in one
	// atomic step: ErrNotFound if the session is gone or has expired, so
	// that a refresh racing a logout cannot bring the session back. A
	// record already seen at seen or later is left alone.
	TouchSession(ctx context.Context, key []byte, seen, expires time.Time) error
	// DeleteSession removes one session; no error if it is already gone.
	DeleteSession(ctx context.Context, key []byte) error
	// DeleteUserSessions removes every session of the user except
	// keepSession (may be nil) and returns how many it removed.
	DeleteUserSessions(ctx context.Context, user string, keepSession []byte) (int, error)

	// RememberBrowser keeps a remembered browser of the user (its token's
	// hash), forgetting the oldest past MaxRememberedBrowsers.
	RememberBrowser(ctx context.Context, user string, rb RememberedBrowser) error
	// RememberedBrowser returns the user's remembered browser with that
	// token hash; ErrNotFound if there is none or it has expired.
	RememberedBrowser(ctx context.Context, user string, hash []byte) (RememberedBrowser, error)
	// RememberedBrowsers returns the user's live remembered browsers.
	RememberedBrowsers(ctx context.Context, user string) ([]RememberedBrowser, error)
	// ForgetBrowser forgets one; no error if it is already gone.
	ForgetBrowser(ctx context.Context, user string, hash []byte) error
	// ForgetBrowsers forgets all of the user's, returning how many were
	// live. EnableTOTP, DisableTOTP, ReplaceBackupCodes, SetPassword and
	// DeleteUser forget them too, in their transaction.
	ForgetBrowsers(ctx context.Context, user string) (int, error)

	// User returns a user kept in the store; ErrNoUser if there is none.
	User(ctx context.Context, name string) (User, error)
	// Users returns every user kept in the store, ordered by name.
	Users(ctx context.Context) ([]User, error)
	// AddUser adds a user; ErrUserExists if the name is taken.
	AddUser(ctx context.Context, u User) error
	// SetPassword sets a user's password hash and deletes every session
	// of the user except keepSession (may be nil), in one transaction,
	// returning how many it deleted. ErrNoUser if there is no such user.
	SetPassword(ctx context.Context, name, hash string, at time.Time, keepSession []byte) (int, error)
	// RehashPassword replaces the user's hash with newHash only if it is
	// still oldHash (a concurrent password change wins), and reports
	// whether it did. Sessions are kept: the password is the same.
	RehashPassword(ctx context.Context, name, oldHash, newHash string) (bool, error)
	// DeleteUser removes the user, their enrolment, their sessions and
	// their recent activity in one transaction, returning how many sessions it deleted. ErrNoUser
	// if there is no such user.
	DeleteUser(ctx context.Context, name string) (int, error)
	// UserSessions returns the user's live sessions.
	UserSessions(ctx context.Context, user string) ([]Session, error)
	// CountEnrolled returns how many users have the second factor on.
	CountEnrolled(ctx context.Context) (int, error)
	// CountEnrolledIn returns how many users of the realm have the second
	// factor on.
	CountEnrolledIn(ctx context.Context, realm string) (int, error)

	// AddEvent keeps a security event of the user for their recent
	// activity, and drops the user's events older than EventRetention or
	// past MaxEventsPerUser, oldest first, in the same transaction.
	AddEvent(ctx context.Context, user string, e Event) error
	// Events returns the user's events of the last EventRetention, newest
	// first, at most limit (MaxEventsPerUser when limit is not positive).
	Events(ctx context.Context, user string, limit int) ([]Event, error)

	// The security keys and passkeys of a user (credentials.go).
	Credentials

	// Backup writes a consistent snapshot of the users, enrolments and
	// meta values (not the sessions) to w.
	Backup(ctx context.Context, w io.Writer) error
	// Restore reads a backup into a store that holds no users and no
	// enrolments (else ErrNotEmpty), and ends every session. It reads and
	// checks the whole backup first (ErrBadBackup), then calls accept,
	// which may refuse, before writing anything. A meta value the store
	// already holds with another value makes it fail with ErrNotEmpty,
	// changing nothing.
	Restore(ctx context.Context, r io.Reader, accept func(Snapshot) error) (Snapshot, error)

	// Meta and PutMeta keep small values of the gate itself (such as the
	// encryption-key check). Meta returns ErrNotFound when unset.
	Meta(ctx context.Context, name string) ([]byte, error)
	PutMeta(ctx context.Context, name string, value []byte) error
	// InitMeta sets a meta value unless one is set already, atomically,
	// and returns the value set now: value, or the one that was there.
	// Of several instances starting at once on one store, so exactly one
	// decides (the encryption key's check value).
	InitMeta(ctx context.Context, name string, value []byte) ([]byte, error)

	// Close releases the store.
	Close() error
}
