package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// filledStore has two store users (one enrolled), a configured user's
// enrolment, sessions and a meta value.
func filledStore(t *testing.T) *Badger {
	t.Helper()
	b := openTest(t)
	addUser(t, b, "carol")
	addUser(t, b, "dave")
	enable(t, b, "carol", testCodes(4))
	enable(t, b, "alice", testCodes(10))
	putSessions(t, b, "carol", "c1")
	putSessions(t, b, "alice", "a1")
	if err := b.PutMeta(context.Background(), "key-check", []byte("check-1")); err != nil {
		t.Fatal(err)
	}
	return b
}

func backupOf(t *testing.T, b *Badger) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := b.Backup(context.Background(), &buf); err != nil {
		t.Fatalf("Backup: %v", err)
	}
	return buf.Bytes()
}

func TestBackupRestoreRoundTrip(t *testing.T) {
	src := filledStore(t)
	data := backupOf(t, src)
	// A user deleted before the backup is not in it, even while badger
	// still keeps the deletion marker.
	addUser(t, src, "gone")
	if _, err := src.DeleteUser(context.Background(), "gone"); err != nil {
		t.Fatal(err)
	}
	data = backupOf(t, src)

	dst := openTest(t)
	putSessions(t, dst, "bob", "b1") // a session in the target ends
	var seen Snapshot
	snap, err := dst.Restore(context.Background(), bytes.NewReader(data), func(s Snapshot) error { seen = s; return nil })
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if snap.Users != 2 || snap.Accounts != 2 || string(snap.Meta["key-check"]) != "check-1" || snap.Sessions != 0 {
		t.Errorf("snapshot: got %+v, want 2 users, 2 enrolments, the key check, no sessions", snap)
	}
	if seen.Users != snap.Users || seen.Accounts != snap.Accounts {
		t.Errorf("accept saw %+v, Restore returned %+v", seen, snap)
	}
	ctx := context.Background()
	users, _ := dst.Users(ctx)
	if len(users) != 2 || users[0].Name != "carol" || users[1].Name != "dave" {
		t.Errorf("restored users: got %+v, want carol and dave", users)
	}
	for user, codes := range map[string]int{"carol": 4, "alice": 10} {
		a, err := dst.Account(ctx, user)
		if err != nil || !a.Enabled() || len(a.BackupCodes) != codes || a.TOTP.LastStep != testTOTP().LastStep {
			t.Errorf("restored enrolment of %s: got %+v, %v; want on with %d codes", user, a, err, codes)
		}
	}
	if v, err := dst.Meta(ctx, "key-check"); err != nil || string(v) != "check-1" {
		t.Errorf("restored meta: got %q, %v", v, err)
	}
	if sessionExists(t, dst, "c1") || sessionExists(t, dst, "a1") {
		t.Error("a session came back from a backup")
	}
	if sessionExists(t, dst, "b1") {
		t.Error("a session of the target store survived the restore")
	}
	if n, _ := dst.CountEnrolled(ctx); n != 2 {
		t.Errorf("restored store counts %d enrolled, want 2", n)
	}
}

