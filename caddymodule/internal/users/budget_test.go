package users

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"
)

// fakeBudget is a hashing budget of rate on a clock of its own, whose
// sleeps move that clock and are recorded instead of waited.
func fakeBudget(rate float64, burst time.Duration) (*Budget, *time.Time, *[]time.Duration) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	var slept []time.Duration
	b := &Budget{rate: rate, burst: burst, now: func() time.Time { return now }, tokens: burst, last: now}
	b.sleep = func(ctx context.Context, d time.Duration) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		slept = append(slept, d)
		now = now.Add(d)
		return nil
	}
	return b, &now, &slept
}

// TestHashBudgetBoundsCPUOverTime runs a flood of hashes, each "taking"
// 100 ms, through a budget of 0.2 CPU-seconds per second with 1 s saved up:
// the first ten run at once, and from then on the flood gets 0.2 s of
// hashing per second of time, however many hashes it sends.
func TestHashBudgetBoundsCPUOverTime(t *testing.T) {
	b, now, slept := fakeBudget(0.2, time.Second)
	start := *now
	const took = 100 * time.Millisecond
	var spent time.Duration
	for i := range 60 {
		booked, err := b.reserve(context.Background())
		if err != nil {
			t.Fatalf("hash %d: %v", i, err)
		}
		b.done(booked, took)
		spent += took
		if i < 10 && len(*slept) != 0 {
			t.Fatalf("hash %d waited %v within the burst", i, *slept)
		}
	}
	elapsed := now.Sub(start)
	// 6 s of hashing = 1 s saved up + 0.2 × elapsed, to within one hash.
	want := time.Duration(float64(spent-time.Second) / 0.2)
	if slack := 5 * took; elapsed < want-slack || elapsed > want+slack {
		t.Errorf("60 hashes of %v took %v of time, want about %v (0.2 CPU with 1 s saved up)", took, elapsed, want)
	}
	for _, d := range (*slept)[1:] {
		if d > 600*time.Millisecond {
			t.Errorf("a wait of %v: waits should be about one hash's worth (500 ms) once the budget is spent", d)
		}
	}
}

