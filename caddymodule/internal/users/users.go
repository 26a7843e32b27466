// Package users is who may log in and how a password is checked: the
// configured users and those kept in the store, one account for every
// spelling of a name, password hashes (bcrypt and argon2id) and their
// comparison, the same work for unknown names as for known ones, and the
// bounds on hashing (slots and a CPU-time budget) that keep a flood of
// logins from taking the CPUs from the proxied traffic.
package users

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store"
)

// User is an account configured in the Caddyfile or JSON. More users can
// be kept in the store (see `caddy two-factor user add`); a configured user
// wins over a store user of the same name.
type User struct {
	// Username is the login name. Letter case and Unicode variants of it
	// are the same account.
	Username string `json:"username"`
	// Password is the hash printed by `caddy hash-password`: bcrypt
	// ($2a$/$2b$/$2y$) or argon2id ($argon2id$).
	Password string `json:"password"`
}

// MaxUsernameLen bounds a login name; longer input is no account.
const MaxUsernameLen = 256

var folder = cases.Fold()

// CanonicalName maps every spelling of a name to one account key: Unicode
// NFKC, then case folding, then NFKC again (folding can denormalise). It
// returns false for names no account can have: empty, too long, not UTF-8,
// or holding spaces or control characters, before or after normalising
// (NFKC turns some characters, such as a spacing diaeresis, into a space
// and a mark). The key is its own canonical form.
func CanonicalName(name string) (string, bool) {
	if name == "" || len(name) > MaxUsernameLen || !utf8.ValidString(name) || !nameChars(name) {
		return "", false
	}
	key := norm.NFKC.String(folder.String(norm.NFKC.String(name)))
	if !nameChars(key) {
		return "", false
	}
	return key, true
}

// nameChars reports whether s has no spaces or control characters.
func nameChars(s string) bool {
	for _, r := range s {
		if unicode.IsControl(r) || unicode.IsSpace(r) {
			return false
		}
	}
	return true
}

// passwordHash is a parsed password hash and the comparer for its kind.
type passwordHash struct {
	hash    []byte
	compare func(hash, password []byte) (bool, error)
}

// parsePasswordHash recognises the hash kinds `caddy hash-password` prints.
func parsePasswordHash(h string) (passwordHash, error) {
	b := []byte(h)
	switch {
	case strings.HasPrefix(h, "$2a$"), strings.HasPrefix(h, "$2b$"), strings.HasPrefix(h, "$2y$"):
		if _, err := bcrypt.Cost(b); err != nil {
			return passwordHash{}, fmt.Errorf("malformed bcrypt hash: %w", err)
		}
		return passwordHash{hash: b, compare: compareBcrypt}, nil
	case strings.HasPrefix(h, "$argon2id$"):
		if _, _, err := decodeArgon2id(h); err != nil {
			return passwordHash{}, fmt.Errorf("malformed argon2id hash: %w", err)
		}
		return passwordHash{hash: b, compare: compareArgon2id}, nil
	case h == "":
		return passwordHash{}, errors.New("missing password hash")
	default:
		return passwordHash{}, errors.New("password is not a bcrypt or argon2id hash (make one with: caddy hash-password)")
	}
}

// Account is a user the gate knows, with a verifier for their password.
type Account struct {
	Name string // as configured or added; shown to the user and sent upstream
	Key  string // canonical name; the store's key
	hash passwordHash
	// Cred is a configured user's fingerprint of the hash as configured,
	// kept in the user's sessions: a session is good only while the
	// configuration has the hash it was made with.
	Cred []byte
	// Origin says where the user is defined. For a store user, Stored is
	// the hash as the store holds it, for a rehash over exactly that one.
	Origin store.Origin
	Stored string
	// Boxed is Name as an interface value, made once for a configured
	// user: the proxied path hands it to the server's variables on every
	// request.
	Boxed any
}

