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
	"time"
)

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
}

// Enabled reports whether the second factor is on.
func (a Account) Enabled() bool { return a.TOTP != nil }

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

// Session is a server-side session record. Its key is a hash of the
// cookie's random ID, so a copy of the store does not hold live cookies.
type Session struct {
	// Key identifies the record (a hash of the session ID from the cookie).
	Key []byte
	// User is the canonical user name.
	User  string
	Stage Stage
	// Created is when the session was created (absolute timeout).
	Created time.Time
	// Seen is when the session was last used (idle timeout); it is
	// refreshed coarsely, not on every request.
	Seen time.Time
	// Expires is when the record may be dropped by the store.
	Expires time.Time
	// Next is where to send the user after the login.
	Next string
	// Pending holds a sealed TOTP secret offered on the enable page and
	// not yet confirmed; empty when none.
	Pending []byte
	// PendingAt is when Pending was generated.
	PendingAt time.Time
}

// Store is the gate's durable state. Every method is safe for concurrent
// use; every method that changes an account is atomic and durable (synced
// to disk) before it returns.
type Store interface {
	// Account returns the user's second-factor state; a user never seen
	// before gets the zero Account with Name set and a nil error.
	Account(ctx context.Context, user string) (Account, error)

	// EnableTOTP turns the second factor on with the given enrolment and
	// backup-code hashes, in one transaction. ErrAlreadyEnabled if it is on.
	EnableTOTP(ctx context.Context, user string, t TOTP, backupCodes [][]byte) error
	// DisableTOTP turns the second factor off, drops its backup codes and
	// deletes every session of the user except keepSession (may be nil), in
	// one transaction. ErrNotEnabled if it is off.
	DisableTOTP(ctx context.Context, user string, keepSession []byte) error
	// ReplaceBackupCodes replaces the whole set. ErrNotEnabled if 2FA is off.
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
	// has expired.
	Session(ctx context.Context, key []byte) (Session, error)
	// PutSession creates or replaces a session record.
	PutSession(ctx context.Context, s Session) error
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

	// Meta and PutMeta keep small values of the gate itself (such as the
	// encryption-key check). Meta returns ErrNotFound when unset.
	Meta(ctx context.Context, name string) ([]byte, error)
	PutMeta(ctx context.Context, name string, value []byte) error

	// Close releases the store.
	Close() error
}
