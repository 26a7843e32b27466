package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Sessions in PostgreSQL follow the badger store's model: a record is live
// while it has not expired by the store's clock and its generation is its
// user's current one (tf_generations; no row is generation 0). Ending all
// of a user's sessions is one row's update, whatever their number; the
// dead records are deleted in the same transaction.

// genFor reads the user's current generation within tx; with lock, its row
// (made if missing) stays locked until the transaction ends, so that a
// concurrent bump waits.
func genFor(ctx context.Context, tx pgx.Tx, user string) (uint64, error) {
	var g int64
	err := tx.QueryRow(ctx, `SELECT gen FROM tf_generations WHERE user_id = $1`, user).Scan(&g)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	return uint64(g), err
}

// Session implements Store: from the cache while it is in use (see
// postgres_cache.go), else from the database.
func (p *Postgres) Session(ctx context.Context, key []byte) (Session, error) {
	const op = "read session"
	if len(key) == 0 {
		return Session{}, wrap(op, errors.New("empty session key"))
	}
	listening := p.listening.Load()
	var cacheGen uint64
	if listening {
		c, gen, err := p.cachedSession(key, p.now())
		if err != nil {
			return Session{}, err
		}
		if c != nil {
			return handOut(*c, key), nil
		}
		cacheGen = gen
	}
	var (
		rec      []byte
		gen, cur int64
	)
	err := p.pool.QueryRow(ctx, `SELECT s.record, s.gen, coalesce(g.gen, 0)
		FROM tf_sessions s LEFT JOIN tf_generations g ON g.user_id = s.user_id
		WHERE s.key = $1`, key).Scan(&rec, &gen, &cur)
	if errors.Is(err, pgx.ErrNoRows) {
		return Session{}, ErrNotFound
	}
	if err != nil {
		return Session{}, wrap(op, err)
	}
	s, err := decodeSession(rec)
	if err != nil {
		return Session{}, wrap(op, err)
	}
	s.Gen = uint64(gen)
	if gen != cur || !p.now().Before(s.Expires) {
		return Session{}, ErrNotFound
	}
	if listening && p.listening.Load() {
		p.sessions.put(key, s, nil, cacheGen)
	}
	return handOut(s, key), nil
}

// SessionAdmission implements Store: a cached session is read in place,
// only its first fields.
func (p *Postgres) SessionAdmission(ctx context.Context, key []byte, now time.Time) (Admission, error) {
	// An empty key is never cached: Session refuses it on the miss.
	var c *Session
	if p.listening.Load() {
		var err error
		if c, _, err = p.cachedSession(key, now); err != nil {
			return Admission{}, err
		}
	}
	if c == nil {
		return readAdmission(ctx, p, key)
	}
	return admission(c), nil
}

// cachedSession returns the cached record under key, which the caller must
// not change; ErrNotFound once it has expired at now. On a miss it returns nil and
// the shard's generation, for sessions.put. The caller checks that the
// cache may be used (p.listening).
func (p *Postgres) cachedSession(key []byte, now time.Time) (*Session, uint64, error) {
	e, ok, gen := p.sessions.get(key)
	if !ok {
		return nil, gen, nil
	}
	if !now.Before(e.s.Expires) {
		p.sessions.drop(key)
		return nil, 0, ErrNotFound
	}
	return e.s, 0, nil
}

// PutSession implements Store.
func (p *Postgres) PutSession(ctx context.Context, s Session) error {
	return p.writeSession(ctx, s, false)
}

// UpdateSession implements Store.
func (p *Postgres) UpdateSession(ctx context.Context, s Session) error {
	return p.writeSession(ctx, s, true)
}

