package session

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store"
)

// newTestStore is a Store on a badger store in a temporary folder, with a
// live full session of alice; it returns the session's cookie.
func newTestStore(tb testing.TB) (*Store, *http.Cookie) {
	tb.Helper()
	db, err := store.OpenBadger(tb.TempDir(), store.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = db.Close() })
	s := New(db, Config{Cookie: testCookie, Idle: 30 * time.Minute, Lifetime: 12 * time.Hour, Pending: 5 * time.Minute, Now: time.Now})
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodPost, "/.auth/login", nil)
	if err := s.Start(w, r, &store.Session{User: "alice", Stage: store.StageFull, Origin: store.OriginConfig}); err != nil {
		tb.Fatal(err)
	}
	cookies := w.Result().Cookies()
	if len(cookies) != 1 || cookies[0].Name != testCookie {
		tb.Fatalf("Start set cookies %v", cookies)
	}
	return s, cookies[0]
}

// TestStartLookupEnd: a started session is found by its cookie, through
// Lookup and through gorilla's Get, and is gone on the server once ended.
func TestStartLookupEnd(t *testing.T) {
	s, c := newTestStore(t)
	r := httptest.NewRequest(http.MethodGet, "/app", nil)
	r.AddCookie(c)
	rec, ok, err := s.Lookup(r, time.Now())
	if err != nil || !ok || rec.User != "alice" {
		t.Fatalf("Lookup: got %+v %v %v", rec, ok, err)
	}
	if cur, err := s.Current(r); err != nil || cur == nil || cur.User != "alice" {
		t.Fatalf("Current: got %+v %v", cur, err)
	}
	w := httptest.NewRecorder()
	if err := s.End(w, r); err != nil {
		t.Fatal(err)
	}
	if got := w.Result().Cookies(); len(got) != 1 || got[0].MaxAge >= 0 {
		t.Errorf("End: cookies %v, want one deleting the session cookie", got)
	}
	r2 := httptest.NewRequest(http.MethodGet, "/app", nil)
	r2.AddCookie(c)
	if rec, ok, err := s.Lookup(r2, time.Now()); err != nil || ok {
		t.Errorf("after End: got %+v %v, want no session", rec, err)
	}
}

// TestKeepAdmittedLeavesRecord: refreshing an admitted session's idle
// timer writes the store's record and leaves the one the admission holds,
// which is the store's cached record, shared with every other request.
func TestKeepAdmittedLeavesRecord(t *testing.T) {
	s, c := newTestStore(t)
	r := httptest.NewRequest(http.MethodGet, "/app", nil)
	r.AddCookie(c)
	a, ok, err := s.Lookup(r, time.Now())
	if err != nil || !ok {
		t.Fatalf("Lookup: %v %v", ok, err)
	}
	then := *a.Rec
	later := time.Now().Add(2 * s.touchInterval()).Truncate(time.Second)
	if err := s.KeepAdmitted(context.Background(), a, later); err != nil {
		t.Fatal(err)
	}
	if !a.Rec.Seen.Equal(then.Seen) || !a.Rec.Expires.Equal(then.Expires) {
		t.Errorf("KeepAdmitted changed the shared record: seen %v, expires %v; was %v, %v", a.Rec.Seen, a.Rec.Expires, then.Seen, then.Expires)
	}
	b, ok, err := s.Lookup(r, later)
	if err != nil || !ok || !b.Rec.Seen.Equal(later) {
		t.Errorf("after KeepAdmitted: got %v %v %v, want the store's record seen at %v", b.Rec, ok, err, later)
	}
}

// BenchmarkLookup and BenchmarkGet read one live session: directly, as the
// proxied path does, and through gorilla/sessions' registry, as the pages
// do. The difference is why the proxied path reads directly (see
// docs/architecture.md).
func BenchmarkLookup(b *testing.B) {
	s, c := newTestStore(b)
	base := httptest.NewRequest(http.MethodGet, "/app", nil)
	base.AddCookie(c)
	b.ReportAllocs()
	for b.Loop() {
		r := base.WithContext(context.Background()) // as in BenchmarkGet
		if _, ok, err := s.Lookup(r, time.Now()); err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
}

func BenchmarkGet(b *testing.B) {
	s, c := newTestStore(b)
	base := httptest.NewRequest(http.MethodGet, "/app", nil)
	base.AddCookie(c)
	b.ReportAllocs()
	for b.Loop() {
		r := base.WithContext(context.Background()) // a new request: gorilla's registry is per request
		if rec, err := s.Current(r); err != nil || rec == nil {
			b.Fatal(rec, err)
		}
	}
}
