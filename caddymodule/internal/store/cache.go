package store

import (
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
//   - A hit is checked against the user's current session generation,
//     kept in memory and moved before the change that ends the sessions
//     commits (generation.go), so ending them does not depend on the
//     invalidation above.
//   - A reader that missed only stores what it read if no invalidation of
//     its shard happened since before it read (a generation count), so a
//     record read just before a delete cannot come back after it.
//
// Expiry is checked on every hit, as on a read from disk. The cache is
// coherent only within the process that holds the store: fine for the
// embedded store, which one process opens at a time. A store shared by
// several instances (a later PostgreSQL backend) needs its own
// invalidation across them, or no cache.

// cacheShards spreads the entries over independently locked maps. Session
// keys are SHA-256 hashes, so their first byte is uniform.
const cacheShards = 16

// DefaultSessionCache is the number of sessions kept in memory when
// Options.SessionCache is zero: about 4 MiB at its fullest.
const DefaultSessionCache = 16384

type sessionCache struct {
	shards   [cacheShards]cacheShard
	perShard int
}

type cacheShard struct {
	mu  sync.RWMutex
	gen uint64
	m   map[string]Session // Key nil; Pending owned by the cache
}

// newSessionCache returns a cache of about size entries; nil (no caching)
// when size is not positive. Every method is safe on a nil cache.
func newSessionCache(size int) *sessionCache {
	if size <= 0 {
		return nil
	}
	c := &sessionCache{perShard: max(1, size/cacheShards)}
	for i := range c.shards {
		c.shards[i].m = make(map[string]Session)
	}
	return c
}

func (c *sessionCache) shard(key []byte) *cacheShard {
	return &c.shards[int(key[0])%cacheShards]
}

// get returns the cached record; on a miss it returns the shard's
// generation, to hand back to put.
func (c *sessionCache) get(key []byte) (Session, bool, uint64) {
	if c == nil {
		return Session{}, false, 0
	}
	sh := c.shard(key)
	sh.mu.RLock()
	s, ok := sh.m[string(key)]
	gen := sh.gen
	sh.mu.RUnlock()
	return s, ok, gen
}

// put stores a record read from disk, unless the shard was invalidated
// since gen was taken. A full shard drops an arbitrary entry.
func (c *sessionCache) put(key []byte, s Session, gen uint64) {
	if c == nil {
		return
	}
	s.Key = nil
	sh := c.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.gen != gen {
		return
	}
	if _, ok := sh.m[string(key)]; !ok && len(sh.m) >= c.perShard {
		for k := range sh.m {
			delete(sh.m, k)
			break
		}
	}
	sh.m[string(key)] = s
}

// drop removes one session, and fails any put that raced with the write.
func (c *sessionCache) drop(key []byte) {
	if c == nil || len(key) == 0 {
		return
	}
	sh := c.shard(key)
	sh.mu.Lock()
	sh.gen++
	delete(sh.m, string(key))
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
		for k, s := range sh.m {
			if s.User == user {
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
