package store

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/dgraph-io/badger/v4/pb"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// userFor reads a store user within tx, locking the row; ErrNoUser if
// there is none.
func userFor(ctx context.Context, tx pgx.Tx, name string) (User, error) {
	var data []byte
	err := tx.QueryRow(ctx, `SELECT data FROM tf_users WHERE name = $1 FOR UPDATE`, name).Scan(&data)
	if errors.Is(err, pgx.ErrNoRows) {
		return User{}, ErrNoUser
	}
	if err != nil {
		return User{}, err
	}
	return decodeUser(name, data)
}

func putUserPG(ctx context.Context, tx pgx.Tx, u *User) error {
	v, err := json.Marshal(u)
	if err != nil {
		return fmt.Errorf("encode user: %w", err)
	}
	_, err = tx.Exec(ctx, `UPDATE tf_users SET data = $2 WHERE name = $1`, u.Name, v)
	return err
}

// User implements Store.
func (p *Postgres) User(ctx context.Context, name string) (User, error) {
	if err := checkUser(name); err != nil {
		return User{}, wrap("read user", err)
	}
	var data []byte
	err := p.pool.QueryRow(ctx, `SELECT data FROM tf_users WHERE name = $1`, name).Scan(&data)
	if errors.Is(err, pgx.ErrNoRows) {
		return User{}, ErrNoUser
	}
	if err != nil {
		return User{}, wrap("read user", err)
	}
	u, err := decodeUser(name, data)
	return u, wrap("read user", err)
}

// Users implements Store: ordered by name, byte by byte, as badger's keys.
func (p *Postgres) Users(ctx context.Context) ([]User, error) {
	rows, err := p.pool.Query(ctx, `SELECT name, data FROM tf_users ORDER BY name COLLATE "C"`)
	if err != nil {
		return nil, wrap("list users", err)
	}
	defer rows.Close()
	var users []User
	for rows.Next() {
		var (
			name string
			data []byte
		)
		if err := rows.Scan(&name, &data); err != nil {
			return nil, wrap("list users", err)
		}
		u, err := decodeUser(name, data)
		if err != nil {
			return nil, wrap("list users", err)
		}
		users = append(users, u)
	}
	return users, wrap("list users", rows.Err())
}

// AddUser implements Store.
func (p *Postgres) AddUser(ctx context.Context, u User) error {
	const op = "add user"
	if err := checkNewUser(u); err != nil {
		return wrap(op, err)
	}
	v, err := json.Marshal(&u)
	if err != nil {
		return wrap(op, err)
	}
	_, err = p.pool.Exec(ctx, `INSERT INTO tf_users (name, data) VALUES ($1, $2)`, u.Name, v)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" {
		return ErrUserExists
	}
	return wrap(op, err)
}

// SetPassword implements Store.
func (p *Postgres) SetPassword(ctx context.Context, name, hash string, at time.Time, keepSession []byte) (int, error) {
	const op = "set password"
	if err := userAndHash(name, hash); err != nil {
		return 0, wrap(op, err)
	}
	n, err := p.endSessions(ctx, name, keepSession, func(tx pgx.Tx) error {
		if err := forgetAllPG(ctx, tx, name); err != nil {
			return err
		}
		u, err := userFor(ctx, tx, name)
		if err != nil {
			return err
		}
		u.PasswordHash = hash
		u.PasswordChanged = at
		return putUserPG(ctx, tx, &u)
	})
	if err != nil {
		return 0, wrap(op, err)
	}
	return n, nil
}

// RehashPassword implements Store.
func (p *Postgres) RehashPassword(ctx context.Context, name, oldHash, newHash string) (bool, error) {
	const op = "rehash password"
	if err := userAndHash(name, newHash); err != nil {
		return false, wrap(op, err)
	}
	var done bool
	err := p.tx(ctx, func(tx pgx.Tx) error {
		done = false
		u, err := userFor(ctx, tx, name)
		if err != nil {
			return err
		}
		if u.PasswordHash != oldHash {
			return nil // changed meanwhile: the newer password stands
		}
		u.PasswordHash = newHash
		done = true
		return putUserPG(ctx, tx, &u)
	})
	if err != nil {
		return false, wrap(op, err)
	}
	return done, nil
}

