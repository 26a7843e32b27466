package caddymodule

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

// sessionIDSize is the number of random bytes in a session ID.
const sessionIDSize = 32

// recordKey is where a gorilla session keeps its server-side record.
type recordKey struct{}

// sessionStore is a gorilla/sessions Store whose cookie holds only an
// opaque random ID; the record lives in the gate's store under a hash of
// that ID, so ending a session on the server ends it everywhere, and a copy
// of the store holds no live cookie.
type sessionStore struct {
	db      store.Store
	options sessions.Options
	// idle, lifetime and pending are the idle timeout, the absolute
	// lifetime, and the lifetime of a session that still owes a factor.
	idle, lifetime, pending time.Duration
	now                     func() time.Time
	// touching holds the keys of the sessions whose last-seen time a
	// request is refreshing, so that the many requests of one page arriving
	// when the refresh is due write once, not all at once.
	touching sync.Map
}

var _ sessions.Store = (*sessionStore)(nil)

// Get returns the request's session, cached for the request.
func (s *sessionStore) Get(r *http.Request, name string) (*sessions.Session, error) {
	return sessions.GetRegistry(r).Get(s, name)
}

// New loads the session the request's cookie names. A missing, malformed,
// unknown or expired cookie gives a new, empty session and no error; only a
// failing store is an error, so that callers fail closed.
func (s *sessionStore) New(r *http.Request, name string) (*sessions.Session, error) {
	sess := sessions.NewSession(s, name)
	opts := s.options
	sess.Options = &opts
	sess.IsNew = true
	rec, id, err := s.lookup(r, name)
	if err != nil || rec == nil {
		return sess, err
	}
	sess.ID = id
	sess.IsNew = false
	sess.Values[recordKey{}] = rec
	return sess, nil
}

// Save writes the session: a MaxAge below zero deletes it on the server and
// in the browser; an empty ID gets a fresh one (a new session ID after each
// factor, so a planted cookie is worth nothing).
func (s *sessionStore) Save(r *http.Request, w http.ResponseWriter, sess *sessions.Session) error {
	rec := record(sess)
	if sess.Options.MaxAge < 0 {
		if sess.ID != "" {
			if err := s.db.DeleteSession(r.Context(), keyOf(sess.ID)); err != nil {
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
		id, err := newSessionID()
		if err != nil {
			return err
		}
		sess.ID = id
	}
	rec.Key = keyOf(sess.ID)
	rec.Expires = s.expiry(*rec)
	if err := s.db.PutSession(r.Context(), *rec); err != nil {
		return err
	}
	http.SetCookie(w, sessions.NewCookie(sess.Name(), sess.ID, sess.Options))
	return nil
}

// lookup reads the cookie and its record: the gate's hot path, one store
// read and no write. It returns a nil record for anything but a live
// session.
func (s *sessionStore) lookup(r *http.Request, name string) (*store.Session, string, error) {
	id, ok := cookieValue(r.Header, name)
	if !ok {
		return nil, "", nil
	}
	key, ok := parseSessionID(id)
	if !ok {
		return nil, "", nil
	}
	rec, err := s.db.Session(r.Context(), key)
	if errors.Is(err, store.ErrNotFound) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", err
	}
	if !s.live(rec) {
		return nil, "", nil
	}
	return &rec, id, nil
}

// live applies the timeouts on the server: the absolute lifetime, the idle
// timeout, and the short life of a session that still owes a factor.
func (s *sessionStore) live(rec store.Session) bool {
	now := s.now()
	if rec.User == "" || !now.Before(s.expiry(rec)) {
		return false
	}
	return rec.Stage == store.StagePassword || now.Sub(rec.Seen) < s.idle
}

// expiry is when a record stops being valid, whatever happens to it.
func (s *sessionStore) expiry(rec store.Session) time.Time {
	if rec.Stage == store.StagePassword {
		return rec.Created.Add(s.pending)
	}
	end := rec.Created.Add(s.lifetime)
	if idleEnd := rec.Seen.Add(s.idle); idleEnd.Before(end) {
		return idleEnd
	}
	return end
}

// touch refreshes the session's last-seen time if no other request is
// doing so already. ErrNotFound means the session ended meanwhile (a logout
// between this request's read and its refresh): the request has no session.
func (s *sessionStore) touch(ctx context.Context, rec *store.Session) error {
	k := string(rec.Key)
	if _, busy := s.touching.LoadOrStore(k, struct{}{}); busy {
		return nil
	}
	defer s.touching.Delete(k)
	rec.Seen = s.now()
	rec.Expires = s.expiry(*rec)
	return s.db.TouchSession(ctx, rec.Key, rec.Seen, rec.Expires)
}

// touchInterval is how stale a session's last-seen time may get before a
// request refreshes it; it keeps the hot path free of writes for all but
// one request in a while.
func (s *sessionStore) touchInterval() time.Duration {
	return min(s.idle/10, time.Minute)
}

// record returns the session's server-side record, nil for a new session.
func record(sess *sessions.Session) *store.Session {
	rec, _ := sess.Values[recordKey{}].(*store.Session)
	return rec
}

// setRecord attaches a server-side record to the session.
func setRecord(sess *sessions.Session, rec *store.Session) {
	sess.Values[recordKey{}] = rec
}

func newSessionID() (string, error) {
	b := make([]byte, sessionIDSize)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating session ID: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// parseSessionID checks a cookie value's form and returns the store key.
// It accepts exactly what base64.RawURLEncoding decodes to sessionIDSize
// bytes (a fuzz test holds it to that), checking the alphabet in place.
func parseSessionID(v string) ([]byte, bool) {
	if len(v) != base64.RawURLEncoding.EncodedLen(sessionIDSize) {
		return nil, false
	}
	for i := 0; i < len(v); i++ {
		if !base64URL[v[i]] {
			return nil, false
		}
	}
	return keyOf(v), true
}

// base64URL marks the bytes of the unpadded URL-safe base64 alphabet.
var base64URL = func() (t [256]bool) {
	for _, c := range "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_" {
		t[c] = true
	}
	return t
}()

// keyOf is the store key of a session ID: its SHA-256.
func keyOf(id string) []byte {
	// Hash a copy on the stack: the conversion of a string this long
	// would otherwise allocate.
	var buf [64]byte
	sum := sha256.Sum256(append(buf[:0], id...))
	return sum[:]
}
