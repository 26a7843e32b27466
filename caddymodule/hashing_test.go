package caddymodule

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// gaugeComparer is a password comparer that records how many comparisons
// run at once, each taking a little while.
type gaugeComparer struct {
	now, peak atomic.Int64
}

func (g *gaugeComparer) Compare(hashed, plaintext []byte) (bool, error) {
	n := g.now.Add(1)
	for {
		p := g.peak.Load()
		if n <= p || g.peak.CompareAndSwap(p, n) {
			break
		}
	}
	time.Sleep(5 * time.Millisecond)
	g.now.Add(-1)
	return string(plaintext) == "right", nil
}

// TestHashingBound checks that no more than max_concurrent_hashes password
// checks run at once, for known and unknown names alike, so that a flood of
// logins leaves the other CPUs to the proxied traffic.
func TestHashingBound(t *testing.T) {
	for _, bound := range []int{1, 3} {
		g := &gaugeComparer{}
		d, err := newDirectory([]User{{Username: "alice", Password: testHash}}, bound,
			func() (passwordHash, error) { return passwordHash{hash: []byte(testHash), compare: g}, nil })
		if err != nil {
			t.Fatal(err)
		}
		d.byKey["alice"].hash.compare = g
		for i := range d.decoys {
			d.decoys[i].compare = g
		}
		var wg sync.WaitGroup
		for i := range 24 {
			wg.Go(func() {
				name := "alice"
				if i%2 == 1 {
					name = "nobody"
				}
				if _, _, err := d.verify(context.Background(), noStoreUsers{}, name, "wrong"); err != nil {
					t.Errorf("verify: %v", err)
				}
			})
		}
		wg.Wait()
		if got := g.peak.Load(); got != int64(bound) {
			t.Errorf("max_concurrent_hashes %d: got %d hashes at once, want %d", bound, got, bound)
		}
	}
}

// TestHashingWaitEndsWithClient checks that a login waiting for a hashing
// slot gives up when its client goes away, rather than queueing forever.
func TestHashingWaitEndsWithClient(t *testing.T) {
	d, err := newDirectory([]User{{Username: "alice", Password: testHash}}, 1,
		func() (passwordHash, error) { return passwordHash{}, errors.New("no store users here") })
	if err != nil {
		t.Fatal(err)
	}
	d.hashing <- struct{}{} // the one slot is taken
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, ok, err := d.verify(ctx, noStoreUsers{}, "alice", testPassword); ok || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("verify while every slot is taken: got ok=%v err=%v, want the context's error", ok, err)
	}
}

func TestHashingDefault(t *testing.T) {
	h := &Handler{}
	provisionBench(t, h)
	want := max(1, runtime.NumCPU()/4)
	if h.MaxConcurrentHashes != want || cap(h.users.hashing) != want {
		t.Errorf("default max_concurrent_hashes: got %d (semaphore %d), want %d for %d CPUs",
			h.MaxConcurrentHashes, cap(h.users.hashing), want, runtime.NumCPU())
	}
}
