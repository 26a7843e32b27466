package gate

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/assert"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store"
)

// assertingGate is a test gate with the signed assertion on, and a full
// session of alice, as the proxied path reads it.
func assertingGate(tb testing.TB) (*Gate, store.Admission) {
	tb.Helper()
	g, _ := newTestGate(tb)
	a, err := newAsserter(Assertion{
		Header: "X-Assertion", Algorithm: assert.ES256, Lifetime: 2 * time.Minute,
		Rotation: 24 * time.Hour, Overlap: time.Hour, AuthHeaders: true,
	}, State{DB: g.db, Sealer: g.sealer}, g.now)
	if err != nil {
		tb.Fatal(err)
	}
	g.assertion = a
	rec := &store.Session{Key: make([]byte, 32), User: "alice", Stage: store.StageFull,
		AuthTime: g.now(), Methods: store.MethodPassword | store.MethodOTP}
	return g, store.Admission{Rec: rec, User: rec.User}
}

// TestAssertionReuseAllocations: a session's cached token costs the
// proxied path the headers it sets, nothing for the look-up.
func TestAssertionReuseAllocations(t *testing.T) {
	g, rec := assertingGate(t)
	g.assertion.c.AuthHeaders = false
	r := httptest.NewRequest(http.MethodGet, "https://example.com/app", nil)
	if err := g.assertIdentity(r, rec, "alice", g.now()); err != nil {
		t.Fatal(err)
	}
	first := r.Header.Get("X-Assertion")
	n := testing.AllocsPerRun(100, func() {
		if err := g.assertIdentity(r, rec, "alice", g.now()); err != nil {
			t.Fatal(err)
		}
	})
	if n > 1 { // Header.Set's one-value slice
		t.Errorf("a reused token costs %v allocations, want at most 1", n)
	}
	if r.Header.Get("X-Assertion") != first {
		t.Error("the token was not reused")
	}
	// Another session, or the same one after a step-up, gets its own.
	other := *rec.Rec
	other.AuthTime = other.AuthTime.Add(time.Second)
	if err := g.assertIdentity(r, store.Admission{Rec: &other, User: rec.User}, "alice", g.now()); err != nil || r.Header.Get("X-Assertion") == first {
		t.Errorf("a new auth_time reused the token (%v)", err)
	}
}

// BenchmarkAdmitAssertion is what the assertion adds to a proxied request:
// "reused" is the session's cached token (every request but one a minute),
// "signed" a new ES256 signature each time (what reuse saves), and
// "auth_headers" the three further headers besides the reused token.
func BenchmarkAdmitAssertion(b *testing.B) {
	g, rec := assertingGate(b)
	r := httptest.NewRequest(http.MethodGet, "https://example.com/app", nil)
	b.Run("reused", func(b *testing.B) {
		g.assertion.c.AuthHeaders = false
		b.ReportAllocs()
		for b.Loop() {
			if err := g.assertIdentity(r, rec, "alice", g.now()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("signed", func(b *testing.B) {
		b.ReportAllocs()
		ctx := context.Background()
		for b.Loop() {
			now := g.now()
			if _, err := g.assertion.keys.Sign(ctx, assert.Claims{Issuer: "https://example.com", Audience: "example.com",
				Subject: "alice", Name: "alice", AMR: rec.Rec.Methods.AMR(), AuthTime: rec.Rec.AuthTime, IssuedAt: now,
				Expires: now.Add(2 * time.Minute), Session: assert.SessionID(rec.Rec.Key)}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("auth_headers", func(b *testing.B) {
		g.assertion.c.AuthHeaders = true
		b.ReportAllocs()
		for b.Loop() {
			if err := g.assertIdentity(r, rec, "alice", g.now()); err != nil {
				b.Fatal(err)
			}
		}
	})
}
