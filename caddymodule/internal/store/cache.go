package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"sync"
)

// The session cache keeps decoded session records in memory, so that the
// gate's hot path (one Session read per proxied request) does not open a
// badger transaction each time: a badger read costs two channel
// round-trips through its watermark goroutine and a dozen allocations,
// which is most of what the gate adds to a request.
//
// Correctness rests on three rules:
//
//   - Every write that may change or end a session invalidates the cache
//     after it commits and before it returns: PutSession and DeleteSession
//     drop their key (and those of the sessions the cap ended), the changes
//     that end all of a user's sessions drop every entry of the user, and
//     any other read-write transaction (Badger.update) drops everything. So
//     once a logout, a revocation or a reset has returned, no request is
//     served from a cached copy of what it ended.
//   - In badger, a hit is checked against the user's current session
//     generation, kept in memory and moved before the change that ends the
//     sessions commits (generation.go), so ending them does not depend on
//     the invalidation above.
//   - A reader that missed only stores what it read if no invalidation of
//     its shard happened since before it read (a generation count), so a
//     record read just before a delete cannot come back after it.
//
// Expiry is checked on every hit, as on a read from disk. The cache is
// coherent only within the process that holds the store: fine for the
// embedded store, which one process opens at a time. PostgreSQL, shared by
// several instances, keeps it coherent across them with notifications, and
// uses it only while it hears them (postgres_cache.go).

// cacheShards spreads the entries over independently locked maps. Session
// keys are SHA-256 hashes, so their first byte is uniform.
const cacheShards = 16

// DefaultSessionCache is the number of sessions kept in memory when
// Options.SessionCache is zero: about 4 MiB at its fullest.
const DefaultSessionCache = 16384

// The layout serves the proxied path, whose cost under load is cache
// misses more than instructions: the map's key is the 32-byte key itself
// (compared in the map's slot, no pointer to follow), its value two
// pointers, and a hit reads only the first cache lines of the record (the
// fields the proxied path reads, which Session's layout puts first; the
// record is handed out in place, never copied) and
// the user's generation cell, with no second map lookup.
type sessionCache struct {
	shards   [cacheShards]cacheShard
	perShard int
}

type cacheShard struct {
	mu  sync.RWMutex
	gen uint64
	m   map[cacheKey]cacheEntry
}

// cacheKey is a session key as the cache holds it: the key itself when it
// has the size of a SHA-256 hash, as every session key the sessions make
// does; any other key (tests, a record restored from elsewhere) by its
// hash.
type cacheKey [sha256.Size]byte

func keyOf(key []byte) cacheKey {
	if len(key) == sha256.Size {
		return cacheKey(key)
	}
	return sha256.Sum256(key)
}

// cacheEntry is a cached session: the record, which nobody changes once
// it is in the cache (Key nil, Pending and Shown owned by the cache), and
// for badger the user's generation cell at the time of the read (nil for
// PostgreSQL, whose cache is kept by notifications).
type cacheEntry struct {
	s   *Session
	gen *genCell
}

// newSessionCache returns a cache of about size entries; nil (no caching)
// when size is not positive. Every method is safe on a nil cache.
func newSessionCache(size int) *sessionCache {
	if size <= 0 {
		return nil
	}
	c := &sessionCache{perShard: max(1, size/cacheShards)}
	for i := range c.shards {
		c.shards[i].m = make(map[cacheKey]cacheEntry)
	}
	return c
}

func (c *sessionCache) shard(k *cacheKey) *cacheShard {
	return &c.shards[int(k[0])%cacheShards]
}

// get returns the cached entry; on a miss it returns the shard's
// generation, to hand back to put.
func (c *sessionCache) get(key []byte) (cacheEntry, bool, uint64) {
	if c == nil {
		return cacheEntry{}, false, 0
	}
	k := keyOf(key)
	sh := c.shard(&k)
	sh.mu.RLock()
	e, ok := sh.m[k]
	gen := sh.gen
	sh.mu.RUnlock()
	return e, ok, gen
}

// put stores a record read from disk, with the generation cell its
// generation was checked against, unless the shard was invalidated since
// gen was taken. A full shard drops an arbitrary entry.
func (c *sessionCache) put(key []byte, s Session, cell *genCell, gen uint64) {
	if c == nil {
		return
	}
	s.Key = bytes.Clone(key) // SessionAdmission hands the record out as it is
	k := keyOf(key)
	sh := c.shard(&k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.gen != gen {
		return
	}
	if _, ok := sh.m[k]; !ok && len(sh.m) >= c.perShard {
		for old := range sh.m {
			delete(sh.m, old)
			break
		}
	}
	sh.m[k] = cacheEntry{s: &s, gen: cell}
}

// drop removes one session, and fails any put that raced with the write.
func (c *sessionCache) drop(key []byte) {
	if c == nil || len(key) == 0 {
		return
	}
	k := keyOf(key)
	sh := c.shard(&k)
	sh.mu.Lock()
	sh.gen++
	delete(sh.m, k)
	sh.mu.Unlock()
}

// dropUser removes every session of the user.
func (c *sessionCache) dropUser(user string) {
	if c == nil {
		return
	}
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		sh.gen++
		for k, e := range sh.m {
			if e.s.User == user {
				delete(sh.m, k)
			}
		}
		sh.mu.Unlock()
	}
}

// clear removes everything.
func (c *sessionCache) clear() {
	if c == nil {
		return
	}
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		sh.gen++
		clear(sh.m)
		sh.mu.Unlock()
	}
}

// len is the number of cached sessions.
func (c *sessionCache) len() int {
	if c == nil {
		return 0
	}
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.RLock()
		n += len(sh.m)
		sh.mu.RUnlock()
	}
	return n
}

// admission hands out a record as SessionAdmission does: in place.
func admission(s *Session) Admission { return Admission{Rec: s, User: s.User} }

// readAdmission is SessionAdmission's cache miss: the record read by
// Session. A function of its own, so that the hit's frame stays small (a
// Session on the stack is some 330 bytes, and the frames below it would
// sit that much deeper).
//
//go:noinline
func readAdmission(ctx context.Context, st Store, key []byte) (Admission, error) {
	s, err := st.Session(ctx, key)
	if err != nil {
		return Admission{}, err
	}
	return admission(&s), nil
}
