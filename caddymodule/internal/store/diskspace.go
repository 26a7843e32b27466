package store

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// ErrNoSpace is wrapped by the error of a write refused because the store's
// file system is (nearly) full.
var ErrNoSpace = errors.New("not enough free disk space for the store")

// Badger writes through memory-mapped files that it creates sparse (the
// write-ahead log of each memtable, the value log) and fills later. On a
// full file system the kernel cannot back a page when it is first written,
// and the process dies of SIGBUS: no error, no 503, every site of that
// Caddy down. So writes are refused, with ErrNoSpace, while the free space
// is less than what the sparse files may still claim plus a reserve for
// flushing and compacting tables.

const (
	// diskReserve is the space kept free beyond the sparse files' claim:
	// room to flush a memtable (8 MiB) and compact a few tables.
	diskReserve = 64 << 20
	// diskCheckEvery is how long a free-space reading is trusted.
	diskCheckEvery = 250 * time.Millisecond
)

// spaceGuard decides whether the store's folder has room for a write.
type spaceGuard struct {
	dir     string
	reserve uint64
	// free reports the bytes available to this process on dir's file
	// system; ok is false where that cannot be told (the guard then lets
	// everything through).
	free func(dir string) (n uint64, ok bool)
	// now is the store's clock, which times the readings.
	now func() time.Time

	mu      sync.Mutex
	checked time.Time
	err     error
}

// freeSpace measures free space; tests replace it.
var freeSpace = freeBytes

func newSpaceGuard(dir string, now func() time.Time) *spaceGuard {
	return &spaceGuard{dir: dir, reserve: diskReserve, free: freeSpace, now: now}
}

// check returns nil if a write may go ahead, an error wrapping ErrNoSpace
// otherwise. A reading is reused for diskCheckEvery.
func (g *spaceGuard) check() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	t := g.now()
	if t.Sub(g.checked) < diskCheckEvery {
		return g.err
	}
	g.checked = t
	g.err = g.measure()
	return g.err
}

// measure compares the free space with the sparse files' claim plus the
// reserve.
func (g *spaceGuard) measure() error {
	free, ok := g.free(g.dir)
	if !ok {
		return nil
	}
	need := g.reserve + sparseClaim(g.dir)
	if free < need {
		return fmt.Errorf("%w: %d MiB free in %s, %d MiB needed (free some space; until then logins and changes fail with 503)",
			ErrNoSpace, free>>20, g.dir, (need+(1<<20)-1)>>20)
	}
	return nil
}

// sparseClaim is how many bytes badger's memory-mapped files in dir may
// still take: their size less the blocks already allocated to them.
func sparseClaim(dir string) uint64 {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	var claim uint64
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".mem") && !strings.HasSuffix(name, ".vlog") && !strings.HasSuffix(name, ".sst") {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		size := uint64(info.Size())
		if used, ok := allocatedBytes(info); ok && used < size {
			claim += size - used
		}
	}
	return claim
}