// DeleteUser implements Store.
func (p *Postgres) DeleteUser(ctx context.Context, name string) (int, error) {
	const op = "delete user"
	if err := checkUser(name); err != nil {
		return 0, wrap(op, err)
	}
	n, err := p.endSessions(ctx, name, nil, func(tx pgx.Tx) error {
		if _, err := userFor(ctx, tx, name); err != nil {
			return err
		}
		for _, q := range []string{
			`DELETE FROM tf_browsers WHERE user_id = $1`,
			`DELETE FROM tf_users WHERE name = $1`,
			`DELETE FROM tf_events WHERE user_id = $1`,
			`DELETE FROM tf_accounts WHERE user_id = $1`,
		} {
			if _, err := tx.Exec(ctx, q, name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, wrap(op, err)
	}
	return n, nil
}

// CountEnrolled implements Store.
func (p *Postgres) CountEnrolled(ctx context.Context) (int, error) {
	var n int
	err := p.pool.QueryRow(ctx, `SELECT count(*) FROM tf_accounts`).Scan(&n)
	return n, wrap("count enrolled", err)
}

// CountEnrolledIn implements Store.
func (p *Postgres) CountEnrolledIn(ctx context.Context, realm string) (int, error) {
	if realm == "" {
		realm = DefaultRealm
	}
	var prefix string
	if realm != DefaultRealm {
		prefix = realm + realmSep
	}
	// The user IDs of a realm start with its prefix; those of the default
	// realm have no separator at all (inRealm).
	var n int
	var err error
	if prefix == "" {
		err = p.pool.QueryRow(ctx, `SELECT count(*) FROM tf_accounts WHERE strpos(user_id, $1) = 0`, realmSep).Scan(&n)
	} else {
		err = p.pool.QueryRow(ctx, `SELECT count(*) FROM tf_accounts
			WHERE starts_with(user_id, $1) AND length(user_id) > length($1)
				AND strpos(substr(user_id, length($1) + 1), $2) = 0`, prefix, realmSep).Scan(&n)
	}
	return n, wrap("count enrolled", err)
}

// RememberBrowser implements Store.
func (p *Postgres) RememberBrowser(ctx context.Context, user string, rb RememberedBrowser) error {
	const op = "remember browser"
	if err := checkBrowser(user, &rb); err != nil {
		return wrap(op, err)
	}
	v, err := json.Marshal(&rb)
	if err != nil {
		return wrap(op, err)
	}
	now := p.now()
	err = p.tx(ctx, func(tx pgx.Tx) error {
		// The user's generation row serialises the browsers of one user
		// across instances, so that the cap holds.
		if _, err := tx.Exec(ctx, `INSERT INTO tf_generations (user_id, gen) VALUES ($1, 0)
			ON CONFLICT (user_id) DO UPDATE SET gen = tf_generations.gen`, user); err != nil {
			return err
		}
		// Expired ones go, then the oldest past the cap (this one counts).
		if _, err := tx.Exec(ctx, `DELETE FROM tf_browsers WHERE user_id = $1 AND (expires <= $2 OR hash IN (
			SELECT hash FROM tf_browsers WHERE user_id = $1 AND expires > $2 AND hash <> $3
			ORDER BY created DESC OFFSET $4))`, user, now, rb.Hash, MaxRememberedBrowsers-1); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO tf_browsers (user_id, hash, created, expires, data) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (user_id, hash) DO UPDATE SET created = EXCLUDED.created, expires = EXCLUDED.expires, data = EXCLUDED.data`,
			user, rb.Hash, rb.Created, rb.Expires, v)
		return err
	})
	return wrap(op, err)
}

// RememberedBrowser implements Store.
func (p *Postgres) RememberedBrowser(ctx context.Context, user string, hash []byte) (RememberedBrowser, error) {
	const op = "read remembered browser"
	if err := checkUser(user); err != nil {
		return RememberedBrowser{}, wrap(op, err)
	}
	if err := checkHash(hash); err != nil {
		return RememberedBrowser{}, ErrNotFound
	}
	var data []byte
	err := p.pool.QueryRow(ctx, `SELECT data FROM tf_browsers WHERE user_id = $1 AND hash = $2`, user, hash).Scan(&data)
	if errors.Is(err, pgx.ErrNoRows) {
		return RememberedBrowser{}, ErrNotFound
	}
	if err != nil {
		return RememberedBrowser{}, wrap(op, err)
	}
	var rb RememberedBrowser
	if err := json.Unmarshal(data, &rb); err != nil {
		return RememberedBrowser{}, wrap(op, err)
	}
	if !p.now().Before(rb.Expires) {
		return RememberedBrowser{}, ErrNotFound
	}
	rb.Hash = hash
	return rb, nil
}

// RememberedBrowsers implements Store: newest first.
func (p *Postgres) RememberedBrowsers(ctx context.Context, user string) ([]RememberedBrowser, error) {
	const op = "list remembered browsers"
	if err := checkUser(user); err != nil {
		return nil, wrap(op, err)
	}
	rows, err := p.pool.Query(ctx, `SELECT hash, data FROM tf_browsers WHERE user_id = $1 AND expires > $2
		ORDER BY created DESC`, user, p.now())
	if err != nil {
		return nil, wrap(op, err)
	}
	defer rows.Close()
	var out []RememberedBrowser
	for rows.Next() {
		var (
			hash, data []byte
			rb         RememberedBrowser
		)
		if err := rows.Scan(&hash, &data); err != nil {
			return nil, wrap(op, err)
		}
		if err := json.Unmarshal(data, &rb); err != nil {
			return nil, wrap(op, fmt.Errorf("remembered browser of %q: %w", user, err))
		}
		rb.Hash = hash
		out = append(out, rb)
	}
	return out, wrap(op, rows.Err())
}

// ForgetBrowser implements Store.
func (p *Postgres) ForgetBrowser(ctx context.Context, user string, hash []byte) error {
	const op = "forget browser"
	if err := checkUser(user); err != nil {
		return wrap(op, err)
	}
	if err := checkHash(hash); err != nil {
		return wrap(op, err)
	}
	_, err := p.pool.Exec(ctx, `DELETE FROM tf_browsers WHERE user_id = $1 AND hash = $2`, user, hash)
	return wrap(op, err)
}

// ForgetBrowsers implements Store: it returns how many live ones it forgot.
func (p *Postgres) ForgetBrowsers(ctx context.Context, user string) (int, error) {
	const op = "forget browsers"
	if err := checkUser(user); err != nil {
		return 0, wrap(op, err)
	}
	var n int
	err := p.pool.QueryRow(ctx, `WITH gone AS (DELETE FROM tf_browsers WHERE user_id = $1 RETURNING expires)
		SELECT count(*) FROM gone WHERE expires > $2`, user, p.now()).Scan(&n)
	if err != nil {
		return 0, wrap(op, err)
	}
	return n, nil
}

// AddEvent implements Store.
func (p *Postgres) AddEvent(ctx context.Context, user string, e Event) error {
	const op = "add event"
	if err := checkUser(user); err != nil {
		return wrap(op, err)
	}
	if err := checkEvent(&e); err != nil {
		return wrap(op, err)
	}
	v, err := json.Marshal(e)
	if err != nil {
		return wrap(op, err)
	}
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return wrap(op, err)
	}
	cutoff := int64(eventStamp(p.now().Add(-EventRetention)))
	err = p.tx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO tf_events (user_id, stamp, id, data) VALUES ($1, $2, $3, $4)`,
			user, int64(eventStamp(e.Time)), id[:], v); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM tf_events WHERE user_id = $1 AND (stamp < $2 OR (stamp, id) IN (
			SELECT stamp, id FROM tf_events WHERE user_id = $1 ORDER BY stamp DESC, id DESC OFFSET $3))`,
			user, cutoff, MaxEventsPerUser)
		return err
	})
	return wrap(op, err)
}

// Events implements Store.
func (p *Postgres) Events(ctx context.Context, user string, limit int) ([]Event, error) {
	const op = "read events"
	if err := checkUser(user); err != nil {
		return nil, wrap(op, err)
	}
	if limit <= 0 || limit > MaxEventsPerUser {
		limit = MaxEventsPerUser
	}
	cutoff := int64(eventStamp(p.now().Add(-EventRetention)))
	rows, err := p.pool.Query(ctx, `SELECT data FROM tf_events WHERE user_id = $1 AND stamp >= $2
		ORDER BY stamp DESC, id DESC LIMIT $3`, user, cutoff, limit)
	if err != nil {
		return nil, wrap(op, err)
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		var data []byte
		if err := rows.Scan(&data); err != nil {
			return nil, wrap(op, err)
		}
		var e Event
		if json.Unmarshal(data, &e) != nil {
			continue
		}
		out = append(out, e)
	}
	return out, wrap(op, rows.Err())
}

// Backup implements Store. It writes the badger store's backup format
// (users, enrolments and meta values under badger's keys), so a backup of
// either store restores into the other.
func (p *Postgres) Backup(ctx context.Context, w io.Writer) error {
	out := ctxWriter{ctx, w}
	err := pgx.BeginTxFunc(ctx, p.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var list pb.KVList
		size := 0
		for _, q := range []struct{ prefix, sql string }{
			{prefixUser, `SELECT name, data FROM tf_users ORDER BY name COLLATE "C"`},
			{prefixAccount, `SELECT user_id, data FROM tf_accounts ORDER BY user_id COLLATE "C"`},
			{prefixMeta, `SELECT name, value FROM tf_meta ORDER BY name COLLATE "C"`},
		} {
			rows, err := tx.Query(ctx, q.sql)
			if err != nil {
				return err
			}
			for rows.Next() {
				var (
					name string
					v    []byte
				)
				if err := rows.Scan(&name, &v); err != nil {
					rows.Close()
					return err
				}
				list.Kv = append(list.Kv, &pb.KV{Key: []byte(q.prefix + name), Value: v, UserMeta: []byte{0}, Version: 1, Meta: []byte{0}})
				if size += len(name) + len(v); size >= backupFrameTarget {
					if err := writeFrame(out, &list); err != nil {
						rows.Close()
						return err
					}
					list.Kv, size = list.Kv[:0], 0
				}
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
		}
		if len(list.Kv) == 0 {
			return nil
		}
		return writeFrame(out, &list)
	})
	return wrap("backup", err)
}

// Restore implements Store, in one transaction: nothing is written unless
// all of it is.
func (p *Postgres) Restore(ctx context.Context, r io.Reader, accept func(Snapshot) error) (Snapshot, error) {
	const op = "restore"
	set, err := readBackup(r, p.now)
	if err != nil {
		return Snapshot{}, wrap(op, err)
	}
	var refused error
	err = p.tx(ctx, func(tx pgx.Tx) error {
		// Lock out other writers of the tables the restore fills.
		if _, err := tx.Exec(ctx, `LOCK TABLE tf_users, tf_accounts, tf_meta IN EXCLUSIVE MODE`); err != nil {
			return err
		}
		var found bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM tf_users) OR EXISTS (SELECT 1 FROM tf_accounts)`).Scan(&found); err != nil {
			return err
		}
		if found {
			return fmt.Errorf("%w: it holds users or enrolments; restore into a new database, or delete them first", ErrNotEmpty)
		}
		if accept != nil {
			if refused = accept(set.snap); refused != nil {
				return refused
			}
		}
		for name, v := range set.snap.Meta {
			var cur []byte
			err := tx.QueryRow(ctx, `SELECT value FROM tf_meta WHERE name = $1`, name).Scan(&cur)
			switch {
			case errors.Is(err, pgx.ErrNoRows):
				if _, err := tx.Exec(ctx, `INSERT INTO tf_meta (name, value) VALUES ($1, $2)`, name, v); err != nil {
					return err
				}
			case err != nil:
				return err
			case string(cur) != string(v):
				return fmt.Errorf("%w: its meta value %q differs from the backup's", ErrNotEmpty, name)
			}
		}
		if err := notify(ctx, tx, "*"); err != nil {
			return err
		}
		for _, q := range []string{`DELETE FROM tf_sessions`, `DELETE FROM tf_browsers`} {
			if _, err := tx.Exec(ctx, q); err != nil {
				return err
			}
		}
		for name, v := range set.users {
			if _, err := tx.Exec(ctx, `INSERT INTO tf_users (name, data) VALUES ($1, $2)`, name, v); err != nil {
				return err
			}
		}
		for name, v := range set.accts {
			if _, err := tx.Exec(ctx, `INSERT INTO tf_accounts (user_id, data) VALUES ($1, $2)`, name, v); err != nil {
				return err
			}
		}
		return nil
	})
	p.sessions.clear()
	switch {
	case refused != nil:
		return Snapshot{}, refused // the caller's refusal, as it is
	case err != nil:
		return Snapshot{}, wrap(op, err)
	}
	return set.snap, nil
}
