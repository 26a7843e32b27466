package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

func testUser(name string) User {
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	return User{Name: name, Display: "D-" + name, PasswordHash: "$argon2id$hash-of-" + name, Created: at, PasswordChanged: at}
}

func addUser(t *testing.T, b *Badger, name string) {
	t.Helper()
	if err := b.AddUser(context.Background(), testUser(name)); err != nil {
		t.Fatalf("AddUser(%q): %v", name, err)
	}
}

func TestAddUserAndRead(t *testing.T) {
	b := openTest(t)
	ctx := context.Background()
	if _, err := b.User(ctx, "carol"); !errors.Is(err, ErrNoUser) {
		t.Fatalf("User of an unknown name: got %v, want ErrNoUser", err)
	}
	addUser(t, b, "carol")
	got, err := b.User(ctx, "carol")
	if err != nil {
		t.Fatal(err)
	}
	want := testUser("carol")
	if got.Name != want.Name || got.Display != want.Display || got.PasswordHash != want.PasswordHash ||
		!got.Created.Equal(want.Created) || !got.PasswordChanged.Equal(want.PasswordChanged) {
		t.Errorf("User: got %+v, want %+v", got, want)
	}
	if err := b.AddUser(ctx, testUser("carol")); !errors.Is(err, ErrUserExists) {
		t.Errorf("AddUser twice: got %v, want ErrUserExists", err)
	}
	for name, u := range map[string]User{
		"no name":    {Display: "x", PasswordHash: "h"},
		"no display": {Name: "x", PasswordHash: "h"},
		"no hash":    {Name: "x", Display: "x"},
	} {
		if err := b.AddUser(ctx, u); err == nil {
			t.Errorf("AddUser with %s: got nil error", name)
		}
	}
}

func TestUsersListedInOrder(t *testing.T) {
	b := openTest(t)
	for _, n := range []string{"zed", "al", "alice", "bob"} {
		addUser(t, b, n)
	}
	// An account (enrolment) is not a user record.
	enable(t, b, "dave", testCodes(1))
	users, err := b.Users(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, u := range users {
		got = append(got, u.Name)
	}
	want := []string{"al", "alice", "bob", "zed"}
	if len(got) != len(want) {
		t.Fatalf("Users: got %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("Users: got %q, want %q", got, want)
		}
	}
}

func TestSetPasswordEndsOtherSessions(t *testing.T) {
	b := openTest(t)
	ctx := context.Background()
	addUser(t, b, "carol")
	putSessions(t, b, "carol", "c1", "c2", "c3")
	putSessions(t, b, "carolyn", "other")
	at := time.Date(2026, 5, 5, 0, 0, 0, 0, time.UTC)
	n, err := b.SetPassword(ctx, "carol", "$argon2id$new", at, []byte("c2"))
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("SetPassword ended %d sessions, want 2", n)
	}
	for key, want := range map[string]bool{"c1": false, "c2": true, "c3": false, "other": true} {
		if got := sessionExists(t, b, key); got != want {
			t.Errorf("session %s exists: got %v, want %v", key, got, want)
		}
	}
	u, _ := b.User(ctx, "carol")
	if u.PasswordHash != "$argon2id$new" || !u.PasswordChanged.Equal(at) || u.Display != "D-carol" {
		t.Errorf("after SetPassword: got %+v", u)
	}
	if _, err := b.SetPassword(ctx, "nobody", "h", at, nil); !errors.Is(err, ErrNoUser) {
		t.Errorf("SetPassword of an unknown user: got %v, want ErrNoUser", err)
	}
	if _, err := b.SetPassword(ctx, "carol", "", at, nil); err == nil {
		t.Error("SetPassword with an empty hash: got nil error")
	}
}

