package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Security keys and passkeys (WebAuthn credentials) live in the user's
// account record (u/<user ID>), beside the TOTP enrolment and the backup
// codes, so that every change of the account (turning 2FA off, a user's
// deletion, an operator's reset, a backup and its restore) takes them with
// it. A credential ID is unique in its realm.
//
// The challenge of a WebAuthn ceremony is kept apart, under
//
//	w/<purpose>/<session key> → JSON (Challenge), with a badger TTL at its expiry
//
// one per session and purpose: it is bound to the session that asked for it, used once
// (TakeChallenge deletes it) and never backed up.
const prefixChallenge = "w/"

// Sentinel outcomes of the credential operations.
var (
	// ErrCredentialExists: a credential of that ID is already registered
	// in the realm.
	ErrCredentialExists = errors.New("security key already registered")
	// ErrNoCredential: the user has no credential of that ID.
	ErrNoCredential = errors.New("no such security key")
	// ErrSignCount: the signature counter of an assertion is not above
	// the one stored (a cloned key, or a replay).
	ErrSignCount = errors.New("security key signature counter went backwards")
	// ErrHandleChanged: the user's WebAuthn user handle is not the one the
	// registration was made with (another registration set it meanwhile).
	ErrHandleChanged = errors.New("user handle changed during the registration")
)

// MaxCredentials bounds a user's security keys; MaxCredentialName the
// bytes of a key's name.
const (
	MaxCredentials    = 20
	MaxCredentialName = 64
)

// Credential is one security key or passkey of a user.
type Credential struct {
	// ID is the credential ID the authenticator chose.
	ID []byte `json:"id"`
	// PublicKey is the COSE public key; Algorithm its COSE algorithm.
	PublicKey []byte `json:"public_key"`
	Algorithm int64  `json:"algorithm"`
	// SignCount is the newest signature counter seen (0: the key keeps
	// none).
	SignCount uint32 `json:"sign_count"`
	// AAGUID names the authenticator's model (zeros when it does not say).
	AAGUID []byte `json:"aaguid,omitempty"`
	// Transports are the ways the browser said it reaches the key.
	Transports []string `json:"transports,omitempty"`
	// BackupEligible (BE) and BackupState (BS) are the flags of the last
	// use: a passkey that may be, and is, synced to other devices.
	BackupEligible bool `json:"backup_eligible"`
	BackupState    bool `json:"backup_state"`
	// UserVerified: the key verified the user (PIN, biometrics) at
	// registration or a later use.
	UserVerified bool `json:"user_verified"`
	// AttestationType is what the registration's attestation was ("none").
	AttestationType string `json:"attestation_type,omitempty"`
	// Name is what the user called it.
	Name string `json:"name"`
	// Added and LastUsed are when it was registered and last used to log
	// in or to confirm a change.
	Added    time.Time `json:"added"`
	LastUsed time.Time `json:"last_used,omitzero"`
}

// CredentialUse is what a successful assertion changes on its credential.
type CredentialUse struct {
	SignCount                 uint32
	BackupState, UserVerified bool
	At                        time.Time
}

// Challenge is the state of one WebAuthn ceremony between its options and
// its response.
type Challenge struct {
	// User is the user ID it was made for (a name in a realm's view).
	User string `json:"user"`
	// Purpose is "register" or "assert".
	Purpose string `json:"purpose"`
	// Data is the ceremony's state (the WebAuthn library's session data).
	Data json.RawMessage `json:"data"`
	// Expires is when it stops being good (the store's clock).
	Expires time.Time `json:"expires"`
}

