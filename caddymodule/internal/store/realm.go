package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// DefaultRealm is the realm of a handler that names none. Its users are
// keyed by their bare canonical names, as every record was before realms
// existed, so a store written then keeps its enrolments, backup codes,
// store users and sessions in the default realm.
const DefaultRealm = "default"

// realmSep separates a realm's name from a user's in the user IDs of every
// realm but the default one. Canonical user names hold no control
// characters, so the split is unambiguous.
const realmSep = "\x1f"

// maxRealmLen bounds a realm's name.
const maxRealmLen = 64

// CheckRealm returns an error that says what a realm name must be when
// name is not one, else nil.
func CheckRealm(name string) error {
	if !validRealm(name) {
		return fmt.Errorf("realm %q: 1 to 64 of a-z, 0-9, '.', '_' and '-', starting with a letter or digit", name)
	}
	return nil
}

// validRealm reports whether name can name a realm: 1 to 64 of a-z, 0-9,
// '.', '_' and '-', starting with a letter or digit.
func validRealm(name string) bool {
	if name == "" || len(name) > maxRealmLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// UserID is the key under which the store keeps a user of a realm: every
// record of the user (enrolment, store user, sessions and their index) is
// keyed by it, so two realms never share a record.
func UserID(realm, name string) string {
	if realm == DefaultRealm || realm == "" {
		return name
	}
	return realm + realmSep + name
}

// inRealm reports whether the user ID id belongs to the realm whose IDs
// start with prefix ("" for the default realm), and returns the user name.
// It does not allocate: the proxied request's session lookup calls it.
func inRealm(id, prefix string) (string, bool) {
	if prefix == "" {
		return id, !strings.Contains(id, realmSep)
	}
	if len(id) <= len(prefix) || id[:len(prefix)] != prefix {
		return "", false
	}
	name := id[len(prefix):]
	return name, !strings.Contains(name, realmSep)
}

// Realm is one realm's view of a Store: every user name it takes or
// returns is a name within the realm, and it sees only the realm's users,
// enrolments and sessions. A session of another realm is ErrNotFound, so a
// cookie of one site is worth nothing on a site of another realm. Backup,
// Restore and the meta values are the whole store's.
type Realm struct {
	Store
	name   string
	prefix string
}

var _ Store = (*Realm)(nil)

// InRealm returns the realm's view of s. The name must be a valid realm name (or
// empty, for the default realm).
func InRealm(s Store, realm string) (*Realm, error) {
	if realm == "" {
		realm = DefaultRealm
	}
	if err := CheckRealm(realm); err != nil {
		return nil, err
	}
	r := &Realm{Store: s, name: realm}
	if realm != DefaultRealm {
		r.prefix = realm + realmSep
	}
	return r, nil
}

// id returns the store key of a user of the realm.
func (r *Realm) id(user string) string {
	if user == "" {
		return "" // the store refuses it as an empty name
	}
	return UserID(r.name, user)
}

// local turns a session read from the store into the realm's form, or
// reports that it belongs to another realm.
func (r *Realm) local(s Session) (Session, bool) {
	name, ok := inRealm(s.User, r.prefix)
	if !ok {
		return Session{}, false
	}
	s.User = name
	return s, true
}

func (r *Realm) Account(ctx context.Context, user string) (Account, error) {
	a, err := r.Store.Account(ctx, r.id(user))
	a.Name = user
	return a, err
}

func (r *Realm) EnableTOTP(ctx context.Context, user string, t TOTP, backupCodes [][]byte) error {
	return r.Store.EnableTOTP(ctx, r.id(user), t, backupCodes)
}

func (r *Realm) DisableTOTP(ctx context.Context, user string, keepSession []byte) error {
	return r.Store.DisableTOTP(ctx, r.id(user), keepSession)
}

func (r *Realm) ReplaceBackupCodes(ctx context.Context, user string, backupCodes [][]byte) error {
	return r.Store.ReplaceBackupCodes(ctx, r.id(user), backupCodes)
}

func (r *Realm) UseTOTPStep(ctx context.Context, user string, step int64) error {
	return r.Store.UseTOTPStep(ctx, r.id(user), step)
}

func (r *Realm) UseBackupCode(ctx context.Context, user string, hash []byte) (int, error) {
	return r.Store.UseBackupCode(ctx, r.id(user), hash)
}

// Session returns the session only if it belongs to the realm.
func (r *Realm) Session(ctx context.Context, key []byte) (Session, error) {
	s, err := r.Store.Session(ctx, key)
	if err != nil {
		return Session{}, err
	}
	s, ok := r.local(s)
	if !ok {
		return Session{}, ErrNotFound
	}
	return s, nil
}

// SessionAdmission implements Store: the record of another realm is
// ErrNotFound, and User is the name within the realm.
func (r *Realm) SessionAdmission(ctx context.Context, key []byte, now time.Time) (Admission, error) {
	a, err := r.Store.SessionAdmission(ctx, key, now)
	if err != nil {
		return Admission{}, err
	}
	name, ok := inRealm(a.User, r.prefix)
	if !ok {
		return Admission{}, ErrNotFound
	}
	a.User = name
	return a, nil
}

func (r *Realm) PutSession(ctx context.Context, s Session) error {
	if s.User == "" {
		return r.Store.PutSession(ctx, s)
	}
	s.User = r.id(s.User)
	return r.Store.PutSession(ctx, s)
}

// UpdateSession replaces a live session of the realm; a record of another
// realm under that key is ErrNotFound, as the store's own check for another
// user would answer.
func (r *Realm) UpdateSession(ctx context.Context, s Session) error {
	if s.User == "" {
		return r.Store.UpdateSession(ctx, s)
	}
	s.User = r.id(s.User)
	return r.Store.UpdateSession(ctx, s)
}

// TouchSession refreshes a session of the realm; one of another realm is
// left alone and reported as ErrNotFound.
func (r *Realm) TouchSession(ctx context.Context, key []byte, seen, expires time.Time) error {
	if _, err := r.SessionAdmission(ctx, key, seen); err != nil {
		return err
	}
	return r.Store.TouchSession(ctx, key, seen, expires)
}

// DeleteSession removes a session of the realm; one of another realm is
// left alone (as if already gone).
func (r *Realm) DeleteSession(ctx context.Context, key []byte) error {
	if _, err := r.Session(ctx, key); errors.Is(err, ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	return r.Store.DeleteSession(ctx, key)
}

func (r *Realm) DeleteUserSessions(ctx context.Context, user string, keepSession []byte) (int, error) {
	return r.Store.DeleteUserSessions(ctx, r.id(user), keepSession)
}

func (r *Realm) RememberBrowser(ctx context.Context, user string, rb RememberedBrowser) error {
	return r.Store.RememberBrowser(ctx, r.id(user), rb)
}

func (r *Realm) RememberedBrowser(ctx context.Context, user string, hash []byte) (RememberedBrowser, error) {
	return r.Store.RememberedBrowser(ctx, r.id(user), hash)
}

func (r *Realm) RememberedBrowsers(ctx context.Context, user string) ([]RememberedBrowser, error) {
	return r.Store.RememberedBrowsers(ctx, r.id(user))
}

func (r *Realm) ForgetBrowser(ctx context.Context, user string, hash []byte) error {
	return r.Store.ForgetBrowser(ctx, r.id(user), hash)
}

func (r *Realm) ForgetBrowsers(ctx context.Context, user string) (int, error) {
	return r.Store.ForgetBrowsers(ctx, r.id(user))
}

func (r *Realm) User(ctx context.Context, name string) (User, error) {
	u, err := r.Store.User(ctx, r.id(name))
	if err == nil {
		u.Name = name
	}
	return u, err
}

// Users returns the realm's store users.
func (r *Realm) Users(ctx context.Context) ([]User, error) {
	all, err := r.Store.Users(ctx)
	if err != nil {
		return nil, err
	}
	var out []User
	for _, u := range all {
		if name, ok := inRealm(u.Name, r.prefix); ok {
			u.Name = name
			out = append(out, u)
		}
	}
	return out, nil
}

func (r *Realm) AddUser(ctx context.Context, u User) error {
	if u.Name != "" {
		u.Name = r.id(u.Name)
	}
	return r.Store.AddUser(ctx, u)
}

func (r *Realm) SetPassword(ctx context.Context, name, hash string, at time.Time, keepSession []byte) (int, error) {
	return r.Store.SetPassword(ctx, r.id(name), hash, at, keepSession)
}

func (r *Realm) RehashPassword(ctx context.Context, name, oldHash, newHash string) (bool, error) {
	return r.Store.RehashPassword(ctx, r.id(name), oldHash, newHash)
}

func (r *Realm) DeleteUser(ctx context.Context, name string) (int, error) {
	return r.Store.DeleteUser(ctx, r.id(name))
}

func (r *Realm) UserSessions(ctx context.Context, user string) ([]Session, error) {
	all, err := r.Store.UserSessions(ctx, r.id(user))
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, s := range all {
		if s, ok := r.local(s); ok {
			out = append(out, s)
		}
	}
	return out, nil
}

// AddEvent keeps an event of a user of the realm.
func (r *Realm) AddEvent(ctx context.Context, user string, e Event) error {
	return r.Store.AddEvent(ctx, r.id(user), e)
}

// Events returns the events of a user of the realm: those of another
// realm's user of the same name are under another user ID.
func (r *Realm) Events(ctx context.Context, user string, limit int) ([]Event, error) {
	return r.Store.Events(ctx, r.id(user), limit)
}

// CountEnrolled counts the realm's users with the second factor on.
func (r *Realm) CountEnrolled(ctx context.Context) (int, error) {
	return r.Store.CountEnrolledIn(ctx, r.name)
}

// Close does nothing: the view does not own the store.
func (r *Realm) Close() error { return nil }

// CountEnrolledIn counts the users of one realm with the second factor
// on: a scan of keys alone, without reading values.
func (b *Badger) CountEnrolledIn(ctx context.Context, realm string) (int, error) {
	if realm == "" {
		realm = DefaultRealm
	}
	prefix := []byte(prefixAccount)
	var realmPrefix string
	if realm != DefaultRealm {
		realmPrefix = realm + realmSep
		prefix = append(prefix, realmPrefix...)
	}
	n := 0
	err := b.view(ctx, func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			id := string(it.Item().Key()[len(prefixAccount):])
			if _, ok := inRealm(id, realmPrefix); ok {
				n++
			}
		}
		return nil
	})
	if err != nil {
		return 0, wrap("count enrolled", err)
	}
	return n, nil
}
