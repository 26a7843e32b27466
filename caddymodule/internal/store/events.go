package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// A user's recent activity: the security events the user may see on the
// Security page (logins, failed codes, changes of the second factor and
// the password, sessions ended). Each is one record under
//
//	e/<uvarint len(user ID)><user ID><8-byte big-endian Unix nanoseconds><8 random bytes>
//
// so that one user's records sort by time and a prefix scan of one user
// never reaches another's (the length comes first, as in the session
// index). The store keeps at most MaxEventsPerUser per user, none older
// than EventRetention by its clock: both are enforced in the transaction
// that adds one, and a read shows nothing older. Events are not part of a
// backup, like sessions.

// Kinds of Event.
const (
	EventLogin         = "login"          // a login completed (Method: how)
	EventCodeFailed    = "code_failed"    // a wrong code after a right password (Step, Method, DriftSeconds)
	EventBackupUsed    = "backup_used"    // a backup code used up (Count: codes left)
	EventEnabled       = "enabled"        // 2FA turned on
	EventDisabled      = "disabled"       // 2FA turned off (By: user, or operator for a reset)
	EventBackupCodes   = "backup_codes"   // a new set of backup codes
	EventPassword      = "password"       // password changed (By; Count: other sessions ended)
	EventSessionsEnded = "sessions_ended" // sessions ended (By; Count)
	EventLogout        = "logout"         // the user logged out of one session
	EventKeyAdded      = "key_added"      // a security key added (Method: its name)
	EventKeyRemoved    = "key_removed"    // a security key removed (Method: its name)
)

// Who caused an event (Event.By).
const (
	ByUser     = "user"
	ByOperator = "operator"
)

// EventRetention is how long an event is kept and shown.
const EventRetention = 30 * 24 * time.Hour

// MaxEventsPerUser bounds the events kept per user; adding one past it
// drops the oldest.
const MaxEventsPerUser = 100

// Bounds on an event's text fields, so that a record stays small whatever
// a request sends.
const (
	maxEventKind  = 32
	maxEventField = 64
)

// Event is one entry of a user's recent activity.
type Event struct {
	// Time is when it happened, by the caller's clock.
	Time time.Time `json:"t"`
	// Kind is one of the Event* constants.
	Kind string `json:"k"`
	// Addr is the client's address; Agent a short summary of its browser
	// and system (never the raw User-Agent).
	Addr  string `json:"a,omitempty"`
	Agent string `json:"b,omitempty"`
	// By is ByUser or ByOperator where it matters.
	By string `json:"by,omitempty"`
	// Step is where a code was checked (the audit log's step names).
	Step string `json:"s,omitempty"`
	// Method is the factor used or tried: "totp" or "backup".
	Method string `json:"m,omitempty"`
	// Count is the number of sessions ended, or of backup codes left.
	Count int `json:"n,omitempty"`
	// DriftSeconds is, for a wrong code that was right for another time
	// step near the current one, that step's offset in seconds (positive:
	// the device's clock is ahead); 0 for none.
	DriftSeconds int64 `json:"d,omitempty"`
}

// eventPrefix returns the prefix of every event key of the user.
func eventPrefix(user string) []byte {
	k := make([]byte, 0, len(prefixEvent)+binary.MaxVarintLen64+len(user)+16)
	k = append(k, prefixEvent...)
	k = binary.AppendUvarint(k, uint64(len(user)))
	return append(k, user...)
}

// eventKey returns a new key for an event of the user at t.
func eventKey(user string, t time.Time) ([]byte, error) {
	k := eventPrefix(user)
	k = binary.BigEndian.AppendUint64(k, eventStamp(t))
	var r [8]byte
	if _, err := rand.Read(r[:]); err != nil {
		return nil, err
	}
	return append(k, r[:]...), nil
}

// eventStamp is t as the key orders it: Unix nanoseconds, clamped to
// the range of the key (times before 1970 sort first).
func eventStamp(t time.Time) uint64 {
	n := t.UnixNano()
	if n < 0 {
		return 0
	}
	return uint64(n)
}

