package caddymodule

import (
	"flag"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
	pqotp "github.com/pquerna/otp"
	"golang.org/x/net/html"
)

var soakFor = flag.Duration("soak", 15*time.Second, "how long TestSoak runs its mixed traffic (CI: the default; by hand: -soak 10m)")

// soakClock hands out TOTP steps: a user who needs a code newer than its
// last one moves the test clock on by a step.
type soakClock struct {
	mu sync.Mutex
}

// codeFor returns a code of secret for a step after last, and that step.
func (c *soakClock) codeFor(t *testing.T, secret string, last int64) (string, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := testNow()
	if now.Unix()/30 <= last {
		advance(30 * time.Second)
		now = testNow()
	}
	return totpCode(t, secret, now), now.Unix() / 30
}

// sample is one reading of the process's resources.
type sample struct {
	at         time.Duration
	goroutines int
	fds        int
	heap       uint64
	rss        uint64
}

func readSample(start time.Time) sample {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s := sample{at: time.Since(start).Round(time.Millisecond), goroutines: runtime.NumGoroutine(), heap: ms.HeapInuse}
	if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
		s.fds = len(ents)
	}
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
				kb, _ := strconv.ParseUint(f[1], 10, 64)
				s.rss = kb << 10
			}
		}
	}
	return s
}

