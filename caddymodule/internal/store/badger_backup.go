package store

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/pb"
	"google.golang.org/protobuf/proto"
)

// Limits on what Restore reads: a store of users and enrolments is small,
// and the backup is held in memory while it is checked.
const (
	maxBackupFrame = 64 << 20
	maxBackupBytes = 512 << 20
)

// Bits of badger's entry meta byte that a backup carries (see badger's
// value.go): a deleted key is written as an entry with bitDelete.
const badgerBitDelete byte = 1 << 0

// Backup writes badger's backup format (what `badger backup` writes, and
// `badger restore` reads): a consistent snapshot of the users, enrolments
// and meta values.
//
// It holds only the current value of each key. badger keeps superseded
// versions and deletion markers until a compaction drops them, and its own
// backup streams them all: a former password hash, the record of a backup
// code since used, a deleted user. Here one read transaction's iterators,
// which see only the newest live version of each key, feed the frames.
// Sessions are left out: they are short-lived, and a backup holding them
// would bring back sessions ended since (Restore skips them in backups
// written before).
func (b *Badger) Backup(ctx context.Context, w io.Writer) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return wrap("backup", errClosed)
	}
	// The writer may be a client's connection: stop writing when the
	// context ends.
	out := ctxWriter{ctx, w}
	err := b.db.View(func(txn *badger.Txn) error {
		var list pb.KVList
		size := 0
		for _, p := range backupPrefixes {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(p), PrefetchValues: false})
			for it.Rewind(); it.Valid(); it.Next() {
				item := it.Item()
				v, err := item.ValueCopy(nil)
				if err != nil {
					it.Close()
					return err
				}
				list.Kv = append(list.Kv, &pb.KV{
					Key:       item.KeyCopy(nil),
					Value:     v,
					UserMeta:  []byte{item.UserMeta()},
					Version:   item.Version(),
					ExpiresAt: item.ExpiresAt(),
					Meta:      []byte{0},
				})
				if size += len(item.Key()) + len(v); size >= backupFrameTarget {
					if err := writeFrame(out, &list); err != nil {
						it.Close()
						return err
					}
					list.Kv, size = list.Kv[:0], 0
				}
			}
			it.Close()
		}
		if len(list.Kv) == 0 {
			return nil
		}
		return writeFrame(out, &list)
	})
	if err != nil {
		return wrap("backup", err)
	}
	return nil
}

// backupPrefixes are the kinds of record a backup holds.
var backupPrefixes = []string{prefixUser, prefixAccount, prefixMeta}

// backupFrameTarget is the size of keys and values after which Backup
// starts a new frame, far below maxBackupFrame.
const backupFrameTarget = 1 << 20

// writeFrame writes one frame of badger's backup format: the length of the
// encoded list as a little-endian uint64, then the list.
func writeFrame(w io.Writer, list *pb.KVList) error {
	buf, err := proto.Marshal(list)
	if err != nil {
		return err
	}
	var head [8]byte
	binary.LittleEndian.PutUint64(head[:], uint64(len(buf)))
	if _, err := w.Write(head[:]); err != nil {
		return err
	}
	_, err = w.Write(buf)
	return err
}

type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

// restoreSet is a checked backup, ready to be written.
type restoreSet struct {
	snap  Snapshot
	users map[string][]byte
	accts map[string][]byte
}

// CheckBackup reads and checks a whole backup without restoring it, and
// summarises it. It reads no store, so the expiry of the backup's records
// is judged by time.Now.
func CheckBackup(r io.Reader) (Snapshot, error) {
	set, err := readBackup(r, time.Now)
	if err != nil {
		return Snapshot{}, err
	}
	return set.snap, nil
}

