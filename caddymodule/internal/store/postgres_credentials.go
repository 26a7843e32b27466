package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Security keys in PostgreSQL: in the account's JSON, as in the badger
// store (credentials.go), changed under the account's row lock. A
// credential ID must be unique in its realm; registrations of one realm
// take an advisory lock on it, so that two of the same ID, for two users,
// cannot both find it free.

// credentialInRealmPG reports whether an account of user's realm holds a
// credential of that ID, within tx.
func credentialInRealmPG(ctx context.Context, tx pgx.Tx, user string, id []byte) (bool, error) {
	realmPrefix := ""
	if i := bytes.IndexByte([]byte(user), realmSep[0]); i >= 0 {
		realmPrefix = user[:i+1]
	}
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('tf_credentials/' || $1, 0))`, realmPrefix); err != nil {
		return false, err
	}
	rows, err := tx.Query(ctx, `SELECT user_id, data FROM tf_accounts WHERE starts_with(user_id, $1)`, realmPrefix)
	if err != nil {
		return false, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			uid  string
			data []byte
		)
		if err := rows.Scan(&uid, &data); err != nil {
			return false, err
		}
		if _, ok := inRealm(uid, realmPrefix); !ok {
			continue
		}
		var a Account
		if err := json.Unmarshal(data, &a); err != nil {
			return false, fmt.Errorf("decode account: %w", err)
		}
		if credentialIndex(&a, id) >= 0 {
			return true, nil
		}
	}
	return false, rows.Err()
}

// AddCredential implements Credentials.
func (p *Postgres) AddCredential(ctx context.Context, user string, c Credential, handle []byte, backupCodes [][]byte, keepSession []byte) (bool, error) {
	const op = "add security key"
	codes, err := credentialArgs(user, c, handle, backupCodes)
	if err != nil {
		return false, wrap(op, err)
	}
	add := func(tx pgx.Tx, first bool) error {
		// The realm's lock first, then the account's row: one order for
		// every registration.
		taken, err := credentialInRealmPG(ctx, tx, user, c.ID)
		if err != nil {
			return err
		}
		a, exists, err := accountFor(ctx, tx, user)
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
		if taken {
			return ErrCredentialExists
		}
		a.UserHandle = handle
		a.Credentials = append(a.Credentials, c)
		if first {
			a.BackupCodes = codes
			if err := forgetAllPG(ctx, tx, user); err != nil {
				return err
			}
		}
		return putAccountPG(ctx, tx, &a, exists)
	}
	// The first second factor ends the user's other sessions, a further
	// key changes the account alone, as in the badger store.
	for range 3 {
		a, err := p.Account(ctx, user)
		if err != nil {
			return false, err
		}
		first := !a.Enabled()
		if first {
			_, err = p.endSessions(ctx, user, keepSession, func(tx pgx.Tx) error { return add(tx, true) })
		} else {
			err = p.tx(ctx, func(tx pgx.Tx) error { return add(tx, false) })
		}
		if !errors.Is(err, errRetryAs) {
			return first, wrap(op, err)
		}
	}
	return false, wrap(op, errors.New("the account kept changing"))
}

// putAccountPG writes an account read with accountFor in the same
// transaction: deleted when 2FA is off, as changeAccountPG does.
func putAccountPG(ctx context.Context, tx pgx.Tx, a *Account, exists bool) error {
	if !a.Enabled() {
		_, err := tx.Exec(ctx, `DELETE FROM tf_accounts WHERE user_id = $1`, a.Name)
		return err
	}
	v, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("encode account: %w", err)
	}
	if exists {
		_, err = tx.Exec(ctx, `UPDATE tf_accounts SET data = $2 WHERE user_id = $1`, a.Name, v)
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO tf_accounts (user_id, data) VALUES ($1, $2)`, a.Name, v)
	return err
}

// UseCredential implements Credentials: of two assertions of one
// counter at once, on any instances, one is refused (ErrSignCount).
func (p *Postgres) UseCredential(ctx context.Context, user string, id []byte, u CredentialUse) error {
	const op = "use security key"
	if err := checkUser(user); err != nil {
		return wrap(op, err)
	}
	err := p.tx(ctx, func(tx pgx.Tx) error {
		return changeAccountPG(ctx, tx, user, true, useCredential(id, u))
	})
	return wrap(op, err)
}

