package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// testBrowser returns a remembered browser with the token "token-<n>",
// valid for a day by the real clock (which badger's TTL follows).
func testBrowser(n int) (RememberedBrowser, []byte) {
	token := fmt.Appendf(nil, "token-%d", n)
	now := time.Now().Truncate(time.Second)
	return RememberedBrowser{
		Hash: TokenHash(token), Created: now.Add(time.Duration(n) * time.Second), Expires: now.Add(24 * time.Hour),
		Agent: "Mozilla/5.0 Firefox/128.0", Addr: "192.0.2.1",
	}, token
}

func remember(t *testing.T, s Store, user string, n int) []byte {
	t.Helper()
	rb, token := testBrowser(n)
	if err := s.RememberBrowser(context.Background(), user, rb); err != nil {
		t.Fatalf("RememberBrowser(%q): %v", user, err)
	}
	return token
}

func remembered(t *testing.T, s Store, user string, token []byte) bool {
	t.Helper()
	_, err := s.RememberedBrowser(context.Background(), user, TokenHash(token))
	switch {
	case err == nil:
		return true
	case errors.Is(err, ErrNotFound):
		return false
	}
	t.Fatalf("RememberedBrowser(%q): %v", user, err)
	return false
}

func TestRememberedBrowserRoundTrip(t *testing.T) {
	ctx := context.Background()
	b := openTest(t)
	want, token := testBrowser(1)
	want.Agent = strings.Repeat("x", 1000)
	if err := b.RememberBrowser(ctx, "alice", want); err != nil {
		t.Fatal(err)
	}
	got, err := b.RememberedBrowser(ctx, "alice", TokenHash(token))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Hash, want.Hash) || !got.Created.Equal(want.Created) || !got.Expires.Equal(want.Expires) ||
		got.Agent != strings.Repeat("x", MaxAgentLen) || got.Addr != want.Addr {
		t.Errorf("got %+v, want %+v (agent cut)", got, want)
	}
	// Not for another user, not for another token, not for a realm's
	// user of the same name.
	if remembered(t, b, "bob", token) || remembered(t, b, "alice", []byte("token-2")) {
		t.Error("a token is good for another user or another token")
	}
	other, _ := InRealm(b, "intranet")
	if remembered(t, other, "alice", token) {
		t.Error("a token of the default realm is good in realm intranet")
	}
	list, err := b.RememberedBrowsers(ctx, "alice")
	if err != nil || len(list) != 1 {
		t.Fatalf("RememberedBrowsers: %d, %v; want 1", len(list), err)
	}
	if err := b.ForgetBrowser(ctx, "alice", want.Hash); err != nil {
		t.Fatal(err)
	}
	if remembered(t, b, "alice", token) {
		t.Error("a forgotten browser is still remembered")
	}
}

func TestRememberedBrowserExpires(t *testing.T) {
	b, clk := openTestClock(t, Options{})
	token := remember(t, b, "alice", 1)
	clk.set(time.Now().Add(25 * time.Hour))
	if remembered(t, b, "alice", token) {
		t.Error("an expired browser is still remembered")
	}
	if list, err := b.RememberedBrowsers(context.Background(), "alice"); err != nil || len(list) != 0 {
		t.Errorf("RememberedBrowsers after expiry: %d, %v; want none", len(list), err)
	}
}

func TestRememberedBrowsersCapped(t *testing.T) {
	b := openTest(t)
	first := remember(t, b, "alice", 0)
	for i := 1; i <= MaxRememberedBrowsers; i++ {
		remember(t, b, "alice", i)
	}
	list, err := b.RememberedBrowsers(context.Background(), "alice")
	if err != nil || len(list) != MaxRememberedBrowsers {
		t.Fatalf("got %d remembered browsers (%v), want %d", len(list), err, MaxRememberedBrowsers)
	}
	if remembered(t, b, "alice", first) {
		t.Error("the oldest browser was kept past the cap")
	}
}

// TestRememberedBrowsersForgotten: every change of the second factors or
// the password forgets the user's remembered browsers in its transaction,
// and only theirs; ending sessions does not.
func TestRememberedBrowsersForgotten(t *testing.T) {
	ctx := context.Background()
	for name, change := range map[string]func(b *Badger) error{
		"enable": func(b *Badger) error { return b.EnableTOTP(ctx, "alice", testTOTP(), testCodes(2)) },
		"disable": func(b *Badger) error {
			enable(t, b, "alice", testCodes(2))
			remember(t, b, "alice", 1)
			return b.DisableTOTP(ctx, "alice", nil)
		},
		"new backup codes": func(b *Badger) error {
			enable(t, b, "alice", testCodes(2))
			remember(t, b, "alice", 1)
			return b.ReplaceBackupCodes(ctx, "alice", testCodes(3))
		},
		"password": func(b *Badger) error {
			addUser(t, b, "alice")
			remember(t, b, "alice", 1)
			_, err := b.SetPassword(ctx, "alice", "new-hash", time.Now(), nil)
			return err
		},
		"delete user": func(b *Badger) error {
			addUser(t, b, "alice")
			remember(t, b, "alice", 1)
			_, err := b.DeleteUser(ctx, "alice")
			return err
		},
		"forget all": func(b *Badger) error {
			n, err := b.ForgetBrowsers(ctx, "alice")
			if err == nil && n != 1 {
				return fmt.Errorf("ForgetBrowsers counted %d, want 1", n)
			}
			return err
		},
	} {
		t.Run(name, func(t *testing.T) {
			b := openTest(t)
			remember(t, b, "alice", 1)
			bob := remember(t, b, "bob", 1)
			if err := change(b); err != nil {
				t.Fatal(err)
			}
			if remembered(t, b, "alice", []byte("token-1")) {
				t.Error("alice's browser is still remembered")
			}
			if !remembered(t, b, "bob", bob) {
				t.Error("bob's browser was forgotten too")
			}
		})
	}
	t.Run("sessions ended", func(t *testing.T) {
		b := openTest(t)
		token := remember(t, b, "alice", 1)
		if _, err := b.DeleteUserSessions(ctx, "alice", nil); err != nil {
			t.Fatal(err)
		}
		if !remembered(t, b, "alice", token) {
			t.Error("ending sessions forgot a remembered browser")
		}
	})
}
