package store

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"
)

func testCredential(id, name string) Credential {
	return Credential{
		ID: []byte(id), PublicKey: []byte("cose-" + id), Algorithm: -7, SignCount: 1,
		AAGUID: make([]byte, 16), Transports: []string{"usb"}, BackupEligible: true,
		Name: name, Added: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
	}
}

// TestCredentialLifecycle: the first key turns 2FA on with backup codes and
// ends the user's sessions and remembered browsers in its transaction; a
// further key does neither; uses move the counter only up and keep the
// backup state; removing the last key turns 2FA off.
func TestCredentialLifecycle(t *testing.T) {
	eachStore(t, Options{}, func(t *testing.T, b Store, _ *testClock) {
		ctx := context.Background()
		putSessions(t, b, "alice", "s1")
		if err := b.RememberBrowser(ctx, "alice", RememberedBrowser{Hash: bytes.Repeat([]byte{1}, 32), Created: time.Now(), Expires: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		first, err := b.AddCredential(ctx, "alice", testCredential("k1", "Blue key"), []byte("handle-a"), testCodes(10), nil)
		if err != nil || !first {
			t.Fatalf("first AddCredential: first %v, %v; want true, nil", first, err)
		}
		a, err := b.Account(ctx, "alice")
		if err != nil || !a.Enabled() || a.TOTP != nil || len(a.BackupCodes) != 10 || len(a.Credentials) != 1 || string(a.UserHandle) != "handle-a" {
			t.Fatalf("after the first key: %+v, %v", a, err)
		}
		if ss, _ := b.UserSessions(ctx, "alice"); len(ss) != 0 {
			t.Errorf("the first key left %d sessions, want 0", len(ss))
		}
		if rb, _ := b.RememberedBrowsers(ctx, "alice"); len(rb) != 0 {
			t.Errorf("the first key left %d remembered browsers, want 0", len(rb))
		}

		putSessions(t, b, "alice", "s2")
		first, err = b.AddCredential(ctx, "alice", testCredential("k2", "Laptop"), []byte("handle-a"), testCodes(3), nil)
		if err != nil || first {
			t.Fatalf("second AddCredential: first %v, %v; want false, nil", first, err)
		}
		a, _ = b.Account(ctx, "alice")
		if len(a.BackupCodes) != 10 || len(a.Credentials) != 2 {
			t.Errorf("a second key changed the codes or was not kept: %d codes, %d keys", len(a.BackupCodes), len(a.Credentials))
		}
		if ss, _ := b.UserSessions(ctx, "alice"); len(ss) != 1 {
			t.Errorf("a second key ended sessions: %d left, want 1", len(ss))
		}
		if _, err := b.AddCredential(ctx, "alice", testCredential("k3", "x"), []byte("other-handle"), nil, nil); !errors.Is(err, ErrHandleChanged) {
			t.Errorf("another handle: %v, want ErrHandleChanged", err)
		}
		// The same ID: refused for the same user and for another one of the
		// realm; another realm may have it.
		for _, user := range []string{"alice", "bob"} {
			if _, err := b.AddCredential(ctx, user, testCredential("k1", "again"), []byte("handle-a"), testCodes(10), nil); !errors.Is(err, ErrCredentialExists) {
				t.Errorf("%s registering k1 again: %v, want ErrCredentialExists", user, err)
			}
		}
		if _, err := b.AddCredential(ctx, UserID("other", "bob"), testCredential("k1", "same id"), []byte("h"), testCodes(10), nil); err != nil {
			t.Errorf("k1 in another realm: %v, want nil", err)
		}

		at := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
		if err := b.UseCredential(ctx, "alice", []byte("k1"), CredentialUse{SignCount: 5, BackupState: true, UserVerified: true, At: at}); err != nil {
			t.Fatal(err)
		}
		for _, n := range []uint32{5, 4, 0} {
			if err := b.UseCredential(ctx, "alice", []byte("k1"), CredentialUse{SignCount: n, At: at}); !errors.Is(err, ErrSignCount) {
				t.Errorf("counter %d after 5: %v, want ErrSignCount", n, err)
			}
		}
		if err := b.UseCredential(ctx, "alice", []byte("nope"), CredentialUse{SignCount: 9}); !errors.Is(err, ErrNoCredential) {
			t.Errorf("unknown key: %v, want ErrNoCredential", err)
		}
		a, _ = b.Account(ctx, "alice")
		c := a.Credentials[0]
		if c.SignCount != 5 || !c.BackupState || !c.UserVerified || !c.LastUsed.Equal(at) {
			t.Errorf("after use: %+v", c)
		}
		if err := b.RenameCredential(ctx, "alice", []byte("k2"), "Work laptop"); err != nil {
			t.Fatal(err)
		}
		if err := b.RenameCredential(ctx, "alice", []byte("k9"), "x"); !errors.Is(err, ErrNoCredential) {
			t.Errorf("renaming an unknown key: %v", err)
		}

		on, err := b.RemoveCredential(ctx, "alice", []byte("k1"), nil)
		if err != nil || !on {
			t.Fatalf("removing k1: on %v, %v; want true", on, err)
		}
		if ss, _ := b.UserSessions(ctx, "alice"); len(ss) != 0 {
			t.Errorf("removing a key left %d sessions, want 0", len(ss))
		}
		on, err = b.RemoveCredential(ctx, "alice", []byte("k2"), nil)
		if err != nil || on {
			t.Fatalf("removing the last key: on %v, %v; want false", on, err)
		}
		a, _ = b.Account(ctx, "alice")
		if a.Enabled() || len(a.BackupCodes) != 0 || len(a.Credentials) != 0 {
			t.Errorf("after the last key: %+v, want 2FA off", a)
		}
		if n, _ := b.CountEnrolled(ctx); n != 1 {
			t.Errorf("enrolled: %d, want 1 (bob in the other realm)", n)
		}
	})
}

// TestDisableRemovesKeys: turning 2FA off (the user, or an operator's
// reset) removes the app and every key; a backup carries the keys.
func TestDisableRemovesKeysBackupCarriesThem(t *testing.T) {
	eachStore(t, Options{}, func(t *testing.T, b Store, _ *testClock) {
		ctx := context.Background()
		if err := b.EnableTOTP(ctx, "alice", testTOTP(), testCodes(10)); err != nil {
			t.Fatal(err)
		}
		if _, err := b.AddCredential(ctx, "alice", testCredential("k1", "Key"), []byte("h"), nil, nil); err != nil {
			t.Fatal(err)
		}
		if err := b.UseTOTPStep(ctx, "alice", 200); err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := b.Backup(ctx, &buf); err != nil {
			t.Fatal(err)
		}
		dst := openTest(t)
		if _, err := dst.Restore(ctx, bytes.NewReader(buf.Bytes()), nil); err != nil {
			t.Fatal(err)
		}
		if a, _ := dst.Account(ctx, "alice"); len(a.Credentials) != 1 || !bytes.Equal(a.Credentials[0].PublicKey, []byte("cose-k1")) || a.TOTP == nil {
			t.Errorf("restored: %+v", a)
		}

		if err := b.DisableTOTP(ctx, "alice", nil); err != nil {
			t.Fatal(err)
		}
		if a, _ := b.Account(ctx, "alice"); a.Enabled() || len(a.Credentials) != 0 || len(a.UserHandle) != 0 {
			t.Errorf("after disable: %+v", a)
		}
		// Keys only: no TOTP step can be used.
		if _, err := b.AddCredential(ctx, "bob", testCredential("k2", "Key"), []byte("h"), testCodes(10), nil); err != nil {
			t.Fatal(err)
		}
		if err := b.UseTOTPStep(ctx, "bob", 5); !errors.Is(err, ErrNotEnabled) {
			t.Errorf("a TOTP step of a keys-only account: %v, want ErrNotEnabled", err)
		}
	})
}

// TestChallengeSingleUseAndExpiry: a challenge is taken once, per session
// and purpose, and not after it expires by the store's clock.
func TestChallengeSingleUseAndExpiry(t *testing.T) {
	eachStore(t, Options{}, func(t *testing.T, b Store, clk *testClock) {
		ctx := context.Background()
		now := time.Now()
		clk.set(now)
		s1, s2 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
		c := Challenge{User: "alice", Purpose: PurposeAssert, Data: []byte(`{"challenge":"x"}`), Expires: now.Add(5 * time.Minute)}
		if err := b.PutChallenge(ctx, s1, c); err != nil {
			t.Fatal(err)
		}
		if _, err := b.TakeChallenge(ctx, s2, PurposeAssert); !errors.Is(err, ErrNotFound) {
			t.Errorf("another session's: %v", err)
		}
		if _, err := b.TakeChallenge(ctx, s1, PurposeRegister); !errors.Is(err, ErrNotFound) {
			t.Errorf("another purpose's: %v", err)
		}
		got, err := b.TakeChallenge(ctx, s1, PurposeAssert)
		if err != nil || got.User != "alice" || string(got.Data) != `{"challenge":"x"}` {
			t.Fatalf("take: %+v, %v", got, err)
		}
		if _, err := b.TakeChallenge(ctx, s1, PurposeAssert); !errors.Is(err, ErrNotFound) {
			t.Errorf("taken twice: %v", err)
		}
		if err := b.PutChallenge(ctx, s1, c); err != nil {
			t.Fatal(err)
		}
		clk.set(now.Add(5 * time.Minute))
		if _, err := b.TakeChallenge(ctx, s1, PurposeAssert); !errors.Is(err, ErrNotFound) {
			t.Errorf("expired: %v", err)
		}
		// A realm's view does not take another realm's.
		r1, _ := InRealm(b, "one")
		r2, _ := InRealm(b, "two")
		clk.set(now)
		if err := r1.PutChallenge(ctx, s2, c); err != nil {
			t.Fatal(err)
		}
		if _, err := r2.TakeChallenge(ctx, s2, PurposeAssert); !errors.Is(err, ErrNotFound) {
			t.Errorf("another realm's: %v", err)
		}
	})
}