// Credentials are the Store's operations on security keys.
type Credentials interface {
	// AddCredential registers a credential to the user, with handle as the
	// user's user handle, in one transaction. When it is the user's first
	// second factor (2FA was off), backupCodes become the user's backup
	// codes, every session of the user ends but keepSession's (which goes
	// on under the next generation, see DisableTOTP) and their remembered
	// browsers are forgotten, as EnableTOTP does; first says which. Else
	// backupCodes are ignored. ErrCredentialExists if the ID is registered
	// in the realm, ErrHandleChanged if the user's handle is another.
	AddCredential(ctx context.Context, user string, c Credential, handle []byte, backupCodes [][]byte, keepSession []byte) (first bool, err error)
	// UseCredential records an assertion of the user's credential: the
	// counter (which must be above the stored one unless both are 0, else
	// ErrSignCount), the backup state, user verification and the time.
	// ErrNoCredential if the user has no such credential, ErrNotEnabled if
	// 2FA is off.
	UseCredential(ctx context.Context, user string, id []byte, u CredentialUse) error
	// RenameCredential renames the user's credential; ErrNoCredential if
	// there is none of that ID.
	RenameCredential(ctx context.Context, user string, id []byte, name string) error
	// RemoveCredential removes the user's credential, ends every session of
	// the user but keepSession's and forgets their remembered browsers, in
	// one transaction. When it was the last second factor, 2FA is off (the
	// backup codes go too) and stillOn is false. ErrNoCredential if there
	// is none of that ID.
	RemoveCredential(ctx context.Context, user string, id []byte, keepSession []byte) (stillOn bool, err error)

	// AddTOTP adds an authenticator app to an account that has security
	// keys (2FA is on already: the backup codes stay, no session ends).
	// ErrNotEnabled if it has none (EnableTOTP turns 2FA on),
	// ErrAlreadyEnabled if it has an app.
	AddTOTP(ctx context.Context, user string, t TOTP) error

	// PutChallenge keeps a ceremony's challenge for the session (its store
	// key), replacing the session's previous one of the same purpose.
	PutChallenge(ctx context.Context, sessionKey []byte, c Challenge) error
	// TakeChallenge returns the session's challenge of the purpose and
	// deletes it, in one transaction: ErrNotFound if there is none or it
	// has expired.
	TakeChallenge(ctx context.Context, sessionKey []byte, purpose string) (Challenge, error)
}

// The purposes of a challenge.
const (
	PurposeRegister = "register"
	PurposeAssert   = "assert"
)

func challengeKey(sessionKey []byte, purpose string) []byte {
	k := append([]byte(prefixChallenge), purpose...)
	return append(append(k, '/'), sessionKey...)
}

// credentialIndex returns the index of the credential id in a, or -1.
func credentialIndex(a *Account, id []byte) int {
	return slices.IndexFunc(a.Credentials, func(c Credential) bool { return bytes.Equal(c.ID, id) })
}

// credentialInRealm reports whether any account of user's realm holds a
// credential of that ID. It reads (in txn, so a concurrent registration of
// the same ID conflicts) every enrolment of the realm: registrations are
// rare, and a scan needs no index to keep in step.
func credentialInRealm(txn *badger.Txn, user string, id []byte) (bool, error) {
	realmPrefix := ""
	if i := bytes.IndexByte([]byte(user), realmSep[0]); i >= 0 {
		realmPrefix = user[:i+1]
	}
	it := txn.NewIterator(badger.IteratorOptions{Prefix: append([]byte(prefixAccount), realmPrefix...)})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		item := it.Item()
		if _, ok := inRealm(string(item.Key()[len(prefixAccount):]), realmPrefix); !ok {
			continue
		}
		var a Account
		if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &a) }); err != nil {
			return false, fmt.Errorf("decode account: %w", err)
		}
		if credentialIndex(&a, id) >= 0 {
			return true, nil
		}
	}
	return false, nil
}

func checkCredential(c Credential) error {
	switch {
	case len(c.ID) == 0 || len(c.ID) > 1023:
		return errors.New("credential ID of a wrong length")
	case len(c.PublicKey) == 0:
		return errors.New("empty public key")
	case c.Name == "" || len(c.Name) > MaxCredentialName:
		return errors.New("credential name empty or too long")
	}
	return nil
}