// TestBackupIsBadgerFormat loads a backup with badger's own loader.
func TestBackupIsBadgerFormat(t *testing.T) {
	data := backupOf(t, filledStore(t))
	db, err := badger.Open(badger.DefaultOptions(t.TempDir()).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Load(bytes.NewReader(data), 4); err != nil {
		t.Fatalf("badger's Load refused our backup: %v", err)
	}
	err = db.View(func(txn *badger.Txn) error {
		for _, k := range []string{"p/carol", "p/dave", "u/carol", "u/alice", "m/key-check"} {
			if _, err := txn.Get([]byte(k)); err != nil {
				t.Errorf("key %s after badger's Load: %v", k, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestRestoreRefusesNonEmptyStore(t *testing.T) {
	data := backupOf(t, filledStore(t))
	for name, fill := range map[string]func(t *testing.T, b *Badger){
		"a store user": func(t *testing.T, b *Badger) { addUser(t, b, "erin") },
		"an enrolment": func(t *testing.T, b *Badger) { enable(t, b, "erin", testCodes(1)) },
		"another key check": func(t *testing.T, b *Badger) {
			if err := b.PutMeta(context.Background(), "key-check", []byte("check-2")); err != nil {
				t.Fatal(err)
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			dst := openTest(t)
			fill(t, dst)
			putSessions(t, dst, "erin", "e1")
			called := false
			_, err := dst.Restore(context.Background(), bytes.NewReader(data), func(Snapshot) error { called = true; return nil })
			if !errors.Is(err, ErrNotEmpty) {
				t.Fatalf("got %v, want ErrNotEmpty", err)
			}
			if called && name != "another key check" {
				t.Error("accept was called for a store that holds users or enrolments")
			}
			if _, err := dst.User(context.Background(), "carol"); !errors.Is(err, ErrNoUser) {
				t.Error("a refused restore wrote users")
			}
			if !sessionExists(t, dst, "e1") {
				t.Error("a refused restore ended sessions")
			}
		})
	}
}

func TestRestoreSameKeyCheck(t *testing.T) {
	data := backupOf(t, filledStore(t))
	dst := openTest(t)
	if err := dst.PutMeta(context.Background(), "key-check", []byte("check-1")); err != nil {
		t.Fatal(err)
	}
	if _, err := dst.Restore(context.Background(), bytes.NewReader(data), nil); err != nil {
		t.Fatalf("Restore into a store with the same key check: %v", err)
	}
}

func TestRestoreAcceptRefuses(t *testing.T) {
	data := backupOf(t, filledStore(t))
	dst := openTest(t)
	putSessions(t, dst, "erin", "e1")
	errNo := errors.New("no thanks")
	if _, err := dst.Restore(context.Background(), bytes.NewReader(data), func(Snapshot) error { return errNo }); !errors.Is(err, errNo) {
		t.Fatalf("got %v, want accept's error", err)
	}
	if users, _ := dst.Users(context.Background()); len(users) != 0 {
		t.Error("a restore refused by accept wrote users")
	}
	if !sessionExists(t, dst, "e1") {
		t.Error("a restore refused by accept ended sessions")
	}
}

func frame(t *testing.T, payload []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	_ = binary.Write(&buf, binary.LittleEndian, uint64(len(payload)))
	buf.Write(payload)
	return buf.Bytes()
}

func TestRestoreBadBackup(t *testing.T) {
	good := backupOf(t, filledStore(t))
	// A backup of another badger database: keys this store does not know.
	other, err := badger.Open(badger.DefaultOptions(t.TempDir()).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	_ = other.Update(func(txn *badger.Txn) error { return txn.Set([]byte("certificates/x"), []byte("y")) })
	var foreign bytes.Buffer
	if _, err := other.Backup(&foreign, 0); err != nil {
		t.Fatal(err)
	}
	other.Close()
	// A user record that does not decode.
	broken := openTest(t)
	_ = broken.db.Update(func(txn *badger.Txn) error { return txn.Set([]byte("p/x"), []byte("{not json")) })
	var brokenUser bytes.Buffer
	if _, err := broken.db.Backup(&brokenUser, 0); err != nil {
		t.Fatal(err)
	}

	for name, data := range map[string][]byte{
		"truncated":      good[:len(good)-3],
		"short header":   good[:5],
		"garbage":        frame(t, []byte{0xff, 0xff, 0xff, 0x01, 0x02}),
		"huge frame":     binary.LittleEndian.AppendUint64(nil, 1<<40),
		"foreign keys":   foreign.Bytes(),
		"corrupt record": brokenUser.Bytes(),
	} {
		t.Run(name, func(t *testing.T) {
			dst := openTest(t)
			_, err := dst.Restore(context.Background(), bytes.NewReader(data), nil)
			if !errors.Is(err, ErrBadBackup) {
				t.Fatalf("got %v, want ErrBadBackup", err)
			}
			if users, _ := dst.Users(context.Background()); len(users) != 0 {
				t.Error("a bad backup wrote users")
			}
		})
	}
}

func TestBackupRestoreClosed(t *testing.T) {
	b, err := OpenBadger(t.TempDir(), Options{NoSync: true, GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	data := backupOf(t, b)
	b.Close()
	if err := b.Backup(context.Background(), &bytes.Buffer{}); err == nil {
		t.Error("Backup of a closed store: got nil error")
	}
	if _, err := b.Restore(context.Background(), bytes.NewReader(data), nil); err == nil {
		t.Error("Restore into a closed store: got nil error")
	}
}
