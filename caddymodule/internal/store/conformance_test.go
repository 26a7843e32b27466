package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store/pgtest"
)

// The conformance suite: the same tests, through the Store interface, on
// every implementation. A behaviour of the store that the gate relies on
// belongs here, so that the PostgreSQL store is held to what the badger
// store does. The PostgreSQL tests run on a throwaway cluster (pgtest):
// skipped on a machine without PostgreSQL, failing in CI.

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// backend opens an empty store of one implementation with opt and its
// clock.
type backend struct {
	name string
	open func(t *testing.T, opt Options) Store
}

var backends = []backend{
	{"badger", func(t *testing.T, opt Options) Store { return openTestWith(t, opt) }},
	{"postgres", func(t *testing.T, opt Options) Store {
		url := pgtest.URL(t)
		p, err := OpenPostgres(context.Background(), url, opt)
		if err != nil {
			t.Fatalf("OpenPostgres: %v", err)
		}
		t.Cleanup(func() { _ = p.Close() })
		return p
	}},
}

// eachStore runs test on every implementation, each with a store of its
// own whose clock the test can set.
func eachStore(t *testing.T, opt Options, test func(t *testing.T, s Store, clk *testClock)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			clk := &testClock{}
			o := opt
			o.Now = clk.now
			a := admissionChecked{Store: b.open(t, o), t: t, clk: clk, held: &heldAdmissions{}}
			t.Cleanup(a.checkHeld)
			test(t, a, clk)
		})
	}
}

// admissionChecked runs every Session read of the conformance tests also
// through SessionAdmission, first, so that it meets the cache in the state
// the test left it in: it must give the same answer, in the fields it
// fills. Each record an admission handed out must stay as it was, whatever
// the test writes afterwards: the proxied path reads it in place.
type admissionChecked struct {
	Store
	t    *testing.T
	clk  *testClock
	held *heldAdmissions
}

// heldAdmissions are the records the admissions of one test handed out
// (a test may read sessions from several goroutines).
type heldAdmissions struct {
	mu   sync.Mutex
	list []heldAdmission
}

// heldAdmission is a record SessionAdmission handed out, and a copy of it
// as it was then.
type heldAdmission struct {
	rec  *Session
	then Session
}

func (a admissionChecked) Session(ctx context.Context, key []byte) (Session, error) {
	a.t.Helper()
	a.checkHeld()
	adm, admErr := a.Store.SessionAdmission(ctx, key, a.clk.now())
	s, err := a.Store.Session(ctx, key)
	switch {
	case errors.Is(err, ErrNotFound) != errors.Is(admErr, ErrNotFound) || (err == nil) != (admErr == nil):
		a.t.Errorf("session %q: Session says %v, SessionAdmission %v", key, err, admErr)
	case err == nil && !reflect.DeepEqual(admitted(adm), firstFields(s)):
		a.t.Errorf("session %q: SessionAdmission gave %+v (user %q), want the first fields of %+v", key, *adm.Rec, adm.User, s)
	}
	if admErr == nil {
		a.held.mu.Lock()
		a.held.list = append(a.held.list, heldAdmission{adm.Rec, deepCopy(*adm.Rec)})
		a.held.mu.Unlock()
	}
	return s, err
}

// checkHeld fails the test if a record handed out before has changed.
func (a admissionChecked) checkHeld() {
	a.t.Helper()
	a.held.mu.Lock()
	defer a.held.mu.Unlock()
	for _, h := range a.held.list {
		if !reflect.DeepEqual(*h.rec, h.then) {
			a.t.Errorf("a record SessionAdmission handed out changed afterwards: %+v, was %+v", *h.rec, h.then)
		}
	}
}

// deepCopy is s with its own copies of the byte slices.
func deepCopy(s Session) Session {
	s.Key, s.Cred, s.Pending, s.Shown = bytes.Clone(s.Key), bytes.Clone(s.Cred), bytes.Clone(s.Pending), bytes.Clone(s.Shown)
	return s
}

// admitted is what an admission says of its session: the fields up to
// Cred, with the user as the reader's view names it.
func admitted(a Admission) Session {
	s := firstFields(*a.Rec)
	s.User = a.User
	return s
}

// firstFields is s with the fields the proxied path does not read zeroed.
func firstFields(s Session) Session {
	s.Next, s.Pending, s.PendingAt, s.Notice, s.Shown, s.Agent, s.Addr = "", nil, time.Time{}, "", nil, "", ""
	return s
}

func sessionOf(user string, key string, created time.Time) Session {
	return Session{
		Key: []byte(key), User: user, Stage: StageFull, Created: created, Seen: created,
		Expires: created.Add(time.Hour), Origin: OriginStore, Name: user,
	}
}

