package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/ops"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/session"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/users"
)

// manySessions is more sessions of one user than one badger transaction
// could delete (ending them failed from 6,000 to 8,000 on).
const manySessions = 20_000

// noCap lets the seeded sessions and the logins of the tests live side by
// side.
const noCap = "max_sessions_per_user 1000000"

// seedSessions writes n full sessions of user (a configured user, or with
// display set a store user, added if missing) into the store folder dir
// while no Caddy holds it, as logins would have made them, and returns
// the cookies of every thousandth and of the last.
func seedSessions(t *testing.T, dir, user, display string, n int) []string {
	t.Helper()
	db, err := store.OpenBadger(dir, store.Options{NoSync: true, GCInterval: -1, MaxSessionsPerUser: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}()
	ctx := context.Background()
	origin := store.OriginConfig
	// A configured user's session keeps the fingerprint of the hash it
	// was made with (the test gates configure testHash).
	cred := users.CredOf(testHash)
	if display != "" {
		cred = nil
		origin = store.OriginStore
		err := db.AddUser(ctx, store.User{Name: user, Display: display, PasswordHash: testHash, Created: testNow(), PasswordChanged: testNow()})
		if err != nil && !errors.Is(err, store.ErrUserExists) {
			t.Fatal(err)
		}
	}
	at := testNow()
	var cookies []string
	for i := range n {
		id, err := session.NewID()
		if err != nil {
			t.Fatal(err)
		}
		err = db.PutSession(ctx, store.Session{
			Key: session.KeyOf(id), User: user, Stage: store.StageFull, Origin: origin, Name: display, Cred: cred,
			Created: at, Seen: at, Expires: at.Add(DefaultSessionIdle),
		})
		if err != nil {
			t.Fatalf("seeding session %d: %v", i, err)
		}
		if i%1000 == 0 || i == n-1 {
			cookies = append(cookies, id)
		}
	}
	return cookies
}

// footprint is the process's memory and the store folder's size.
type footprint struct {
	heap, rss, disk int64
}

func measure(t *testing.T, dir string) footprint {
	t.Helper()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	f := footprint{heap: int64(ms.HeapAlloc)}
	if status, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(status), "\n") {
			if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
				f.rss = kb << 10
			}
		}
	}
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				f.disk += diskUsage(info)
			}
		}
		return nil
	})
	return f
}

func (f footprint) String() string {
	mib := func(n int64) string { return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + " MiB" }
	return "heap " + mib(f.heap) + ", RSS " + mib(f.rss) + ", store folder " + mib(f.disk) + " on disk"
}

