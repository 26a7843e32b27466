package ratelimit

import (
	"fmt"
	"testing"
	"time"
)

func TestPolicyDelay(t *testing.T) {
	p := Policy{Free: 3, Base: time.Second, Max: 10 * time.Second, HardLimit: 20, Lockout: time.Hour}
	for _, tc := range []struct {
		n    int
		want time.Duration
	}{
		{0, 0}, {3, 0}, {4, time.Second}, {5, 2 * time.Second}, {6, 4 * time.Second},
		{7, 8 * time.Second}, {8, 10 * time.Second}, {19, 10 * time.Second}, {20, time.Hour}, {1000, time.Hour},
	} {
		if got := p.Delay(tc.n); got != tc.want {
			t.Errorf("Delay(%d): got %v, want %v", tc.n, got, tc.want)
		}
	}
}

func TestLimiterWaitFailReset(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	l := New(Policy{Free: 1, Base: time.Second, Max: time.Minute, Forget: time.Hour}, 100)
	l.SetClock(func() time.Time { return now })
	if w := l.Fail("k"); w != 0 {
		t.Fatalf("first failure: got wait %v, want 0", w)
	}
	if w := l.Fail("k"); w != time.Second {
		t.Fatalf("second failure: got wait %v, want 1s", w)
	}
	now = now.Add(500 * time.Millisecond)
	if w := l.Wait("k"); w != 500*time.Millisecond {
		t.Errorf("half-way: got wait %v, want 500ms", w)
	}
	if w := l.Wait("other"); w != 0 {
		t.Errorf("another key: got wait %v, want 0", w)
	}
	now = now.Add(2 * time.Hour)
	if n := l.Failures("k"); n != 0 {
		t.Errorf("after the forget time: got %d failures, want 0", n)
	}
	l.Fail("k")
	l.Fail("k")
	l.Reset("k")
	if w := l.Wait("k"); w != 0 {
		t.Errorf("after Reset: got wait %v, want 0", w)
	}
}

func TestLimiterBoundedKeepsWaitingKeys(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	l := New(Policy{Free: 0, Base: time.Minute, Max: time.Minute}, 10)
	l.SetClock(func() time.Time { return now })
	l.Fail("victim")
	for i := range 1000 {
		l.Fail(fmt.Sprint("flood", i))
		now = now.Add(time.Millisecond)
	}
	if w := l.Wait("victim"); w == 0 {
		t.Errorf("a flood of new keys lifted a waiting key's delay")
	}
	now = now.Add(2 * time.Minute)
	l.Fail("new")
	if len(l.entries) > 10 {
		t.Errorf("got %d tracked keys once delays ran out, want at most 10", len(l.entries))
	}
}

func TestClientKey(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"192.0.2.1", "192.0.2.1"},
		{"::ffff:192.0.2.1", "192.0.2.1"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"},
		{"fe80::1%eth0", "fe80::/64"},
		{"not-an-ip", "not-an-ip"},
	} {
		if got := ClientKey(tc.in); got != tc.want {
			t.Errorf("ClientKey(%q): got %q, want %q", tc.in, got, tc.want)
		}
	}
}
