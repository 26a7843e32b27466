package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// openTest opens a store in a fresh folder, without the fsync of each
// commit (except where a test needs it) and without the value log GC.
func openTest(t testing.TB) *Badger {
	t.Helper()
	return openTestWith(t, Options{})
}

// openTestWith opens a throwaway store with opt, unsynced and without GC.
func openTestWith(t testing.TB, opt Options) *Badger {
	t.Helper()
	opt.NoSync, opt.GCInterval = true, -1
	b, err := OpenBadger(t.TempDir(), opt)
	if err != nil {
		t.Fatalf("OpenBadger: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

// testClock is a store clock (Options.Now) that a test can stop: it reads
// time.Now until set fixes it.
type testClock struct{ at atomic.Pointer[time.Time] }

func (c *testClock) now() time.Time {
	if at := c.at.Load(); at != nil {
		return *at
	}
	return time.Now()
}

// set makes the clock return at from now on.
func (c *testClock) set(at time.Time) { c.at.Store(&at) }

// openTestClock is openTestWith with the store's clock a testClock, which
// it returns too.
func openTestClock(t testing.TB, opt Options) (*Badger, *testClock) {
	t.Helper()
	clk := &testClock{}
	opt.Now = clk.now
	return openTestWith(t, opt), clk
}

func testTOTP() TOTP {
	return TOTP{
		SealedSecret: []byte("sealed-secret"),
		Algorithm:    "SHA1",
		Digits:       6,
		Period:       30,
		LastStep:     100,
		EnabledAt:    time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	}
}

func testCodes(n int) [][]byte {
	codes := make([][]byte, n)
	for i := range codes {
		codes[i] = fmt.Appendf(nil, "hash-%02d", i)
	}
	return codes
}

// testSession returns a session of user that expires an hour from now by
// the real clock (which badger's TTL follows).
func testSession(key, user string) Session {
	t := time.Now().Truncate(time.Second)
	return Session{
		Key:     []byte(key),
		User:    user,
		Stage:   StageFull,
		Created: t.Add(-time.Minute),
		Seen:    t,
		Expires: t.Add(time.Hour),
	}
}

func enable(t *testing.T, b *Badger, user string, codes [][]byte) {
	t.Helper()
	if err := b.EnableTOTP(context.Background(), user, testTOTP(), codes); err != nil {
		t.Fatalf("EnableTOTP(%q): %v", user, err)
	}
}

func putSessions(t *testing.T, b Store, user string, keys ...string) {
	t.Helper()
	for _, k := range keys {
		if err := b.PutSession(context.Background(), testSession(k, user)); err != nil {
			t.Fatalf("PutSession(%q): %v", k, err)
		}
	}
}

// sessionExists reports whether Session finds key, failing on other errors.
func sessionExists(t *testing.T, b *Badger, key string) bool {
	t.Helper()
	_, err := b.Session(context.Background(), []byte(key))
	switch {
	case err == nil:
		return true
	case errors.Is(err, ErrNotFound):
		return false
	}
	t.Fatalf("Session(%q): %v", key, err)
	return false
}

func TestOpenBadgerCreatesFolder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "store")
	b, err := OpenBadger(dir, Options{GCInterval: -1})
	if err != nil {
		t.Fatalf("OpenBadger: %v", err)
	}
	defer b.Close()
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o700 {
		t.Errorf("folder mode = %v, want 0700", perm)
	}
	if _, err := OpenBadger("", Options{}); err == nil {
		t.Error("OpenBadger(\"\") succeeded")
	}
}

func TestOpenBadgerLocked(t *testing.T) {
	dir := t.TempDir()
	b, err := OpenBadger(dir, Options{GCInterval: -1})
	if err != nil {
		t.Fatalf("OpenBadger: %v", err)
	}
	_, err = OpenBadger(dir, Options{GCInterval: -1})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second OpenBadger: err = %v, want ErrLocked", err)
	}
	msg := err.Error()
	for _, want := range []string{dir, "another Caddy", "caddy two-factor"} {
		if !bytes.Contains([]byte(msg), []byte(want)) {
			t.Errorf("error %q does not mention %q", msg, want)
		}
	}
	// The failed open must not have released the first one's lock.
	if _, err := OpenBadger(dir, Options{GCInterval: -1}); !errors.Is(err, ErrLocked) {
		t.Fatalf("third OpenBadger: err = %v, want ErrLocked", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b2, err := OpenBadger(dir, Options{GCInterval: -1})
	if err != nil {
		t.Fatalf("OpenBadger after Close: %v", err)
	}
	b2.Close()
}

func TestAccountUnknownUser(t *testing.T) {
	b := openTest(t)
	a, err := b.Account(context.Background(), "nobody")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, Account{Name: "nobody"}) {
		t.Errorf("Account = %+v, want zero with Name", a)
	}
	if a.Enabled() {
		t.Error("unknown user is enabled")
	}
}

func TestEnableTOTP(t *testing.T) {
	ctx := context.Background()
	b := openTest(t)
	codes := testCodes(3)
	putSessions(t, b, "alice", "a1", "a2")
	putSessions(t, b, "al", "b1")
	enable(t, b, "alice", codes)
	codes[0][0] = 'X' // the store must have kept its own copy
	// Enabling ends every session of the user, in the same transaction.
	for key, want := range map[string]bool{"a1": false, "a2": false, "b1": true} {
		if got := sessionExists(t, b, key); got != want {
			t.Errorf("after EnableTOTP: session %s exists = %v, want %v", key, got, want)
		}
	}

	a, err := b.Account(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	want := testTOTP()
	if a.Name != "alice" || a.TOTP == nil || !a.TOTP.EnabledAt.Equal(want.EnabledAt) {
		t.Fatalf("Account = %+v", a)
	}
	a.TOTP.EnabledAt = want.EnabledAt
	if !reflect.DeepEqual(*a.TOTP, want) {
		t.Errorf("TOTP = %+v, want %+v", *a.TOTP, want)
	}
	if !reflect.DeepEqual(a.BackupCodes, testCodes(3)) {
		t.Errorf("BackupCodes = %q", a.BackupCodes)
	}

	if err := b.EnableTOTP(ctx, "alice", testTOTP(), nil); err != ErrAlreadyEnabled {
		t.Errorf("second EnableTOTP: err = %v, want ErrAlreadyEnabled", err)
	}
	if err := b.EnableTOTP(ctx, "bob", TOTP{}, nil); err == nil {
		t.Error("EnableTOTP without a secret succeeded")
	}
	if err := b.EnableTOTP(ctx, "bob", testTOTP(), [][]byte{nil}); err == nil {
		t.Error("EnableTOTP with an empty backup code succeeded")
	}
	// Without backup codes is fine.
	enable(t, b, "carol", nil)
	if a, _ := b.Account(ctx, "carol"); !a.Enabled() || len(a.BackupCodes) != 0 {
		t.Errorf("carol = %+v", a)
	}
}

func TestDisableTOTP(t *testing.T) {
	ctx := context.Background()
	b := openTest(t)
	if err := b.DisableTOTP(ctx, "alice", nil); err != ErrNotEnabled {
		t.Fatalf("DisableTOTP when off: err = %v, want ErrNotEnabled", err)
	}
	enable(t, b, "alice", testCodes(2))
	enable(t, b, "al", testCodes(2))
	putSessions(t, b, "alice", "a1", "a2", "a3")
	putSessions(t, b, "al", "b1")

	if err := b.DisableTOTP(ctx, "alice", []byte("a2")); err != nil {
		t.Fatal(err)
	}
	a, err := b.Account(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, Account{Name: "alice"}) {
		t.Errorf("after DisableTOTP: %+v", a)
	}
	for key, want := range map[string]bool{"a1": false, "a2": true, "a3": false, "b1": true} {
		if got := sessionExists(t, b, key); got != want {
			t.Errorf("session %s exists = %v, want %v", key, got, want)
		}
	}
	if a, _ := b.Account(ctx, "al"); !a.Enabled() {
		t.Error("DisableTOTP of alice turned al off")
	}
	if err := b.DisableTOTP(ctx, "alice", nil); err != ErrNotEnabled {
		t.Errorf("second DisableTOTP: err = %v, want ErrNotEnabled", err)
	}
	// It can be enabled again.
	enable(t, b, "alice", nil)
}

func TestReplaceBackupCodes(t *testing.T) {
	ctx := context.Background()
	b := openTest(t)
	if err := b.ReplaceBackupCodes(ctx, "alice", testCodes(1)); err != ErrNotEnabled {
		t.Fatalf("err = %v, want ErrNotEnabled", err)
	}
	enable(t, b, "alice", testCodes(2))
	fresh := [][]byte{[]byte("new-1"), []byte("new-2"), []byte("new-3")}
	if err := b.ReplaceBackupCodes(ctx, "alice", fresh); err != nil {
		t.Fatal(err)
	}
	a, err := b.Account(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a.BackupCodes, fresh) {
		t.Errorf("BackupCodes = %q, want %q", a.BackupCodes, fresh)
	}
	if a.TOTP == nil || a.TOTP.LastStep != testTOTP().LastStep {
		t.Errorf("TOTP changed: %+v", a.TOTP)
	}
	if _, err := b.UseBackupCode(ctx, "alice", []byte("hash-00")); err != ErrCodeUnknown {
		t.Errorf("old code: err = %v, want ErrCodeUnknown", err)
	}
	if err := b.ReplaceBackupCodes(ctx, "alice", nil); err != nil {
		t.Fatal(err)
	}
	if a, _ := b.Account(ctx, "alice"); len(a.BackupCodes) != 0 || !a.Enabled() {
		t.Errorf("after clearing codes: %+v", a)
	}
}

func TestUseTOTPStep(t *testing.T) {
	ctx := context.Background()
	b := openTest(t)
	if err := b.UseTOTPStep(ctx, "alice", 5); err != ErrNotEnabled {
		t.Fatalf("err = %v, want ErrNotEnabled", err)
	}
	enable(t, b, "alice", nil) // LastStep 100
	steps := []struct {
		step int64
		want error
	}{
		{99, ErrStepUsed},
		{100, ErrStepUsed},
		{101, nil},
		{101, ErrStepUsed},
		{105, nil},
		{103, ErrStepUsed},
	}
	for _, s := range steps {
		if err := b.UseTOTPStep(ctx, "alice", s.step); err != s.want {
			t.Errorf("UseTOTPStep(%d) = %v, want %v", s.step, err, s.want)
		}
	}
	a, err := b.Account(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if a.TOTP.LastStep != 105 {
		t.Errorf("LastStep = %d, want 105", a.TOTP.LastStep)
	}
}

func TestUseBackupCode(t *testing.T) {
	ctx := context.Background()
	b := openTest(t)
	if _, err := b.UseBackupCode(ctx, "alice", []byte("hash-00")); err != ErrNotEnabled {
		t.Fatalf("err = %v, want ErrNotEnabled", err)
	}
	enable(t, b, "alice", testCodes(3))
	for _, h := range [][]byte{[]byte("nope"), nil, []byte("hash-0")} {
		if _, err := b.UseBackupCode(ctx, "alice", h); err != ErrCodeUnknown {
			t.Errorf("UseBackupCode(%q): err = %v, want ErrCodeUnknown", h, err)
		}
	}
	for i, h := range []string{"hash-01", "hash-00", "hash-02"} {
		left, err := b.UseBackupCode(ctx, "alice", []byte(h))
		if err != nil {
			t.Fatalf("UseBackupCode(%s): %v", h, err)
		}
		if left != 2-i {
			t.Errorf("UseBackupCode(%s) left = %d, want %d", h, left, 2-i)
		}
		if _, err := b.UseBackupCode(ctx, "alice", []byte(h)); err != ErrCodeUnknown {
			t.Errorf("reuse of %s: err = %v, want ErrCodeUnknown", h, err)
		}
	}
	if a, _ := b.Account(ctx, "alice"); !a.Enabled() {
		t.Error("using the last code turned 2FA off")
	}
}

// race runs f in n goroutines started together and returns their errors.
func race(n int, f func() error) []error {
	errs := make([]error, n)
	var start, done sync.WaitGroup
	start.Add(1)
	for i := range n {
		done.Go(func() {
			start.Wait()
			errs[i] = f()
		})
	}
	start.Done()
	done.Wait()
	return errs
}

// checkOneWinner fails unless exactly one error is nil and all the others
// are loser.
func checkOneWinner(t *testing.T, errs []error, loser error) {
	t.Helper()
	wins := 0
	for _, err := range errs {
		switch {
		case err == nil:
			wins++
		case err != loser:
			t.Errorf("unexpected error: %v", err)
		}
	}
	if wins != 1 {
		t.Errorf("%d goroutines won, want exactly 1", wins)
	}
}

// holdCommits makes the first n read-write transactions wait before
// committing until all n have got there, so n racing operations all read
// the same state and all but one of their commits conflict. It returns a
// counter of the transactions that reached the hook.
func holdCommits(t *testing.T, n int) *atomic.Int64 {
	t.Helper()
	var seen atomic.Int64
	all := make(chan struct{})
	setBeforeCommit(func(*Badger) {
		switch k := seen.Add(1); {
		case k == int64(n):
			close(all)
		case k < int64(n):
			<-all
		}
	})
	t.Cleanup(func() { setBeforeCommit(nil) })
	return &seen
}

func TestUseTOTPStepConcurrent(t *testing.T) {
	ctx := context.Background()
	b := openTest(t)
	enable(t, b, "alice", nil)
	const n = 50
	seen := holdCommits(t, n)
	errs := race(n, func() error { return b.UseTOTPStep(ctx, "alice", 200) })
	checkOneWinner(t, errs, ErrStepUsed)
	// The losers' first commits conflicted; they retried and read the
	// winner's step (failing before the hook).
	if got := seen.Load(); got != n {
		t.Errorf("%d transactions reached the commit, want %d", got, n)
	}
	a, err := b.Account(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if a.TOTP.LastStep != 200 {
		t.Errorf("LastStep = %d, want 200", a.TOTP.LastStep)
	}
}

func TestUpdateGivesUpOnEndlessConflicts(t *testing.T) {
	ctx := context.Background()
	b := openTest(t)
	enable(t, b, "alice", nil)
	// Every attempt is beaten by a write to the same account.
	var attempts atomic.Int64
	setBeforeCommit(func(b *Badger) {
		attempts.Add(1)
		err := b.db.Update(func(txn *badger.Txn) error {
			return txn.Set(accountKey("alice"), []byte(`{"totp":{"sealed_secret":"eA=="}}`))
		})
		if err != nil {
			t.Errorf("conflicting write: %v", err)
		}
	})
	t.Cleanup(func() { setBeforeCommit(nil) })
	err := b.UseTOTPStep(ctx, "alice", 500)
	if err == nil || !errors.Is(err, badger.ErrConflict) {
		t.Errorf("err = %v, want a wrapped badger.ErrConflict", err)
	}
	if got := attempts.Load(); got != maxAttempts {
		t.Errorf("%d attempts, want %d", got, maxAttempts)
	}
}

func TestUseBackupCodeConcurrent(t *testing.T) {
	ctx := context.Background()
	b := openTest(t)
	enable(t, b, "alice", testCodes(5))
	holdCommits(t, 50)
	var lefts sync.Map
	errs := race(50, func() error {
		left, err := b.UseBackupCode(ctx, "alice", []byte("hash-03"))
		if err == nil {
			lefts.Store(left, true)
		}
		return err
	})
	checkOneWinner(t, errs, ErrCodeUnknown)
	if _, ok := lefts.Load(4); !ok {
		t.Error("the winner was not told 4 codes are left")
	}
	a, err := b.Account(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(a.BackupCodes) != 4 {
		t.Errorf("%d codes left, want 4", len(a.BackupCodes))
	}
}

func TestSessionRoundTrip(t *testing.T) {
	ctx := context.Background()
	b := openTest(t)
	s := testSession("k1", "alice")
	s.Stage = StagePassword
	s.Next = "/app?x=1"
	s.Pending = []byte("sealed-pending")
	s.PendingAt = s.Seen.Add(123 * time.Millisecond)
	if err := b.PutSession(ctx, s); err != nil {
		t.Fatal(err)
	}
	got, err := b.Session(ctx, []byte("k1"))
	if err != nil {
		t.Fatal(err)
	}
	checkSessionEqual(t, got, s)

	// Replace it.
	s.Stage = StageFull
	s.Pending, s.PendingAt, s.Next = nil, time.Time{}, ""
	if err := b.PutSession(ctx, s); err != nil {
		t.Fatal(err)
	}
	got, err = b.Session(ctx, []byte("k1"))
	if err != nil {
		t.Fatal(err)
	}
	checkSessionEqual(t, got, s)

	if _, err := b.Session(ctx, []byte("k2")); err != ErrNotFound {
		t.Errorf("missing session: err = %v, want ErrNotFound", err)
	}
}

func checkSessionEqual(t *testing.T, got, want Session) {
	t.Helper()
	if !bytes.Equal(got.Key, want.Key) || got.User != want.User || got.Stage != want.Stage ||
		!got.Created.Equal(want.Created) || !got.Seen.Equal(want.Seen) ||
		!got.Expires.Equal(want.Expires) || got.Next != want.Next ||
		!bytes.Equal(got.Pending, want.Pending) || !got.PendingAt.Equal(want.PendingAt) {
		t.Errorf("session = %+v\nwant %+v", got, want)
	}
	if want.PendingAt.IsZero() && !got.PendingAt.IsZero() {
		t.Errorf("PendingAt = %v, want zero", got.PendingAt)
	}
}

func TestSessionExpiry(t *testing.T) {
	ctx := context.Background()
	b, clk := openTestClock(t, Options{})
	s := testSession("k", "alice")
	if err := b.PutSession(ctx, s); err != nil {
		t.Fatal(err)
	}
	clk.set(s.Expires.Add(-time.Nanosecond))
	if !sessionExists(t, b, "k") {
		t.Fatal("session gone before it expired")
	}
	clk.set(s.Expires)
	if sessionExists(t, b, "k") {
		t.Fatal("session found at its expiry time")
	}
	clk.set(s.Expires.Add(time.Hour))
	if sessionExists(t, b, "k") {
		t.Fatal("session found after its expiry time")
	}
}

// TestSessionBadgerTTL checks that badger itself drops an expired record and
// its index entry (TTLs are whole seconds, so this sleeps about a second).
func TestSessionBadgerTTL(t *testing.T) {
	ctx := context.Background()
	// Without the session cache, which checks expiry by the store's clock
	// only (the same time as badger's, in production).
	b, clk := openTestClock(t, Options{SessionCache: -1})
	s := testSession("k", "alice")
	s.Expires = time.Now().Add(time.Second)
	if err := b.PutSession(ctx, s); err != nil {
		t.Fatal(err)
	}
	clk.set(time.Time{}) // the store's own check would never expire it
	if !sessionExists(t, b, "k") {
		t.Fatal("session missing right after PutSession")
	}
	time.Sleep(time.Until(s.Expires.Truncate(time.Second).Add(time.Second)) + 10*time.Millisecond)
	if sessionExists(t, b, "k") {
		t.Error("badger kept the record past its TTL")
	}
	if n, err := b.DeleteUserSessions(ctx, "alice", nil); err != nil || n != 0 {
		t.Errorf("DeleteUserSessions = %d, %v; want 0 (index entry expired too)", n, err)
	}
}

func TestSessionEntryRoundsUp(t *testing.T) {
	at := time.Unix(1000, 0)
	if e := sessionEntry(nil, nil, at); e.ExpiresAt != 1000 {
		t.Errorf("whole second: ExpiresAt = %d, want 1000", e.ExpiresAt)
	}
	if e := sessionEntry(nil, nil, at.Add(time.Nanosecond)); e.ExpiresAt != 1001 {
		t.Errorf("fraction: ExpiresAt = %d, want 1001", e.ExpiresAt)
	}
}

func TestPutSessionValidation(t *testing.T) {
	ctx := context.Background()
	b := openTest(t)
	bad := map[string]func(*Session){
		"no key":        func(s *Session) { s.Key = nil },
		"no user":       func(s *Session) { s.User = "" },
		"zero stage":    func(s *Session) { s.Stage = 0 },
		"unknown stage": func(s *Session) { s.Stage = 9 },
		"zero expires":  func(s *Session) { s.Expires = time.Time{} },
		"1970 expires":  func(s *Session) { s.Expires = time.Unix(0, 0) },
	}
	for name, change := range bad {
		s := testSession("k", "alice")
		change(&s)
		if err := b.PutSession(ctx, s); err == nil {
			t.Errorf("%s: PutSession succeeded", name)
		}
	}
}

func TestPutSessionChangesUser(t *testing.T) {
	ctx := context.Background()
	b := openTest(t)
	putSessions(t, b, "alice", "k")
	putSessions(t, b, "bob", "k")
	if n, err := b.DeleteUserSessions(ctx, "alice", nil); err != nil || n != 0 {
		t.Errorf("DeleteUserSessions(alice) = %d, %v; want 0", n, err)
	}
	if !sessionExists(t, b, "k") {
		t.Fatal("bob's session was deleted via alice")
	}
	if n, err := b.DeleteUserSessions(ctx, "bob", nil); err != nil || n != 1 {
		t.Errorf("DeleteUserSessions(bob) = %d, %v; want 1", n, err)
	}
}

func TestDeleteSession(t *testing.T) {
	ctx := context.Background()
	b := openTest(t)
	putSessions(t, b, "alice", "k1", "k2")
	if err := b.DeleteSession(ctx, []byte("k1")); err != nil {
		t.Fatal(err)
	}
	if sessionExists(t, b, "k1") || !sessionExists(t, b, "k2") {
		t.Error("DeleteSession removed the wrong session")
	}
	if err := b.DeleteSession(ctx, []byte("k1")); err != nil {
		t.Errorf("deleting a gone session: %v", err)
	}
	if err := b.DeleteSession(ctx, nil); err == nil {
		t.Error("DeleteSession(nil) succeeded")
	}
	// Its index entry went with it.
	if n, err := b.DeleteUserSessions(ctx, "alice", nil); err != nil || n != 1 {
		t.Errorf("DeleteUserSessions = %d, %v; want 1", n, err)
	}
}

func TestDeleteUserSessions(t *testing.T) {
	ctx := context.Background()
	b := openTest(t)
	// Names that are prefixes of each other, or would collide under a
	// naive "x/<user>/<key>" layout.
	putSessions(t, b, "al", "al-1", "al-2")
	putSessions(t, b, "alice", "alice-1", "alice-2", "alice-3")
	putSessions(t, b, "al/x", "alx-1")
	putSessions(t, b, "a", "l-1") // "x/a" + "l-1" vs "x/al" + "-1"
	putSessions(t, b, "al\x00", "nul-1")

	n, err := b.DeleteUserSessions(ctx, "al", []byte("al-2"))
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("removed %d, want 1", n)
	}
	want := map[string]bool{
		"al-1": false, "al-2": true,
		"alice-1": true, "alice-2": true, "alice-3": true,
		"alx-1": true, "l-1": true, "nul-1": true,
	}
	for key, w := range want {
		if got := sessionExists(t, b, key); got != w {
			t.Errorf("session %s exists = %v, want %v", key, got, w)
		}
	}

	n, err = b.DeleteUserSessions(ctx, "alice", nil)
	if err != nil || n != 3 {
		t.Errorf("DeleteUserSessions(alice) = %d, %v; want 3", n, err)
	}
	n, err = b.DeleteUserSessions(ctx, "nobody", nil)
	if err != nil || n != 0 {
		t.Errorf("DeleteUserSessions(nobody) = %d, %v; want 0", n, err)
	}
	for _, key := range []string{"al-2", "alx-1", "l-1", "nul-1"} {
		if !sessionExists(t, b, key) {
			t.Errorf("session %s of another user was removed", key)
		}
	}
}

func TestMeta(t *testing.T) {
	ctx := context.Background()
	b := openTest(t)
	if _, err := b.Meta(ctx, "check"); err != ErrNotFound {
		t.Fatalf("unset meta: err = %v, want ErrNotFound", err)
	}
	for _, v := range []string{"one", "two"} {
		if err := b.PutMeta(ctx, "check", []byte(v)); err != nil {
			t.Fatal(err)
		}
		got, err := b.Meta(ctx, "check")
		if err != nil || string(got) != v {
			t.Errorf("Meta = %q, %v; want %q", got, err, v)
		}
	}
	// Meta names do not collide with user names.
	if a, err := b.Account(ctx, "check"); err != nil || a.Enabled() {
		t.Errorf("Account(check) = %+v, %v", a, err)
	}
	if err := b.PutMeta(ctx, "", []byte("x")); err == nil {
		t.Error("PutMeta with an empty name succeeded")
	}
	if _, err := b.Meta(ctx, ""); err == nil {
		t.Error("Meta with an empty name succeeded")
	}
}

func TestEmptyUserRejected(t *testing.T) {
	ctx := context.Background()
	b := openTest(t)
	checks := map[string]error{
		"Account":    func() error { _, err := b.Account(ctx, ""); return err }(),
		"EnableTOTP": b.EnableTOTP(ctx, "", testTOTP(), nil),
		"Disable":    b.DisableTOTP(ctx, "", nil),
		"Replace":    b.ReplaceBackupCodes(ctx, "", nil),
		"UseStep":    b.UseTOTPStep(ctx, "", 1),
		"UseCode":    func() error { _, err := b.UseBackupCode(ctx, "", []byte("h")); return err }(),
		"DeleteUser": func() error { _, err := b.DeleteUserSessions(ctx, "", nil); return err }(),
		"Session":    func() error { _, err := b.Session(ctx, nil); return err }(),
		"Admission":  func() error { _, err := b.SessionAdmission(ctx, nil, b.now()); return err }(),
	}
	for name, err := range checks {
		if err == nil || isSentinel(err) {
			t.Errorf("%s with empty input: err = %v, want a failure", name, err)
		}
	}
}

func TestCanceledContext(t *testing.T) {
	b := openTest(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.Account(ctx, "alice"); !errors.Is(err, context.Canceled) {
		t.Errorf("Account: err = %v, want context.Canceled", err)
	}
	if err := b.PutMeta(ctx, "m", nil); !errors.Is(err, context.Canceled) {
		t.Errorf("PutMeta: err = %v, want context.Canceled", err)
	}
}

func TestDurability(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	b, err := OpenBadger(dir, Options{GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	enable(t, b, "alice", testCodes(3))
	if err := b.UseTOTPStep(ctx, "alice", 150); err != nil {
		t.Fatal(err)
	}
	if _, err := b.UseBackupCode(ctx, "alice", []byte("hash-01")); err != nil {
		t.Fatal(err)
	}
	s := testSession("k1", "alice")
	s.Pending = []byte("p")
	if err := b.PutSession(ctx, s); err != nil {
		t.Fatal(err)
	}
	putSessions(t, b, "alice", "k2")
	if err := b.PutMeta(ctx, "check", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b, err = OpenBadger(dir, Options{GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	a, err := b.Account(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if !a.Enabled() || a.TOTP.LastStep != 150 || !bytes.Equal(a.TOTP.SealedSecret, []byte("sealed-secret")) {
		t.Errorf("TOTP after reopen = %+v", a.TOTP)
	}
	if want := [][]byte{[]byte("hash-00"), []byte("hash-02")}; !reflect.DeepEqual(a.BackupCodes, want) {
		t.Errorf("BackupCodes after reopen = %q, want %q", a.BackupCodes, want)
	}
	got, err := b.Session(ctx, []byte("k1"))
	if err != nil {
		t.Fatal(err)
	}
	checkSessionEqual(t, got, s)
	if v, err := b.Meta(ctx, "check"); err != nil || string(v) != "v" {
		t.Errorf("Meta after reopen = %q, %v", v, err)
	}
	// The index survived too.
	if n, err := b.DeleteUserSessions(ctx, "alice", nil); err != nil || n != 2 {
		t.Errorf("DeleteUserSessions after reopen = %d, %v; want 2", n, err)
	}
}

func TestCloseConcurrent(t *testing.T) {
	ctx := context.Background()
	b, err := OpenBadger(t.TempDir(), Options{NoSync: true, GCInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	enable(t, b, "alice", nil)
	putSessions(t, b, "alice", "k")

	var ok, closed atomic.Int64
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := 0; j < 200; j++ {
				var err error
				if j%2 == 0 {
					_, err = b.Session(ctx, []byte("k"))
				} else {
					err = b.UseTOTPStep(ctx, "alice", int64(1000+i*1000+j))
					if err == ErrStepUsed {
						err = nil
					}
				}
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, errClosed):
					closed.Add(1)
				default:
					t.Errorf("op: %v", err)
					return
				}
			}
		})
	}
	time.Sleep(5 * time.Millisecond)
	errs := race(4, b.Close)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	}
	if err := b.Close(); err != nil {
		t.Errorf("Close again: %v", err)
	}
	if _, err := b.Session(ctx, []byte("k")); !errors.Is(err, errClosed) {
		t.Errorf("Session after Close: err = %v", err)
	}
	if err := b.PutMeta(ctx, "m", nil); !errors.Is(err, errClosed) {
		t.Errorf("PutMeta after Close: err = %v", err)
	}
	t.Logf("%d ops succeeded, %d saw the store closed", ok.Load(), closed.Load())
}

func TestValueLogGCAndLogger(t *testing.T) {
	ctx := context.Background()
	var mu sync.Mutex
	levels := map[string]int{}
	logf := func(level, msg string) {
		mu.Lock()
		levels[level]++
		mu.Unlock()
		if msg == "" {
			t.Errorf("empty %s log line", level)
		}
	}
	b, err := OpenBadger(t.TempDir(), Options{NoSync: true, GCInterval: time.Millisecond, Logger: logf})
	if err != nil {
		t.Fatal(err)
	}
	// Values above badger's value threshold go to the value log; rewrite
	// them so the GC has garbage to look at.
	big := bytes.Repeat([]byte("v"), 2<<20)
	for range 3 {
		if err := b.PutMeta(ctx, "big", big); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(20 * time.Millisecond)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for level := range levels {
		switch level {
		case "debug", "info", "warning", "error":
		default:
			t.Errorf("unknown log level %q", level)
		}
	}
	if levels["info"] == 0 {
		t.Errorf("no info lines from badger: %v", levels)
	}
	if levels["error"] != 0 {
		t.Errorf("badger logged %d errors", levels["error"])
	}
}

func BenchmarkSessionGet(b *testing.B) {
	for _, tc := range []struct {
		name  string
		cache int
	}{{"cached", 0}, {"uncached", -1}} {
		b.Run(tc.name, func(b *testing.B) {
			s := openTestWith(b, Options{SessionCache: tc.cache})
			ctx := context.Background()
			sess := testSession("0123456789abcdef0123456789abcdef", "alice@example.com")
			sess.Next = "/dashboard"
			if err := s.PutSession(ctx, sess); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Session(ctx, sess.Key); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestUpdateSessionNeverResurrects(t *testing.T) {
	ctx := context.Background()
	b := openTest(t)
	s := testSession("k1", "alice")
	if err := b.UpdateSession(ctx, s); err != ErrNotFound {
		t.Fatalf("update of a missing session: err = %v, want ErrNotFound", err)
	}
	if err := b.PutSession(ctx, s); err != nil {
		t.Fatal(err)
	}
	s.Seen = s.Seen.Add(time.Minute)
	if err := b.UpdateSession(ctx, s); err != nil {
		t.Fatalf("update of a live session: %v", err)
	}
	if got, err := b.Session(ctx, []byte("k1")); err != nil || !got.Seen.Equal(s.Seen) {
		t.Fatalf("after update: got %+v %v, want Seen %v", got, err, s.Seen)
	}
	other := s
	other.User = "mallory"
	if err := b.UpdateSession(ctx, other); err != ErrNotFound {
		t.Errorf("update moving a session to another user: err = %v, want ErrNotFound", err)
	}
	if err := b.DeleteSession(ctx, []byte("k1")); err != nil {
		t.Fatal(err)
	}
	if err := b.UpdateSession(ctx, s); err != ErrNotFound {
		t.Errorf("update after delete: err = %v, want ErrNotFound", err)
	}
	if _, err := b.Session(ctx, []byte("k1")); err != ErrNotFound {
		t.Errorf("a deleted session came back: err = %v", err)
	}

	// Racing updates against a delete: once the delete has returned, the
	// session stays gone.
	for i := range 20 {
		key := []byte(fmt.Sprintf("race%d", i))
		r := testSession(string(key), "alice")
		if err := b.PutSession(ctx, r); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = b.UpdateSession(ctx, r)
			}()
		}
		if err := b.DeleteSession(ctx, key); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		if _, err := b.Session(ctx, key); err != ErrNotFound {
			t.Fatalf("round %d: a session updated while being deleted came back: err = %v", i, err)
		}
	}
}

// TestCompactAfterBulkLoad loads enrolments until badger has spread them
// over several levels of its tree (large, incompressible backup-code hashes
// make that quick), then checks that Compact leaves them on one, every
// record still readable.
func TestCompactAfterBulkLoad(t *testing.T) {
	b := openTest(t)
	ctx := context.Background()
	rnd := rand.NewChaCha8([32]byte{1})
	levels := func() map[int]int {
		m := map[int]int{}
		for _, ti := range b.db.Tables() {
			m[ti.Level]++
		}
		return m
	}
	n := 0
	for batch := 0; len(levels()) < 2; batch++ {
		if batch == 100 {
			t.Fatalf("after loading %d enrolments the tables are on levels %v; the test needs at least two", n, levels())
		}
		for range 1000 {
			codes := make([][]byte, 10)
			for i := range codes {
				codes[i] = make([]byte, 1024)
				_, _ = rnd.Read(codes[i])
			}
			if err := b.EnableTOTP(ctx, fmt.Sprintf("user%06d", n), testTOTP(), codes); err != nil {
				t.Fatal(err)
			}
			n++
		}
	}
	before := levels()
	if err := b.Compact(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d enrolments: tables on levels %v, then %v", n, before, levels())
	if after := levels(); len(after) != 1 {
		t.Errorf("after Compact the tables are on levels %v, want one level", after)
	}
	for _, i := range []int{0, n / 2, n - 1} {
		if a, err := b.Account(ctx, fmt.Sprintf("user%06d", i)); err != nil || !a.Enabled() || len(a.BackupCodes) != 10 {
			t.Errorf("user%06d after Compact: %v, enabled %v, %d codes", i, err, a.Enabled(), len(a.BackupCodes))
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Compact(); err == nil {
		t.Error("Compact on a closed store: no error")
	}
}

// setBeforeCommit sets (nil: clears) the hook run in every read-write
// transaction before it commits.
func setBeforeCommit(f func(*Badger)) {
	if f == nil {
		testHookBeforeCommit.Store(nil)
		return
	}
	testHookBeforeCommit.Store(&f)
}

// setSessionRead sets (nil: clears) the hook run in Session after a
// record is read from disk.
func setSessionRead(f func()) {
	if f == nil {
		testHookSessionRead.Store(nil)
		return
	}
	testHookSessionRead.Store(&f)
}