func TestRehashPasswordOnlyOverTheSameHash(t *testing.T) {
	b := openTest(t)
	ctx := context.Background()
	addUser(t, b, "carol")
	putSessions(t, b, "carol", "c1")
	old := testUser("carol").PasswordHash
	done, err := b.RehashPassword(ctx, "carol", "$argon2id$something-else", "$argon2id$rehash")
	if err != nil || done {
		t.Fatalf("RehashPassword over a changed hash: got %v, %v; want false, nil", done, err)
	}
	if u, _ := b.User(ctx, "carol"); u.PasswordHash != old {
		t.Fatalf("hash changed to %q by a stale rehash", u.PasswordHash)
	}
	done, err = b.RehashPassword(ctx, "carol", old, "$argon2id$rehash")
	if err != nil || !done {
		t.Fatalf("RehashPassword: got %v, %v; want true, nil", done, err)
	}
	if u, _ := b.User(ctx, "carol"); u.PasswordHash != "$argon2id$rehash" {
		t.Errorf("after rehash: got %q", u.PasswordHash)
	}
	if !sessionExists(t, b, "c1") {
		t.Error("a rehash ended the user's session")
	}
	if _, err := b.RehashPassword(ctx, "nobody", "a", "b"); !errors.Is(err, ErrNoUser) {
		t.Errorf("RehashPassword of an unknown user: got %v, want ErrNoUser", err)
	}
}

func TestDeleteUserTakesEnrolmentAndSessions(t *testing.T) {
	b := openTest(t)
	ctx := context.Background()
	addUser(t, b, "carol")
	addUser(t, b, "carolyn")
	enable(t, b, "carol", testCodes(3))
	enable(t, b, "carolyn", testCodes(3))
	putSessions(t, b, "carol", "c1", "c2")
	putSessions(t, b, "carolyn", "x1")
	n, err := b.DeleteUser(ctx, "carol")
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("DeleteUser ended %d sessions, want 2", n)
	}
	if _, err := b.User(ctx, "carol"); !errors.Is(err, ErrNoUser) {
		t.Errorf("User after DeleteUser: got %v, want ErrNoUser", err)
	}
	if a, _ := b.Account(ctx, "carol"); a.Enabled() {
		t.Error("the deleted user's enrolment is still there")
	}
	if sessionExists(t, b, "c1") || sessionExists(t, b, "c2") {
		t.Error("the deleted user's sessions are still there")
	}
	if a, _ := b.Account(ctx, "carolyn"); !a.Enabled() || !sessionExists(t, b, "x1") {
		t.Error("DeleteUser touched another user")
	}
	if _, err := b.DeleteUser(ctx, "carol"); !errors.Is(err, ErrNoUser) {
		t.Errorf("DeleteUser twice: got %v, want ErrNoUser", err)
	}
	// A user known only by an enrolment (a configured user) is not a
	// store user: DeleteUser leaves it alone.
	enable(t, b, "alice", testCodes(1))
	if _, err := b.DeleteUser(ctx, "alice"); !errors.Is(err, ErrNoUser) {
		t.Errorf("DeleteUser of a configured user: got %v, want ErrNoUser", err)
	}
	if a, _ := b.Account(ctx, "alice"); !a.Enabled() {
		t.Error("DeleteUser of a non-store user removed its enrolment")
	}
}

func TestUserSessions(t *testing.T) {
	b, clk := openTestClock(t, Options{})
	ctx := context.Background()
	putSessions(t, b, "carol", "c1", "c2")
	putSessions(t, b, "carolyn", "x1")
	expired := testSession("c3", "carol")
	expired.Expires = time.Now().Add(2 * time.Second)
	if err := b.PutSession(ctx, expired); err != nil {
		t.Fatal(err)
	}
	clk.set(time.Now().Add(time.Minute))
	got, err := b.UserSessions(ctx, "carol")
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]bool{}
	for _, s := range got {
		if s.User != "carol" {
			t.Errorf("UserSessions(carol) returned a session of %q", s.User)
		}
		keys[string(s.Key)] = true
	}
	if len(keys) != 2 || !keys["c1"] || !keys["c2"] {
		t.Errorf("UserSessions(carol): got keys %v, want c1 and c2 (c3 expired)", keys)
	}
}

func TestCountEnrolled(t *testing.T) {
	b := openTest(t)
	ctx := context.Background()
	count := func() int {
		t.Helper()
		n, err := b.CountEnrolled(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(); n != 0 {
		t.Fatalf("empty store: got %d enrolled, want 0", n)
	}
	addUser(t, b, "carol") // a user without 2FA is not enrolled
	enable(t, b, "alice", testCodes(1))
	enable(t, b, "bob", testCodes(1))
	if n := count(); n != 2 {
		t.Fatalf("got %d enrolled, want 2", n)
	}
	if err := b.DisableTOTP(ctx, "bob", nil); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 1 {
		t.Fatalf("after disabling one: got %d enrolled, want 1", n)
	}
}
