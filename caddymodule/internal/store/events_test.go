package store

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// addEvents adds n events of the user, one a minute from start.
func addEvents(t *testing.T, s Store, user string, start time.Time, n int, kind string) {
	t.Helper()
	for i := range n {
		if err := s.AddEvent(context.Background(), user, Event{Time: start.Add(time.Duration(i) * time.Minute), Kind: kind, Count: i}); err != nil {
			t.Fatal(err)
		}
	}
}

func events(t *testing.T, s Store, user string, limit int) []Event {
	t.Helper()
	ev, err := s.Events(context.Background(), user, limit)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// TestEventsNewestFirstAndBounded: events come back newest first, at most
// the limit asked for, and the store keeps at most MaxEventsPerUser per
// user, dropping the oldest.
func TestEventsNewestFirstAndBounded(t *testing.T) {
	b, clk := openTestClock(t, Options{})
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clk.set(start.Add(10 * 24 * time.Hour))
	addEvents(t, b, "alice", start, MaxEventsPerUser+20, EventLogin)
	all := events(t, b, "alice", 0)
	if len(all) != MaxEventsPerUser {
		t.Fatalf("got %d events, want the cap %d", len(all), MaxEventsPerUser)
	}
	for i, e := range all {
		if want := MaxEventsPerUser + 20 - 1 - i; e.Count != want {
			t.Fatalf("event %d: got number %d, want %d (newest first, the oldest 20 dropped)", i, e.Count, want)
		}
	}
	if got := events(t, b, "alice", 5); len(got) != 5 || got[0].Count != MaxEventsPerUser+19 {
		t.Errorf("limit 5: got %d events, first %+v", len(got), got)
	}
	// The records themselves are gone, not just hidden.
	n := 0
	err := b.view(context.Background(), func(txn *badgerTxn) error {
		it := txn.NewIterator(iteratorPrefix(eventPrefix("alice")))
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
		}
		return nil
	})
	if err != nil || n != MaxEventsPerUser {
		t.Errorf("records kept: %d (%v), want %d", n, err, MaxEventsPerUser)
	}
}

// TestEventsPruned: events older than EventRetention are never shown, and
// the next event of the user drops them.
func TestEventsPruned(t *testing.T) {
	b, clk := openTestClock(t, Options{})
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clk.set(start)
	addEvents(t, b, "alice", start, 3, EventCodeFailed)
	clk.set(start.Add(EventRetention - time.Hour))
	if got := events(t, b, "alice", 0); len(got) != 3 {
		t.Fatalf("within 30 days: got %d events, want 3", len(got))
	}
	clk.set(start.Add(EventRetention + 90*time.Second)) // the first two are older than 30 days
	if got := events(t, b, "alice", 0); len(got) != 1 || got[0].Count != 2 {
		t.Fatalf("after 30 days: got %+v, want only the newest", got)
	}
	addEvents(t, b, "alice", clk.now(), 1, EventLogin)
	n := 0
	_ = b.view(context.Background(), func(txn *badgerTxn) error {
		it := txn.NewIterator(iteratorPrefix(eventPrefix("alice")))
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
		}
		return nil
	})
	if n != 2 {
		t.Errorf("after a new event: %d records, want 2 (the old ones dropped)", n)
	}
	clk.set(start.Add(3 * EventRetention))
	if got := events(t, b, "alice", 0); len(got) != 0 {
		t.Errorf("long after: got %d events, want none", len(got))
	}
}