// TestSoak runs mixed traffic through a real Caddy for -soak (15s by
// default): proxied requests, password logins and logouts, logins with
// TOTP codes and backup codes, new backup codes, and users turning 2FA on
// and off over and over. Every request must get its expected answer, and
// goroutines, open files and memory must level off: the highest reading
// of the last third of the run may not be far above that of the middle
// third, and after the traffic stops goroutines and files fall back to
// about where they started.
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	// No hashing budget: the soak logs in without pause for its whole run,
	// which on a slow machine could spend the default budget (its refusals
	// are tested in hashbudget_test.go).
	extra := "session_idle 100000h\n\t\tsession_lifetime 100000h\n\t\tfree_failures 50\n\t\ttotp_skew 3\n\t\thash_cpu 100%"
	for i := range 3 {
		extra += fmt.Sprintf("\n\t\tuser soak%d %s", i, testHash)
	}
	g := newGate(t, gateOpts{extra: extra})
	clk := &soakClock{}

	var requests, errs atomic.Int64
	var mu sync.Mutex
	var firstErrs []string
	expect := func(what string, r response, status int, location string) bool {
		requests.Add(1)
		if r.status != status || (location != "" && r.header.Get("Location") != location) {
			errs.Add(1)
			mu.Lock()
			if len(firstErrs) < 10 {
				firstErrs = append(firstErrs, fmt.Sprintf("%s: got %d %q, want %d %q", what, r.status, r.header.Get("Location"), status, location))
			}
			mu.Unlock()
			return false
		}
		return true
	}

	// Setup: soak0 and soak2 have 2FA on.
	enrolled := map[string]*enrolment{}
	for _, u := range []string{"soak0", "soak2"} {
		b := g.browser()
		b.login(u, testPassword, "/")
		e := b.enable()
		enrolled[u] = &e
	}
	last := map[string]int64{"soak0": testNow().Unix() / 30, "soak2": testNow().Unix() / 30}
	var lastMu sync.Mutex
	code := func(user, secret string) string {
		lastMu.Lock()
		defer lastMu.Unlock()
		c, step := clk.codeFor(t, secret, last[user])
		last[user] = step
		return c
	}

	// Each worker is one client: a new cookie jar for each login, one
	// connection pool throughout, as a browser has.
	var stop atomic.Bool
	workers := map[string]func(fresh func() *browser){
		"proxied": func(fresh func() *browser) {
			b := fresh()
			b.login("alice", testPassword, "/")
			for !stop.Load() {
				expect("proxied GET", b.get("/app/page?x=1"), http.StatusOK, "")
			}
		},
		"password login": func(fresh func() *browser) {
			for !stop.Load() {
				b := fresh()
				if expect("login", b.post("/.auth/login", formOf("username", "bob", "password", testPassword)), http.StatusSeeOther, "/") {
					expect("after login", b.get("/app"), http.StatusOK, "")
					expect("logout", b.post("/.auth/logout", nil), http.StatusSeeOther, "/.auth/login")
				}
			}
		},
		"TOTP login": func(fresh func() *browser) {
			for !stop.Load() {
				b := fresh()
				if expect("login, 2FA on", b.post("/.auth/login", formOf("username", "soak0", "password", testPassword)), http.StatusSeeOther, "/.auth/code") &&
					expect("TOTP code", b.post("/.auth/code", formOf("code", code("soak0", enrolled["soak0"].secret))), http.StatusSeeOther, "/") {
					expect("after code", b.get("/app"), http.StatusOK, "")
					expect("me", b.get("/.auth/me"), http.StatusOK, "")
					expect("logout", b.post("/.auth/logout", nil), http.StatusSeeOther, "/.auth/login")
				}
			}
		},
		"backup codes": func(fresh func() *browser) {
			codes := enrolled["soak2"].codes
			for !stop.Load() {
				b := fresh()
				if !expect("login, 2FA on", b.post("/.auth/login", formOf("username", "soak2", "password", testPassword)), http.StatusSeeOther, "/.auth/code") ||
					!expect("backup code", b.post("/.auth/code", formOf("code", codes[0])), http.StatusSeeOther, "/") {
					return
				}
				codes = codes[1:]
				expect("after backup code", b.get("/app"), http.StatusOK, "")
				if len(codes) < 3 {
					r := b.post("/.auth/security/backup-codes", formOf("password", testPassword, "code", code("soak2", enrolled["soak2"].secret)))
					if !expect("new backup codes", r, http.StatusSeeOther, codesPage) {
						return
					}
					r = b.get(codesPage)
					if !expect("new backup codes shown", r, http.StatusOK, "") {
						return
					}
					codes = backupCodesOn(t, r.body)
				}
				expect("logout", b.post("/.auth/logout", nil), http.StatusSeeOther, "/.auth/login")
			}
		},
		"enable and disable": func(fresh func() *browser) {
			for !stop.Load() {
				b := fresh()
				if !expect("login, 2FA off", b.post("/.auth/login", formOf("username", "soak1", "password", testPassword)), http.StatusSeeOther, "/") {
					return
				}
				page := b.get("/.auth/security/enable")
				m := otpauthRe.FindStringSubmatch(page.body)
				if !expect("enable page", page, http.StatusOK, "") || m == nil {
					return
				}
				secret := secretOf(t, m[1])
				lastMu.Lock()
				c, step := clk.codeFor(t, secret, 0)
				last["soak1"] = step
				lastMu.Unlock()
				if !expect("enable", b.post("/.auth/security/enable", formOf("code", c, "password", testPassword)), http.StatusSeeOther, codesPage) ||
					!expect("backup codes shown", b.get(codesPage), http.StatusOK, "") {
					return
				}
				if !expect("disable", b.post("/.auth/security/disable", formOf("password", testPassword, "code", code("soak1", secret))), http.StatusSeeOther, securityPage) {
					return
				}
				expect("logout", b.post("/.auth/logout", nil), http.StatusSeeOther, "/.auth/login")
			}
		},
	}

	runtime.GC()
	start := time.Now()
	base := readSample(start)
	var samples []sample
	var wg sync.WaitGroup
	for name, w := range workers {
		n := 1
		if name == "proxied" {
			n = 2
		}
		for range n {
			tr := caddytest.CreateTestingTransport()
			fresh := func() *browser {
				b := g.browser()
				b.client.Transport = tr
				return b
			}
			wg.Add(1)
			go func() { defer wg.Done(); w(fresh); tr.CloseIdleConnections() }()
		}
	}
	for time.Since(start) < *soakFor {
		time.Sleep(*soakFor / 30)
		samples = append(samples, readSample(start))
	}
	stop.Store(true)
	wg.Wait()
	g.up.srv.CloseClientConnections()
	time.Sleep(500 * time.Millisecond)
	runtime.GC()
	end := readSample(start)

	for _, s := range samples {
		t.Logf("%8v goroutines %4d  fds %4d  heap %6.1f MiB  rss %6.1f MiB", s.at, s.goroutines, s.fds, float64(s.heap)/(1<<20), float64(s.rss)/(1<<20))
	}
	t.Logf("soak of %v: %d requests, %d unexpected answers (%.0f requests/s)", *soakFor, requests.Load(), errs.Load(), float64(requests.Load())/soakFor.Seconds())
	t.Logf("before: goroutines %d, fds %d; after: goroutines %d, fds %d", base.goroutines, base.fds, end.goroutines, end.fds)
	if errs.Load() != 0 {
		t.Errorf("%d unexpected answers, first: %q", errs.Load(), firstErrs)
	}
	if requests.Load() < 100 {
		t.Errorf("only %d requests in the soak", requests.Load())
	}
	n := len(samples)
	middle, lastThird := samples[n/3:2*n/3], samples[2*n/3:]
	peak := func(ss []sample, f func(sample) uint64) uint64 {
		return slices.Max(func() []uint64 {
			var v []uint64
			for _, s := range ss {
				v = append(v, f(s))
			}
			return v
		}())
	}
	for _, m := range []struct {
		name  string
		f     func(sample) uint64
		slack func(uint64) uint64
	}{
		{"goroutines", func(s sample) uint64 { return uint64(s.goroutines) }, func(v uint64) uint64 { return v + v/4 + 20 }},
		{"open files", func(s sample) uint64 { return uint64(s.fds) }, func(v uint64) uint64 { return v + v/4 + 20 }},
		{"heap", func(s sample) uint64 { return s.heap }, func(v uint64) uint64 { return v + v/2 + 16<<20 }},
	} {
		if mid, end := peak(middle, m.f), peak(lastThird, m.f); end > m.slack(mid) {
			t.Errorf("%s keep growing: peak %d in the middle third of the soak, %d in the last", m.name, mid, end)
		}
	}
	if end.goroutines > base.goroutines+20 || end.fds > base.fds+20 {
		t.Errorf("after the soak: goroutines %d (before %d), fds %d (before %d): something is left behind", end.goroutines, base.goroutines, end.fds, base.fds)
	}
}

// secretOf reads the Base32 key out of an otpauth link as it stands in a page.
func secretOf(t *testing.T, link string) string {
	t.Helper()
	key, err := pqotp.NewKeyFromURL(html.UnescapeString(link))
	if err != nil {
		t.Fatal(err)
	}
	return key.Secret()
}
