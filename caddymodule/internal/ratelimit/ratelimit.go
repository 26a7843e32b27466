// Package ratelimit slows down guessing. It counts consecutive failures per
// key (an account or a client network) and answers, before each attempt,
// how long the caller must still wait. Delays grow with each failure past a
// free allowance, so an attacker cannot lock a user out for good, and a hard
// limit keeps the number of consecutive failures per key below the ceiling
// NIST SP 800-63B §5.2.2 sets.
package ratelimit

import (
	"net/netip"
	"sync"
	"time"
)

// Policy says how failures turn into delays.
type Policy struct {
	// Free is how many consecutive failures cost nothing.
	Free int
	// Base is the delay after the first failure past Free; each further
	// failure doubles it.
	Base time.Duration
	// Max caps the doubling delay.
	Max time.Duration
	// HardLimit is the number of consecutive failures after which every
	// further attempt waits Lockout.
	HardLimit int
	// Lockout is the wait once HardLimit is reached.
	Lockout time.Duration
	// Forget drops a key's count after this long without a failure.
	Forget time.Duration
}

// Delay returns how long a key with n consecutive failures must wait after
// its last failure.
func (p Policy) Delay(n int) time.Duration {
	switch {
	case n <= p.Free:
		return 0
	case p.HardLimit > 0 && n >= p.HardLimit:
		return p.Lockout
	}
	d := p.Base
	for i := p.Free + 1; i < n && d < p.Max; i++ {
		d *= 2
	}
	return min(d, p.Max)
}

type entry struct {
	failures int
	last     time.Time
}

// Limiter counts failures in memory. The zero value is not usable; call New.
type Limiter struct {
	policy     Policy
	maxEntries int
	// now is the clock; tests replace it.
	now func() time.Time

	mu      sync.Mutex
	entries map[string]*entry
}

// New returns a Limiter that tracks at most maxEntries keys.
func New(p Policy, maxEntries int) *Limiter {
	return &Limiter{policy: p, maxEntries: maxEntries, now: time.Now, entries: make(map[string]*entry)}
}

// SetPolicy changes how failures turn into delays; counts are kept.
func (l *Limiter) SetPolicy(p Policy) {
	l.mu.Lock()
	l.policy = p
	l.mu.Unlock()
}

// SetClock replaces the clock (for tests).
func (l *Limiter) SetClock(now func() time.Time) { l.now = now }

// Wait returns how long the key must still wait before its next attempt;
// zero means go ahead.
func (l *Limiter) Wait(key string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now() // under the lock: no earlier time than the last one written
	e, ok := l.entries[key]
	if !ok {
		return 0
	}
	return l.remaining(e, now)
}

func (l *Limiter) remaining(e *entry, now time.Time) time.Duration {
	return l.policy.Wait(e.failures, e.last, now)
}

// Wait is how long a key with n failures, the last at last, must still
// wait at now. Free failures wait for nothing, whatever last says (a
// count shared by several processes may carry another one's clock).
func (p Policy) Wait(n int, last, now time.Time) time.Duration {
	delay := p.Delay(n)
	if n == 0 || delay == 0 {
		return 0
	}
	if d := last.Add(delay).Sub(now); d > 0 {
		return d
	}
	return 0
}

// Fail counts one failure for the key and returns the wait it now has.
func (l *Limiter) Fail(key string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now() // under the lock: no earlier time than the last one written
	e, ok := l.entries[key]
	if ok && l.policy.Forget > 0 && now.Sub(e.last) > l.policy.Forget {
		e.failures = 0
	}
	if !ok {
		l.makeRoom(now)
		e = &entry{}
		l.entries[key] = e
	}
	e.failures++
	e.last = now
	return l.remaining(e, now)
}

// Reservation is an attempt counted as a failure before it is checked;
// Release takes it back when the attempt was not checked after all.
type Reservation struct {
	key      string
	at       time.Time // when it was counted
	prevLast time.Time // the key's last failure before it
	ok       bool
}

// Reserve counts one failure for the key before the attempt is checked,
// unless the key must still wait: then it returns the wait and counts
// nothing. Checking and counting are one step under the limiter's lock, so
// N concurrent attempts are limited exactly as N sequential ones would be.
// A correct attempt is then Reset (or Released), a wrong one left counted.
func (l *Limiter) Reserve(key string) (Reservation, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now() // under the lock: no earlier time than the last one written
	return l.reserveLocked(key, now)
}

func (l *Limiter) reserveLocked(key string, now time.Time) (Reservation, time.Duration) {
	e, ok := l.entries[key]
	if ok {
		if wait := l.remaining(e, now); wait > 0 {
			return Reservation{}, wait
		}
		if l.policy.Forget > 0 && now.Sub(e.last) > l.policy.Forget {
			e.failures = 0
		}
	} else {
		l.makeRoom(now)
		e = &entry{}
		l.entries[key] = e
	}
	res := Reservation{key: key, at: now, prevLast: e.last, ok: true}
	e.failures++
	e.last = now
	return res, 0
}

// Release takes back a reservation whose attempt was not checked (the
// client went away, the server could not check it): the count drops by
// one, and the time of the last failure goes back to what it was if no
// later failure moved it. A zero Reservation is ignored.
func (l *Limiter) Release(res Reservation) {
	if !res.ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.entries[res.key]
	if !ok || e.failures == 0 {
		return
	}
	e.failures--
	if e.last.Equal(res.at) {
		e.last = res.prevLast
	}
	if e.failures == 0 {
		delete(l.entries, res.key)
	}
}

// Failures returns the key's current count of consecutive failures.
func (l *Limiter) Failures(key string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now() // under the lock: no earlier time than the last one written
	e, ok := l.entries[key]
	if !ok || (l.policy.Forget > 0 && now.Sub(e.last) > l.policy.Forget) {
		return 0
	}
	return e.failures
}

// Reset forgets the key's failures (after a success).
func (l *Limiter) Reset(key string) {
	l.mu.Lock()
	delete(l.entries, key)
	l.mu.Unlock()
}

// makeRoom keeps the map bounded: it drops forgotten keys first, then keys
// that are not waiting. Keys that are waiting are kept, so flooding the
// limiter with new keys cannot lift a delay.
func (l *Limiter) makeRoom(now time.Time) {
	if len(l.entries) < l.maxEntries {
		return
	}
	for k, e := range l.entries {
		if l.policy.Forget > 0 && now.Sub(e.last) > l.policy.Forget {
			delete(l.entries, k)
		}
	}
	for k, e := range l.entries {
		if len(l.entries) < l.maxEntries {
			return
		}
		if l.remaining(e, now) == 0 {
			delete(l.entries, k)
		}
	}
}

// ClientKey turns a client IP into the key its failures are counted under:
// the address itself for IPv4, its /64 network for IPv6, since one
// subscriber usually holds a whole /64. A value that is not an IP is used
// as it is.
func ClientKey(ip string) string {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	addr = addr.Unmap()
	if addr.Is4() {
		return addr.String()
	}
	p, err := addr.WithZone("").Prefix(64)
	if err != nil {
		return addr.String()
	}
	return p.String()
}
