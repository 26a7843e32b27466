package store

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// overwriteRaw writes a session record behind the store's back, as no code
// path may; a read that still sees the old record was served by the cache.
func overwriteRaw(t *testing.T, b *Badger, s Session) {
	t.Helper()
	err := b.db.Update(func(txn *badger.Txn) error {
		return txn.SetEntry(sessionEntry(sessionKey(s.Key), encodeSession(nil, &s), s.Expires))
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestSessionCacheServesRepeatedReads(t *testing.T) {
	ctx := context.Background()
	b := openTest(t)
	s := testSession("k", "alice")
	s.Next = "/first"
	putSessions(t, b, "alice")
	if err := b.PutSession(ctx, s); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Session(ctx, s.Key); err != nil {
		t.Fatal(err)
	}
	if n := b.sessions.len(); n != 1 {
		t.Fatalf("cached sessions: got %d, want 1", n)
	}
	changed := s
	changed.Next = "/behind-the-back"
	overwriteRaw(t, b, changed)
	got, err := b.Session(ctx, s.Key)
	if err != nil || got.Next != "/first" {
		t.Errorf("second read: got %q %v, want the cached /first", got.Next, err)
	}

	off := openTestWith(t, Options{SessionCache: -1})
	if err := off.PutSession(ctx, s); err != nil {
		t.Fatal(err)
	}
	if _, err := off.Session(ctx, s.Key); err != nil {
		t.Fatal(err)
	}
	overwriteRaw(t, off, changed)
	if got, err := off.Session(ctx, s.Key); err != nil || got.Next != "/behind-the-back" {
		t.Errorf("cache off: got %q %v, want /behind-the-back", got.Next, err)
	}
}

// TestSessionCacheInvalidation checks that every way of changing or ending
// a session is seen by the next read, cache or not.
func TestSessionCacheInvalidation(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		// change ends or changes session "k" of alice; gone says which.
		change func(b *Badger) error
		gone   bool
	}{
		{"DeleteSession", func(b *Badger) error { return b.DeleteSession(ctx, []byte("k")) }, true},
		{"DeleteUserSessions", func(b *Badger) error {
			_, err := b.DeleteUserSessions(ctx, "alice", []byte("other"))
			return err
		}, true},
		{"DisableTOTP", func(b *Badger) error { return b.DisableTOTP(ctx, "alice", []byte("other")) }, true},
		{"PutSession", func(b *Badger) error {
			s := testSession("k", "alice")
			s.Next = "/changed"
			return b.PutSession(ctx, s)
		}, false},
		{"PutSession to another user", func(b *Badger) error { return b.PutSession(ctx, testSession("k", "bob")) }, false},
		{"TouchSession", func(b *Badger) error {
			s := testSession("k", "alice")
			return b.TouchSession(ctx, s.Key, s.Seen.Add(time.Minute), s.Expires.Add(time.Minute))
		}, false},
		{"any other update", func(b *Badger) error {
			return b.update(ctx, func(txn *badger.Txn) error { return txn.Delete(sessionKey([]byte("k"))) })
		}, true},
	} {
		for _, rd := range readers {
			t.Run(tc.name+"/"+rd.name, func(t *testing.T) {
				b := openTest(t)
				enable(t, b, "alice", nil)
				putSessions(t, b, "alice", "k", "other")
				if _, err := rd.read(b, []byte("k")); err != nil {
					t.Fatal(err)
				}
				if err := tc.change(b); err != nil {
					t.Fatal(err)
				}
				after, err := rd.read(b, []byte("k"))
				// What the disk holds now, read past the cache.
				b.sessions.clear()
				want, wantErr := rd.read(b, []byte("k"))
				switch {
				case tc.gone && (!errors.Is(err, ErrNotFound) || !errors.Is(wantErr, ErrNotFound)):
					t.Errorf("after %s: got %+v %v, want ErrNotFound", tc.name, after, err)
				case !tc.gone && (err != nil || wantErr != nil):
					t.Errorf("after %s: %v, %v", tc.name, err, wantErr)
				case !tc.gone && !reflect.DeepEqual(after, want):
					t.Errorf("after %s: got %+v, want what the disk holds, %+v", tc.name, after, want)
				}
				if !sessionExists(t, b, "other") {
					t.Errorf("%s ended the session it was told to keep", tc.name)
				}
			})
		}
	}
}

// readers are the two reads of a session: the whole record, and the
// proxied path's admission.
var readers = []struct {
	name string
	read func(b *Badger, key []byte) (Session, error)
}{
	{"Session", func(b *Badger, key []byte) (Session, error) { return b.Session(context.Background(), key) }},
	{"SessionAdmission", func(b *Badger, key []byte) (Session, error) {
		a, err := b.SessionAdmission(context.Background(), key, b.now())
		if err != nil {
			return Session{}, err
		}
		return admitted(a), nil
	}},
}

// TestSessionCacheAccountWritesKeepIt checks that account-only writes
// leave cached sessions alone (they are what logins do all the time).
func TestSessionCacheAccountWritesKeepIt(t *testing.T) {
	ctx := context.Background()
	b := openTest(t)
	enable(t, b, "alice", [][]byte{[]byte("h1"), []byte("h2")})
	putSessions(t, b, "alice", "k")
	if _, err := b.Session(ctx, []byte("k")); err != nil {
		t.Fatal(err)
	}
	if err := b.UseTOTPStep(ctx, "alice", 1000); err != nil {
		t.Fatal(err)
	}
	if _, err := b.UseBackupCode(ctx, "alice", []byte("h1")); err != nil {
		t.Fatal(err)
	}
	if err := b.ReplaceBackupCodes(ctx, "alice", [][]byte{[]byte("h3")}); err != nil {
		t.Fatal(err)
	}
	if err := b.PutMeta(ctx, "x", []byte("y")); err != nil {
		t.Fatal(err)
	}
	if n := b.sessions.len(); n != 1 {
		t.Errorf("cached sessions after account writes: got %d, want 1", n)
	}
}

// TestSessionCacheNoResurrection: a read that fetched a record from disk
// just before the record was deleted must not put it in the cache after
// the delete returned.
func TestSessionCacheNoResurrection(t *testing.T) {
	ctx := context.Background()
	b := openTest(t)
	putSessions(t, b, "alice", "k")
	read, deleted := make(chan struct{}), make(chan struct{})
	setSessionRead(func() {
		close(read)
		<-deleted
	})
	t.Cleanup(func() { setSessionRead(nil) })
	var wg sync.WaitGroup
	wg.Go(func() {
		if _, err := b.Session(ctx, []byte("k")); err != nil {
			t.Errorf("the racing read: %v", err)
		}
	})
	<-read
	setSessionRead(nil)
	if err := b.DeleteSession(ctx, []byte("k")); err != nil {
		t.Fatal(err)
	}
	close(deleted)
	wg.Wait()
	if sessionExists(t, b, "k") {
		t.Error("a deleted session came back from the cache")
	}
}

// TestSessionCacheConcurrentLogout hammers reads of sessions while they
// are deleted: once DeleteSession has returned, no read may find it.
func TestSessionCacheConcurrentLogout(t *testing.T) {
	ctx := context.Background()
	b := openTest(t)
	const n = 200
	for i := range n {
		putSessions(t, b, "alice", fmt.Sprint("k", i))
	}
	for i := range n {
		key := []byte(fmt.Sprint("k", i))
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for range 4 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					_, _ = b.Session(ctx, key)
				}
			})
		}
		if err := b.DeleteSession(ctx, key); err != nil {
			t.Fatal(err)
		}
		_, err := b.Session(ctx, key)
		close(stop)
		wg.Wait()
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("session %s read after its delete returned: got %v, want ErrNotFound", key, err)
		}
		if _, err := b.Session(ctx, key); !errors.Is(err, ErrNotFound) {
			t.Fatalf("session %s read after the readers stopped: got %v, want ErrNotFound", key, err)
		}
	}
}

