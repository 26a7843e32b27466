package users

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// errHashBudget is returned when a password check would have to wait
// longer than MaxHashWait for the hashing budget. The request is refused
// with 503 and a Retry-After; nothing was checked or counted.
type errHashBudget struct{ wait time.Duration }

func (e errHashBudget) Error() string {
	return "password hashing is over its CPU budget; try again in " + e.wait.Round(time.Second).String()
}

// MaxHashWait is how long a login may wait for the hashing budget before it
// is refused: long enough to smooth a burst of real logins, short enough
// that a browser does not give up first.
const MaxHashWait = 10 * time.Second

// maxRetryAfter caps the wait a refusal reports.
const maxRetryAfter = 24 * time.Hour

// refusalPause is how long a login refused for the budget is held before
// its answer.
const refusalPause = time.Second

// Budget bounds the CPU time that password hashing takes over time,
// where max_concurrent_hashes bounds only how many hashes run at once. It
// is a token bucket of CPU time: it fills at a share of the CPUs (10% by
// default) up to a burst, each hash is charged what it took, and a hash
// starts only once the budget has room for what the last hashes cost. A
// flood of wrong passwords therefore gets that share of the CPUs and no
// more (on 2 CPUs, one hash at a time is half of the machine; the budget
// makes it a tenth), while the occasional real login never waits: a
// minute's worth of budget is saved up for it.
//
// Each hash is charged its wall time, which is its CPU time when it runs
// alone and more when the CPUs are busy, so the budget errs towards the
// proxied traffic exactly when the machine is loaded.
type Budget struct {
	mu    sync.Mutex
	rate  float64       // budget earned per unit of time: the share × the CPUs
	burst time.Duration // the most budget saved up
	now   func() time.Time
	// sleep waits for d or for ctx to end; a field so that tests can
	// wait without waiting.
	sleep func(ctx context.Context, d time.Duration) error

	// logged is when (Unix seconds) a refusal was last logged: once a
	// minute is enough during a flood.
	logged atomic.Int64

	tokens time.Duration // may be negative: reserved by hashes waiting
	last   time.Time     // when tokens was last brought up to date
	est    time.Duration // what the next hash is expected to cost
}

// NewBudget returns a budget of percent of the CPUs Go schedules on,
// saving up at most burst (0: a minute's worth, at least 10 s of CPU time).
// It starts full.
func NewBudget(percent float64, burst time.Duration, now func() time.Time) *Budget {
	rate := percent / 100 * float64(runtime.GOMAXPROCS(0))
	if burst <= 0 {
		burst = max(10*time.Second, time.Duration(rate*float64(time.Minute)))
	}
	return &Budget{rate: rate, burst: burst, now: now, sleep: sleepCtx, tokens: burst, last: now()}
}

// sleepCtx waits for d, or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// refill adds the budget earned since the last call. Called with mu held.
func (b *Budget) refill(now time.Time) {
	if el := now.Sub(b.last); el > 0 {
		// In floating point: a long idle time at a high rate must not
		// overflow into a negative budget.
		b.tokens = time.Duration(min(float64(b.burst), float64(b.tokens)+float64(el)*b.rate))
	}
	b.last = now
}

// reserve books the expected cost of one hash and waits until the budget
// covers it (the budget may go into the red by what is booked). It
// returns the amount booked, to be settled with done; or, when the wait
// would be longer than MaxHashWait, books nothing and returns
// errHashBudget after refusalPause; or the context's error if the client
// goes away while waiting (the booking is given back). A nil budget books
// nothing.
func (b *Budget) reserve(ctx context.Context) (time.Duration, error) {
	if b == nil {
		return 0, nil
	}
	b.mu.Lock()
	b.refill(b.now())
	cost := b.est
	// A hash may start once the budget holds what it is expected to cost,
	// or is full: a budget smaller than one hash must not refuse them all.
	var wait time.Duration
	if short := min(cost, b.burst) - b.tokens; short > 0 {
		// In floating point, capped: a tiny rate must not overflow into a
		// negative wait, which would let the hash through.
		wait = time.Duration(min(float64(short)/b.rate, float64(maxRetryAfter)))
	}
	if wait > MaxHashWait {
		b.mu.Unlock()
		// The refusal comes after a pause, so that a flood's clients, which
		// wait for each answer, do not turn into a flood of cheap requests.
		if err := b.sleep(ctx, refusalPause); err != nil {
			return 0, err
		}
		return 0, errHashBudget{wait: wait}
	}
	b.tokens -= cost
	b.mu.Unlock()
	if wait > 0 {
		if err := b.sleep(ctx, wait); err != nil {
			b.done(cost, 0)
			return 0, err
		}
	}
	return cost, nil
}

// done settles a booking with what the hash really took, and moves the
// expectation for the next one towards it. A hash that never ran (took 0)
// gives its booking back and teaches nothing.
func (b *Budget) done(booked, took time.Duration) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tokens += booked - took
	if took > 0 {
		if b.est == 0 {
			b.est = took
		} else {
			b.est += (took - b.est) / 4
		}
	}
}

// LogDue reports whether a refusal should be logged now: at most once a
// minute.
func (b *Budget) LogDue() bool {
	if b == nil {
		return false
	}
	now := b.now().Unix()
	prev := b.logged.Load()
	return now-prev >= 60 && b.logged.CompareAndSwap(prev, now)
}

// OverBudget reports the wait of an errHashBudget.
func OverBudget(err error) (time.Duration, bool) {
	var e errHashBudget
	if errors.As(err, &e) {
		return e.wait, true
	}
	return 0, false
}