// checkEvent refuses an event the store should not keep.
func checkEvent(e *Event) error {
	switch {
	case e.Kind == "" || len(e.Kind) > maxEventKind:
		return fmt.Errorf("event kind %q: want 1 to %d bytes", e.Kind, maxEventKind)
	case e.Time.IsZero():
		return errors.New("event without a time")
	}
	for _, f := range []*string{&e.Addr, &e.Agent, &e.By, &e.Step, &e.Method} {
		if len(*f) > maxEventField {
			*f = (*f)[:maxEventField]
		}
	}
	return nil
}

// AddEvent keeps an event of the user, and in the same transaction drops
// the user's events older than EventRetention (by the store's clock) and
// the oldest past MaxEventsPerUser.
func (b *Badger) AddEvent(ctx context.Context, user string, e Event) error {
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
	k, err := eventKey(user, e.Time)
	if err != nil {
		return wrap(op, err)
	}
	prefix := eventPrefix(user)
	cutoff := eventStamp(b.now().Add(-EventRetention))
	err = b.updateAccount(ctx, func(txn *badger.Txn) error {
		if err := txn.Set(k, v); err != nil {
			return err
		}
		// Newest first: keep the first MaxEventsPerUser within the
		// retention, drop the rest.
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, Reverse: true})
		var drop [][]byte
		kept := 0
		seek := append(bytes.Clone(prefix), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
		for it.Seek(seek); it.Valid(); it.Next() {
			key := it.Item().Key()
			if stamp, ok := keyStamp(key, len(prefix)); !ok || stamp < cutoff || kept >= MaxEventsPerUser {
				drop = append(drop, it.Item().KeyCopy(nil))
				continue
			}
			kept++
		}
		it.Close()
		for _, d := range drop {
			if err := txn.Delete(d); err != nil {
				return err
			}
		}
		return nil
	})
	return wrap(op, err)
}

// keyStamp reads the time of an event key whose user prefix is n bytes.
func keyStamp(key []byte, n int) (uint64, bool) {
	if len(key) != n+16 {
		return 0, false
	}
	return binary.BigEndian.Uint64(key[n : n+8]), true
}

// Events returns the user's events of the last EventRetention (by the
// store's clock), newest first, at most limit of them (at most
// MaxEventsPerUser when limit is not positive). A record that does not
// decode is left out.
func (b *Badger) Events(ctx context.Context, user string, limit int) ([]Event, error) {
	const op = "read events"
	if err := checkUser(user); err != nil {
		return nil, wrap(op, err)
	}
	if limit <= 0 || limit > MaxEventsPerUser {
		limit = MaxEventsPerUser
	}
	prefix := eventPrefix(user)
	cutoff := eventStamp(b.now().Add(-EventRetention))
	var out []Event
	err := b.view(ctx, func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, Reverse: true, PrefetchValues: true, PrefetchSize: limit})
		defer it.Close()
		seek := append(bytes.Clone(prefix), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
		for it.Seek(seek); it.Valid() && len(out) < limit; it.Next() {
			stamp, ok := keyStamp(it.Item().Key(), len(prefix))
			if !ok {
				continue
			}
			if stamp < cutoff {
				break // older ones follow
			}
			var e Event
			err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &e) })
			if err != nil {
				continue
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, wrap(op, err)
	}
	return out, nil
}

// deleteEvents deletes every event of the user within txn: a user deleted
// and added again does not inherit the old one's activity.
func deleteEvents(txn *badger.Txn, user string) error {
	prefix := eventPrefix(user)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	var keys [][]byte
	for it.Rewind(); it.Valid(); it.Next() {
		keys = append(keys, it.Item().KeyCopy(nil))
	}
	it.Close()
	for _, k := range keys {
		if err := txn.Delete(k); err != nil {
			return err
		}
	}
	return nil
}