func TestSessionCacheExpiry(t *testing.T) {
	b, clk := openTestClock(t, Options{})
	s := testSession("k", "alice")
	putSessions(t, b, "alice", "k")
	if !sessionExists(t, b, "k") {
		t.Fatal("session missing")
	}
	clk.set(s.Expires)
	if sessionExists(t, b, "k") {
		t.Error("a cached session was found at its expiry time")
	}
	if n := b.sessions.len(); n != 0 {
		t.Errorf("cached sessions after expiry: got %d, want 0", n)
	}
}

func TestSessionCacheBounded(t *testing.T) {
	b := openTestWith(t, Options{SessionCache: 32, MaxSessionsPerUser: -1}) // 500 sessions of one user
	for i := range 500 {
		key := fmt.Sprint("k", i)
		putSessions(t, b, "alice", key)
		if !sessionExists(t, b, key) {
			t.Fatalf("session %s missing", key)
		}
	}
	if n := b.sessions.len(); n > 32 || n == 0 {
		t.Errorf("cached sessions: got %d, want 1 to 32", n)
	}
	for i := range 500 {
		if !sessionExists(t, b, fmt.Sprint("k", i)) {
			t.Fatalf("session k%d missing after eviction", i)
		}
	}
}

func TestSessionCacheCopies(t *testing.T) {
	ctx := context.Background()
	b := openTest(t)
	s := testSession("k", "alice")
	s.Pending = []byte("sealed-pending")
	s.PendingAt = time.Now()
	if err := b.PutSession(ctx, s); err != nil {
		t.Fatal(err)
	}
	for range 3 { // a miss, then hits: none may hand out the cache's memory
		key := []byte("k")
		got, err := b.Session(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if string(got.Pending) != "sealed-pending" || string(got.Key) != "k" {
			t.Fatalf("got Pending %q Key %q, want the stored ones", got.Pending, got.Key)
		}
		// The Key is the caller's own key (not a copy, not the cache's).
		if &got.Key[0] != &key[0] {
			t.Fatal("the record's Key is not the key passed in")
		}
		got.Pending[0], key[0] = 'X', 'X'
	}
}

func TestSessionCacheClosed(t *testing.T) {
	ctx := context.Background()
	b, err := OpenBadger(t.TempDir(), Options{NoSync: true, GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	putSessions(t, b, "alice", "k")
	if !sessionExists(t, b, "k") {
		t.Fatal("session missing")
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Session(ctx, []byte("k")); !errors.Is(err, errClosed) {
		t.Errorf("Session on a closed store: got %v, want errClosed", err)
	}
}

func TestTouchSession(t *testing.T) {
	ctx := context.Background()
	b, clk := openTestClock(t, Options{})
	s := testSession("k", "alice")
	s.Next, s.Pending, s.PendingAt = "/next", []byte("pending"), s.Seen
	if err := b.PutSession(ctx, s); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Session(ctx, s.Key); err != nil { // cached now
		t.Fatal(err)
	}
	seen, expires := s.Seen.Add(time.Minute), s.Expires.Add(time.Minute)
	if err := b.TouchSession(ctx, s.Key, seen, expires); err != nil {
		t.Fatal(err)
	}
	got, err := b.Session(ctx, s.Key)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Seen.Equal(seen) || !got.Expires.Equal(expires) {
		t.Errorf("after touch: got seen %v expires %v, want %v %v", got.Seen, got.Expires, seen, expires)
	}
	if got.User != s.User || got.Stage != s.Stage || got.Next != s.Next || string(got.Pending) != "pending" || !got.Created.Equal(s.Created) {
		t.Errorf("touch changed more than the times: got %+v, had %+v", got, s)
	}
	// An older refresh arriving late leaves the newer one.
	if err := b.TouchSession(ctx, s.Key, s.Seen, s.Expires); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.Session(ctx, s.Key); !got.Seen.Equal(seen) {
		t.Errorf("a late, older touch moved seen back to %v", got.Seen)
	}
	// The index entry moved with it: the session is still the user's.
	clk.set(s.Expires.Add(time.Second))
	if n, err := b.DeleteUserSessions(ctx, "alice", nil); err != nil || n != 1 {
		t.Errorf("DeleteUserSessions after the old expiry: got %d %v, want 1", n, err)
	}
}

func TestTouchSessionNeverCreates(t *testing.T) {
	ctx := context.Background()
	b, clk := openTestClock(t, Options{})
	s := testSession("k", "alice")
	if err := b.TouchSession(ctx, s.Key, s.Seen, s.Expires); !errors.Is(err, ErrNotFound) {
		t.Errorf("touch of a missing session: got %v, want ErrNotFound", err)
	}
	if sessionExists(t, b, "k") {
		t.Error("touch created a session")
	}
	putSessions(t, b, "alice", "k")
	if err := b.DeleteSession(ctx, s.Key); err != nil {
		t.Fatal(err)
	}
	if err := b.TouchSession(ctx, s.Key, s.Seen.Add(time.Minute), s.Expires); !errors.Is(err, ErrNotFound) {
		t.Errorf("touch of a deleted session: got %v, want ErrNotFound", err)
	}
	if sessionExists(t, b, "k") {
		t.Error("touch brought a deleted session back")
	}
	putSessions(t, b, "alice", "k")
	clk.set(s.Expires)
	if err := b.TouchSession(ctx, s.Key, s.Expires, s.Expires.Add(time.Hour)); !errors.Is(err, ErrNotFound) {
		t.Errorf("touch of an expired session: got %v, want ErrNotFound", err)
	}
}

// TestSessionCacheEnableEndsSessions checks that turning 2FA on, which ends
// the user's sessions in its transaction, does not leave one in the cache.
func TestSessionCacheEnableEndsSessions(t *testing.T) {
	ctx := context.Background()
	b := openTest(t)
	putSessions(t, b, "carol", "c1")
	if _, err := b.Session(ctx, []byte("c1")); err != nil {
		t.Fatal(err)
	}
	if err := b.EnableTOTP(ctx, "carol", testTOTP(), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Session(ctx, []byte("c1")); err != ErrNotFound {
		t.Errorf("session after enabling 2FA: got err %v, want ErrNotFound (served from a stale cache?)", err)
	}
}
