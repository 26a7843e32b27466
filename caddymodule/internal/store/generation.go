package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
)

// Ending all of a user's sessions must not depend on how many there are:
// one transaction can only delete a few thousand records. So each user has
// a session generation (key g/<user>, 0 when absent), each session record
// carries the generation it was written under, and ending them all is one
// write: the next generation, in the same transaction as the change that
// ends them (enable, disable, password change, user deletion, revocation).
// Session, UpdateSession and TouchSession refuse a record of another
// generation; the records left behind are deleted afterwards in bounded
// batches by the sweeper, or expire.
//
// The hot path must not read the generation from disk for a session served
// from the cache, so the current generations are kept in memory (genTable).
// The rules that keep it from ever being behind the disk:
//
//   - A change that moves a user on sets the new generation in memory before
//     its transaction commits, and again after it committed (raise only ever
//     moves a generation up), so from the commit on no old record is served.
//   - A reader that loaded a generation from disk stores it with raise too:
//     a load that raced a change cannot move the generation back.
//   - A change whose commit failed reads the generation from disk again and
//     sets that, so that a failed revocation neither keeps the user's new
//     sessions out nor, if the commit did land, lets the old ones back in.
//     If even that read fails, the raised value stays: sessions end (fail
//     closed) until the user's next change or a restart.
//
// All changes of generations are serialised by Badger.bumpMu; they are rare
// (operators and Security pages), unlike reads.

// maxGenEntries bounds the generations kept in memory; one past it drops
// an arbitrary entry, which the next request of that user reads again.
const maxGenEntries = 1 << 16

// sweepBatch is how many stale sessions the sweeper deletes per
// transaction (two deletes each: the record and its index entry), far
// below badger's limit of a transaction.
const sweepBatch = 500

// DefaultMaxSessionsPerUser is the cap on a user's live sessions when
// Options.MaxSessionsPerUser is zero.
const DefaultMaxSessionsPerUser = 100

// maxEvictions bounds how many sessions one PutSession ends to keep the
// user under the cap; a cap lowered by more than that is reached over the
// following puts.
const maxEvictions = sweepBatch

type genTable struct {
	mu sync.RWMutex
	m  map[string]*genCell
}

// genCell holds one user's generation. A cached session keeps a pointer to
// its user's cell, so that a hit reads the generation without a map
// lookup. Every change of the user's generation goes to the cell in the
// table; a cell dropped from the table is marked gone first, and a reader
// of a gone cell asks the table again (current).
type genCell struct {
	v    atomic.Uint64
	gone atomic.Bool
}

// current returns the generation the cell holds, ok false once the cell is
// no longer the user's. The value is read before the mark: if the mark is
// still clear after it, the value was the user's generation when read.
func (c *genCell) current() (uint64, bool) {
	if c == nil {
		return 0, false
	}
	v := c.v.Load()
	return v, !c.gone.Load()
}

func newGenTable() *genTable { return &genTable{m: make(map[string]*genCell)} }

// get returns the user's generation if it is in memory. It does not
// allocate.
func (g *genTable) get(user string) (uint64, bool) {
	g.mu.RLock()
	c := g.m[user]
	g.mu.RUnlock()
	if c == nil {
		return 0, false
	}
	return c.v.Load(), true
}

// cell returns the user's cell, nil if the generation is not in memory.
func (g *genTable) cell(user string) *genCell {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.m[user]
}

// raise sets the user's generation to v unless it is already higher, and
// returns the generation now in memory.
func (g *genTable) raise(user string, v uint64) uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	if c := g.m[user]; c != nil {
		if cur := c.v.Load(); cur >= v {
			return cur
		}
	}
	g.setLocked(user, v)
	return v
}

// set replaces the user's generation, for a change whose commit failed.
func (g *genTable) set(user string, v uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.setLocked(user, v)
}

// setLocked stores v in the user's cell, or in a new one; a full table
// first drops an arbitrary cell, marked gone for the cached sessions that
// point to it. Called with g.mu held.
func (g *genTable) setLocked(user string, v uint64) {
	if c := g.m[user]; c != nil {
		c.v.Store(v)
		return
	}
	if len(g.m) >= maxGenEntries {
		for k, old := range g.m {
			old.gone.Store(true)
			delete(g.m, k)
			break
		}
	}
	c := new(genCell)
	c.v.Store(v)
	g.m[user] = c
}

// getGen reads the user's generation within txn.
func getGen(txn *badger.Txn, user string) (uint64, error) {
	item, err := txn.Get(genKey(user))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var g uint64
	err = item.Value(func(v []byte) error {
		g, err = decodeGen(v)
		return err
	})
	return g, err
}

