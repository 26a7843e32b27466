package caddymodule

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// burstSize is how many guesses each burst sends at once.
const burstSize = 200

// burst sends n copies of a form POST at once from one browser (one
// session) and counts the answers by status.
func (b *browser) burst(n int, path string, form url.Values, headers ...string) map[int]int {
	b.t.Helper()
	var (
		mu     sync.Mutex
		counts = map[int]int{}
		wg     sync.WaitGroup
		start  = make(chan struct{})
	)
	body := form.Encode()
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, err := http.NewRequest(http.MethodPost, b.g.base+path, strings.NewReader(body))
			if err != nil {
				b.t.Error(err)
				return
			}
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Accept", "text/html")
			for i := 0; i+1 < len(headers); i += 2 {
				req.Header.Set(headers[i], headers[i+1])
			}
			<-start
			status := -1 // no answer
			if res, err := b.client.Do(req); err == nil {
				res.Body.Close()
				status = res.StatusCode
			}
			mu.Lock()
			counts[status]++
			mu.Unlock()
		}()
	}
	close(start)
	wg.Wait()
	return counts
}

// wrongTOTP returns a six-digit code that no time step near now matches.
func wrongTOTP(t *testing.T, secret string) string {
	near := map[string]bool{}
	for i := -4; i <= 4; i++ {
		near[totpCode(t, secret, testNow().Add(time.Duration(i)*30*time.Second))] = true
	}
	for i := 0; i < 100; i++ {
		c := strconv.Itoa(100000 + i*7919)
		if !near[c] {
			return c
		}
	}
	t.Fatal("no wrong code found")
	return ""
}

// sequentialBudget is how many wrong guesses at one account sequential
// guessing gets checked within d, waiting out each delay (a second after
// the first failure past free, doubling; the default max_delay of 15m is
// far off): free + 1 at once, one more after each wait that fits in d.
func sequentialBudget(free int, d time.Duration) int {
	n := free + 1
	wait := time.Second
	for elapsed := wait; elapsed <= d; elapsed += wait {
		n++
		wait *= 2
	}
	return n
}

// TestBurstGuessesHeldToSequentialBudget sends 200 identical wrong guesses
// at once to every route that checks a password or a code. Each guess is
// reserved before it is checked, so the number checked (401 answers) is
// at most what sequential guesses would get checked in the same time
// (free_failures + 1 when the burst takes less than a second), the rest
// are refused unchecked (429), and the account's count afterwards is the
// number checked, as after sequential guesses.
func TestBurstGuessesHeldToSequentialBudget(t *testing.T) {
	const free = 2
	// Each route's guesses come from an address of their own (behind a
	// trusted proxy), so that only the account's budget binds. Password
	// checks take a while (bcrypt cost 10) and up to 64 run at once, so
	// that a throttle that read the count before the check and wrote it
	// after would let the whole burst through.
	slow, err := bcrypt.GenerateFromPassword([]byte(testPassword), 10)
	if err != nil {
		t.Fatal(err)
	}
	g := newGate(t, gateOpts{global: trustLoopback, hash: string(slow),
		extra: "free_failures " + strconv.Itoa(free) + "\n\t\thash_cpu 100%\n\t\tmax_concurrent_hashes 64"})
	g.cli(testPassword+"\n", "user", "add", "dave")

	type route struct {
		name, user, factor string
		send               func() map[int]int
	}
	// alice turns 2FA on; her full session is used on the Security pages.
	alice := g.browser()
	alice.login("alice", testPassword, "/")
	en := alice.enable()
	alice = g.browser()
	alice.login("alice", testPassword, "/.auth/code")
	nextStep()
	if r := alice.post("/.auth/code", formOf("code", totpCode(t, en.secret, testNow()))); r.status != http.StatusSeeOther {
		t.Fatalf("alice's code: got %d", r.status)
	}
	wrong := func() string { return wrongTOTP(t, en.secret) }

	routes := []route{
		{"login", "alice", "password", func() map[int]int {
			return g.browser().burst(burstSize, "/.auth/login", formOf("username", "alice", "password", "wrong guess"), "X-Forwarded-For", "198.51.100.1")
		}},
		{"code", "alice", "totp", func() map[int]int {
			p := g.browser()
			p.login("alice", testPassword, "/.auth/code")
			return p.burst(burstSize, "/.auth/code", formOf("code", wrong()), "X-Forwarded-For", "198.51.100.2")
		}},
		{"enable", "Bob", "totp", func() map[int]int {
			bob := g.browser()
			bob.login("Bob", testPassword, "/")
			if r := bob.get("/.auth/security/enable"); r.status != http.StatusOK {
				t.Fatalf("Bob's enable page: %d", r.status)
			}
			return bob.burst(burstSize, "/.auth/security/enable", formOf("password", testPassword, "code", "000000"), "X-Forwarded-For", "198.51.100.3")
		}},
		{"disable", "alice", "totp", func() map[int]int {
			return alice.burst(burstSize, "/.auth/security/disable", formOf("password", testPassword, "code", wrong()), "X-Forwarded-For", "198.51.100.4")
		}},
		{"backup codes", "alice", "totp", func() map[int]int {
			return alice.burst(burstSize, "/.auth/security/backup-codes", formOf("password", testPassword, "code", wrong()), "X-Forwarded-For", "198.51.100.5")
		}},
		{"password change", "dave", "password", func() map[int]int {
			d := g.browser()
			d.login("dave", testPassword, "/")
			return d.burst(burstSize, "/.auth/security/password", formOf(
				"current_password", "wrong guess", "new_password", "a new password 123", "confirm_password", "a new password 123"),
				"X-Forwarded-For", "198.51.100.6")
		}},
	}
	for _, rt := range routes {
		g.cli("", "unthrottle", rt.user)
		start := time.Now()
		counts := rt.send()
		took := time.Since(start)
		budget := sequentialBudget(free, took)
		checked := counts[http.StatusUnauthorized]
		refused := counts[http.StatusTooManyRequests]
		st := g.statusOf(rt.user)
		ft := st.Throttle.Factors[rt.factor]
		t.Logf("%s: sent %d in %v, checked %d (sequential budget %d), refused %d; afterwards %d failures, wait %ds",
			rt.name, burstSize, took.Round(time.Millisecond), checked, budget, refused, ft.Failures, ft.RetryAfterSeconds)
		if checked > budget || checked == 0 {
			t.Errorf("%s: %d of %d concurrent wrong guesses were checked, want 1 to %d (what sequential guesses get in %v)", rt.name, checked, burstSize, budget, took)
		}
		if checked+refused != burstSize {
			t.Errorf("%s: answers %v, want only 401 and 429", rt.name, counts)
		}
		// The refused guesses were not counted: the account has exactly
		// the failures that were checked, as after sequential guesses.
		if ft.Failures != checked {
			t.Errorf("%s: afterwards %d failures, want the %d checked", rt.name, ft.Failures, checked)
		}
		advance(2 * time.Second)
	}
	// Nothing was changed by the guesses: alice still has 2FA, dave his password.
	if !g.statusOf("alice").TwoFactor {
		t.Error("alice's 2FA was turned off by wrong guesses")
	}
	g.browser().login("dave", testPassword, "/")
}
