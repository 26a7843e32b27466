package caddymodule

import (
	"runtime"
	"testing"
)

func TestHashingDefault(t *testing.T) {
	h := &Handler{}
	provisionBench(t, h)
	want := max(1, runtime.NumCPU()/4)
	if h.MaxConcurrentHashes != want || h.users.MaxHashes() != want {
		t.Errorf("default max_concurrent_hashes: got %d (semaphore %d), want %d for %d CPUs",
			h.MaxConcurrentHashes, h.users.MaxHashes(), want, runtime.NumCPU())
	}
}