// adminPost calls an admin API route with a JSON body and decodes the
// answer.
func adminPost(t *testing.T, path string, body any, out any) int {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.Post("http://"+adminAddr+path, "application/json", strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if err := json.NewDecoder(res.Body).Decode(out); err != nil {
		t.Fatalf("%s: decoding the answer: %v", path, err)
	}
	return res.StatusCode
}

// endMany runs end (one way of ending every session of a user) with the
// seeded cookies alive before it, checks that each cookie is refused right
// after it answers, and logs the figures.
func endMany(t *testing.T, g *testGate, what, user string, cookies []string, end func()) {
	t.Helper()
	for _, c := range cookies[:3] {
		g.replayWith(c).alive(what+": seeded session before", user)
	}
	dir := filepath.Join(g.dir, "store")
	before := measure(t, dir)
	start := time.Now()
	end()
	took := time.Since(start)
	for _, c := range cookies {
		g.replayWith(c).dead(what)
	}
	after := measure(t, dir)
	time.Sleep(2 * time.Second) // let the sweeper work; nothing is asserted on it here
	swept := measure(t, dir)
	t.Logf("%s of %d sessions: answered in %v", what, manySessions, took.Round(time.Millisecond))
	t.Logf("  before: %v", before)
	t.Logf("  after:  %v", after)
	t.Logf("  2 s on: %v", swept)
}

// TestRevokeManySessions: `sessions revoke` through the admin API ends all
// 20,000 sessions of a user at once.
func TestRevokeManySessions(t *testing.T) {
	dir := t.TempDir()
	cookies := seedSessions(t, filepath.Join(dir, "store"), "alice", "", manySessions)
	g := newGate(t, gateOpts{dir: dir, extra: noCap})
	bob := g.browser()
	bob.login("bob", testPassword, "/")
	endMany(t, g, "sessions revoke", "alice", cookies, func() {
		var res ops.ChangeResult
		if status := adminPost(t, "/two-factor/sessions/revoke", ops.UserRequest{User: "alice"}, &res); status != http.StatusOK || res.SessionsEnded != manySessions {
			t.Errorf("revoke: got %d %+v, want 200 and %d sessions ended", status, res, manySessions)
		}
	})
	bob.alive("another user's session", "Bob")
	a := g.browser()
	a.login("alice", testPassword, "/")
	a.alive("a new login after the revocation", "alice")
}

// TestPasswdManySessions: a store user's password set through the admin
// API ends all 20,000 of their sessions at once.
func TestPasswdManySessions(t *testing.T) {
	dir := t.TempDir()
	cookies := seedSessions(t, filepath.Join(dir, "store"), "carol", "Carol", manySessions)
	g := newGate(t, gateOpts{dir: dir, extra: noCap + "\n\t\t" + cheapArgon2})
	const newPassword = "a brand new password"
	endMany(t, g, "user passwd", "Carol", cookies, func() {
		var res ops.ChangeResult
		status := adminPost(t, "/two-factor/users/passwd", map[string]string{"user": "carol", "password": newPassword}, &res)
		if status != http.StatusOK || res.SessionsEnded != manySessions {
			t.Errorf("passwd: got %d %+v, want 200 and %d sessions ended", status, res, manySessions)
		}
	})
	b := g.browser()
	b.login("carol", newPassword, "/")
	b.alive("a login with the new password", "Carol")
}

// TestEnableAndResetManySessions: enabling 2FA on the Security page ends
// all 20,000 other sessions of the user; with 20,000 more, an operator's
// reset ends those.
func TestEnableAndResetManySessions(t *testing.T) {
	dir := t.TempDir()
	storeDir := filepath.Join(dir, "store")
	cookies := seedSessions(t, storeDir, "alice", "", manySessions)
	g := newGate(t, gateOpts{dir: dir, extra: noCap})
	a := g.browser()
	a.login("alice", testPassword, "/")
	endMany(t, g, "enabling 2FA on the Security page", "alice", cookies, func() { a.enable() })

	unload(t)
	cookies = seedSessions(t, storeDir, "alice", "", manySessions)
	g.reload()
	g.waitReady()
	endMany(t, g, "reset", "alice", cookies, func() {
		var res ops.ChangeResult
		status := adminPost(t, "/two-factor/reset", ops.UserRequest{User: "alice"}, &res)
		// and the session the enable page gave a
		if status != http.StatusOK || res.SessionsEnded != manySessions+1 || res.TwoFactorWasOn == nil || !*res.TwoFactorWasOn {
			t.Errorf("reset: got %d %+v, want 200, %d sessions ended and 2FA was on", status, res, manySessions+1)
		}
	})
	a.dead("the session of the enable page, after the reset")
}

// TestSessionCapThroughCaddy: a login past max_sessions_per_user ends the
// user's oldest session.
func TestSessionCapThroughCaddy(t *testing.T) {
	g := newGate(t, gateOpts{extra: "max_sessions_per_user 2"})
	b1, b2, b3 := g.browser(), g.browser(), g.browser()
	b1.login("alice", testPassword, "/")
	b2.login("alice", testPassword, "/")
	b1.alive("the first of two sessions", "alice")
	b3.login("alice", testPassword, "/")
	b1.dead("the oldest session past the cap")
	b2.alive("the second session", "alice")
	b3.alive("the newest session", "alice")
}

// TestMaxSessionsPerUserOption: the Caddyfile option, its bounds and its
// default.
func TestMaxSessionsPerUserOption(t *testing.T) {
	adapt := func(body string) (string, error) {
		src := "localhost {\n\ttwo_factor {\n\t\t" + body + "\n\t}\n}\n"
		out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src), map[string]any{"filename": "Caddyfile"})
		return string(out), err
	}
	out, err := adapt("max_sessions_per_user 7")
	if err != nil || !strings.Contains(out, `"max_sessions_per_user":7`) {
		t.Errorf("max_sessions_per_user 7: got %v %s", err, out)
	}
	for _, bad := range []string{"max_sessions_per_user 0", "max_sessions_per_user 1000001", "max_sessions_per_user many", "max_sessions_per_user", "max_sessions_per_user 5 6"} {
		if _, err := adapt(bad); err == nil || !strings.Contains(err.Error(), "max_sessions_per_user: want") {
			t.Errorf("%q: got %v, want an error about max_sessions_per_user", bad, err)
		}
	}
	var h Handler
	if err := h.defaults(caddy.NewReplacer()); err != nil {
		t.Fatal(err)
	}
	if h.MaxSessionsPerUser != DefaultMaxSessionsPerUser || DefaultMaxSessionsPerUser != 100 {
		t.Errorf("default: %d, want 100", h.MaxSessionsPerUser)
	}
	h.MaxSessionsPerUser = -1 // as JSON may give it
	if err := h.validateConfig(); err == nil || !strings.Contains(err.Error(), "max_sessions_per_user -1") {
		t.Errorf("max_sessions_per_user -1: got %v, want an error", err)
	}
}
