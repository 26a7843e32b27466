package store

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// TestFullDiskRefusesWrites: with less free space than the sparse files'
// claim plus the reserve, every write fails with ErrNoSpace and changes
// nothing, reads go on, and writes work again once there is room. A store
// is not opened on such a disk at all.
func TestFullDiskRefusesWrites(t *testing.T) {
	var free atomic.Uint64
	free.Store(1 << 40)
	freeSpace = func(string) (uint64, bool) { return free.Load(), true }
	t.Cleanup(func() { freeSpace = freeBytes })

	dir := t.TempDir()
	b, err := OpenBadger(dir, Options{NoSync: true, GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	ctx := context.Background()
	enable(t, b, "alice", testCodes(2))
	putSessions(t, b, "alice", "a1")

	claim := sparseClaim(dir)
	if claim == 0 {
		t.Fatalf("badger's files claim no space: the guard would measure nothing")
	}
	free.Store(claim + diskReserve - 1)
	time.Sleep(diskCheckEvery)
	for name, write := range map[string]func() error{
		"PutSession": func() error {
			return b.PutSession(ctx, Session{Key: []byte("k"), User: "alice", Stage: StageFull, Expires: time.Now().Add(time.Hour)})
		},
		"DeleteSession": func() error { return b.DeleteSession(ctx, []byte("a1")) },
		"UseTOTPStep":   func() error { return b.UseTOTPStep(ctx, "alice", 1<<40) },
		"DisableTOTP":   func() error { return b.DisableTOTP(ctx, "alice", nil) },
		"EnableTOTP":    func() error { return b.EnableTOTP(ctx, "bob", testTOTP(), nil) },
		"PutMeta":       func() error { return b.PutMeta(ctx, "x", []byte("y")) },
	} {
		if err := write(); !errors.Is(err, ErrNoSpace) {
			t.Errorf("%s on a full disk: err = %v, want ErrNoSpace", name, err)
		}
	}
	if a, err := b.Account(ctx, "alice"); err != nil || !a.Enabled() || a.TOTP.LastStep == 1<<40 {
		t.Errorf("reading on a full disk: %+v, %v; want alice unchanged", a, err)
	}
	if !sessionExists(t, b, "a1") {
		t.Errorf("a session was deleted on a full disk")
	}

	free.Store(claim + diskReserve)
	time.Sleep(diskCheckEvery)
	if err := b.UseTOTPStep(ctx, "alice", 1<<40); err != nil {
		t.Errorf("with room again: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	free.Store(diskReserve - 1)
	if _, err := OpenBadger(dir, Options{}); !errors.Is(err, ErrNoSpace) {
		t.Errorf("opening on a full disk: err = %v, want ErrNoSpace", err)
	}
}