// AddCredential registers a security key (see Credentials).
func (b *Badger) AddCredential(ctx context.Context, user string, c Credential, handle []byte, backupCodes [][]byte, keepSession []byte) (bool, error) {
	const op = "add security key"
	codes, err := credentialArgs(user, c, handle, backupCodes)
	if err != nil {
		return false, wrap(op, err)
	}
	c.ID, c.PublicKey, c.AAGUID = bytes.Clone(c.ID), bytes.Clone(c.PublicKey), bytes.Clone(c.AAGUID)
	c.Transports = slices.Clone(c.Transports)
	handle = bytes.Clone(handle)
	add := func(txn *badger.Txn, first bool) error {
		a, err := getAccount(txn, user)
		if err != nil {
			return err
		}
		if a.Enabled() == first {
			return errRetryAs
		}
		if len(a.Credentials) >= MaxCredentials {
			return fmt.Errorf("at most %d security keys", MaxCredentials)
		}
		if len(a.UserHandle) > 0 && !bytes.Equal(a.UserHandle, handle) {
			return ErrHandleChanged
		}
		taken, err := credentialInRealm(txn, user, c.ID)
		if err != nil {
			return err
		}
		if taken {
			return ErrCredentialExists
		}
		a.UserHandle = handle
		a.Credentials = append(a.Credentials, c)
		if first {
			a.BackupCodes = codes
			if _, err := forgetAll(txn, user); err != nil {
				return err
			}
		}
		return putAccount(txn, &a)
	}
	// The first second factor ends the user's other sessions (they got in
	// without it); a further key changes the account alone. Which one it
	// is, is checked again inside the transaction.
	for range 3 {
		a, err := b.Account(ctx, user)
		if err != nil {
			return false, err
		}
		first := !a.Enabled()
		if first {
			_, err = b.endSessions(ctx, user, keepSession, func(txn *badger.Txn) error { return add(txn, true) })
		} else {
			err = b.updateAccount(ctx, func(txn *badger.Txn) error { return add(txn, false) })
		}
		if !errors.Is(err, errRetryAs) {
			return first, wrap(op, err)
		}
	}
	return false, wrap(op, errors.New("the account kept changing"))
}

// errRetryAs: the account's state changed between the read that chose the
// kind of transaction and the transaction.
var errRetryAs = errors.New("account changed meanwhile")

// UseCredential records an assertion (see Credentials).
func (b *Badger) UseCredential(ctx context.Context, user string, id []byte, u CredentialUse) error {
	const op = "use security key"
	if err := checkUser(user); err != nil {
		return wrap(op, err)
	}
	err := b.updateAccount(ctx, func(txn *badger.Txn) error {
		return changeAccount(txn, user, true, useCredential(id, u))
	})
	return wrap(op, err)
}

// RenameCredential renames a security key (see Credentials).
func (b *Badger) RenameCredential(ctx context.Context, user string, id []byte, name string) error {
	const op = "rename security key"
	if err := checkUser(user); err != nil {
		return wrap(op, err)
	}
	if name == "" || len(name) > MaxCredentialName {
		return wrap(op, errors.New("credential name empty or too long"))
	}
	err := b.updateAccount(ctx, func(txn *badger.Txn) error {
		return changeAccount(txn, user, true, renameCredential(id, name))
	})
	if errors.Is(err, ErrNotEnabled) {
		err = ErrNoCredential
	}
	return wrap(op, err)
}

// RemoveCredential removes a security key (see Credentials).
func (b *Badger) RemoveCredential(ctx context.Context, user string, id []byte, keepSession []byte) (bool, error) {
	const op = "remove security key"
	if err := checkUser(user); err != nil {
		return false, wrap(op, err)
	}
	var on bool
	_, err := b.endSessions(ctx, user, keepSession, func(txn *badger.Txn) error {
		if _, err := forgetAll(txn, user); err != nil {
			return err
		}
		return changeAccount(txn, user, true, removeCredential(id, &on))
	})
	if errors.Is(err, ErrNotEnabled) {
		err = ErrNoCredential
	}
	return on, wrap(op, err)
}