// readBackup reads and checks a whole backup. For each key only its newest
// version counts; a key whose newest version is a deletion, or expired, is
// not in the backup; now is the clock that tells expired.
func readBackup(r io.Reader, now func() time.Time) (*restoreSet, error) {
	type latest struct {
		version uint64
		kv      *pb.KV
	}
	keys := map[string]latest{}
	br := bufio.NewReader(r)
	var total int64
	for {
		var size uint64
		err := binary.Read(br, binary.LittleEndian, &size)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: truncated frame header: %w", ErrBadBackup, err)
		}
		if size > maxBackupFrame {
			return nil, fmt.Errorf("%w: frame of %d bytes (at most %d)", ErrBadBackup, size, maxBackupFrame)
		}
		if total += int64(size); total > maxBackupBytes {
			return nil, fmt.Errorf("%w: larger than %d bytes", ErrBadBackup, maxBackupBytes)
		}
		buf := make([]byte, size)
		if _, err := io.ReadFull(br, buf); err != nil {
			return nil, fmt.Errorf("%w: truncated frame: %w", ErrBadBackup, err)
		}
		var list pb.KVList
		if err := proto.Unmarshal(buf, &list); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadBackup, err)
		}
		for _, kv := range list.Kv {
			if kv.StreamDone {
				continue
			}
			if prev, ok := keys[string(kv.Key)]; ok && prev.version >= kv.Version {
				continue
			}
			keys[string(kv.Key)] = latest{kv.Version, kv}
		}
	}

	set := &restoreSet{snap: Snapshot{Meta: map[string][]byte{}}, users: map[string][]byte{}, accts: map[string][]byte{}}
	nowSec := uint64(now().Unix())
	for k, l := range keys {
		kv := l.kv
		if len(kv.Meta) > 0 && kv.Meta[0]&badgerBitDelete != 0 {
			continue
		}
		if kv.ExpiresAt != 0 && kv.ExpiresAt <= nowSec {
			continue
		}
		switch {
		case hasPrefix(k, prefixUser):
			name := k[len(prefixUser):]
			if name == "" {
				return nil, fmt.Errorf("%w: a user without a name", ErrBadBackup)
			}
			if _, err := decodeUser(name, kv.Value); err != nil {
				return nil, fmt.Errorf("%w: %v", ErrBadBackup, err)
			}
			set.users[name] = kv.Value
		case hasPrefix(k, prefixAccount):
			name := k[len(prefixAccount):]
			var a Account
			if name == "" || json.Unmarshal(kv.Value, &a) != nil || !a.Enabled() || (a.TOTP != nil && len(a.TOTP.SealedSecret) == 0) {
				return nil, fmt.Errorf("%w: the enrolment of %q does not decode", ErrBadBackup, name)
			}
			set.accts[name] = kv.Value
		case hasPrefix(k, prefixMeta):
			if len(k) == len(prefixMeta) {
				return nil, fmt.Errorf("%w: a meta value without a name", ErrBadBackup)
			}
			set.snap.Meta[k[len(prefixMeta):]] = kv.Value
		case hasPrefix(k, prefixRemember):
			// Remembered browsers are never restored either.
		case hasPrefix(k, prefixSession), hasPrefix(k, prefixIndex):
			if hasPrefix(k, prefixSession) {
				set.snap.Sessions++
			}
		default:
			return nil, fmt.Errorf("%w: unknown key %q (not a backup of this store)", ErrBadBackup, truncate(k, 40))
		}
	}
	set.snap.Users, set.snap.Accounts = len(set.users), len(set.accts)
	return set, nil
}

func hasPrefix(k, p string) bool { return len(k) >= len(p) && k[:len(p)] == p }

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// Restore reads a backup into a store without users or enrolments and ends
// every session. Other operations wait while it runs.
func (b *Badger) Restore(ctx context.Context, r io.Reader, accept func(Snapshot) error) (Snapshot, error) {
	const op = "restore"
	set, err := readBackup(r, b.now)
	if err != nil {
		return Snapshot{}, wrap(op, err)
	}
	if err := ctx.Err(); err != nil {
		return Snapshot{}, err
	}
	// Hold every other operation off: the store must stay empty between
	// the check and the writes, and no session may start halfway.
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return Snapshot{}, wrap(op, errClosed)
	}
	if err := b.space.check(); err != nil {
		return Snapshot{}, wrap(op, err)
	}
	err = b.db.View(func(txn *badger.Txn) error {
		for _, p := range []string{prefixUser, prefixAccount} {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(p)})
			it.Rewind()
			found := it.Valid()
			it.Close()
			if found {
				return fmt.Errorf("%w: it holds users or enrolments; restore into a new storage_dir, or delete them first", ErrNotEmpty)
			}
		}
		return nil
	})
	if err != nil {
		return Snapshot{}, wrap(op, err)
	}
	if accept != nil {
		if err := accept(set.snap); err != nil {
			return Snapshot{}, err
		}
	}
	keepMeta := map[string]bool{}
	var ended [][]byte
	err = b.db.View(func(txn *badger.Txn) error {
		for name, v := range set.snap.Meta {
			item, err := txn.Get(metaKey(name))
			if errors.Is(err, badger.ErrKeyNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			cur, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			if !bytes.Equal(cur, v) {
				return fmt.Errorf("%w: its meta value %q differs from the backup's", ErrNotEmpty, name)
			}
			keepMeta[name] = true
		}
		for _, p := range []string{prefixSession, prefixIndex, prefixRemember} {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(p)})
			for it.Rewind(); it.Valid(); it.Next() {
				ended = append(ended, it.Item().KeyCopy(nil))
			}
			it.Close()
		}
		return nil
	})
	if err != nil {
		return Snapshot{}, wrap(op, err)
	}
	// A write batch splits the work into transactions of badger's size
	// limit; each commit is synced. The store was empty, so an error part
	// way leaves only some of the backup's records, never a mix with
	// other data.
	wb := b.db.NewWriteBatch()
	defer wb.Cancel()
	// The batch ends sessions behind the session cache's back: drop the
	// cache once it is done, whatever happened.
	defer b.sessions.clear()
	for _, k := range ended {
		if err := wb.Delete(k); err != nil {
			return Snapshot{}, wrap(op, err)
		}
	}
	for name, v := range set.users {
		if err := wb.Set(userKey(name), v); err != nil {
			return Snapshot{}, wrap(op, err)
		}
	}
	for name, v := range set.accts {
		if err := wb.Set(accountKey(name), v); err != nil {
			return Snapshot{}, wrap(op, err)
		}
	}
	for name, v := range set.snap.Meta {
		if keepMeta[name] {
			continue
		}
		if err := wb.Set(metaKey(name), v); err != nil {
			return Snapshot{}, wrap(op, err)
		}
	}
	if err := wb.Flush(); err != nil {
		return Snapshot{}, wrap(op, err)
	}
	if err := b.db.Sync(); err != nil {
		return Snapshot{}, wrap(op, err)
	}
	return set.snap, nil
}
