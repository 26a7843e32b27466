// Package session is the one place a single session starts, is read, is
// kept alive and ends. It is a gorilla/sessions Store whose cookie holds
// only an opaque random ID; the record lives in the gate's store under a
// hash of that ID. (All of a user's sessions end in the store, by moving
// the user's session generation: see store.Store.)
package session

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/sessions"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store"
)

// IDSize is the number of random bytes in a session ID.
const IDSize = 32

// recordKey is where a gorilla session keeps its server-side record.
type recordKey struct{}

// Config are the settings of a Store.
type Config struct {
	// Cookie is the name of the session cookie.
	Cookie string
	// Idle, Lifetime and Pending are the idle timeout, the absolute
	// lifetime, and the lifetime of a session that still owes a factor.
	Idle, Lifetime, Pending time.Duration
	// Now is the clock.
	Now func() time.Time
}

// Store is a gorilla/sessions Store whose cookie holds only an opaque
// random ID; the record lives in the gate's store under a hash of that ID,
// so ending a session on the server ends it everywhere, and a copy of the
// store holds no live cookie.
type Store struct {
	// The fields the proxied path reads (Lookup) come first, side by
	// side: 56 bytes.
	db     store.Store
	cookie string
	// idle, lifetime and pending are the idle timeout, the absolute
	// lifetime, and the lifetime of a session that still owes a factor.
	idle, lifetime, pending time.Duration
	options                 sessions.Options
	now                     func() time.Time
	// touching holds the keys of the sessions whose last-seen time a
	// request is refreshing, so that the many requests of one page arriving
	// when the refresh is due write once, not all at once.
	touching sync.Map
}

var _ sessions.Store = (*Store)(nil)

// New returns the sessions of db: Secure, HttpOnly, SameSite=Lax cookies
// for the whole site.
func New(db store.Store, c Config) *Store {
	s := &Store{db: db, cookie: c.Cookie, idle: c.Idle, lifetime: c.Lifetime, pending: c.Pending, now: c.Now}
	s.options.Path = "/"
	s.options.Secure = true
	s.options.HttpOnly = true
	s.options.SameSite = http.SameSiteLaxMode
	return s
}

// Get returns the request's session, cached for the request.
func (s *Store) Get(r *http.Request, name string) (*sessions.Session, error) {
	return sessions.GetRegistry(r).Get(s, name)
}

// New loads the session the request's cookie names. A missing, malformed,
// unknown or expired cookie gives a new, empty session and no error; only a
// failing store is an error, so that callers fail closed.
func (s *Store) New(r *http.Request, name string) (*sessions.Session, error) {
	sess := sessions.NewSession(s, name)
	opts := s.options
	sess.Options = &opts
	sess.IsNew = true
	rec, id, ok, err := s.lookup(r, name, s.now())
	if err != nil || !ok {
		return sess, err
	}
	sess.ID = id
	sess.IsNew = false
	sess.Values[recordKey{}] = &rec
	return sess, nil
}

// Save writes the session: a MaxAge below zero deletes it on the server and
// in the browser; an empty ID gets a fresh one (a new session ID after each
// factor, so a planted cookie is worth nothing).
func (s *Store) Save(r *http.Request, w http.ResponseWriter, sess *sessions.Session) error {
	rec := Record(sess)
	if sess.Options.MaxAge < 0 {
		if sess.ID != "" {
			if err := s.db.DeleteSession(r.Context(), KeyOf(sess.ID)); err != nil {
				return err
			}
		}
		http.SetCookie(w, sessions.NewCookie(sess.Name(), "", sess.Options))
		return nil
	}
	if rec == nil {
		return errors.New("session has no record")
	}
	if sess.ID == "" {
		id, err := NewID()
		if err != nil {
			return err
		}
		sess.ID = id
	}
	rec.Key = KeyOf(sess.ID)
	rec.Expires = s.expiry(rec)
	if err := s.db.PutSession(r.Context(), *rec); err != nil {
		return err
	}
	http.SetCookie(w, sessions.NewCookie(sess.Name(), sess.ID, sess.Options))
	return nil
}