// RenameCredential implements Credentials.
func (p *Postgres) RenameCredential(ctx context.Context, user string, id []byte, name string) error {
	const op = "rename security key"
	if err := checkUser(user); err != nil {
		return wrap(op, err)
	}
	if name == "" || len(name) > MaxCredentialName {
		return wrap(op, errors.New("credential name empty or too long"))
	}
	err := p.tx(ctx, func(tx pgx.Tx) error {
		return changeAccountPG(ctx, tx, user, true, renameCredential(id, name))
	})
	if errors.Is(err, ErrNotEnabled) {
		err = ErrNoCredential
	}
	return wrap(op, err)
}

// RemoveCredential implements Credentials.
func (p *Postgres) RemoveCredential(ctx context.Context, user string, id []byte, keepSession []byte) (bool, error) {
	const op = "remove security key"
	if err := checkUser(user); err != nil {
		return false, wrap(op, err)
	}
	var on bool
	_, err := p.endSessions(ctx, user, keepSession, func(tx pgx.Tx) error {
		if err := forgetAllPG(ctx, tx, user); err != nil {
			return err
		}
		return changeAccountPG(ctx, tx, user, true, removeCredential(id, &on))
	})
	if errors.Is(err, ErrNotEnabled) {
		err = ErrNoCredential
	}
	return on, wrap(op, err)
}

// AddTOTP implements Credentials.
func (p *Postgres) AddTOTP(ctx context.Context, user string, t TOTP) error {
	const op = "add TOTP"
	if err := userAndTOTP(user, t); err != nil {
		return wrap(op, err)
	}
	err := p.tx(ctx, func(tx pgx.Tx) error {
		return changeAccountPG(ctx, tx, user, true, addTOTP(t))
	})
	return wrap(op, err)
}

// PutChallenge implements Credentials.
func (p *Postgres) PutChallenge(ctx context.Context, sessionKey []byte, c Challenge) error {
	const op = "keep challenge"
	if len(sessionKey) == 0 || (c.Purpose != PurposeRegister && c.Purpose != PurposeAssert) {
		return wrap(op, errors.New("empty session key or unknown purpose"))
	}
	if !p.now().Before(c.Expires) {
		return wrap(op, errors.New("challenge already expired"))
	}
	v, err := json.Marshal(c)
	if err != nil {
		return wrap(op, err)
	}
	_, err = p.pool.Exec(ctx, `INSERT INTO tf_challenges (session_key, purpose, expires, data) VALUES ($1, $2, $3, $4)
		ON CONFLICT (session_key, purpose) DO UPDATE SET expires = EXCLUDED.expires, data = EXCLUDED.data`,
		sessionKey, c.Purpose, c.Expires, v)
	return wrap(op, err)
}

// TakeChallenge implements Credentials: one statement deletes and returns
// it, so of two takes at once, on any instances, one gets it.
func (p *Postgres) TakeChallenge(ctx context.Context, sessionKey []byte, purpose string) (Challenge, error) {
	const op = "take challenge"
	if len(sessionKey) == 0 {
		return Challenge{}, wrap(op, errors.New("empty session key"))
	}
	var data []byte
	err := p.pool.QueryRow(ctx, `DELETE FROM tf_challenges WHERE session_key = $1 AND purpose = $2 RETURNING data`,
		sessionKey, purpose).Scan(&data)
	if errors.Is(err, pgx.ErrNoRows) {
		return Challenge{}, ErrNotFound
	}
	if err != nil {
		return Challenge{}, wrap(op, err)
	}
	var c Challenge
	if err := json.Unmarshal(data, &c); err != nil {
		return Challenge{}, wrap(op, fmt.Errorf("decode challenge: %w", err))
	}
	if !p.now().Before(c.Expires) || c.Purpose != purpose {
		return Challenge{}, ErrNotFound
	}
	return c, nil
}