// writeSession creates or replaces a session record under the user's
// current generation; with mustExist only a live record of the same user
// and generation, locked from the check to the commit. Creating one ends
// the user's oldest live sessions past the cap, in the same transaction.
func (p *Postgres) writeSession(ctx context.Context, s Session, mustExist bool) error {
	const op = "write session"
	if err := checkSession(&s); err != nil {
		return wrap(op, err)
	}
	limit := int(p.maxSessions.Load())
	now := p.now()
	var evicted [][]byte
	err := p.tx(ctx, func(tx pgx.Tx) error {
		evicted = nil
		g, err := genFor(ctx, tx, s.User)
		if err != nil {
			return err
		}
		if mustExist {
			var (
				user    string
				gen     int64
				expires time.Time
			)
			err := tx.QueryRow(ctx, `SELECT user_id, gen, expires FROM tf_sessions WHERE key = $1 FOR UPDATE`, s.Key).Scan(&user, &gen, &expires)
			if errors.Is(err, pgx.ErrNoRows) {
				return ErrNotFound
			}
			if err != nil {
				return err
			}
			if user != s.User || uint64(gen) != g || !now.Before(expires) {
				return ErrNotFound
			}
		}
		ns := s
		ns.Gen = g
		if err := notifyKey(ctx, tx, ns.Key); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO tf_sessions (key, user_id, gen, created, expires, record)
			VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (key) DO UPDATE SET user_id = EXCLUDED.user_id, gen = EXCLUDED.gen,
				created = EXCLUDED.created, expires = EXCLUDED.expires, record = EXCLUDED.record`,
			ns.Key, ns.User, int64(g), ns.Created, ns.Expires, encodeSession(nil, &ns)); err != nil {
			return err
		}
		if mustExist || limit <= 0 {
			return nil
		}
		// Keep the newest limit live sessions of the generation (this one
		// counts), by creation and then key, as the badger store does.
		rows, err := tx.Query(ctx, `DELETE FROM tf_sessions WHERE key IN (
			SELECT key FROM tf_sessions
			WHERE user_id = $1 AND gen = $2 AND key <> $3 AND expires > $4
			ORDER BY created DESC, key DESC OFFSET $5) RETURNING key`,
			ns.User, int64(g), ns.Key, now, limit-1)
		if err != nil {
			return err
		}
		evicted, err = pgx.CollectRows(rows, pgx.RowTo[[]byte])
		if err != nil {
			return err
		}
		for _, k := range evicted {
			if err := notifyKey(ctx, tx, k); err != nil {
				return err
			}
		}
		return nil
	})
	p.sessions.drop(s.Key)
	for _, k := range evicted {
		p.sessions.drop(k)
	}
	return wrap(op, err)
}

// handOut is a record as Session returns it: under the key the caller
// gave, with its own copies of the slices a cached record shares.
func handOut(s Session, key []byte) Session {
	s.Key = key
	s.Pending = bytes.Clone(s.Pending)
	s.Shown = bytes.Clone(s.Shown)
	return s
}

// checkSession refuses a record no store may keep.
func checkSession(s *Session) error {
	switch {
	case len(s.Key) == 0:
		return errors.New("empty session key")
	case s.User == "":
		return errors.New("empty user name")
	case !validStage(s.Stage):
		return fmt.Errorf("invalid stage %d", s.Stage)
	case s.Expires.IsZero():
		return errors.New("no expiry time")
	case s.Expires.Unix() <= 0:
		return fmt.Errorf("expiry time %v out of range", s.Expires)
	}
	return nil
}

// TouchSession implements Store.
func (p *Postgres) TouchSession(ctx context.Context, key []byte, seen, expires time.Time) error {
	const op = "touch session"
	switch {
	case len(key) == 0:
		return wrap(op, errors.New("empty session key"))
	case expires.Unix() <= 0:
		return wrap(op, fmt.Errorf("expiry time %v out of range", expires))
	}
	now := p.now()
	err := p.tx(ctx, func(tx pgx.Tx) error {
		var (
			rec      []byte
			gen, cur int64
		)
		err := tx.QueryRow(ctx, `SELECT s.record, s.gen, coalesce(g.gen, 0)
			FROM tf_sessions s LEFT JOIN tf_generations g ON g.user_id = s.user_id
			WHERE s.key = $1 FOR UPDATE OF s`, key).Scan(&rec, &gen, &cur)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		s, err := decodeSession(rec)
		if err != nil {
			return err
		}
		s.Gen = uint64(gen)
		if gen != cur || !now.Before(s.Expires) {
			return ErrNotFound
		}
		if !s.Seen.Before(seen) {
			return nil // a concurrent request refreshed it already
		}
		s.Seen, s.Expires = seen, expires
		if err := notifyKey(ctx, tx, key); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE tf_sessions SET expires = $2, record = $3 WHERE key = $1`,
			key, expires, encodeSession(nil, &s))
		return err
	})
	p.sessions.drop(key)
	return wrap(op, err)
}

