package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Remembered browsers: a browser whose user ticked "don't ask for a code on
// this browser" holds a long-lived random token; the store keeps only its
// SHA-256, per user, under
//
//	b/<uvarint len(user)><user><sha256(token)> → JSON (RememberedBrowser)
//
// A user has at most MaxRememberedBrowsers of them (the oldest goes). Every
// change of the user's second factors or password (enable, disable, new
// backup codes, password change, user deletion, an operator's reset)
// deletes them all in the transaction of the change (forgetAll), so no
// token outlives the factors it stood for. Ending sessions (a logout, "log
// out of all others", revoke) leaves them: they let a browser skip the
// code, never the password.
const prefixRemember = "b/"

// MaxRememberedBrowsers bounds the remembered browsers of one user: one
// transaction that forgets them all stays small.
const MaxRememberedBrowsers = 20

// RememberedBrowser is one remembered browser of a user.
type RememberedBrowser struct {
	// Hash is the SHA-256 of the browser's token: the store never holds
	// the token.
	Hash []byte `json:"-"`
	// Created and Expires bound the token's life.
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
	// Agent is the browser's User-Agent (cut to MaxAgentLen bytes), Addr
	// the client address, when it was remembered.
	Agent string `json:"agent,omitempty"`
	Addr  string `json:"addr,omitempty"`
	// Cred is the fingerprint of a configured user's password hash when
	// it was remembered (Session.Cred): the gate honours it only while the
	// configuration has that hash.
	Cred []byte `json:"cred,omitempty"`
}

// TokenHash is the hash a remembered browser's token is kept under.
func TokenHash(token []byte) []byte {
	h := sha256.Sum256(token)
	return h[:]
}

// rememberPrefix is the prefix of all of a user's remembered browsers.
func rememberPrefix(user string) []byte {
	k := make([]byte, 0, len(prefixRemember)+binary.MaxVarintLen64+len(user))
	k = append(k, prefixRemember...)
	k = binary.AppendUvarint(k, uint64(len(user)))
	return append(k, user...)
}

func rememberKey(user string, hash []byte) []byte {
	return append(rememberPrefix(user), hash...)
}

// rememberEntry is the badger entry of a remembered browser, dropped by
// badger once it has expired (rounded up; the store's clock decides).
func rememberEntry(user string, rb *RememberedBrowser) (*badger.Entry, error) {
	v, err := json.Marshal(rb)
	if err != nil {
		return nil, err
	}
	return sessionEntry(rememberKey(user, rb.Hash), v, rb.Expires), nil
}

// scanRemembered returns all of the user's remembered browsers within txn,
// expired ones included.
func scanRemembered(txn *badger.Txn, user string) ([]RememberedBrowser, error) {
	prefix := rememberPrefix(user)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	var out []RememberedBrowser
	for it.Rewind(); it.Valid(); it.Next() {
		item := it.Item()
		var rb RememberedBrowser
		err := item.Value(func(v []byte) error { return json.Unmarshal(v, &rb) })
		if err != nil {
			return nil, fmt.Errorf("remembered browser of %q: %w", user, err)
		}
		rb.Hash = bytes.Clone(item.Key()[len(prefix):])
		out = append(out, rb)
	}
	return out, nil
}

// forgetAll deletes every remembered browser of the user within txn, and
// returns how many there were (at most MaxRememberedBrowsers, and those
// expired but not yet dropped).
func forgetAll(txn *badger.Txn, user string) (int, error) {
	all, err := scanRemembered(txn, user)
	if err != nil {
		return 0, err
	}
	for _, rb := range all {
		if err := txn.Delete(rememberKey(user, rb.Hash)); err != nil {
			return 0, err
		}
	}
	return len(all), nil
}

// checkBrowser refuses a remembered browser no store may keep, and clips
// its User-Agent and address.
func checkBrowser(user string, rb *RememberedBrowser) error {
	switch {
	case checkUser(user) != nil:
		return checkUser(user)
	case checkHash(rb.Hash) != nil:
		return checkHash(rb.Hash)
	case rb.Expires.Unix() <= 0 || !rb.Created.Before(rb.Expires):
		return fmt.Errorf("expiry time %v out of range", rb.Expires)
	}
	rb.Agent, rb.Addr = clip(rb.Agent, MaxAgentLen), clip(rb.Addr, MaxAddrLen)
	return nil
}

