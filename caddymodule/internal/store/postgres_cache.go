package store

import (
	"context"
	"encoding/hex"
	"time"

	"github.com/jackc/pgx/v5"
)

// The session cache of the PostgreSQL store. Several instances share the
// database, so a session one of them ends must be dead on all of them at
// once, while the proxied path reads sessions from memory (no database
// round trip per request). Each instance keeps the badger store's cache
// (cache.go) and invalidates it by PostgreSQL's LISTEN/NOTIFY:
//
//   - Every transaction that changes or ends sessions sends, in the same
//     transaction, a notification on notifyChannel naming what it changed:
//     one session ("k" and the key in hex), all of a user's ("u" and the
//     user ID), or everything ("*"). PostgreSQL delivers it at the commit,
//     to every listening connection, the writer's own included; the writer
//     also drops its own copy before it returns.
//   - Each instance holds one connection that LISTENs and drops what each
//     notification names as it arrives.
//   - The cache is used only while that connection is known to be alive.
//     When it fails (or answers no ping within pingTimeout after
//     listenIdle of silence), the instance empties its cache and reads
//     every session from the database until it listens again; then it
//     empties the cache once more, so nothing cached before the gap
//     survives it. So a session ended on another instance is served from
//     memory at most until its notification arrives, and if notifications
//     stop arriving, for at most listenIdle + pingTimeout.
//   - A reader that missed the cache stores what it read only if no
//     invalidation of its shard happened since before it read (the cache's
//     generation count), so a record read just before a notification
//     cannot come back after it.
//
// While PostgreSQL is down nothing is served from memory: every request
// that needs a session fails closed with the database.

const (
	notifyChannel = "tf_sessions"
	listenIdle    = time.Second
	pingTimeout   = time.Second
	// StalenessBound is the longest a session ended on another instance
	// can still be accepted here when notifications stop arriving (see
	// above); while they arrive, it is the delivery time of one.
	StalenessBound = listenIdle + pingTimeout
)

// notify sends a cache invalidation within tx: delivered at its commit.
func notify(ctx context.Context, tx pgx.Tx, payload string) error {
	_, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, notifyChannel, payload)
	return err
}

func notifyKey(ctx context.Context, tx pgx.Tx, key []byte) error {
	return notify(ctx, tx, "k"+hex.EncodeToString(key))
}

func notifyUser(ctx context.Context, tx pgx.Tx, user string) error {
	return notify(ctx, tx, "u"+user)
}

// apply drops what a notification names from the cache.
func (p *Postgres) apply(payload string) {
	if h := p.applyHook.Load(); h != nil {
		defer (*h)(payload)
	}
	switch {
	case payload == "*":
		p.sessions.clear()
	case len(payload) > 1 && payload[0] == 'k':
		if key, err := hex.DecodeString(payload[1:]); err == nil && len(key) > 0 {
			p.sessions.drop(key)
		} else {
			p.sessions.clear() // not ours to read: drop everything
		}
	case len(payload) > 1 && payload[0] == 'u':
		p.sessions.dropUser(payload[1:])
	default:
		p.sessions.clear()
	}
}

// listen keeps the notification connection up until ctx ends, and the
// cache on only while it is up.
func (p *Postgres) listen(ctx context.Context) {
	defer close(p.listenDone)
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		err := p.listenOnce(ctx)
		p.listening.Store(false)
		p.sessions.clear()
		if ctx.Err() != nil {
			return
		}
		p.logf("warning", "PostgreSQL notifications stopped; sessions are read from the database until they resume: "+err.Error())
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// listenOnce connects, listens and applies notifications until the
// connection fails.
func (p *Postgres) listenOnce(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	conn, err := pgx.ConnectConfig(cctx, p.connConfig.Copy())
	cancel()
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		return err
	}
	// Listening from here on: what was cached before may have missed a
	// notification.
	p.sessions.clear()
	p.listening.Store(true)
	if h := p.listenHook.Load(); h != nil {
		(*h)()
	}
	for {
		wctx, cancel := context.WithTimeout(ctx, listenIdle)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			p.apply(n.Payload)
			continue
		case ctx.Err() != nil:
			return ctx.Err()
		case wctx.Err() == nil:
			return err // the connection failed
		}
		// Silence: make sure the server is still there.
		pctx, cancel := context.WithTimeout(ctx, pingTimeout)
		err = conn.Ping(pctx)
		cancel()
		if err != nil {
			return err
		}
	}
}

// janitor deletes what has expired: sessions, remembered browsers, old
// attempt counts and old events, once a minute.
func (p *Postgres) janitor(ctx context.Context) {
	defer close(p.janitorDone)
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := p.now()
		for _, q := range []struct {
			sql string
			arg any
		}{
			{`DELETE FROM tf_sessions WHERE expires <= $1`, now},
			{`DELETE FROM tf_browsers WHERE expires <= $1`, now},
			{`DELETE FROM tf_challenges WHERE expires <= $1`, now},
			{`DELETE FROM tf_attempts WHERE last < $1`, now.Add(-AccountLockout - time.Hour)},
			{`DELETE FROM tf_events WHERE stamp < $1`, int64(eventStamp(now.Add(-EventRetention)))},
		} {
			if _, err := p.pool.Exec(ctx, q.sql, q.arg); err != nil && ctx.Err() == nil {
				p.logf("warning", "PostgreSQL clean-up: "+err.Error())
			}
		}
	}
}