// AddTOTP adds the app beside the keys (see Credentials).
func (b *Badger) AddTOTP(ctx context.Context, user string, t TOTP) error {
	const op = "add TOTP"
	if err := userAndTOTP(user, t); err != nil {
		return wrap(op, err)
	}
	t.SealedSecret = bytes.Clone(t.SealedSecret)
	err := b.updateAccount(ctx, func(txn *badger.Txn) error {
		return changeAccount(txn, user, true, addTOTP(t))
	})
	return wrap(op, err)
}

// PutChallenge keeps a ceremony's challenge (see Credentials).
func (b *Badger) PutChallenge(ctx context.Context, sessionKey []byte, c Challenge) error {
	const op = "keep challenge"
	if len(sessionKey) == 0 || (c.Purpose != PurposeRegister && c.Purpose != PurposeAssert) {
		return wrap(op, errors.New("empty session key or unknown purpose"))
	}
	v, err := json.Marshal(c)
	if err != nil {
		return wrap(op, err)
	}
	ttl := c.Expires.Sub(b.now())
	if ttl <= 0 {
		return wrap(op, errors.New("challenge already expired"))
	}
	err = b.updateAccount(ctx, func(txn *badger.Txn) error {
		// Badger's TTL follows the real clock: keep the record a little
		// longer, the store's clock decides.
		return txn.SetEntry(badger.NewEntry(challengeKey(sessionKey, c.Purpose), v).WithTTL(ttl + time.Minute))
	})
	return wrap(op, err)
}

// TakeChallenge returns and deletes a session's challenge (see
// Credentials).
func (b *Badger) TakeChallenge(ctx context.Context, sessionKey []byte, purpose string) (Challenge, error) {
	const op = "take challenge"
	if len(sessionKey) == 0 {
		return Challenge{}, wrap(op, errors.New("empty session key"))
	}
	var c Challenge
	err := b.updateAccount(ctx, func(txn *badger.Txn) error {
		item, err := txn.Get(challengeKey(sessionKey, purpose))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &c) }); err != nil {
			return fmt.Errorf("decode challenge: %w", err)
		}
		return txn.Delete(challengeKey(sessionKey, purpose))
	})
	if err != nil {
		return Challenge{}, wrap(op, err)
	}
	if !b.now().Before(c.Expires) || c.Purpose != purpose {
		return Challenge{}, ErrNotFound
	}
	return c, nil
}

// The realm's view: user names in, user IDs to the store.

func (r *Realm) AddCredential(ctx context.Context, user string, c Credential, handle []byte, backupCodes [][]byte, keepSession []byte) (bool, error) {
	return r.Store.AddCredential(ctx, r.id(user), c, handle, backupCodes, keepSession)
}

func (r *Realm) UseCredential(ctx context.Context, user string, id []byte, u CredentialUse) error {
	return r.Store.UseCredential(ctx, r.id(user), id, u)
}

func (r *Realm) RenameCredential(ctx context.Context, user string, id []byte, name string) error {
	return r.Store.RenameCredential(ctx, r.id(user), id, name)
}

func (r *Realm) RemoveCredential(ctx context.Context, user string, id []byte, keepSession []byte) (bool, error) {
	return r.Store.RemoveCredential(ctx, r.id(user), id, keepSession)
}

func (r *Realm) AddTOTP(ctx context.Context, user string, t TOTP) error {
	return r.Store.AddTOTP(ctx, r.id(user), t)
}

func (r *Realm) PutChallenge(ctx context.Context, sessionKey []byte, c Challenge) error {
	c.User = r.id(c.User)
	return r.Store.PutChallenge(ctx, sessionKey, c)
}

// TakeChallenge returns the challenge with its user as a name of the realm;
// one made in another realm is ErrNotFound (and gone).
func (r *Realm) TakeChallenge(ctx context.Context, sessionKey []byte, purpose string) (Challenge, error) {
	c, err := r.Store.TakeChallenge(ctx, sessionKey, purpose)
	if err != nil {
		return c, err
	}
	name, ok := inRealm(c.User, r.prefix)
	if !ok {
		return Challenge{}, ErrNotFound
	}
	c.User = name
	return c, nil
}
