package caddymodule

import (
	"context"
	"io"
	"net/http"
	"time"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/users"
)

// The store methods of users, backups and the operator's commands, made
// to fail like the others (TestFaultyStoreWrapsEveryMethod), and the
// requests of store users in the fault matrix.
func init() {
	wrappedMethods = append(wrappedMethods, "UpdateSession", "TouchSession", "User", "Users", "AddUser", "SetPassword",
		"RehashPassword", "DeleteUser", "UserSessions", "CountEnrolled", "CountEnrolledIn", "Backup", "Restore")
	committing["SetPassword"] = true
	faultScenarios = append(faultScenarios,
		faultScenario{"login of a store user", false, func(e *faultEnv) (func() result, *http.Cookie) {
			e.storeUser()
			return func() result { return e.post("/.auth/login", nil, "username", "dave", "password", testPassword) }, nil
		}},
		faultScenario{"proxied request of a store user", false, func(e *faultEnv) (func() result, *http.Cookie) {
			c := e.storeUserLogin()
			return func() result { return e.get("/app", c) }, c
		}},
		faultScenario{"password page", false, func(e *faultEnv) (func() result, *http.Cookie) {
			c := e.storeUserLogin()
			return func() result { return e.get("/.auth/security/password", c) }, c
		}},
		faultScenario{"password change", false, func(e *faultEnv) (func() result, *http.Cookie) {
			c := e.storeUserLogin()
			return func() result {
				return e.post("/.auth/security/password", c, "current_password", testPassword,
					"new_password", "a new password", "confirm_password", "a new password")
			}, c
		}},
	)
}

// storeUser adds dave to the store, with a hash of the handler's current
// parameters (cheap ones, set in newFaultEnv), so that a login does not rehash it.
func (e *faultEnv) storeUser() {
	e.t.Helper()
	h, err := users.Argon2id{Time: e.h.Argon2idTime, Memory: e.h.Argon2idMemory, Threads: e.h.Argon2idThreads}.Hash(testPassword)
	if err != nil {
		e.t.Fatal(err)
	}
	at := testNow()
	if err := e.fs.Store.AddUser(context.Background(), store.User{Name: "dave", Display: "Dave", PasswordHash: h, Created: at, PasswordChanged: at}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *faultEnv) storeUserLogin() *http.Cookie {
	e.t.Helper()
	e.storeUser()
	return e.must(e.post("/.auth/login", nil, "username", "dave", "password", testPassword), http.StatusSeeOther).cookie()
}

func (f *faultyStore) TouchSession(ctx context.Context, key []byte, seen, expires time.Time) error {
	if err := f.call("TouchSession"); err != nil {
		return err
	}
	return f.Store.TouchSession(ctx, key, seen, expires)
}

func (f *faultyStore) UpdateSession(ctx context.Context, s store.Session) error {
	if err := f.call("UpdateSession"); err != nil {
		return err
	}
	return f.Store.UpdateSession(ctx, s)
}

func (f *faultyStore) User(ctx context.Context, n string) (store.User, error) {
	if err := f.call("User"); err != nil {
		return store.User{}, err
	}
	return f.Store.User(ctx, n)
}

func (f *faultyStore) Users(ctx context.Context) ([]store.User, error) {
	if err := f.call("Users"); err != nil {
		return nil, err
	}
	return f.Store.Users(ctx)
}

func (f *faultyStore) AddUser(ctx context.Context, u store.User) error {
	if err := f.call("AddUser"); err != nil {
		return err
	}
	return f.Store.AddUser(ctx, u)
}

func (f *faultyStore) SetPassword(ctx context.Context, n, h string, at time.Time, keep []byte) (int, error) {
	if err := f.call("SetPassword"); err != nil {
		return 0, err
	}
	return f.Store.SetPassword(ctx, n, h, at, keep)
}

func (f *faultyStore) RehashPassword(ctx context.Context, n, o, h string) (bool, error) {
	if err := f.call("RehashPassword"); err != nil {
		return false, err
	}
	return f.Store.RehashPassword(ctx, n, o, h)
}

func (f *faultyStore) DeleteUser(ctx context.Context, n string) (int, error) {
	if err := f.call("DeleteUser"); err != nil {
		return 0, err
	}
	return f.Store.DeleteUser(ctx, n)
}

func (f *faultyStore) UserSessions(ctx context.Context, u string) ([]store.Session, error) {
	if err := f.call("UserSessions"); err != nil {
		return nil, err
	}
	return f.Store.UserSessions(ctx, u)
}

func (f *faultyStore) CountEnrolledIn(ctx context.Context, realm string) (int, error) {
	if err := f.call("CountEnrolledIn"); err != nil {
		return 0, err
	}
	return f.Store.CountEnrolledIn(ctx, realm)
}

func (f *faultyStore) CountEnrolled(ctx context.Context) (int, error) {
	if err := f.call("CountEnrolled"); err != nil {
		return 0, err
	}
	return f.Store.CountEnrolled(ctx)
}

func (f *faultyStore) Backup(ctx context.Context, w io.Writer) error {
	if err := f.call("Backup"); err != nil {
		return err
	}
	return f.Store.Backup(ctx, w)
}

func (f *faultyStore) Restore(ctx context.Context, r io.Reader, accept func(store.Snapshot) error) (store.Snapshot, error) {
	if err := f.call("Restore"); err != nil {
		return store.Snapshot{}, err
	}
	return f.Store.Restore(ctx, r, accept)
}