// Lookup reads the request's session: the gate's hot path, one store read,
// no write and no allocation beyond the store key. It returns ok false for
// anything but a live session. The record is the store's, read in place
// (store.Store.SessionAdmission): the caller changes nothing in it, reads
// only the fields up to Cred, and takes the user from the admission. The
// proxied path uses it directly, not through Get (gorilla's registry and
// Session allocate on every request: see docs/benchmarks.md); the gate's
// pages read sessions through Get. now is the caller's reading of the
// clock, so that a request reads it once.
func (s *Store) Lookup(r *http.Request, now time.Time) (a store.Admission, ok bool, err error) {
	_, key, ok := s.cookieKey(r, s.cookie)
	if !ok {
		return store.Admission{}, false, nil
	}
	a, err = s.db.SessionAdmission(r.Context(), key, now)
	if errors.Is(err, store.ErrNotFound) {
		return store.Admission{}, false, nil
	}
	if err != nil {
		return store.Admission{}, false, err
	}
	if a.User == "" || !s.live(a.Rec, now) {
		return store.Admission{}, false, nil
	}
	return a, true, nil
}

// lookup reads the cookie and its whole record, for the pages; ok is false
// for anything but a live session.
func (s *Store) lookup(r *http.Request, name string, now time.Time) (rec store.Session, id string, ok bool, err error) {
	id, key, ok := s.cookieKey(r, name)
	if !ok {
		return store.Session{}, "", false, nil
	}
	rec, err = s.db.Session(r.Context(), key)
	if errors.Is(err, store.ErrNotFound) {
		return store.Session{}, "", false, nil
	}
	if err != nil {
		return store.Session{}, "", false, err
	}
	if !s.live(&rec, now) {
		return store.Session{}, "", false, nil
	}
	return rec, id, true, nil
}

// cookieKey returns the session ID in the request's cookie name and its
// store key, if the cookie holds a well-formed one.
func (s *Store) cookieKey(r *http.Request, name string) (id string, key []byte, ok bool) {
	if id, ok = CookieValue(r.Header, name); !ok {
		return "", nil, false
	}
	if key, ok = ParseID(id); !ok {
		return "", nil, false
	}
	return id, key, true
}

// live applies the timeouts on the server: the absolute lifetime, the idle
// timeout, and the short life of a session that still owes a factor.
func (s *Store) live(rec *store.Session, now time.Time) bool {
	if rec.User == "" || !now.Before(s.expiry(rec)) {
		return false
	}
	return rec.Stage == store.StagePassword || now.Sub(rec.Seen) < s.idle
}

// expiry is when a record stops being valid, whatever happens to it.
func (s *Store) expiry(rec *store.Session) time.Time {
	if rec.Stage == store.StagePassword {
		return rec.Created.Add(s.pending)
	}
	end := rec.Created.Add(s.lifetime)
	if idleEnd := rec.Seen.Add(s.idle); idleEnd.Before(end) {
		return idleEnd
	}
	return end
}

// KeepAlive moves a session's idle timer on when it is due (at most once
// per touchInterval, so the hot path writes only now and then), in the
// store and in rec, the caller's copy. It answers store.ErrNotFound if the
// session ended meanwhile. now is the caller's reading of the clock.
func (s *Store) KeepAlive(ctx context.Context, rec *store.Session, now time.Time) error {
	if now.Sub(rec.Seen) <= s.touchInterval() {
		return nil
	}
	expires, err := s.touch(ctx, rec, now)
	rec.Seen, rec.Expires = now, expires
	return err
}

// KeepAdmitted is KeepAlive for the proxied path's admission, whose record
// is the store's: the store's copy is refreshed, and the record left as it
// is.
func (s *Store) KeepAdmitted(ctx context.Context, a store.Admission, now time.Time) error {
	if now.Sub(a.Rec.Seen) <= s.touchInterval() {
		return nil
	}
	_, err := s.touch(ctx, a.Rec, now)
	return err
}

// touch refreshes the session's last-seen time to now, if no other request
// is doing so already, and returns the expiry that gives it; rec is left
// as it is. ErrNotFound means the session ended meanwhile (a logout between
// this request's read and its refresh): the request has no session.
func (s *Store) touch(ctx context.Context, rec *store.Session, now time.Time) (time.Time, error) {
	seen := *rec
	seen.Seen = now
	expires := s.expiry(&seen)
	k := string(rec.Key)
	if _, busy := s.touching.LoadOrStore(k, struct{}{}); busy {
		return expires, nil
	}
	defer s.touching.Delete(k)
	return expires, s.db.TouchSession(ctx, rec.Key, now, expires)
}