// currentGen returns the user's generation: from memory, or read from disk
// and remembered.
func (b *Badger) currentGen(ctx context.Context, user string) (uint64, error) {
	if g, ok := b.gens.get(user); ok {
		return g, nil
	}
	var g uint64
	err := b.view(ctx, func(txn *badger.Txn) error {
		var err error
		g, err = getGen(txn, user)
		return err
	})
	if err != nil {
		return 0, err
	}
	return b.gens.raise(user, g), nil
}

// indexGen returns the generation and creation time of the session an
// index entry stands for, from the entry's value or, for an entry written
// before generations, from the record; ok is false for an entry whose
// record is gone, another user's or unreadable.
func indexGen(txn *badger.Txn, item *badger.Item, user string, key []byte) (gen uint64, s Session, ok bool, err error) {
	var v []byte
	if item.ValueSize() > 0 {
		if v, err = item.ValueCopy(nil); err != nil {
			return 0, Session{}, false, err
		}
		gen, created, derr := decodeIndex(v)
		if derr == nil {
			return gen, Session{Created: created}, true, nil
		}
	}
	rec, err := txn.Get(sessionKey(key))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, Session{}, false, nil
	}
	if err != nil {
		return 0, Session{}, false, err
	}
	derr := rec.Value(func(v []byte) error {
		var err error
		s, err = decodeSession(v)
		return err
	})
	if derr != nil || s.User != user {
		return 0, Session{}, false, nil
	}
	return s.Gen, s, true, nil
}

// endSessions runs change and moves the user to the next session
// generation in one transaction, which ends every session of the user but
// keep (may be nil): that one, if it is a live session of the user's
// current generation, is written again under the new one. It returns how
// many sessions of the current generation there were besides keep, counted
// before the change (a count for the operator, not part of the change).
// Whatever their number, the transaction writes three records at most.
func (b *Badger) endSessions(ctx context.Context, user string, keep []byte, change func(txn *badger.Txn) error) (int, error) {
	n, err := b.countSessions(ctx, user, keep)
	if err != nil {
		return 0, err
	}
	b.bumpMu.Lock()
	defer b.bumpMu.Unlock()
	var next uint64
	raised := false
	err = b.write(ctx, func(txn *badger.Txn) error {
		if change != nil {
			if err := change(txn); err != nil {
				return err
			}
		}
		g, err := getGen(txn, user)
		if err != nil {
			return err
		}
		next = g + 1
		if err := txn.Set(genKey(user), binary.AppendUvarint(nil, next)); err != nil {
			return err
		}
		if len(keep) > 0 {
			if err := b.rewriteKept(txn, user, keep, g, next); err != nil {
				return err
			}
		}
		// From here on only the commit can fail: refuse the old
		// generation before it lands.
		b.gens.raise(user, next)
		raised = true
		return nil
	}, func() { b.sessions.dropUser(user) })
	switch {
	case err == nil:
		b.gens.raise(user, next)
		b.sweepLater(user)
		return n, nil
	case raised:
		b.resyncGen(user)
	}
	return 0, err
}

// resyncGen sets the in-memory generation to the one on disk after a change
// failed to commit. Called with bumpMu held.
func (b *Badger) resyncGen(user string) {
	var g uint64
	err := b.view(context.Background(), func(txn *badger.Txn) error {
		var err error
		g, err = getGen(txn, user)
		return err
	})
	if err == nil {
		b.gens.set(user, g)
	}
}

// rewriteKept writes the kept session again under generation next, if it
// is a live session of the user under generation cur.
func (b *Badger) rewriteKept(txn *badger.Txn, user string, keep []byte, cur, next uint64) error {
	sk := sessionKey(keep)
	s, err := getSession(txn, sk)
	if errors.Is(err, ErrNotFound) || errors.Is(err, errMalformed) {
		return nil // gone, or not decodable: not a session to keep
	}
	if err != nil {
		return err
	}
	if s.User != user || s.Gen != cur || !b.now().Before(s.Expires) {
		return nil
	}
	s.Gen = next
	if err := txn.SetEntry(sessionEntry(sk, encodeSession(nil, &s), s.Expires)); err != nil {
		return err
	}
	return txn.SetEntry(sessionEntry(indexKey(user, keep), encodeIndex(&s), s.Expires))
}

// countSessions counts the user's live sessions of the current generation
// other than keep, in one read transaction.
func (b *Badger) countSessions(ctx context.Context, user string, keep []byte) (int, error) {
	n := 0
	err := b.view(ctx, func(txn *badger.Txn) error {
		g, err := getGen(txn, user)
		if err != nil {
			return err
		}
		return scanUser(txn, user, func(key []byte, gen uint64, _ Session) (bool, error) {
			if gen == g && (keep == nil || !bytes.Equal(key, keep)) {
				n++
			}
			return true, nil
		})
	})
	return n, err
}