// Directory looks users up by any spelling of their name, in the
// configuration first and then in the store (the configuration wins on a
// clash), and checks passwords, doing the same work for unknown names as
// for known ones.
type Directory struct {
	byKey map[string]*Account
	// decoys are the configured users' hashes, in order. An unknown name
	// is compared against one of them, or against storeDecoy (a hash of
	// the kind store users have) as often as store users are among all
	// users, picked by a keyed hash of the name: the same one every time,
	// and spread like the real names are, so that with hashes of different
	// kinds or costs no timing belongs to known names alone.
	decoys   []passwordHash
	decoyKey [sha256.Size]byte
	// storeDecoy makes (once, when first needed) a hash with the
	// parameters store users' passwords get.
	storeDecoy func() (passwordHash, error)
	// storeUsers says how many users the store keeps; nil for none.
	storeUsers func() int
	// hashing bounds how many password hashes run at once, so that a
	// flood of logins cannot starve the proxied traffic of CPU.
	hashing chan struct{}
	// budget bounds the CPU time hashing takes over time; nil for none.
	budget *Budget
	// hasher makes the hashes of new passwords.
	hasher Argon2id
}

// New indexes the configured users. At most maxHashes password hashes run
// at once, within budget (nil: no budget); new passwords are hashed with
// hasher, whose cost is also that of the decoy an unknown name is compared
// against when it stands for a store user.
func New(users []User, maxHashes int, hasher Argon2id, budget *Budget) (*Directory, error) {
	d := &Directory{byKey: make(map[string]*Account, len(users)), hashing: make(chan struct{}, maxHashes),
		storeDecoy: sync.OnceValues(hasher.decoy), hasher: hasher, budget: budget}
	for i, u := range users {
		key, ok := CanonicalName(u.Username)
		if !ok {
			return nil, fmt.Errorf("user %d: invalid username %q: it must be non-empty UTF-8 without spaces or control characters, at most %d bytes", i, u.Username, MaxUsernameLen)
		}
		if prev, dup := d.byKey[key]; dup {
			return nil, fmt.Errorf("user %d: username is not unique: %s (the same account as %s)", i, u.Username, prev.Name)
		}
		h, err := parsePasswordHash(u.Password)
		if err != nil {
			return nil, fmt.Errorf("user %d (%s): %w", i, u.Username, err)
		}
		d.byKey[key] = &Account{Name: u.Username, Key: key, hash: h, Cred: CredOf(u.Password), Origin: store.OriginConfig, Boxed: u.Username}
		d.decoys = append(d.decoys, h)
	}
	// The key is derived from the hashes themselves: secret enough (they
	// are not served), and stable across reloads of the same users, so
	// that an unknown name keeps its timing.
	mac := hmac.New(sha256.New, []byte("two_factor/decoy"))
	for _, h := range d.decoys {
		mac.Write(h.hash)
		mac.Write([]byte{0})
	}
	copy(d.decoyKey[:], mac.Sum(nil))
	return d, nil
}

// decoyFor picks the hash an unknown name is compared against: one of the
// configured users' hashes, or one like the store users', in proportion.
func (d *Directory) decoyFor(key string) (passwordHash, error) {
	n := len(d.decoys)
	if d.storeUsers != nil {
		n += d.storeUsers()
	}
	if n == 0 {
		return d.storeDecoy()
	}
	mac := hmac.New(sha256.New, d.decoyKey[:])
	mac.Write([]byte(key))
	i := binary.BigEndian.Uint64(mac.Sum(nil)) % uint64(n)
	if i < uint64(len(d.decoys)) {
		return d.decoys[i], nil
	}
	return d.storeDecoy()
}

// CredOf is the fingerprint of a configured password hash that a session
// keeps: enough to tell one hash from another, nothing to guess from.
func CredOf(hash string) []byte {
	sum := sha256.Sum256([]byte("two_factor/cred\x00" + hash))
	return sum[:16]
}

// Lookup finds a configured account by its canonical name.
func (d *Directory) Lookup(key string) *Account { return d.byKey[key] }

// Find returns the account of a canonical name: the configured user, else
// the user kept in the store, else nil. The error is the store's.
func (d *Directory) Find(ctx context.Context, db store.Store, key string) (*Account, error) {
	if a := d.byKey[key]; a != nil {
		return a, nil
	}
	u, err := db.User(ctx, key)
	if errors.Is(err, store.ErrNoUser) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	h, err := parsePasswordHash(u.PasswordHash)
	if err != nil {
		return nil, fmt.Errorf("the stored password hash of %s: %w", key, err)
	}
	return &Account{Name: u.Display, Key: key, hash: h, Origin: store.OriginStore, Stored: u.PasswordHash}, nil
}

