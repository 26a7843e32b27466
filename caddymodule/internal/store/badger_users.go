package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// getUser reads a store user within txn; ErrNoUser if there is none.
func getUser(txn *badger.Txn, name string) (User, error) {
	item, err := txn.Get(userKey(name))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return User{}, ErrNoUser
	}
	if err != nil {
		return User{}, err
	}
	var u User
	err = item.Value(func(v []byte) error {
		u, err = decodeUser(name, v)
		return err
	})
	return u, err
}

// decodeUser parses a user record and checks that it is usable.
func decodeUser(name string, v []byte) (User, error) {
	var u User
	if err := json.Unmarshal(v, &u); err != nil {
		return User{}, fmt.Errorf("decode user %q: %w", name, err)
	}
	if u.PasswordHash == "" || u.Display == "" {
		return User{}, fmt.Errorf("decode user %q: no password hash or display name", name)
	}
	u.Name = name
	return u, nil
}

func putUser(txn *badger.Txn, u *User) error {
	v, err := json.Marshal(u)
	if err != nil {
		return fmt.Errorf("encode user: %w", err)
	}
	return txn.Set(userKey(u.Name), v)
}

// checkNewUser rejects a user record that could not be used.
func checkNewUser(u User) error {
	switch {
	case u.Name == "":
		return errors.New("empty user name")
	case u.Display == "":
		return errors.New("empty display name")
	case u.PasswordHash == "":
		return errors.New("empty password hash")
	}
	return nil
}

// User returns a user kept in the store; ErrNoUser if there is none.
func (b *Badger) User(ctx context.Context, name string) (User, error) {
	if err := checkUser(name); err != nil {
		return User{}, wrap("read user", err)
	}
	var u User
	err := b.view(ctx, func(txn *badger.Txn) error {
		var err error
		u, err = getUser(txn, name)
		return err
	})
	if err != nil {
		return User{}, wrap("read user", err)
	}
	return u, nil
}

// Users returns every user kept in the store, ordered by name (badger
// iterates keys in byte order).
func (b *Badger) Users(ctx context.Context) ([]User, error) {
	var users []User
	err := b.view(ctx, func(txn *badger.Txn) error {
		prefix := []byte(prefixUser)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 100})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			name := string(item.Key()[len(prefix):])
			err := item.Value(func(v []byte) error {
				u, err := decodeUser(name, v)
				if err != nil {
					return err
				}
				users = append(users, u)
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, wrap("list users", err)
	}
	return users, nil
}

// AddUser adds a user; ErrUserExists if the name is taken.
func (b *Badger) AddUser(ctx context.Context, u User) error {
	const op = "add user"
	if err := checkNewUser(u); err != nil {
		return wrap(op, err)
	}
	err := b.update(ctx, func(txn *badger.Txn) error {
		_, err := getUser(txn, u.Name)
		switch {
		case err == nil:
			return ErrUserExists
		case !errors.Is(err, ErrNoUser):
			return err
		}
		uu := u
		return putUser(txn, &uu)
	})
	return wrap(op, err)
}

// SetPassword sets the user's password hash and ends their other sessions
// (the next session generation), in one transaction.
func (b *Badger) SetPassword(ctx context.Context, name, hash string, at time.Time, keepSession []byte) (int, error) {
	const op = "set password"
	if err := userAndHash(name, hash); err != nil {
		return 0, wrap(op, err)
	}
	n, err := b.endSessions(ctx, name, keepSession, func(txn *badger.Txn) error {
		if _, err := forgetAll(txn, name); err != nil {
			return err
		}
		u, err := getUser(txn, name)
		if err != nil {
			return err
		}
		u.PasswordHash = hash
		u.PasswordChanged = at
		return putUser(txn, &u)
	})
	if err != nil {
		return 0, wrap(op, err)
	}
	return n, nil
}

// RehashPassword replaces the hash only if it is still oldHash.
func (b *Badger) RehashPassword(ctx context.Context, name, oldHash, newHash string) (bool, error) {
	const op = "rehash password"
	if err := userAndHash(name, newHash); err != nil {
		return false, wrap(op, err)
	}
	var done bool
	err := b.update(ctx, func(txn *badger.Txn) error {
		done = false
		u, err := getUser(txn, name)
		if err != nil {
			return err
		}
		if u.PasswordHash != oldHash {
			return nil // changed meanwhile: the newer password stands
		}
		u.PasswordHash = newHash
		done = true
		return putUser(txn, &u)
	})
	if err != nil {
		return false, wrap(op, err)
	}
	return done, nil
}

// DeleteUser removes the user, their enrolment and their recent activity
// and ends their sessions (the next session generation) in one transaction. The generation record
// stays, so that a user added again under the name does not bring the old
// sessions back.
func (b *Badger) DeleteUser(ctx context.Context, name string) (int, error) {
	const op = "delete user"
	if err := checkUser(name); err != nil {
		return 0, wrap(op, err)
	}
	n, err := b.endSessions(ctx, name, nil, func(txn *badger.Txn) error {
		if _, err := getUser(txn, name); err != nil {
			return err
		}
		if _, err := forgetAll(txn, name); err != nil {
			return err
		}
		if err := txn.Delete(userKey(name)); err != nil {
			return err
		}
		if err := deleteEvents(txn, name); err != nil {
			return err
		}
		return txn.Delete(accountKey(name))
	})
	if err != nil {
		return 0, wrap(op, err)
	}
	return n, nil
}

// UserSessions returns the user's live sessions of the current generation,
// by the store's clock.
func (b *Badger) UserSessions(ctx context.Context, user string) ([]Session, error) {
	const op = "list user sessions"
	if err := checkUser(user); err != nil {
		return nil, wrap(op, err)
	}
	var out []Session
	err := b.view(ctx, func(txn *badger.Txn) error {
		g, err := getGen(txn, user)
		if err != nil {
			return err
		}
		// The index tells the generation: the records of ended
		// sessions that the sweeper has not deleted yet are not read.
		var keys [][]byte
		err = scanUser(txn, user, func(key []byte, gen uint64, _ Session) (bool, error) {
			if gen == g {
				keys = append(keys, bytes.Clone(key))
			}
			return true, nil
		})
		if err != nil {
			return err
		}
		t := b.now()
		for _, key := range keys {
			item, err := txn.Get(sessionKey(key))
			if errors.Is(err, badger.ErrKeyNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			var s Session
			err = item.Value(func(v []byte) error {
				s, err = decodeSession(v)
				return err
			})
			if err != nil || s.User != user || s.Gen != g || !t.Before(s.Expires) {
				continue // stale index entry, not decodable or ended: not a live session
			}
			s.Key = bytes.Clone(key)
			out = append(out, s)
		}
		return nil
	})
	if err != nil {
		return nil, wrap(op, err)
	}
	return out, nil
}

// CountEnrolled counts the account records, which exist only while the
// second factor is on: a scan of keys alone, without reading values.
func (b *Badger) CountEnrolled(ctx context.Context) (int, error) {
	n := 0
	err := b.view(ctx, func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefixAccount)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
		}
		return nil
	})
	if err != nil {
		return 0, wrap("count enrolled", err)
	}
	return n, nil
}