// DeleteSession implements Store.
func (p *Postgres) DeleteSession(ctx context.Context, key []byte) error {
	if len(key) == 0 {
		return wrap("delete session", errors.New("empty session key"))
	}
	err := p.tx(ctx, func(tx pgx.Tx) error {
		if err := notifyKey(ctx, tx, key); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM tf_sessions WHERE key = $1`, key)
		return err
	})
	p.sessions.drop(key)
	return wrap("delete session", err)
}

// DeleteUserSessions implements Store.
func (p *Postgres) DeleteUserSessions(ctx context.Context, user string, keepSession []byte) (int, error) {
	const op = "delete user sessions"
	if err := checkUser(user); err != nil {
		return 0, wrap(op, err)
	}
	n, err := p.endSessions(ctx, user, keepSession, nil)
	if err != nil {
		return 0, wrap(op, err)
	}
	return n, nil
}

// endSessions runs change (may be nil) and moves the user to the next
// session generation in one transaction: every session of the user but
// keep ends. keep, if it is a live session of the current generation, is
// moved to the new one. It returns how many live sessions besides keep
// ended. The generation's row is locked by the update, so bumps of one
// user, from any instance, happen one after the other.
func (p *Postgres) endSessions(ctx context.Context, user string, keep []byte, change func(tx pgx.Tx) error) (int, error) {
	now := p.now()
	var n int
	err := p.tx(ctx, func(tx pgx.Tx) error {
		if change != nil {
			if err := change(tx); err != nil {
				return err
			}
		}
		if err := notifyUser(ctx, tx, user); err != nil {
			return err
		}
		var next int64
		if err := tx.QueryRow(ctx, `INSERT INTO tf_generations (user_id, gen) VALUES ($1, 1)
			ON CONFLICT (user_id) DO UPDATE SET gen = tf_generations.gen + 1
			RETURNING gen`, user).Scan(&next); err != nil {
			return err
		}
		cur := next - 1
		if keep == nil {
			keep = []byte{} // matches no key
		}
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM tf_sessions
			WHERE user_id = $1 AND gen = $2 AND expires > $3 AND key <> $4`,
			user, cur, now, keep).Scan(&n); err != nil {
			return err
		}
		if len(keep) > 0 {
			if _, err := tx.Exec(ctx, `UPDATE tf_sessions SET gen = $3
				WHERE key = $1 AND user_id = $2 AND gen = $4 AND expires > $5`,
				keep, user, next, cur, now); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, `DELETE FROM tf_sessions WHERE user_id = $1 AND gen < $2`, user, next)
		return err
	})
	p.sessions.dropUser(user)
	if err != nil {
		return 0, err
	}
	return n, nil
}

// UserSessions implements Store.
func (p *Postgres) UserSessions(ctx context.Context, user string) ([]Session, error) {
	const op = "list sessions"
	if err := checkUser(user); err != nil {
		return nil, wrap(op, err)
	}
	rows, err := p.pool.Query(ctx, `SELECT s.key, s.record, s.gen
		FROM tf_sessions s LEFT JOIN tf_generations g ON g.user_id = s.user_id
		WHERE s.user_id = $1 AND s.gen = coalesce(g.gen, 0) AND s.expires > $2
		ORDER BY s.key`, user, p.now())
	if err != nil {
		return nil, wrap(op, err)
	}
	var out []Session
	for rows.Next() {
		var (
			key, rec []byte
			gen      int64
		)
		if err := rows.Scan(&key, &rec, &gen); err != nil {
			return nil, wrap(op, err)
		}
		s, err := decodeSession(rec)
		if err != nil {
			continue // as the badger store skips a record it cannot read
		}
		s.Key, s.Gen = key, uint64(gen)
		out = append(out, s)
	}
	return out, wrap(op, rows.Err())
}