// touchInterval is how stale a session's last-seen time may get before a
// request refreshes it; it keeps the hot path free of writes for all but
// one request in a while.
func (s *Store) touchInterval() time.Duration {
	return min(s.idle/10, time.Minute)
}

// Record returns the session's server-side record, nil for a new session.
func Record(sess *sessions.Session) *store.Session {
	rec, _ := sess.Values[recordKey{}].(*store.Session)
	return rec
}

// setRecord attaches a server-side record to the session.
func setRecord(sess *sessions.Session, rec *store.Session) {
	sess.Values[recordKey{}] = rec
}

// NewID returns a new random session ID, as the cookie carries it.
func NewID() (string, error) {
	b := make([]byte, IDSize)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating session ID: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// ParseID checks a cookie value's form and returns the store key.
// It accepts exactly what base64.RawURLEncoding decodes to IDSize
// bytes (a fuzz test holds it to that), checking the alphabet in place.
func ParseID(v string) ([]byte, bool) {
	if len(v) != base64.RawURLEncoding.EncodedLen(IDSize) {
		return nil, false
	}
	for i := 0; i < len(v); i++ {
		if byteClass[v[i]]&base64URLByte == 0 {
			return nil, false
		}
	}
	return KeyOf(v), true
}

// KeyOf is the store key of a session ID: its SHA-256.
func KeyOf(id string) []byte {
	// Hash a copy on the stack: the conversion of a string this long
	// would otherwise allocate.
	var buf [64]byte
	sum := sha256.Sum256(append(buf[:0], id...))
	return sum[:]
}

// Current returns the request's live session record through gorilla's
// registry (read once per request), or nil for none.
func (s *Store) Current(r *http.Request) (*store.Session, error) {
	sess, err := s.Get(r, s.cookie)
	if err != nil {
		return nil, err
	}
	return Record(sess), nil
}

// Start gives the user a new session, with a new ID, and ends the one the
// request came with: no session ID survives a change of stage, so a planted
// cookie is worth nothing.
func (s *Store) Start(w http.ResponseWriter, r *http.Request, rec *store.Session) error {
	old, err := s.Get(r, s.cookie)
	if err != nil {
		return err
	}
	if c, err := r.Cookie(s.cookie); err == nil {
		if key, ok := ParseID(c.Value); ok {
			if err := s.db.DeleteSession(r.Context(), key); err != nil {
				return err
			}
		}
	}
	now := s.now()
	rec.Created, rec.Seen = now, now
	old.ID = ""
	old.IsNew = true
	opts := s.options
	opts.MaxAge = int(s.lifetime.Seconds())
	old.Options = &opts
	setRecord(old, rec)
	return old.Save(r, w)
}

// Update rewrites a live session's record in place, same ID; it returns
// store.ErrNotFound if the session ended meanwhile.
func (s *Store) Update(ctx context.Context, rec *store.Session) error {
	rec.Expires = s.expiry(rec)
	return s.db.UpdateSession(ctx, *rec)
}

// End ends the request's session on the server and in the browser.
func (s *Store) End(w http.ResponseWriter, r *http.Request) error {
	sess, err := s.Get(r, s.cookie)
	if err != nil {
		return err
	}
	opts := s.options
	opts.MaxAge = -1
	sess.Options = &opts
	sess.ID = ""
	if c, err := r.Cookie(s.cookie); err == nil {
		if _, ok := ParseID(c.Value); ok {
			sess.ID = c.Value
		}
	}
	return sess.Save(r, w)
}

// RemoveFrom drops the session cookie, and the further cookies named
// (such as a remembered browser's), from a request that goes on to the
// upstream, which never sees a session ID or a token: one pass over the
// Cookie header, whose lines the caller passes (r.Header["Cookie"]).
func (s *Store) RemoveFrom(r *http.Request, lines []string, also string) {
	RemoveCookieFrom(r.Header, lines, s.cookie, also)
}
