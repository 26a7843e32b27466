package caddymodule

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store"
)

const trustLoopback = "servers {\n\t\ttrusted_proxies static 127.0.0.1/8 ::1\n\t}"

// TestBruteForceRotatingClientIPs: behind trusted_proxies every
// X-Forwarded-For address is a client of its own, so rotating it escapes
// the per-client budget, but not the account's; without trusted_proxies
// the header is not read at all. Either way an account gets at most 100
// consecutive failures before a day's wait, from however many addresses.
func TestBruteForceRotatingClientIPs(t *testing.T) {
	for _, trusted := range []bool{false, true} {
		global := ""
		if trusted {
			global = trustLoopback
		}
		g := newGate(t, gateOpts{global: global, extra: "free_failures 3"})
		ip := func(i int) []string { return []string{"X-Forwarded-For", "198.51.100." + strconv.Itoa(i)} }
		for i := range 3 {
			if r := g.browser().post("/.auth/login", formOf("username", "alice", "password", "guess"+strconv.Itoa(i)), ip(i)...); r.status != http.StatusUnauthorized {
				t.Fatalf("trusted %v: failure %d: got %d", trusted, i, r.status)
			}
		}
		g.browser().post("/.auth/login", formOf("username", "alice", "password", "guess"), ip(50)...)
		if r := g.browser().post("/.auth/login", formOf("username", "alice", "password", testPassword), ip(51)...); r.status != http.StatusTooManyRequests {
			t.Errorf("trusted %v: alice's right password from a fresh address after 4 failures: got %d, want 429", trusted, r.status)
		}
		// The client budget (4x3 = 12) is per address only when the proxy is trusted.
		for i := range 13 {
			g.browser().post("/.auth/login", formOf("username", "user"+strconv.Itoa(i), "password", "x"), ip(60)...)
		}
		r := g.browser().post("/.auth/login", formOf("username", "bob", "password", testPassword), ip(61)...)
		if trusted && r.status != http.StatusSeeOther {
			t.Errorf("trusted proxies: bob from another forwarded address after one address used its budget: got %d, want 303", r.status)
		}
		if !trusted && r.status != http.StatusTooManyRequests {
			t.Errorf("untrusted: bob with another X-Forwarded-For after this client used its budget: got %d, want 429 (the header must be ignored)", r.status)
		}
	}

	// The hard cap: 100 consecutive failures of one account, each from a
	// new address and after the wait, then a day's wait for everyone.
	g := newGate(t, gateOpts{global: trustLoopback, extra: "free_failures 1\n\t\tmax_delay 1s"})
	for i := range store.AccountHardLimit {
		r := g.browser().post("/.auth/login", formOf("username", "ALICE", "password", "guess"+strconv.Itoa(i)),
			"X-Forwarded-For", fmt.Sprintf("203.0.%d.%d", i/250, i%250+1))
		if r.status != http.StatusUnauthorized {
			t.Fatalf("failure %d: got %d, want 401", i+1, r.status)
		}
		advance(1100 * time.Millisecond)
	}
	r := g.browser().post("/.auth/login", formOf("username", "alice", "password", testPassword), "X-Forwarded-For", "192.0.2.200")
	retry, _ := strconv.Atoi(r.header.Get("Retry-After"))
	if r.status != http.StatusTooManyRequests || retry < 23*3600 {
		t.Fatalf("the right password after %d failures from as many addresses: got %d Retry-After %q, want 429 and about a day", store.AccountHardLimit, r.status, r.header.Get("Retry-After"))
	}
	advance(24*time.Hour + time.Minute)
	g.browser().login("alice", testPassword, "/")
}

// aliceSpellings are ways to type "alice". The gate's rule: names are
// compared after Unicode NFKC and case folding, so compatibility forms
// (full-width, superscript, mathematical letters, ª) and any letter case
// are alice; characters that are not a compatibility form of a letter of
// hers (dotless ı, zero-width space, a trailing dot, combining marks)
// make another name, which is no account.
var aliceSpellings = []struct {
	name  string
	alice bool
}{
	{"alice", true}, {"ALICE", true}, {"Alice", true}, {"aLiCe", true},
	{"\uff41\uff4c\uff49\uff43\uff45", true}, {"\uff21\uff2c\uff29\uff23\uff25", true},
	{"\u00aalice", true}, {"\u1d43lice", true}, {"\U0001d41alice", true}, {"\u24d0lice", true},
	{"al\u0131ce", false}, {"AL\u0130CE", false}, {"alice.", false}, {"alice\u200b", false},
	{"\u200dalice", false}, {"a\u0301lice", false}, {"alic\u0435", false}, {"alice\u00ad", false},
}