func checkHash(hash []byte) error {
	if len(hash) != sha256.Size {
		return errors.New("bad token hash")
	}
	return nil
}

// RememberBrowser keeps a remembered browser of the user, forgetting the
// oldest ones past MaxRememberedBrowsers.
func (b *Badger) RememberBrowser(ctx context.Context, user string, rb RememberedBrowser) error {
	const op = "remember browser"
	if err := checkBrowser(user, &rb); err != nil {
		return wrap(op, err)
	}
	err := b.updateAccount(ctx, func(txn *badger.Txn) error {
		all, err := scanRemembered(txn, user)
		if err != nil {
			return err
		}
		now := b.now()
		// The expired ones go first, then the oldest.
		slices.SortFunc(all, func(x, y RememberedBrowser) int {
			if ex, ey := !now.Before(x.Expires), !now.Before(y.Expires); ex != ey {
				if ex {
					return -1
				}
				return 1
			}
			return x.Created.Compare(y.Created)
		})
		for i := 0; i < len(all) && (len(all)-i >= MaxRememberedBrowsers || !now.Before(all[i].Expires)); i++ {
			if err := txn.Delete(rememberKey(user, all[i].Hash)); err != nil {
				return err
			}
		}
		e, err := rememberEntry(user, &rb)
		if err != nil {
			return err
		}
		return txn.SetEntry(e)
	})
	return wrap(op, err)
}

// RememberedBrowser returns the user's remembered browser with that token
// hash; ErrNotFound if there is none or it has expired by the store's
// clock.
func (b *Badger) RememberedBrowser(ctx context.Context, user string, hash []byte) (RememberedBrowser, error) {
	const op = "read remembered browser"
	if err := checkUser(user); err != nil {
		return RememberedBrowser{}, wrap(op, err)
	}
	if err := checkHash(hash); err != nil {
		return RememberedBrowser{}, ErrNotFound
	}
	var rb RememberedBrowser
	err := b.view(ctx, func(txn *badger.Txn) error {
		item, err := txn.Get(rememberKey(user, hash))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error { return json.Unmarshal(v, &rb) })
	})
	if err != nil {
		return RememberedBrowser{}, wrap(op, err)
	}
	if !b.now().Before(rb.Expires) {
		return RememberedBrowser{}, ErrNotFound
	}
	rb.Hash = bytes.Clone(hash)
	return rb, nil
}

// RememberedBrowsers returns the user's live remembered browsers, the
// newest first.
func (b *Badger) RememberedBrowsers(ctx context.Context, user string) ([]RememberedBrowser, error) {
	const op = "list remembered browsers"
	if err := checkUser(user); err != nil {
		return nil, wrap(op, err)
	}
	var all []RememberedBrowser
	err := b.view(ctx, func(txn *badger.Txn) error {
		var err error
		all, err = scanRemembered(txn, user)
		return err
	})
	if err != nil {
		return nil, wrap(op, err)
	}
	now := b.now()
	out := all[:0]
	for _, rb := range all {
		if now.Before(rb.Expires) {
			out = append(out, rb)
		}
	}
	slices.SortFunc(out, func(x, y RememberedBrowser) int { return y.Created.Compare(x.Created) })
	return out, nil
}

// ForgetBrowser forgets one remembered browser of the user; no error if it
// is already gone.
func (b *Badger) ForgetBrowser(ctx context.Context, user string, hash []byte) error {
	const op = "forget browser"
	if err := checkUser(user); err != nil {
		return wrap(op, err)
	}
	if err := checkHash(hash); err != nil {
		return wrap(op, err)
	}
	err := b.updateAccount(ctx, func(txn *badger.Txn) error {
		return txn.Delete(rememberKey(user, hash))
	})
	return wrap(op, err)
}

// ForgetBrowsers forgets every remembered browser of the user, and returns
// how many were live.
func (b *Badger) ForgetBrowsers(ctx context.Context, user string) (int, error) {
	const op = "forget browsers"
	if err := checkUser(user); err != nil {
		return 0, wrap(op, err)
	}
	n := 0
	err := b.updateAccount(ctx, func(txn *badger.Txn) error {
		all, err := scanRemembered(txn, user)
		if err != nil {
			return err
		}
		now := b.now()
		n = 0
		for _, rb := range all {
			if now.Before(rb.Expires) {
				n++
			}
			if err := txn.Delete(rememberKey(user, rb.Hash)); err != nil {
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
