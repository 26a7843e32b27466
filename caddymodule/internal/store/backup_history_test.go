package store

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4/pb"
	"google.golang.org/protobuf/proto"
)

// Values that a store with history held once and holds no more.
const (
	historyFirstHash  = "$argon2id$hash-of-erin"         // testUser("erin")
	historySecondHash = "$argon2id$second-hash-of-erin"  // superseded by the third
	historyHash       = "$argon2id$current-hash-of-erin" // the current one
	historyGoneHash   = "$argon2id$hash-of-gone"         // a deleted user's
	historyUsedCode   = "erin-code-used"                 // a backup code used up
	historyOldMeta    = "meta-first-value"
)

// historyCodes are erin's backup code hashes before one is used.
var historyCodes = []string{"erin-code-kept-1", historyUsedCode, "erin-code-kept-2", "erin-code-kept-3"}

// historyStore builds a store with history: erin's password changed twice,
// 2FA enabled with backup codes and one of them used, a TOTP step used, a
// user added and deleted, a meta value replaced, and sessions.
func historyStore(t *testing.T) *Badger {
	t.Helper()
	ctx := context.Background()
	b := openTest(t)
	addUser(t, b, "erin")
	at := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	for _, h := range []string{historySecondHash, historyHash} {
		if _, err := b.SetPassword(ctx, "erin", h, at, nil); err != nil {
			t.Fatalf("SetPassword: %v", err)
		}
	}
	codes := make([][]byte, len(historyCodes))
	for i, c := range historyCodes {
		codes[i] = []byte(c)
	}
	enable(t, b, "erin", codes)
	if left, err := b.UseBackupCode(ctx, "erin", []byte(historyUsedCode)); err != nil || left != 3 {
		t.Fatalf("UseBackupCode: got %d, %v; want 3 left", left, err)
	}
	if err := b.UseTOTPStep(ctx, "erin", testTOTP().LastStep+5); err != nil {
		t.Fatalf("UseTOTPStep: %v", err)
	}
	addUser(t, b, "gone")
	if _, err := b.DeleteUser(ctx, "gone"); err != nil {
		t.Fatalf("DeleteUser: %v", err)
	}
	for _, v := range []string{historyOldMeta, "meta-current-value"} {
		if err := b.PutMeta(ctx, "key-check", []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	putSessions(t, b, "erin", "erin-session-1", "erin-session-2")
	return b
}

// backupFrames parses a backup's raw stream: little-endian uint64 lengths,
// each followed by a protobuf KVList (badger's backup format).
func backupFrames(t *testing.T, data []byte) []*pb.KV {
	t.Helper()
	var kvs []*pb.KV
	r := bufio.NewReader(bytes.NewReader(data))
	for range len(data) + 1 { // each frame takes at least 8 bytes
		var size uint64
		err := binary.Read(r, binary.LittleEndian, &size)
		if errors.Is(err, io.EOF) {
			return kvs
		}
		if err != nil || size > uint64(len(data)) {
			t.Fatalf("frame header: %v (size %d)", err, size)
		}
		buf := make([]byte, size)
		if _, err := io.ReadFull(r, buf); err != nil {
			t.Fatalf("frame: %v", err)
		}
		var list pb.KVList
		if err := proto.Unmarshal(buf, &list); err != nil {
			t.Fatalf("frame: %v", err)
		}
		kvs = append(kvs, list.Kv...)
	}
	t.Fatal("the backup did not end")
	return nil
}

// TestBackupHoldsCurrentValuesOnly: a backup of a store with history holds
// one version of each live key, its current one; superseded password
// hashes, used backup codes, deleted users, old meta values and sessions
// appear nowhere in its bytes; and it restores to the current state.
func TestBackupHoldsCurrentValuesOnly(t *testing.T) {
	data := backupOf(t, historyStore(t))

	seen := map[string]int{}
	for _, kv := range backupFrames(t, data) {
		if kv.StreamDone {
			t.Errorf("a stream-done marker in the backup: %v", kv)
			continue
		}
		seen[string(kv.Key)]++
		if len(kv.Meta) > 0 && kv.Meta[0]&badgerBitDelete != 0 {
			t.Errorf("key %q: a deletion marker in the backup", kv.Key)
		}
		if len(kv.Meta) != 1 || len(kv.UserMeta) != 1 {
			t.Errorf("key %q: meta %v, user meta %v; want one byte each (badger's restore reads them)", kv.Key, kv.Meta, kv.UserMeta)
		}
	}
	want := []string{"p/erin", "u/erin", "m/key-check"}
	if len(seen) != len(want) {
		t.Errorf("keys in the backup: got %v, want %v", seen, want)
	}
	for _, k := range want {
		if seen[k] != 1 {
			t.Errorf("key %q: %d versions in the backup, want exactly 1", k, seen[k])
		}
	}
	// Account records hold code hashes as JSON []byte: base64.
	usedCode := base64.StdEncoding.EncodeToString([]byte(historyUsedCode))
	if !bytes.Contains(data, []byte(base64.StdEncoding.EncodeToString([]byte(historyCodes[0])))) {
		t.Errorf("the backup does not hold erin's kept code %q in base64: the search below would find nothing", historyCodes[0])
	}
	for _, old := range []string{historyFirstHash, historySecondHash, historyGoneHash, historyUsedCode, usedCode, historyOldMeta, "p/gone", "u/gone", "erin-session-"} {
		if bytes.Contains(data, []byte(old)) {
			t.Errorf("the backup holds %q, which the store no longer does", old)
		}
	}

	checkHistoryRestored(t, data)
}

// checkHistoryRestored restores a backup of historyStore into a new store
// and checks that it holds the current state.
func checkHistoryRestored(t *testing.T, data []byte) {
	t.Helper()
	ctx := context.Background()
	dst := openTest(t)
	snap, err := dst.Restore(ctx, bytes.NewReader(data), nil)
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if snap.Users != 1 || snap.Accounts != 1 || snap.Sessions != 0 || string(snap.Meta["key-check"]) != "meta-current-value" {
		t.Errorf("snapshot: got %+v, want erin's user and enrolment, the current meta value, no sessions", snap)
	}
	u, err := dst.User(ctx, "erin")
	if err != nil || u.PasswordHash != historyHash {
		t.Errorf("restored erin: got %+v, %v; want the current hash", u, err)
	}
	if _, err := dst.User(ctx, "gone"); !errors.Is(err, ErrNoUser) {
		t.Errorf("restored gone: got %v, want ErrNoUser", err)
	}
	a, err := dst.Account(ctx, "erin")
	if err != nil || !a.Enabled() || a.TOTP.LastStep != testTOTP().LastStep+5 || len(a.BackupCodes) != 3 {
		t.Fatalf("restored enrolment: got %+v, %v; want on, last step %d, 3 codes", a, err, testTOTP().LastStep+5)
	}
	if _, err := dst.UseBackupCode(ctx, "erin", []byte(historyUsedCode)); !errors.Is(err, ErrCodeUnknown) {
		t.Errorf("the used code after the restore: got %v, want ErrCodeUnknown", err)
	}
	if left, err := dst.UseBackupCode(ctx, "erin", []byte(historyCodes[0])); err != nil || left != 2 {
		t.Errorf("a kept code after the restore: got %d, %v; want it accepted, 2 left", left, err)
	}
	if sessionExists(t, dst, "erin-session-1") {
		t.Error("a session came back from a backup")
	}
}

// oldBackupFixture is a backup of historyStore written by Backup before
// it kept to current values (commit 20e3c8f): every version badger still
// held, a deleted user's marker among them.
const oldBackupFixture = "testdata/backup-with-history.bin"

// TestRestoreReadsOldBackups: a backup written by the earlier Backup, with
// superseded versions and deletion markers, restores to the current state.
func TestRestoreReadsOldBackups(t *testing.T) {
	data, err := os.ReadFile(oldBackupFixture)
	if err != nil {
		t.Fatal(err)
	}
	versions := 0
	for _, kv := range backupFrames(t, data) {
		if string(kv.Key) == "p/erin" {
			versions++
		}
	}
	if versions < 2 || !bytes.Contains(data, []byte(historySecondHash)) {
		t.Fatalf("the fixture holds %d versions of erin's user record, want the history it was made to have", versions)
	}
	checkHistoryRestored(t, data)
}

// TestBackupSplitsFrames: a backup larger than one frame's target is split
// into several frames, each key still once, and restores whole.
func TestBackupSplitsFrames(t *testing.T) {
	ctx := context.Background()
	b := openTest(t)
	big := bytes.Repeat([]byte("v"), backupFrameTarget/3)
	for i := range 10 {
		for range 2 { // a superseded version of each
			if err := b.PutMeta(ctx, string(rune('a'+i)), append(big, byte('0'+i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	data := backupOf(t, b)
	frames := 0
	for r := bytes.NewReader(data); r.Len() > 0 && frames <= 100; frames++ {
		var size uint64
		if err := binary.Read(r, binary.LittleEndian, &size); err != nil || size > backupFrameTarget*2 {
			t.Fatalf("frame %d: size %d, %v", frames, size, err)
		}
		if _, err := r.Seek(int64(size), io.SeekCurrent); err != nil {
			t.Fatal(err)
		}
	}
	if kvs := backupFrames(t, data); frames < 3 || len(kvs) != 10 {
		t.Errorf("got %d frames, %d records; want at least 3 frames and 10 records", frames, len(kvs))
	}
	snap, err := openTest(t).Restore(ctx, bytes.NewReader(data), nil)
	if err != nil || len(snap.Meta) != 10 || !bytes.Equal(snap.Meta["j"], append(big, '9')) {
		t.Errorf("Restore: got %d meta values, %v; want 10", len(snap.Meta), err)
	}
}