// scanUser calls fn for each of the user's index entries whose session
// exists (as far as the index tells), in key order, until fn returns false.
// key aliases a buffer valid only during the call; s holds at least
// Created.
func scanUser(txn *badger.Txn, user string, fn func(key []byte, gen uint64, s Session) (bool, error)) error {
	prefix := indexPrefix(user)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		item := it.Item()
		key := item.Key()[len(prefix):]
		gen, s, ok, err := indexGen(txn, item, user, key)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		more, err := fn(key, gen, s)
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// sweepLater queues the user for the sweeper.
func (b *Badger) sweepLater(user string) {
	b.sweepMu.Lock()
	b.sweepQueue[user] = struct{}{}
	b.sweepMu.Unlock()
	select {
	case b.sweepWake <- struct{}{}:
	default:
	}
}

// runSweeper deletes the sessions of old generations of the users queued
// by sweepLater, a batch per transaction, until Close. What it has not
// done when the process ends expires with the sessions' own lifetimes.
func (b *Badger) runSweeper(logf func(level, msg string)) {
	defer close(b.sweepDone)
	for {
		select {
		case <-b.stopGC:
			return
		case <-b.sweepWake:
		}
		for {
			b.sweepMu.Lock()
			var user string
			found := false
			for u := range b.sweepQueue {
				user, found = u, true
				delete(b.sweepQueue, u)
				break
			}
			b.sweepMu.Unlock()
			if !found {
				break
			}
			if err := b.sweepUser(user); err != nil {
				if errors.Is(err, errStopped) {
					return
				}
				if logf != nil {
					logf("error", "deleting ended sessions: "+err.Error())
				}
			}
		}
	}
}

// errStopped: the sweeper was stopped by Close.
var errStopped = errors.New("stopped")

// sweepUser deletes every stale index entry and session record of the
// user, in batches of sweepBatch sessions.
func (b *Badger) sweepUser(user string) error {
	var from []byte
	for {
		select {
		case <-b.stopGC:
			return errStopped
		default:
		}
		keys, last, err := b.staleSessions(user, from)
		if err != nil {
			return err
		}
		if len(keys) > 0 {
			if err := b.deleteStale(user, keys); err != nil {
				return err
			}
		}
		if last == nil {
			return nil
		}
		from = last
	}
}

// staleSessions returns up to sweepBatch session keys of the user whose
// index entries stand for no session of the current generation, scanning
// the index after from (nil: from the start); last is where to go on from,
// nil when the scan reached the end.
func (b *Badger) staleSessions(user string, from []byte) (keys [][]byte, last []byte, err error) {
	err = b.view(context.Background(), func(txn *badger.Txn) error {
		g, err := getGen(txn, user)
		if err != nil {
			return err
		}
		prefix := indexPrefix(user)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		start := prefix
		if from != nil {
			start = from
		}
		for it.Seek(start); it.Valid(); it.Next() {
			item := it.Item()
			if from != nil && bytes.Equal(item.Key(), from) {
				continue
			}
			key := item.Key()[len(prefix):]
			gen, _, ok, err := indexGen(txn, item, user, key)
			if err != nil {
				return err
			}
			if ok && gen == g {
				continue
			}
			keys = append(keys, bytes.Clone(key))
			if len(keys) == sweepBatch {
				last = item.KeyCopy(nil)
				return nil
			}
		}
		return nil
	})
	return keys, last, err
}

// deleteStale deletes, in one transaction, the index entries and records
// of the given sessions of the user that are still stale.
func (b *Badger) deleteStale(user string, keys [][]byte) error {
	return b.write(context.Background(), func(txn *badger.Txn) error {
		g, err := getGen(txn, user)
		if err != nil {
			return err
		}
		for _, key := range keys {
			ik := indexKey(user, key)
			item, err := txn.Get(ik)
			if errors.Is(err, badger.ErrKeyNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			gen, _, ok, err := indexGen(txn, item, user, key)
			if err != nil {
				return err
			}
			if ok && gen == g {
				continue // written again meanwhile
			}
			if err := txn.Delete(ik); err != nil {
				return err
			}
			// Delete the record only if it is the user's and of an
			// old generation.
			sk := sessionKey(key)
			rec, err := txn.Get(sk)
			if errors.Is(err, badger.ErrKeyNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			var s Session
			if rec.Value(func(v []byte) error {
				var err error
				s, err = decodeSession(v)
				return err
			}) != nil || s.User != user || s.Gen == g {
				continue
			}
			if err := txn.Delete(sk); err != nil {
				return err
			}
		}
		return nil
	}, func() {
		for _, k := range keys {
			b.sessions.drop(k)
		}
	})
}