// TestEventsPerUserAndRealm: a user sees only their own events: not those
// of a user whose name starts with theirs, nor of the same name in another
// realm.
func TestEventsPerUserAndRealm(t *testing.T) {
	b := openTest(t)
	now := time.Now()
	def, err := InRealm(b, "")
	if err != nil {
		t.Fatal(err)
	}
	other, err := InRealm(b, "other")
	if err != nil {
		t.Fatal(err)
	}
	addEvents(t, def, "al", now, 1, EventLogin)
	addEvents(t, def, "alice", now, 2, EventEnabled)
	addEvents(t, other, "alice", now, 3, EventDisabled)
	for _, tc := range []struct {
		s    Store
		user string
		n    int
		kind string
	}{
		{def, "al", 1, EventLogin}, {def, "alice", 2, EventEnabled}, {other, "alice", 3, EventDisabled},
		{other, "al", 0, ""}, {def, "bob", 0, ""},
	} {
		got := events(t, tc.s, tc.user, 0)
		if len(got) != tc.n {
			t.Errorf("%s: got %d events, want %d", tc.user, len(got), tc.n)
		}
		for _, e := range got {
			if e.Kind != tc.kind {
				t.Errorf("%s: got an event of kind %s, want only %s", tc.user, e.Kind, tc.kind)
			}
		}
	}
	// The bound is per user: another user's events do not push alice's out.
	addEvents(t, def, "bob", now, MaxEventsPerUser+1, EventLogin)
	if got := events(t, def, "alice", 0); len(got) != 2 {
		t.Errorf("alice after bob's flood: %d events, want 2", len(got))
	}
}

// TestEventsGoWithTheUser: deleting a store user deletes their activity,
// so a user added again under the name starts with none; a backup holds no
// events.
func TestEventsGoWithTheUser(t *testing.T) {
	b := openTest(t)
	ctx := context.Background()
	now := time.Now()
	u := User{Name: "dave", Display: "Dave", PasswordHash: "$2a$04$x", Created: now, PasswordChanged: now}
	if err := b.AddUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	addEvents(t, b, "dave", now, 3, EventPassword)
	addEvents(t, b, "erin", now, 1, EventLogin)
	var backup bytes.Buffer
	if err := b.Backup(ctx, &backup); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(backup.Bytes(), []byte(prefixEvent+"\x04dave")) || bytes.Contains(backup.Bytes(), []byte(prefixEvent+"\x04erin")) {
		t.Error("the backup holds events")
	}
	if _, err := b.DeleteUser(ctx, "dave"); err != nil {
		t.Fatal(err)
	}
	if err := b.AddUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	if got := events(t, b, "dave", 0); len(got) != 0 {
		t.Errorf("the new dave sees %d events of the old one", len(got))
	}
	if got := events(t, b, "erin", 0); len(got) != 1 {
		t.Errorf("erin's events went with dave: %d left", len(got))
	}
}

// TestAddEventRefusesBadInput: no user, no kind or no time is an error;
// long fields are cut to size.
func TestAddEventRefusesBadInput(t *testing.T) {
	b := openTest(t)
	ctx := context.Background()
	now := time.Now()
	for name, tc := range map[string]struct {
		user string
		e    Event
	}{
		"no user":   {"", Event{Time: now, Kind: EventLogin}},
		"no kind":   {"alice", Event{Time: now}},
		"long kind": {"alice", Event{Time: now, Kind: strings.Repeat("k", 33)}},
		"no time":   {"alice", Event{Kind: EventLogin}},
	} {
		if err := b.AddEvent(ctx, tc.user, tc.e); err == nil {
			t.Errorf("%s: accepted", name)
		} else {
			var se *Error
			if !errors.As(err, &se) {
				t.Errorf("%s: got %v, want a *store.Error", name, err)
			}
		}
	}
	long := strings.Repeat("x", 10_000)
	if err := b.AddEvent(ctx, "alice", Event{Time: now, Kind: EventLogin, Addr: long, Agent: long}); err != nil {
		t.Fatal(err)
	}
	got := events(t, b, "alice", 0)
	if len(got) != 1 || len(got[0].Addr) != maxEventField || len(got[0].Agent) != maxEventField {
		t.Errorf("long fields: got %+v, want them cut to %d bytes", got, maxEventField)
	}
	if _, err := b.Events(ctx, "", 0); err == nil {
		t.Error("Events of no user: no error")
	}
}

type badgerTxn = badger.Txn

func iteratorPrefix(p []byte) badger.IteratorOptions { return badger.IteratorOptions{Prefix: p} }