// acquire waits for a hashing slot; release gives it back.
func (d *Directory) acquire(ctx context.Context) error {
	select {
	case d.hashing <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (d *Directory) release() { <-d.hashing }

// withHash runs work, which computes a password hash, under the hashing
// budget (nil: none) and in a hashing slot, and charges the budget the
// time it took. The error is the request's context ending while it waits,
// errHashBudget when the wait would be too long, or work's.
func (d *Directory) withHash(ctx context.Context, budget *Budget, work func() error) error {
	booked, err := budget.reserve(ctx)
	if err != nil {
		return err
	}
	if err := d.acquire(ctx); err != nil {
		budget.done(booked, 0)
		return err
	}
	start := time.Now()
	err = work()
	took := max(time.Since(start), 1)
	d.release()
	budget.done(booked, took)
	return err
}

// Verify checks a password for the canonical name. An unknown name costs
// one hash comparison like a known one, and fails. The account is returned
// when the name is known, even if the password is wrong. The error is the
// store's, or one of withHash's.
func (d *Directory) Verify(ctx context.Context, db store.Store, key, password string) (*Account, bool, error) {
	var acct *Account
	var ok bool
	err := d.withHash(ctx, d.budget, func() error {
		var err error
		if acct, err = d.Find(ctx, db, key); err != nil {
			return err
		}
		var h passwordHash
		if acct != nil {
			h = acct.hash
		} else if h, err = d.decoyFor(key); err != nil {
			return fmt.Errorf("making the decoy password hash: %w", err)
		}
		// The hashes were checked when they were set, so an error here
		// comes from the input (bcrypt refuses passwords over 72 bytes):
		// a wrong password.
		match, err := h.compare(h.hash, []byte(password))
		ok = err == nil && acct != nil && match
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	return acct, ok, nil
}

// SetStoreUsers tells the directory how many users the store keeps, so
// that unknown names stand for store users as often as real names do.
func (d *Directory) SetStoreUsers(count func() int) { d.storeUsers = count }

// Budget is the hashing budget of logins; nil for none.
func (d *Directory) Budget() *Budget { return d.budget }

// Hash hashes a new password with the configured argon2id parameters, in a
// hashing slot; within the hashing budget when budgeted (a user's change),
// outside it for an operator's, so that adding or resetting a user works
// during a flood of logins.
func (d *Directory) Hash(ctx context.Context, budgeted bool, password string) (string, error) {
	budget := d.budget
	if !budgeted {
		budget = nil
	}
	var hash string
	err := d.withHash(ctx, budget, func() error {
		var err error
		hash, err = d.hasher.Hash(password)
		return err
	})
	return hash, err
}

// Current reports whether a stored hash has the configured parameters;
// any other is rehashed at the next successful login.
func (d *Directory) Current(stored string) bool { return d.hasher.Current(stored) }

// All returns the configured users, by canonical name.
func (d *Directory) All() []*Account {
	out := slices.Collect(maps.Values(d.byKey))
	slices.SortFunc(out, func(a, b *Account) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// Same reports how two directories' configured users differ, or nil.
func (d *Directory) Same(o *Directory) error {
	for key, x := range d.byKey {
		y := o.byKey[key]
		if y == nil {
			return fmt.Errorf("user %s is only in the first", x.Name)
		}
		if !bytes.Equal(x.Cred, y.Cred) {
			return fmt.Errorf("user %s has another password hash", x.Name)
		}
	}
	for key, y := range o.byKey {
		if d.byKey[key] == nil {
			return fmt.Errorf("user %s is only in the second", y.Name)
		}
	}
	return nil
}

// CheckHash reports whether h is a password hash a user may have: bcrypt
// or argon2id, well formed.
func CheckHash(h string) error {
	_, err := parsePasswordHash(h)
	return err
}

// MaxHashes is how many password hashes may run at once.
func (d *Directory) MaxHashes() int { return cap(d.hashing) }