// TestHashBudgetRefill checks that an idle budget fills up to its burst and
// no further.
func TestHashBudgetRefill(t *testing.T) {
	b, now, slept := fakeBudget(0.5, 2*time.Second)
	// Hashes of 500 ms until one has to wait: the 2 s saved up are four.
	untilWait := func() int {
		*slept = nil
		for i := range 100 {
			booked, err := b.reserve(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			b.done(booked, 500*time.Millisecond)
			if len(*slept) != 0 {
				if (*slept)[0] != time.Second {
					t.Errorf("hash %d waited %v, want 1 s (500 ms at 0.5 CPU)", i+1, (*slept)[0])
				}
				return i
			}
		}
		return 100
	}
	if n := untilWait(); n != 4 {
		t.Fatalf("a full budget of 2 s ran %d hashes of 500 ms before one waited, want 4", n)
	}
	*now = now.Add(time.Hour)
	if n := untilWait(); n != 4 {
		t.Fatalf("after an idle hour the budget ran %d hashes of 500 ms before one waited, want 4 (it holds 2 s at most)", n)
	}
}

// TestHashBudgetRefusesLongWaits checks that a hash which would wait more
// than MaxHashWait is refused at once, books nothing, and says how long
// to wait; that a client going away while waiting gives its booking back;
// and that a hash dearer than the whole budget runs when the budget is full.
func TestHashBudgetRefusesLongWaits(t *testing.T) {
	b, now, slept := fakeBudget(0.1, 2*time.Second)
	booked, _ := b.reserve(context.Background())
	b.done(booked, 4*time.Second) // 2 s in the red; 4 s expected next time
	before := b.tokens
	_, err := b.reserve(context.Background())
	wait, ok := OverBudget(err)
	if !ok || len(*slept) != 1 || (*slept)[0] != refusalPause {
		t.Fatalf("reserve 2 s in the red at 0.1 CPU: got %v (waits %v), want errHashBudget after a pause of %v", err, *slept, refusalPause)
	}
	*slept = nil
	*now = now.Add(-refusalPause) // as if it had answered at once
	if b.tokens != before {
		t.Errorf("a refused hash booked %v", before-b.tokens)
	}
	if wait != 40*time.Second {
		t.Errorf("refused with a wait of %v, want 40 s (from -2 s to a full 2 s, at 0.1 CPU)", wait)
	}
	// After 35 s, the wait is 5 s: allowed, but the client leaves.
	*now = now.Add(35 * time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.reserve(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("reserve with the client gone: got %v, want context.Canceled", err)
	}
	if got := b.tokens; got != 1500*time.Millisecond {
		t.Errorf("after a cancelled wait the budget is %v, want 1.5 s (nothing kept booked)", got)
	}
	// Full, it lets a 4 s hash run though it holds only 2 s.
	*now = now.Add(time.Hour)
	if _, err := b.reserve(context.Background()); err != nil || len(*slept) != 0 {
		t.Errorf("a full budget smaller than one hash: got %v, waits %v; want the hash to run at once", err, *slept)
	}
	// A nil budget is no budget.
	var none *Budget
	if booked, err := none.reserve(context.Background()); booked != 0 || err != nil {
		t.Errorf("nil budget: got %v, %v", booked, err)
	}
	none.done(0, time.Second)
}

// TestHashBudgetExtremes checks that neither a vanishing rate nor a long
// idle time at a high rate overflows: the first still refuses, with a
// capped wait; the second is full, not negative.
func TestHashBudgetExtremes(t *testing.T) {
	b, _, _ := fakeBudget(1e-300, time.Second)
	booked, _ := b.reserve(context.Background())
	b.done(booked, 2*time.Second)
	_, err := b.reserve(context.Background())
	if wait, ok := OverBudget(err); !ok || wait != maxRetryAfter {
		t.Errorf("a vanishing rate: got %v, want a refusal with a wait of %v", err, maxRetryAfter)
	}
	b, now, slept := fakeBudget(1024, time.Hour)
	*now = now.Add(100 * 365 * 24 * time.Hour)
	if _, err := b.reserve(context.Background()); err != nil || len(*slept) != 0 || b.tokens != time.Hour {
		t.Errorf("after a century at 1024 CPUs: err %v, waits %v, budget %v; want a full budget of 1h", err, *slept, b.tokens)
	}
}

// TestHashBudgetLogsOncePerMinute checks that refusals are logged at most
// once a minute, and again after a minute even while they go on.
func TestHashBudgetLogsOncePerMinute(t *testing.T) {
	b, now, _ := fakeBudget(1, time.Second)
	var logged []int
	for s := 0; s <= 130; s += 10 { // a refusal every 10 s
		if b.LogDue() {
			logged = append(logged, s)
		}
		*now = now.Add(10 * time.Second)
	}
	if want := []int{0, 60, 120}; !reflect.DeepEqual(logged, want) {
		t.Errorf("refusals every 10 s were logged at %v s, want %v", logged, want)
	}
	var none *Budget
	if none.LogDue() {
		t.Error("nil budget: log due")
	}
}

// TestHashBudgetUnderConcurrency books from many goroutines at once: the
// total booked and settled must balance (run with -race).
func TestHashBudgetUnderConcurrency(t *testing.T) {
	b := NewBudget(100, time.Hour, time.Now)
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for range 50 {
				booked, err := b.reserve(context.Background())
				if err != nil {
					t.Error(err)
					return
				}
				b.done(booked, time.Millisecond)
			}
		})
	}
	wg.Wait()
	if b.tokens > b.burst || b.tokens < b.burst-2*time.Second {
		t.Errorf("after 1600 hashes of 1 ms in a budget of an hour: %v left", b.tokens)
	}
}