// TestBruteForceUsernameSpellings: every spelling that logs in as alice
// also counts against alice's budget; a spelling that is another name
// cannot log in as alice, so its own budget gives an attacker nothing.
func TestBruteForceUsernameSpellings(t *testing.T) {
	g := newGate(t, gateOpts{extra: "free_failures 4"})
	var same []string
	for _, s := range aliceSpellings {
		b := g.browser()
		r := b.post("/.auth/login", formOf("username", s.name, "password", testPassword))
		isAlice := r.status == http.StatusSeeOther
		if isAlice {
			b.get("/x")
			if u := g.up.last().Header.Get("Remote-User"); u != "alice" {
				t.Errorf("%q logged in as %q", s.name, u)
			}
			same = append(same, s.name)
		}
		if isAlice != s.alice {
			t.Errorf("%q (%U): logs in as alice: %v, want %v", s.name, []rune(s.name), isAlice, s.alice)
		}
	}
	// Failures spread over the spellings that are alice share one budget.
	for i := range 4 {
		if r := g.browser().post("/.auth/login", formOf("username", same[i%len(same)], "password", "guess")); r.status != http.StatusUnauthorized {
			t.Fatalf("failure %d: got %d", i, r.status)
		}
	}
	g.browser().post("/.auth/login", formOf("username", same[len(same)-1], "password", "guess"))
	for _, s := range same {
		if r := g.browser().post("/.auth/login", formOf("username", s, "password", testPassword)); r.status != http.StatusTooManyRequests {
			t.Errorf("%q after 5 failures spread over %d spellings: got %d, want 429", s, len(same), r.status)
		}
	}
}

// TestEnumerationByThrottle: an unknown name is throttled exactly like a
// known one, so the 429 tells nothing either.
func TestEnumerationByThrottle(t *testing.T) {
	g := newGate(t, gateOpts{extra: "free_failures 2"})
	var got [2][]string
	for i, name := range []string{"alice", "nobody"} {
		for range 4 {
			r := g.browser().post("/.auth/login", formOf("username", name, "password", "guess"))
			got[i] = append(got[i], strconv.Itoa(r.status)+"/"+r.header.Get("Retry-After"))
		}
	}
	if !slices.Equal(got[0], got[1]) {
		t.Errorf("throttling of a known and an unknown name differ: %v vs %v", got[0], got[1])
	}
}

// TestEnumerationByResponse: a wrong password for a user with 2FA, for one
// without, an unknown name and a malformed name give the same status,
// headers and page.
func TestEnumerationByResponse(t *testing.T) {
	g := newGate(t, gateOpts{})
	b := g.browser()
	b.login("bob", testPassword, "/")
	b.enable()
	var first response
	for i, name := range []string{"bob", "alice", "nobody", "no body", strings.Repeat("x", 300)} {
		r := g.browser().post("/.auth/login", formOf("username", name, "password", "wrong", "next", "/x"))
		if i == 0 {
			first = r
			continue
		}
		if r.status != first.status || r.body != first.body {
			t.Errorf("%q: got %d and another page than for a wrong password", name, r.status)
		}
		for k := range first.header {
			if k != "Date" && r.header.Get(k) != first.header.Get(k) {
				t.Errorf("%q: header %s %q, want %q as for a wrong password", name, k, r.header.Get(k), first.header.Get(k))
			}
		}
		if len(r.header) != len(first.header) {
			t.Errorf("%q: %d headers, want %d", name, len(r.header), len(first.header))
		}
	}
}

// TestEnumerationByTiming measures logins with an unknown name and with a
// wrong password, interleaved, through HTTP, with a bcrypt cost high
// enough that the hash dominates. The medians must agree within a wide
// margin: skipping the hash for unknown names makes them ten times apart.
// The numbers are logged; a per-name check of the hash work done is in
// TestUnknownNamesHashLikeKnownOnes.
func TestEnumerationByTiming(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte(testPassword), 8)
	if err != nil {
		t.Fatal(err)
	}
	// No hashing budget: a wait for it would add to some logins' times.
	g := newGate(t, gateOpts{hash: string(hash), extra: "free_failures 50\n\t\thash_cpu 100%"})
	const n = 21
	var unknown, wrong []time.Duration
	measure := func(name string) time.Duration {
		b := g.browser()
		start := time.Now()
		r := b.post("/.auth/login", formOf("username", name, "password", "wrong"))
		d := time.Since(start)
		if r.status != http.StatusUnauthorized {
			t.Fatalf("%s: got %d", name, r.status)
		}
		return d
	}
	measure("warm-up")
	for i := range n {
		unknown = append(unknown, measure("nobody"+strconv.Itoa(i%5)))
		wrong = append(wrong, measure("alice"))
	}
	slices.Sort(unknown)
	slices.Sort(wrong)
	mu, mw := unknown[n/2], wrong[n/2]
	ratio := float64(mu) / float64(mw)
	t.Logf("median login time over %d tries each: unknown name %v, wrong password %v (ratio %.2f)", n, mu, mw, ratio)
	if ratio < 0.5 || ratio > 2 {
		t.Errorf("unknown name and wrong password take %v and %v: the time tells whether an account exists", mu, mw)
	}
}
