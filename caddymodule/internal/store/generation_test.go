package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// manySessions is more sessions of one user than one badger transaction
// can delete (it failed between 6,000 and 8,000).
const manySessions = 20_000

// putMany writes n sessions of user with PutSession, keys prefix-00000 on,
// each created a millisecond after the one before.
func putMany(t *testing.T, b *Badger, user, prefix string, n int) {
	t.Helper()
	ctx := context.Background()
	base := time.Now().Add(-time.Hour)
	for i := range n {
		s := testSession(fmt.Sprintf("%s-%05d", prefix, i), user)
		s.Created = base.Add(time.Duration(i) * time.Millisecond)
		if err := b.PutSession(ctx, s); err != nil {
			t.Fatalf("PutSession %d: %v", i, err)
		}
	}
}

// samples are the keys of every 997th session of putMany, and the last.
func samples(prefix string, n int) []string {
	var out []string
	for i := 0; i < n; i += 997 {
		out = append(out, fmt.Sprintf("%s-%05d", prefix, i))
	}
	return append(out, fmt.Sprintf("%s-%05d", prefix, n-1))
}

// userRecords counts the user's index entries and session records on
// disk, live or not.
func userRecords(t *testing.T, b *Badger, user string) (index, records int) {
	t.Helper()
	err := b.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: indexPrefix(user)})
		for it.Rewind(); it.Valid(); it.Next() {
			index++
		}
		it.Close()
		it = txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefixSession), PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			err := it.Item().Value(func(v []byte) error {
				if s, err := decodeSession(v); err == nil && s.User == user {
					records++
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return index, records
}

// waitSwept waits (bounded) until the user has at most want index entries
// and session records left, and fails if the sweeper does not get there.
func waitSwept(t *testing.T, b *Badger, user string, want int) {
	t.Helper()
	start := time.Now()
	var index, records int
	for range 600 {
		index, records = userRecords(t, b, user)
		if index <= want && records <= want {
			t.Logf("sweeper: %d index entries and %d records left after %v", index, records, time.Since(start).Round(time.Millisecond))
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("sweeper: %d index entries and %d records of %s left after %v, want at most %d", index, records, user, time.Since(start).Round(time.Millisecond), want)
}

// TestEndManySessions: every way of ending all of a user's sessions
// succeeds with 20,000 of them, ends every one at once (also those in the
// cache), keeps the session asked for, and the sweeper then deletes the
// records in bounded transactions.
func TestEndManySessions(t *testing.T) {
	ctx := context.Background()
	const user = "mallory"
	for _, tc := range []struct {
		name  string
		setup func(b *Badger)
		keep  bool
		end   func(b *Badger, keep []byte) error
	}{
		{name: "DeleteUserSessions", end: func(b *Badger, _ []byte) error {
			n, err := b.DeleteUserSessions(ctx, user, nil)
			if err == nil && n != manySessions {
				t.Errorf("DeleteUserSessions: ended %d, want %d", n, manySessions)
			}
			return err
		}},
		{name: "EnableTOTP", end: func(b *Badger, _ []byte) error {
			return b.EnableTOTP(ctx, user, testTOTP(), testCodes(2))
		}},
		{name: "DisableTOTP", keep: true,
			setup: func(b *Badger) { enable(t, b, user, testCodes(2)) },
			end:   func(b *Badger, keep []byte) error { return b.DisableTOTP(ctx, user, keep) }},
		{name: "SetPassword", keep: true,
			setup: func(b *Badger) { addUser(t, b, user) },
			end: func(b *Badger, keep []byte) error {
				n, err := b.SetPassword(ctx, user, "$2a$new", time.Now(), keep)
				if err == nil && n != manySessions-1 {
					t.Errorf("SetPassword: ended %d, want %d", n, manySessions-1)
				}
				return err
			}},
		{name: "DeleteUser",
			setup: func(b *Badger) { addUser(t, b, user) },
			end: func(b *Badger, _ []byte) error {
				n, err := b.DeleteUser(ctx, user)
				if err == nil && n != manySessions {
					t.Errorf("DeleteUser: ended %d, want %d", n, manySessions)
				}
				return err
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := openTestWith(t, Options{MaxSessionsPerUser: -1})
			if tc.setup != nil {
				tc.setup(b)
			}
			putMany(t, b, user, "s", manySessions)
			putSessions(t, b, "bob", "bob-1")
			keys := samples("s", manySessions)
			var keep []byte
			if tc.keep {
				keep = []byte(keys[len(keys)/2])
			}
			for _, k := range keys { // warm the cache
				if !sessionExists(t, b, k) {
					t.Fatalf("session %s missing before", k)
				}
			}
			b.SetMaxSessionsPerUser(1_000_000) // the puts from here on scan the user's index
			start := time.Now()
			if err := tc.end(b, keep); err != nil {
				t.Fatalf("%s with %d sessions: %v", tc.name, manySessions, err)
			}
			t.Logf("%s with %d sessions took %v", tc.name, manySessions, time.Since(start).Round(time.Microsecond))
			// A login right after, while the sweeper deletes the old
			// sessions, gets a session (it conflicted with every batch
			// when its transaction read the index).
			putSessions(t, b, user, "new-1")
			if !sessionExists(t, b, "new-1") {
				t.Error("a session put right after is refused")
			}
			for _, k := range keys {
				if got := sessionExists(t, b, k); got != (k == string(keep)) {
					t.Errorf("session %s: exists = %v after %s, want %v", k, got, tc.name, !got)
				}
			}
			if !sessionExists(t, b, "bob-1") {
				t.Error("another user's session ended")
			}
			list, err := b.UserSessions(ctx, user)
			if err != nil {
				t.Fatal(err)
			}
			want := 1 // new-1
			if keep != nil {
				want = 2
			}
			if len(list) != want {
				t.Errorf("UserSessions after %s: %d, want %d", tc.name, len(list), want)
			}
			waitSwept(t, b, user, want)
			if keep != nil && !sessionExists(t, b, string(keep)) {
				t.Error("the kept session was swept")
			}
			if _, records := userRecords(t, b, "bob"); records != 1 {
				t.Errorf("bob's sessions after the sweep: %d, want 1", records)
			}
		})
	}
}

// TestGenerationCheckedOnCacheHit: a session served from the cache is
// refused as soon as its user's generation moves on in memory, which a
// change does before it commits, without relying on the cache's
// invalidation.
func TestGenerationCheckedOnCacheHit(t *testing.T) {
	b := openTest(t)
	putSessions(t, b, "alice", "a1")
	if !sessionExists(t, b, "a1") || b.sessions.len() != 1 {
		t.Fatal("session not cached")
	}
	b.gens.raise("alice", 1)
	for _, rd := range readers {
		if _, err := rd.read(b, []byte("a1")); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: a cached session of an old generation was served (%v)", rd.name, err)
		}
	}

	// During the commit of a revocation the old session is refused
	// already, from the cache and from disk.
	putSessions(t, b, "carol", "c1", "c2")
	if !sessionExists(t, b, "c1") {
		t.Fatal("c1 missing")
	}
	// The sweeper may commit too: its commits run the hook as well.
	var mu sync.Mutex
	var inCommit []bool
	setBeforeCommit(func(*Badger) {
		if _, ok := b.gens.get("carol"); ok {
			_, err1 := b.Session(context.Background(), []byte("c1"))
			_, err2 := b.Session(context.Background(), []byte("c2"))
			mu.Lock()
			inCommit = append(inCommit, errors.Is(err1, ErrNotFound), errors.Is(err2, ErrNotFound))
			mu.Unlock()
		}
	})
	t.Cleanup(func() { setBeforeCommit(nil) })
	if _, err := b.DeleteUserSessions(context.Background(), "carol", nil); err != nil {
		t.Fatal(err)
	}
	setBeforeCommit(nil)
	mu.Lock()
	defer mu.Unlock()
	// One pair per commit while carol's generation was raised: the
	// revocation's, and any of the sweeper's meanwhile.
	if len(inCommit) < 2 || slices.Contains(inCommit, false) {
		t.Errorf("before the commit of the revocation: refused = %v, want [true true] (a pair per commit)", inCommit)
	}
}

// TestGenerationCellDropped: a cached session keeps its user's generation
// cell; once the table of generations has dropped that cell to stay
// within its bound, a hit asks the table again, so the user's next
// revocation (in a new cell) still ends the session.
func TestGenerationCellDropped(t *testing.T) {
	b := openTest(t)
	putSessions(t, b, "alice", "a1")
	if _, err := b.SessionAdmission(context.Background(), []byte("a1"), b.now()); err != nil {
		t.Fatal(err)
	}
	e, ok, _ := b.sessions.get([]byte("a1"))
	if !ok || e.gen == nil || e.gen != b.gens.cell("alice") {
		t.Fatalf("not cached with alice's generation cell: %+v %v", e, ok)
	}
	for i := 0; b.gens.cell("alice") == e.gen; i++ {
		if i > 20*maxGenEntries {
			t.Fatal("alice's generation never left the table")
		}
		b.gens.raise(fmt.Sprintf("user-%d", i), 0)
	}
	if !e.gen.gone.Load() {
		t.Fatal("the dropped cell is not marked gone")
	}
	b.gens.raise("alice", 1) // a revocation, in a new cell
	for _, rd := range readers {
		if _, err := rd.read(b, []byte("a1")); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: served through a dropped generation cell after a revocation (%v)", rd.name, err)
		}
	}
}

// TestEndedSessionsStayEnded: no touch, update, restart or re-added user
// brings a session of an old generation back.
func TestEndedSessionsStayEnded(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	b, err := OpenBadger(dir, Options{NoSync: true, GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	addUser(t, b, "dave")
	putSessions(t, b, "dave", "d1", "d2")
	s, err := b.Session(ctx, []byte("d1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.DeleteUserSessions(ctx, "dave", nil); err != nil {
		t.Fatal(err)
	}
	if err := b.TouchSession(ctx, s.Key, time.Now().Add(time.Second), s.Expires.Add(time.Minute)); !errors.Is(err, ErrNotFound) {
		t.Errorf("TouchSession of an ended session: %v, want ErrNotFound", err)
	}
	s.Next = "/changed"
	if err := b.UpdateSession(ctx, s); !errors.Is(err, ErrNotFound) {
		t.Errorf("UpdateSession of an ended session: %v, want ErrNotFound", err)
	}
	if sessionExists(t, b, "d1") {
		t.Error("an ended session came back")
	}
	// A new session after the revocation lives.
	putSessions(t, b, "dave", "d3")
	if !sessionExists(t, b, "d3") {
		t.Error("a session put after the revocation is refused")
	}
	if _, err := b.DeleteUser(ctx, "dave"); err != nil {
		t.Fatal(err)
	}
	addUser(t, b, "dave")
	if sessionExists(t, b, "d3") || sessionExists(t, b, "d2") {
		t.Error("a session of a deleted user came back when the name was added again")
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b, err = OpenBadger(dir, Options{NoSync: true, GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, k := range []string{"d1", "d2", "d3"} {
		if sessionExists(t, b, k) {
			t.Errorf("ended session %s came back after a restart", k)
		}
	}
	putSessions(t, b, "dave", "d4")
	if !sessionExists(t, b, "d4") {
		t.Error("a new session after the restart is refused")
	}
}

// TestSessionCap: with a cap of N, putting N+5 sessions leaves the newest
// N; the oldest end at once, also from the cache.
func TestSessionCap(t *testing.T) {
	ctx := context.Background()
	const capN = 10
	b := openTestWith(t, Options{MaxSessionsPerUser: capN})
	base := time.Now().Add(-time.Hour)
	key := func(i int) string { return fmt.Sprintf("c-%02d", i) }
	// Created runs against key order, so that the cap goes by time.
	for i := range capN + 5 {
		s := testSession(key(i), "erin")
		s.Created = base.Add(time.Duration(i) * time.Second)
		s.Key = []byte(fmt.Sprintf("c-%02d", 99-i))
		if err := b.PutSession(ctx, s); err != nil {
			t.Fatal(err)
		}
		if !sessionExists(t, b, string(s.Key)) { // cached
			t.Fatalf("session %d missing right after its put", i)
		}
	}
	for i := range capN + 5 {
		k := fmt.Sprintf("c-%02d", 99-i)
		if got, want := sessionExists(t, b, k), i >= 5; got != want {
			t.Errorf("session %d (created %d s after the first): exists = %v, want %v", i, i, got, want)
		}
	}
	list, err := b.UserSessions(ctx, "erin")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != capN {
		t.Errorf("UserSessions: %d, want %d", len(list), capN)
	}
	// Replacing a session does not count it twice; another user is not
	// counted.
	s := list[0]
	s.Expires = s.Expires.Add(time.Minute)
	if err := b.PutSession(ctx, s); err != nil {
		t.Fatal(err)
	}
	putSessions(t, b, "frank", "f1")
	if list, _ := b.UserSessions(ctx, "erin"); len(list) != capN {
		t.Errorf("after replacing one: %d sessions, want %d", len(list), capN)
	}
	// The default applies when the option is zero.
	if got := openTest(t).maxSessions.Load(); got != DefaultMaxSessionsPerUser {
		t.Errorf("default cap: %d, want %d", got, DefaultMaxSessionsPerUser)
	}
}

// TestUpgradeOldSessionRecords: a session as the code before generations
// wrote it (version 2 record, empty index value) is of generation 0: it
// stays valid for a user with no generation record, and ends, and is
// swept, like the others.
func TestUpgradeOldSessionRecords(t *testing.T) {
	ctx := context.Background()
	b := openTest(t)
	old := testSession("old-1", "gina")
	old.Origin, old.Name = OriginStore, "Gina"
	err := b.db.Update(func(txn *badger.Txn) error {
		if err := txn.SetEntry(sessionEntry(sessionKey(old.Key), encodeV2(&old), old.Expires)); err != nil {
			return err
		}
		return txn.SetEntry(sessionEntry(indexKey(old.User, old.Key), nil, old.Expires))
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := b.Session(ctx, old.Key)
	if err != nil || got.Gen != 0 || got.Name != "Gina" {
		t.Fatalf("old record: got %+v, %v; want a live session of generation 0", got, err)
	}
	if list, err := b.UserSessions(ctx, "gina"); err != nil || len(list) != 1 {
		t.Errorf("UserSessions: %d, %v; want 1", len(list), err)
	}
	if err := b.TouchSession(ctx, old.Key, time.Now(), old.Expires.Add(time.Minute)); err != nil {
		t.Errorf("TouchSession of an old record: %v", err)
	}
	// Counted by the cap like a new one.
	b.SetMaxSessionsPerUser(1)
	putSessions(t, b, "gina", "new-1")
	if sessionExists(t, b, "old-1") {
		t.Error("the cap did not end the older, old-format session")
	}
	b.SetMaxSessionsPerUser(0)

	// Another one, ended by a revocation and swept.
	err = b.db.Update(func(txn *badger.Txn) error {
		old.Key = []byte("old-2")
		if err := txn.SetEntry(sessionEntry(sessionKey(old.Key), encodeV2(&old), old.Expires)); err != nil {
			return err
		}
		return txn.SetEntry(sessionEntry(indexKey(old.User, old.Key), nil, old.Expires))
	})
	if err != nil {
		t.Fatal(err)
	}
	if !sessionExists(t, b, "old-2") {
		t.Fatal("old-2 missing")
	}
	n, err := b.DeleteUserSessions(ctx, "gina", nil)
	if err != nil || n != 2 {
		t.Errorf("DeleteUserSessions: %d, %v; want 2", n, err)
	}
	if sessionExists(t, b, "old-2") || sessionExists(t, b, "new-1") {
		t.Error("a session survived the revocation")
	}
	waitSwept(t, b, "gina", 0)
}

// TestFailedChangeRestoresGeneration: a change that moved the generation
// in memory and then failed to commit puts back the generation on disk, so
// that the user's sessions, which the failed change did not end, go on,
// and new ones are not refused.
func TestFailedChangeRestoresGeneration(t *testing.T) {
	ctx := context.Background()
	b := openTest(t)
	enable(t, b, "hana", testCodes(1))
	putSessions(t, b, "hana", "h1")
	if !sessionExists(t, b, "h1") {
		t.Fatal("h1 missing")
	}
	before, _ := b.gens.get("hana")
	// Every attempt of the change conflicts with a write of the account it
	// read, until the store gives up.
	var raisedInCommit bool
	setBeforeCommit(func(*Badger) {
		if g, _ := b.gens.get("hana"); g > before {
			raisedInCommit = true
		}
		_ = b.db.Update(func(txn *badger.Txn) error {
			a, err := getAccount(txn, "hana")
			if err != nil {
				return err
			}
			return putAccount(txn, &a)
		})
	})
	err := b.DisableTOTP(ctx, "hana", nil)
	setBeforeCommit(nil)
	if !errors.Is(err, badger.ErrConflict) {
		t.Fatalf("DisableTOTP: got %v, want a conflict", err)
	}
	if !raisedInCommit {
		t.Error("the generation was not moved before the commit")
	}
	if g, _ := b.gens.get("hana"); g != before {
		t.Errorf("generation in memory after the failed change: %d, want %d", g, before)
	}
	if !sessionExists(t, b, "h1") {
		t.Error("a session the failed change did not end is refused")
	}
	putSessions(t, b, "hana", "h2")
	if !sessionExists(t, b, "h2") {
		t.Error("a new session after the failed change is refused")
	}
}