func TestConformAccounts(t *testing.T) {
	eachStore(t, Options{}, func(t *testing.T, s Store, _ *testClock) {
		ctx := context.Background()
		if a, err := s.Account(ctx, "alice"); err != nil || a.Enabled() || a.Name != "alice" {
			t.Fatalf("a new user: got %+v, %v; want 2FA off", a, err)
		}
		if err := s.UseTOTPStep(ctx, "alice", 5); !errors.Is(err, ErrNotEnabled) {
			t.Errorf("step before enable: got %v, want ErrNotEnabled", err)
		}
		codes := [][]byte{[]byte("c1"), []byte("c2"), []byte("c3")}
		if err := s.EnableTOTP(ctx, "alice", testTOTP(), codes); err != nil {
			t.Fatal(err)
		}
		if err := s.EnableTOTP(ctx, "alice", testTOTP(), codes); !errors.Is(err, ErrAlreadyEnabled) {
			t.Errorf("second enable: got %v, want ErrAlreadyEnabled", err)
		}
		a, err := s.Account(ctx, "alice")
		if err != nil || !a.Enabled() || !bytes.Equal(a.TOTP.SealedSecret, []byte("sealed-secret")) || a.TOTP.LastStep != 100 || len(a.BackupCodes) != 3 {
			t.Fatalf("after enable: got %+v, %v", a, err)
		}
		if !a.TOTP.EnabledAt.Equal(testTOTP().EnabledAt) || a.TOTP.Digits != 6 || a.TOTP.Period != 30 || a.TOTP.Algorithm != "SHA1" {
			t.Errorf("parameters: got %+v", a.TOTP)
		}
		for _, step := range []int64{100, 99} {
			if err := s.UseTOTPStep(ctx, "alice", step); !errors.Is(err, ErrStepUsed) {
				t.Errorf("step %d (last 100): got %v, want ErrStepUsed", step, err)
			}
		}
		if err := s.UseTOTPStep(ctx, "alice", 101); err != nil {
			t.Errorf("step 101: %v", err)
		}
		if err := s.UseTOTPStep(ctx, "alice", 101); !errors.Is(err, ErrStepUsed) {
			t.Errorf("step 101 again: got %v, want ErrStepUsed", err)
		}
		if left, err := s.UseBackupCode(ctx, "alice", []byte("c2")); err != nil || left != 2 {
			t.Errorf("backup code: got %d left, %v; want 2", left, err)
		}
		for _, c := range []string{"c2", "nope", ""} {
			if _, err := s.UseBackupCode(ctx, "alice", []byte(c)); !errors.Is(err, ErrCodeUnknown) {
				t.Errorf("backup code %q: got %v, want ErrCodeUnknown", c, err)
			}
		}
		if err := s.ReplaceBackupCodes(ctx, "alice", [][]byte{[]byte("n1")}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.UseBackupCode(ctx, "alice", []byte("c1")); !errors.Is(err, ErrCodeUnknown) {
			t.Errorf("an old code after new ones: got %v, want ErrCodeUnknown", err)
		}
		if left, err := s.UseBackupCode(ctx, "alice", []byte("n1")); err != nil || left != 0 {
			t.Errorf("new code: got %d, %v", left, err)
		}
		if n, err := s.CountEnrolled(ctx); err != nil || n != 1 {
			t.Errorf("CountEnrolled: got %d, %v; want 1", n, err)
		}
		if err := s.DisableTOTP(ctx, "alice", nil); err != nil {
			t.Fatal(err)
		}
		if err := s.DisableTOTP(ctx, "alice", nil); !errors.Is(err, ErrNotEnabled) {
			t.Errorf("second disable: got %v, want ErrNotEnabled", err)
		}
		if err := s.ReplaceBackupCodes(ctx, "alice", nil); !errors.Is(err, ErrNotEnabled) {
			t.Errorf("new codes while off: got %v, want ErrNotEnabled", err)
		}
		if a, err := s.Account(ctx, "alice"); err != nil || a.Enabled() || len(a.BackupCodes) != 0 {
			t.Errorf("after disable: got %+v, %v", a, err)
		}
		for name, err := range map[string]error{
			"Account":     func() error { _, err := s.Account(ctx, ""); return err }(),
			"EnableTOTP":  s.EnableTOTP(ctx, "bob", TOTP{}, nil),
			"empty codes": s.EnableTOTP(ctx, "bob", testTOTP(), [][]byte{nil}),
			"UseTOTPStep": s.UseTOTPStep(ctx, "", 1),
		} {
			if err == nil || isSentinel(err) {
				t.Errorf("%s with bad input: got %v, want an error of its own", name, err)
			}
		}
	})
}

// TestConformRaces: many callers at once, exactly the right number win:
// one use of a TOTP step, one use of a backup code, one enable.
func TestConformRaces(t *testing.T) {
	eachStore(t, Options{}, func(t *testing.T, s Store, _ *testClock) {
		ctx := context.Background()
		if err := s.EnableTOTP(ctx, "alice", testTOTP(), [][]byte{[]byte("c1"), []byte("c2")}); err != nil {
			t.Fatal(err)
		}
		race := func(what string, n int, fn func() error, ok func(error) bool, want int) {
			t.Helper()
			var (
				wg   sync.WaitGroup
				mu   sync.Mutex
				wins int
				errs []error
			)
			start := make(chan struct{})
			for range n {
				wg.Go(func() {
					<-start
					err := fn()
					mu.Lock()
					defer mu.Unlock()
					switch {
					case err == nil:
						wins++
					case !ok(err):
						errs = append(errs, err)
					}
				})
			}
			close(start)
			wg.Wait()
			if wins != want || len(errs) > 0 {
				t.Errorf("%s, %d at once: %d won, failures %v; want %d and none", what, n, wins, errs, want)
			}
		}
		race("the same TOTP step", 40, func() error { return s.UseTOTPStep(ctx, "alice", 200) },
			func(err error) bool { return errors.Is(err, ErrStepUsed) }, 1)
		race("the same backup code", 40, func() error { _, err := s.UseBackupCode(ctx, "alice", []byte("c1")); return err },
			func(err error) bool { return errors.Is(err, ErrCodeUnknown) }, 1)
		race("enable of a new user", 20, func() error { return s.EnableTOTP(ctx, "bob", testTOTP(), nil) },
			func(err error) bool { return errors.Is(err, ErrAlreadyEnabled) }, 1)
		if left, err := s.UseBackupCode(ctx, "alice", []byte("c2")); err != nil || left != 0 {
			t.Errorf("the other code afterwards: got %d, %v", left, err)
		}
	})
}

func TestConformSessions(t *testing.T) {
	eachStore(t, Options{}, func(t *testing.T, s Store, clk *testClock) {
		ctx := context.Background()
		t0 := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
		clk.set(t0)
		a := sessionOf("alice", "k-a", t0)
		a.Next, a.Agent, a.Addr, a.Cred, a.Pending = "/x?y=1", "Firefox", "192.0.2.7", []byte("cred"), []byte("pending")
		if err := s.PutSession(ctx, a); err != nil {
			t.Fatal(err)
		}
		got, err := s.Session(ctx, []byte("k-a"))
		if err != nil || got.User != "alice" || got.Next != "/x?y=1" || got.Agent != "Firefox" || got.Addr != "192.0.2.7" ||
			!bytes.Equal(got.Cred, []byte("cred")) || !bytes.Equal(got.Pending, []byte("pending")) || !got.Created.Equal(t0) || got.Stage != StageFull {
			t.Fatalf("read back: got %+v, %v", got, err)
		}
		if _, err := s.Session(ctx, []byte("nope")); !errors.Is(err, ErrNotFound) {
			t.Errorf("unknown key: got %v, want ErrNotFound", err)
		}
		// Touch moves the times; a touch with an older time changes nothing.
		seen := t0.Add(10 * time.Minute)
		if err := s.TouchSession(ctx, []byte("k-a"), seen, seen.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if err := s.TouchSession(ctx, []byte("k-a"), t0.Add(time.Minute), t0.Add(2*time.Minute)); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Session(ctx, []byte("k-a")); err != nil || !got.Seen.Equal(seen) || !got.Expires.Equal(seen.Add(time.Hour)) || got.Next != "/x?y=1" {
			t.Errorf("after touches: got %+v, %v", got, err)
		}
		// Update replaces a live record of the same user only.
		got.Next = "/changed"
		if err := s.UpdateSession(ctx, got); err != nil {
			t.Fatal(err)
		}
		other := got
		other.User = "bob"
		if err := s.UpdateSession(ctx, other); !errors.Is(err, ErrNotFound) {
			t.Errorf("update under another user: got %v, want ErrNotFound", err)
		}
		if err := s.UpdateSession(ctx, sessionOf("alice", "k-new", t0)); !errors.Is(err, ErrNotFound) {
			t.Errorf("update of no session: got %v, want ErrNotFound", err)
		}
		// Expiry by the store's clock.
		clk.set(seen.Add(time.Hour))
		if _, err := s.Session(ctx, []byte("k-a")); !errors.Is(err, ErrNotFound) {
			t.Errorf("at its expiry: got %v, want ErrNotFound", err)
		}
		if err := s.TouchSession(ctx, []byte("k-a"), seen.Add(2*time.Hour), seen.Add(3*time.Hour)); !errors.Is(err, ErrNotFound) {
			t.Errorf("touch of an expired session: got %v, want ErrNotFound", err)
		}
		if err := s.UpdateSession(ctx, got); !errors.Is(err, ErrNotFound) {
			t.Errorf("update of an expired session: got %v, want ErrNotFound", err)
		}
		// Delete, and no update brings it back.
		clk.set(t0)
		b := sessionOf("alice", "k-b", t0)
		if err := s.PutSession(ctx, b); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteSession(ctx, []byte("k-b")); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteSession(ctx, []byte("k-b")); err != nil {
			t.Errorf("second delete: %v", err)
		}
		if err := s.UpdateSession(ctx, b); !errors.Is(err, ErrNotFound) {
			t.Errorf("update after delete: got %v, want ErrNotFound", err)
		}
		if err := s.TouchSession(ctx, []byte("k-b"), t0.Add(time.Minute), t0.Add(time.Hour)); !errors.Is(err, ErrNotFound) {
			t.Errorf("touch after delete: got %v, want ErrNotFound", err)
		}
		if _, err := s.Session(ctx, []byte("k-b")); !errors.Is(err, ErrNotFound) {
			t.Errorf("read after delete: got %v", err)
		}
		for name, err := range map[string]error{
			"no key":    s.PutSession(ctx, Session{User: "a", Stage: StageFull, Expires: t0.Add(time.Hour)}),
			"no user":   s.PutSession(ctx, Session{Key: []byte("k"), Stage: StageFull, Expires: t0.Add(time.Hour)}),
			"bad stage": s.PutSession(ctx, Session{Key: []byte("k"), User: "a", Stage: 9, Expires: t0.Add(time.Hour)}),
			"no expiry": s.PutSession(ctx, Session{Key: []byte("k"), User: "a", Stage: StageFull}),
		} {
			if err == nil {
				t.Errorf("PutSession with %s: accepted", name)
			}
		}
	})
}

// TestConformEndingSessions: the changes that end all of a user's
// sessions end them at once, keep the one asked for, count the others, and
// leave other users' alone.
func TestConformEndingSessions(t *testing.T) {
	eachStore(t, Options{}, func(t *testing.T, s Store, clk *testClock) {
		ctx := context.Background()
		t0 := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
		clk.set(t0)
		put := func(user string, keys ...string) {
			t.Helper()
			for i, k := range keys {
				if err := s.PutSession(ctx, sessionOf(user, k, t0.Add(time.Duration(i)*time.Second))); err != nil {
					t.Fatal(err)
				}
			}
		}
		live := func(keys ...string) []string {
			var out []string
			for _, k := range keys {
				if _, err := s.Session(ctx, []byte(k)); err == nil {
					out = append(out, k)
				} else if !errors.Is(err, ErrNotFound) {
					t.Fatal(err)
				}
			}
			return out
		}
		all := []string{"a1", "a2", "a3", "b1"}
		put("alice", "a1", "a2", "a3")
		put("bob", "b1")
		if n, err := s.DeleteUserSessions(ctx, "alice", []byte("a2")); err != nil || n != 2 {
			t.Errorf("DeleteUserSessions: got %d, %v; want 2", n, err)
		}
		if got := live(all...); !slices.Equal(got, []string{"a2", "b1"}) {
			t.Errorf("after ending alice's but a2: live %v", got)
		}
		list, err := s.UserSessions(ctx, "alice")
		if err != nil || len(list) != 1 || string(list[0].Key) != "a2" {
			t.Errorf("UserSessions: got %v, %v; want a2", list, err)
		}
		// Sessions made after the change live.
		put("alice", "a4")
		if err := s.EnableTOTP(ctx, "alice", testTOTP(), nil); err != nil {
			t.Fatal(err)
		}
		if got := live(all...); !slices.Equal(got, []string{"b1"}) {
			t.Errorf("after enable: live %v, want b1 only", got)
		}
		if got := live("a4"); len(got) != 0 {
			t.Errorf("a session from before the enable lives: %v", got)
		}
		put("alice", "a5", "a6")
		if err := s.DisableTOTP(ctx, "alice", []byte("a6")); err != nil {
			t.Fatal(err)
		}
		if got := live("a5", "a6", "b1"); !slices.Equal(got, []string{"a6", "b1"}) {
			t.Errorf("after disable keeping a6: live %v", got)
		}
		// A kept session stays updatable; a stale copy of an ended one
		// cannot come back by an update or a touch.
		a6, err := s.Session(ctx, []byte("a6"))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.UpdateSession(ctx, a6); err != nil {
			t.Errorf("update of the kept session: %v", err)
		}
		a5 := sessionOf("alice", "a5", t0)
		if err := s.UpdateSession(ctx, a5); !errors.Is(err, ErrNotFound) {
			t.Errorf("update of an ended session: got %v", err)
		}
		if err := s.TouchSession(ctx, []byte("a5"), t0.Add(time.Minute), t0.Add(time.Hour)); !errors.Is(err, ErrNotFound) {
			t.Errorf("touch of an ended session: got %v", err)
		}
		if got := live("a5"); len(got) != 0 {
			t.Errorf("a5 came back: %v", got)
		}
	})
}

// TestConformSessionCap: past the cap, the user's oldest live sessions end.
func TestConformSessionCap(t *testing.T) {
	eachStore(t, Options{MaxSessionsPerUser: 3}, func(t *testing.T, s Store, clk *testClock) {
		ctx := context.Background()
		t0 := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
		clk.set(t0)
		for i := range 5 {
			if err := s.PutSession(ctx, sessionOf("alice", fmt.Sprintf("k%d", i), t0.Add(time.Duration(i)*time.Second))); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.PutSession(ctx, sessionOf("bob", "b", t0)); err != nil {
			t.Fatal(err)
		}
		list, err := s.UserSessions(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, x := range list {
			keys = append(keys, string(x.Key))
		}
		if !slices.Equal(keys, []string{"k2", "k3", "k4"}) {
			t.Errorf("alice's sessions: got %v, want the newest three", keys)
		}
		if _, err := s.Session(ctx, []byte("b")); err != nil {
			t.Errorf("bob's session: %v", err)
		}
	})
}

func TestConformUsers(t *testing.T) {
	eachStore(t, Options{}, func(t *testing.T, s Store, clk *testClock) {
		ctx := context.Background()
		t0 := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
		clk.set(t0)
		for _, n := range []string{"zoe", "Alice", "bob"} {
			if err := s.AddUser(ctx, User{Name: n, Display: n + "!", PasswordHash: "h-" + n, Created: t0, PasswordChanged: t0}); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.AddUser(ctx, User{Name: "bob", Display: "b", PasswordHash: "h"}); !errors.Is(err, ErrUserExists) {
			t.Errorf("second bob: got %v, want ErrUserExists", err)
		}
		if err := s.AddUser(ctx, User{Name: "carol", Display: "c"}); err == nil {
			t.Error("a user without a hash was added")
		}
		users, err := s.Users(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, u := range users {
			names = append(names, u.Name)
		}
		if !slices.Equal(names, []string{"Alice", "bob", "zoe"}) {
			t.Errorf("Users: got %v, want byte order", names)
		}
		if u, err := s.User(ctx, "bob"); err != nil || u.Display != "bob!" || u.PasswordHash != "h-bob" || !u.Created.Equal(t0) {
			t.Errorf("User: got %+v, %v", u, err)
		}
		if _, err := s.User(ctx, "nobody"); !errors.Is(err, ErrNoUser) {
			t.Errorf("unknown user: got %v, want ErrNoUser", err)
		}
		for _, k := range []string{"s1", "s2", "s3"} {
			if err := s.PutSession(ctx, sessionOf("bob", k, t0)); err != nil {
				t.Fatal(err)
			}
		}
		if ok, err := s.RehashPassword(ctx, "bob", "h-bob", "h2-bob"); err != nil || !ok {
			t.Errorf("rehash: got %v, %v", ok, err)
		}
		if ok, err := s.RehashPassword(ctx, "bob", "h-bob", "h3-bob"); err != nil || ok {
			t.Errorf("rehash from a stale hash: got %v, %v; want no change", ok, err)
		}
		if _, err := s.Session(ctx, []byte("s1")); err != nil {
			t.Errorf("a rehash ended a session: %v", err)
		}
		at := t0.Add(time.Hour)
		if n, err := s.SetPassword(ctx, "bob", "h4-bob", at, []byte("s3")); err != nil || n != 2 {
			t.Errorf("SetPassword: got %d, %v; want 2 ended", n, err)
		}
		if u, _ := s.User(ctx, "bob"); u.PasswordHash != "h4-bob" || !u.PasswordChanged.Equal(at) {
			t.Errorf("after SetPassword: got %+v", u)
		}
		if _, err := s.Session(ctx, []byte("s1")); !errors.Is(err, ErrNotFound) {
			t.Errorf("s1 after the password change: got %v", err)
		}
		if _, err := s.Session(ctx, []byte("s3")); err != nil {
			t.Errorf("the kept session: %v", err)
		}
		if _, err := s.SetPassword(ctx, "nobody", "h", at, nil); !errors.Is(err, ErrNoUser) {
			t.Errorf("SetPassword of nobody: got %v", err)
		}
		if err := s.EnableTOTP(ctx, "bob", testTOTP(), nil); err != nil {
			t.Fatal(err)
		}
		if err := s.AddEvent(ctx, "bob", Event{Time: at, Kind: EventLogin}); err != nil {
			t.Fatal(err)
		}
		if n, err := s.DeleteUser(ctx, "bob"); err != nil || n != 0 {
			// enable ended every session already
			t.Errorf("DeleteUser: got %d, %v", n, err)
		}
		if a, _ := s.Account(ctx, "bob"); a.Enabled() {
			t.Error("the deleted user's enrolment stayed")
		}
		if ev, _ := s.Events(ctx, "bob", 0); len(ev) != 0 {
			t.Errorf("the deleted user's events stayed: %v", ev)
		}
		if _, err := s.DeleteUser(ctx, "bob"); !errors.Is(err, ErrNoUser) {
			t.Errorf("second delete: got %v", err)
		}
	})
}

func TestConformBrowsers(t *testing.T) {
	eachStore(t, Options{}, func(t *testing.T, s Store, clk *testClock) {
		ctx := context.Background()
		t0 := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
		clk.set(t0)
		rb := func(i int, created time.Time, life time.Duration) RememberedBrowser {
			return RememberedBrowser{Hash: TokenHash([]byte{byte(i)}), Created: created, Expires: created.Add(life), Agent: "A", Addr: "192.0.2.1"}
		}
		for i := range MaxRememberedBrowsers + 2 {
			if err := s.RememberBrowser(ctx, "alice", rb(i, t0.Add(time.Duration(i)*time.Second), time.Hour)); err != nil {
				t.Fatal(err)
			}
		}
		list, err := s.RememberedBrowsers(ctx, "alice")
		if err != nil || len(list) != MaxRememberedBrowsers {
			t.Fatalf("after %d: got %d, %v; want the cap", MaxRememberedBrowsers+2, len(list), err)
		}
		if !bytes.Equal(list[0].Hash, TokenHash([]byte{byte(MaxRememberedBrowsers + 1)})) {
			t.Errorf("newest first: got %x first", list[0].Hash)
		}
		if _, err := s.RememberedBrowser(ctx, "alice", TokenHash([]byte{0})); !errors.Is(err, ErrNotFound) {
			t.Errorf("the oldest past the cap: got %v, want ErrNotFound", err)
		}
		got, err := s.RememberedBrowser(ctx, "alice", TokenHash([]byte{5}))
		if err != nil || got.Agent != "A" || !got.Created.Equal(t0.Add(5*time.Second)) {
			t.Errorf("one: got %+v, %v", got, err)
		}
		if _, err := s.RememberedBrowser(ctx, "bob", TokenHash([]byte{5})); !errors.Is(err, ErrNotFound) {
			t.Errorf("another user's: got %v", err)
		}
		if err := s.ForgetBrowser(ctx, "alice", TokenHash([]byte{5})); err != nil {
			t.Fatal(err)
		}
		if _, err := s.RememberedBrowser(ctx, "alice", TokenHash([]byte{5})); !errors.Is(err, ErrNotFound) {
			t.Errorf("forgotten: got %v", err)
		}
		clk.set(t0.Add(time.Hour + 10*time.Second)) // the first ten expired
		if n, err := s.ForgetBrowsers(ctx, "alice"); err != nil || n != MaxRememberedBrowsers-1-8 {
			t.Errorf("ForgetBrowsers: got %d, %v; want the live ones, %d", n, err, MaxRememberedBrowsers-1-8)
		}
		clk.set(t0)
		if list, _ := s.RememberedBrowsers(ctx, "alice"); len(list) != 0 {
			t.Errorf("after ForgetBrowsers: %d left", len(list))
		}
		// The changes of the account forget them in their transaction.
		for _, change := range []struct {
			name string
			fn   func() error
		}{
			{"enable", func() error { return s.EnableTOTP(ctx, "alice", testTOTP(), nil) }},
			{"new codes", func() error { return s.ReplaceBackupCodes(ctx, "alice", [][]byte{[]byte("x")}) }},
			{"disable", func() error { return s.DisableTOTP(ctx, "alice", nil) }},
		} {
			if err := s.RememberBrowser(ctx, "alice", rb(1, t0, time.Hour)); err != nil {
				t.Fatal(err)
			}
			if err := change.fn(); err != nil {
				t.Fatal(err)
			}
			if _, err := s.RememberedBrowser(ctx, "alice", TokenHash([]byte{1})); !errors.Is(err, ErrNotFound) {
				t.Errorf("after %s: got %v, want forgotten", change.name, err)
			}
		}
	})
}

func TestConformEvents(t *testing.T) {
	eachStore(t, Options{}, func(t *testing.T, s Store, clk *testClock) {
		ctx := context.Background()
		t0 := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
		clk.set(t0)
		old := Event{Time: t0.Add(-EventRetention - time.Hour), Kind: EventLogin, Addr: "old"}
		if err := s.AddEvent(ctx, "alice", old); err != nil {
			t.Fatal(err)
		}
		for i := range MaxEventsPerUser + 5 {
			e := Event{Time: t0.Add(time.Duration(i) * time.Second), Kind: EventCodeFailed, Count: i, Method: "totp", DriftSeconds: -30}
			if err := s.AddEvent(ctx, "alice", e); err != nil {
				t.Fatal(err)
			}
		}
		ev, err := s.Events(ctx, "alice", 0)
		if err != nil || len(ev) != MaxEventsPerUser {
			t.Fatalf("got %d events, %v; want %d", len(ev), err, MaxEventsPerUser)
		}
		if ev[0].Count != MaxEventsPerUser+4 || ev[len(ev)-1].Count != 5 || ev[0].DriftSeconds != -30 || ev[0].Method != "totp" {
			t.Errorf("newest first, the oldest dropped: got first %+v, last %+v", ev[0], ev[len(ev)-1])
		}
		if ev, _ := s.Events(ctx, "alice", 3); len(ev) != 3 || ev[0].Count != MaxEventsPerUser+4 {
			t.Errorf("limit 3: got %v", ev)
		}
		clk.set(t0.Add(EventRetention + 50*time.Second))
		if ev, _ := s.Events(ctx, "alice", 0); len(ev) != MaxEventsPerUser+4-50+1 {
			t.Errorf("past the retention of some: got %d", len(ev))
		}
		if err := s.AddEvent(ctx, "alice", Event{Kind: EventLogin}); err == nil {
			t.Error("an event without a time was added")
		}
	})
}

func TestConformMeta(t *testing.T) {
	eachStore(t, Options{}, func(t *testing.T, s Store, _ *testClock) {
		ctx := context.Background()
		if _, err := s.Meta(ctx, "x"); !errors.Is(err, ErrNotFound) {
			t.Errorf("unset: got %v", err)
		}
		for _, v := range [][]byte{[]byte("one"), []byte("two"), {}} {
			if err := s.PutMeta(ctx, "x", v); err != nil {
				t.Fatal(err)
			}
			if got, err := s.Meta(ctx, "x"); err != nil || !bytes.Equal(got, v) {
				t.Errorf("got %q, %v; want %q", got, err, v)
			}
		}
		if err := s.PutMeta(ctx, "", nil); err == nil {
			t.Error("a meta value without a name")
		}
		// InitMeta: of many at once, one value wins and all see it.
		var wg sync.WaitGroup
		got := make([][]byte, 16)
		for i := range got {
			wg.Go(func() {
				v, err := s.InitMeta(ctx, "first", []byte{byte('a' + i)})
				if err != nil {
					t.Error(err)
				}
				got[i] = v
			})
		}
		wg.Wait()
		for i := range got {
			if len(got[i]) != 1 || !bytes.Equal(got[i], got[0]) {
				t.Fatalf("InitMeta at once: got %q, want one value for all", got)
			}
		}
		if v, err := s.Meta(ctx, "first"); err != nil || !bytes.Equal(v, got[0]) {
			t.Errorf("after InitMeta: got %q, %v", v, err)
		}
	})
}

// TestConformRealms: the realm view works the same on every store.
func TestConformRealms(t *testing.T) {
	eachStore(t, Options{}, func(t *testing.T, s Store, clk *testClock) {
		ctx := context.Background()
		t0 := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
		clk.set(t0)
		def, err := InRealm(s, DefaultRealm)
		if err != nil {
			t.Fatal(err)
		}
		staff, err := InRealm(s, "staff")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range []*Realm{def, staff} {
			if err := r.EnableTOTP(ctx, "alice", testTOTP(), nil); err != nil {
				t.Fatal(err)
			}
		}
		if err := staff.EnableTOTP(ctx, "bob", testTOTP(), nil); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			realm string
			want  int
		}{{DefaultRealm, 1}, {"staff", 2}, {"other", 0}} {
			if n, err := s.CountEnrolledIn(ctx, c.realm); err != nil || n != c.want {
				t.Errorf("CountEnrolledIn(%q): got %d, %v; want %d", c.realm, n, err, c.want)
			}
		}
		if err := staff.PutSession(ctx, sessionOf("alice", "ks", t0)); err != nil {
			t.Fatal(err)
		}
		if _, err := def.Session(ctx, []byte("ks")); !errors.Is(err, ErrNotFound) {
			t.Errorf("staff's session in the default realm: got %v", err)
		}
		if got, err := staff.Session(ctx, []byte("ks")); err != nil || got.User != "alice" {
			t.Errorf("in its realm: got %+v, %v", got, err)
		}
		if err := def.DisableTOTP(ctx, "alice", nil); err != nil {
			t.Fatal(err)
		}
		if _, err := staff.Session(ctx, []byte("ks")); err != nil {
			t.Errorf("a change in the default realm ended staff's alice: %v", err)
		}
	})
}

// TestConformBackup: a backup of either store restores into either, with
// the users, enrolments (used steps, backup codes) and meta values, and no
// session; a store with users refuses it.
func TestConformBackup(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	for _, from := range backends {
		for _, to := range backends {
			t.Run(from.name+"-to-"+to.name, func(t *testing.T) {
				clk := &testClock{}
				clk.set(t0)
				src := from.open(t, Options{Now: clk.now})
				if err := src.AddUser(ctx, User{Name: "carol", Display: "Carol", PasswordHash: "h", Created: t0, PasswordChanged: t0}); err != nil {
					t.Fatal(err)
				}
				if err := src.EnableTOTP(ctx, "carol", testTOTP(), [][]byte{[]byte("c1"), []byte("c2")}); err != nil {
					t.Fatal(err)
				}
				if err := src.UseTOTPStep(ctx, "carol", 150); err != nil {
					t.Fatal(err)
				}
				if _, err := src.UseBackupCode(ctx, "carol", []byte("c1")); err != nil {
					t.Fatal(err)
				}
				if err := src.PutMeta(ctx, MetaKeyCheck, []byte("check")); err != nil {
					t.Fatal(err)
				}
				var buf bytes.Buffer
				if err := src.Backup(ctx, &buf); err != nil {
					t.Fatal(err)
				}
				dst := to.open(t, Options{Now: clk.now})
				if err := dst.PutSession(ctx, sessionOf("carol", "old", t0)); err != nil {
					t.Fatal(err)
				}
				refusal := errors.New("no")
				if _, err := dst.Restore(ctx, bytes.NewReader(buf.Bytes()), func(Snapshot) error { return refusal }); err != refusal {
					t.Fatalf("refused by accept: got %v", err)
				}
				if users, _ := dst.Users(ctx); len(users) != 0 {
					t.Fatalf("a refused restore wrote %v", users)
				}
				snap, err := dst.Restore(ctx, bytes.NewReader(buf.Bytes()), nil)
				if err != nil || snap.Users != 1 || snap.Accounts != 1 {
					t.Fatalf("Restore: got %+v, %v", snap, err)
				}
				if u, err := dst.User(ctx, "carol"); err != nil || u.Display != "Carol" {
					t.Errorf("user: got %+v, %v", u, err)
				}
				if err := dst.UseTOTPStep(ctx, "carol", 150); !errors.Is(err, ErrStepUsed) {
					t.Errorf("the used step: got %v, want ErrStepUsed", err)
				}
				if _, err := dst.UseBackupCode(ctx, "carol", []byte("c1")); !errors.Is(err, ErrCodeUnknown) {
					t.Errorf("the used code: got %v", err)
				}
				if left, err := dst.UseBackupCode(ctx, "carol", []byte("c2")); err != nil || left != 0 {
					t.Errorf("the unused code: got %d, %v", left, err)
				}
				if v, err := dst.Meta(ctx, MetaKeyCheck); err != nil || string(v) != "check" {
					t.Errorf("meta: got %q, %v", v, err)
				}
				if _, err := dst.Session(ctx, []byte("old")); !errors.Is(err, ErrNotFound) {
					t.Errorf("a session from before the restore: got %v", err)
				}
				if _, err := dst.Restore(ctx, bytes.NewReader(buf.Bytes()), nil); !errors.Is(err, ErrNotEmpty) {
					t.Errorf("into a store with users: got %v, want ErrNotEmpty", err)
				}
			})
		}
	}
}

// TestConformKeyRaces: one credential ID registered by many users of a
// realm at once is registered once; one assertion counter used by many
// callers at once is accepted once; one challenge taken at once is taken
// once.
func TestConformKeyRaces(t *testing.T) {
	eachStore(t, Options{}, func(t *testing.T, s Store, clk *testClock) {
		ctx := context.Background()
		now := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
		clk.set(now)
		count := func(what string, n int, fn func(i int) error, want int) {
			t.Helper()
			var (
				wg   sync.WaitGroup
				mu   sync.Mutex
				wins int
			)
			start := make(chan struct{})
			for i := range n {
				wg.Go(func() {
					<-start
					if fn(i) == nil {
						mu.Lock()
						wins++
						mu.Unlock()
					}
				})
			}
			close(start)
			wg.Wait()
			if wins != want {
				t.Errorf("%s, %d at once: %d won, want %d", what, n, wins, want)
			}
		}
		for round := range 6 {
			// A key already registered in the realm, so that both kinds
			// of registration (first and further) race.
			if round%2 == 1 {
				for i := range 16 {
					if _, err := s.AddCredential(ctx, fmt.Sprintf("r%d-user%d", round, i), testCredential(fmt.Sprintf("own-%d-%d", round, i), "Own"), []byte("h"), testCodes(10), nil); err != nil {
						t.Fatal(err)
					}
				}
			}
			count("one key ID for many users", 16, func(i int) error {
				_, err := s.AddCredential(ctx, fmt.Sprintf("r%d-user%d", round, i), testCredential(fmt.Sprintf("same-id-%d", round), "Key"), []byte("h"), testCodes(10), nil)
				return err
			}, 1)
		}
		var owner string
		for i := range 16 {
			if a, _ := s.Account(ctx, fmt.Sprintf("r0-user%d", i)); len(a.Credentials) == 1 {
				owner = a.Name
			}
		}
		count("one counter value", 10, func(int) error {
			return s.UseCredential(ctx, owner, []byte("same-id-0"), CredentialUse{SignCount: 7, At: now})
		}, 1)
		key := bytes.Repeat([]byte{9}, 32)
		if err := s.PutChallenge(ctx, key, Challenge{User: owner, Purpose: PurposeAssert, Data: []byte(`{}`), Expires: now.Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
		count("one challenge", 10, func(int) error {
			_, err := s.TakeChallenge(ctx, key, PurposeAssert)
			return err
		}, 1)
	})
}
