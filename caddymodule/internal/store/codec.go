package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Key layout of the badger backend. Every key starts with a one-letter
// namespace and a slash; what follows is the raw name, so exact-match keys
// need no escaping. The index namespace is scanned by prefix, so it puts a
// length before the user name: "al" and "alice" then have prefixes that are
// not prefixes of each other, whatever bytes the names hold.
const (
	prefixAccount = "u/" // u/<user>                     → account JSON
	prefixSession = "s/" // s/<key>                      → encoded session
	prefixIndex   = "x/" // x/<uvarint len(user)><user><key> → empty
	prefixMeta    = "m/" // m/<name>                     → raw value
	prefixUser    = "p/" // p/<user>                     → user JSON
	prefixGen     = "g/" // g/<user>                     → uvarint session generation
	prefixEvent   = "e/" // e/<uvarint len(user)><user><time><random> → event JSON (events.go)
)

// accountKey returns the key of the user's account record.
func accountKey(user string) []byte {
	return append([]byte(prefixAccount), user...)
}

// sessionKey returns the key of a session record.
func sessionKey(key []byte) []byte {
	k := make([]byte, 0, len(prefixSession)+len(key))
	return append(append(k, prefixSession...), key...)
}

// userKey returns the key of a user kept in the store.
func userKey(name string) []byte {
	return append([]byte(prefixUser), name...)
}

// metaKey returns the key of a meta value.
func metaKey(name string) []byte {
	return append([]byte(prefixMeta), name...)
}

// genKey returns the key of the user's session generation: the sessions
// of the user that carry another generation are ended. A missing record
// means generation 0.
func genKey(user string) []byte {
	return append([]byte(prefixGen), user...)
}

// decodeGen parses a generation record.
func decodeGen(v []byte) (uint64, error) {
	g, n := binary.Uvarint(v)
	if n <= 0 || n != len(v) {
		return 0, fmt.Errorf("%w: bad session generation", errMalformed)
	}
	return g, nil
}

// indexPrefix returns the prefix shared by the index entries of all the
// user's sessions.
func indexPrefix(user string) []byte {
	k := make([]byte, 0, len(prefixIndex)+binary.MaxVarintLen64+len(user))
	k = append(k, prefixIndex...)
	k = binary.AppendUvarint(k, uint64(len(user)))
	return append(k, user...)
}

// indexKey returns the index entry that ties session key to user.
func indexKey(user string, key []byte) []byte {
	return append(indexPrefix(user), key...)
}

// An index entry's value repeats what the per-user scans need of the
// session (its generation and creation time), so that they read the index
// alone:
//
//	gen     uvarint
//	created varint Unix seconds, uvarint nanoseconds
//
// Entries written before generations existed have an empty value; their
// session record tells the same.
func encodeIndex(s *Session) []byte {
	v := binary.AppendUvarint(make([]byte, 0, 3*binary.MaxVarintLen64), s.Gen)
	return appendTime(v, s.Created)
}

// decodeIndex parses a non-empty index value.
func decodeIndex(v []byte) (gen uint64, created time.Time, err error) {
	d := decoder{buf: v}
	gen = d.uvarint("generation")
	created = d.time()
	if d.err == nil && len(d.buf) != 0 {
		d.fail("index entry")
	}
	return gen, created, d.err
}

// sessionVersion1, 2 and 3 are the first byte of a session record.
// Version 2 adds the origin and display name (a version 1 record reads as
// a configured user's); version 3 (written now) adds the generation (an
// older record reads as generation 0) and the credential fingerprint (an
// older record has none).
const (
	sessionVersion1 byte = 1
	sessionVersion2 byte = 2
	sessionVersion3 byte = 3
	// Version 4 (written now) adds the notice and the sealed codes to show
	// once (an older record has neither).
	sessionVersion4 byte = 4
	// Version 5 (written now) adds the User-Agent and the address at
	// sign-in (an older record has neither).
	sessionVersion5 byte = 5
	// Version 6 (written now) adds the time of the last second-factor
	// check and the methods the session was authenticated with (an older
	// record has neither: no step-up path takes it without a fresh code).
	sessionVersion6 byte = 6
)

// errMalformed is wrapped by every session decoding error.
var errMalformed = errors.New("malformed session record")

// encodeSession appends the binary form of s to dst and returns it. The key
// is not part of the record: it is the record's own badger key.
//
// Layout (version 6; version 5 ends after addr, 4 after shown, 3 after cred, 2 after name,
// 1 after pendingAt):
//
//	version   byte (1)
//	stage     byte
//	user      uvarint length, bytes
//	created   varint Unix seconds, uvarint nanoseconds
//	seen      varint Unix seconds, uvarint nanoseconds
//	expires   varint Unix seconds, uvarint nanoseconds
//	next      uvarint length, bytes
//	pending   uvarint length, bytes
//	pendingAt varint Unix seconds, uvarint nanoseconds
//	origin    byte
//	name      uvarint length, bytes
//	gen       uvarint
//	cred      uvarint length, bytes
//	notice    uvarint length, bytes   (version 4)
//	shown     uvarint length, bytes   (version 4)
//	agent     uvarint length, bytes   (version 5)
//	addr      uvarint length, bytes   (version 5)
//	authTime  varint Unix seconds, uvarint nanoseconds (version 6)
//	methods   byte                    (version 6)
func encodeSession(dst []byte, s *Session) []byte {
	dst = append(dst, sessionVersion6, byte(s.Stage))
	dst = appendBytes(dst, s.User)
	dst = appendTime(dst, s.Created)
	dst = appendTime(dst, s.Seen)
	dst = appendTime(dst, s.Expires)
	dst = appendBytes(dst, s.Next)
	dst = appendBytes(dst, s.Pending)
	dst = appendTime(dst, s.PendingAt)
	dst = append(dst, byte(s.Origin))
	dst = appendBytes(dst, s.Name)
	dst = binary.AppendUvarint(dst, s.Gen)
	dst = appendBytes(dst, s.Cred)
	dst = appendBytes(dst, s.Notice)
	dst = appendBytes(dst, s.Shown)
	dst = appendBytes(dst, clip(s.Agent, MaxAgentLen))
	dst = appendBytes(dst, clip(s.Addr, MaxAddrLen))
	dst = appendTime(dst, s.AuthTime)
	dst = append(dst, byte(s.Methods))
	return dst
}

// clip cuts s to at most n bytes, on a UTF-8 boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}

// Clip cuts s to at most n bytes, on a UTF-8 boundary.
func Clip(s string, n int) string { return clip(s, n) }

// appendBytes appends a length-prefixed string or byte slice.
func appendBytes[T string | []byte](dst []byte, b T) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

// appendTime appends t as Unix seconds and nanoseconds. The zero time
// round-trips to the zero time.
func appendTime(dst []byte, t time.Time) []byte {
	dst = binary.AppendVarint(dst, t.Unix())
	return binary.AppendUvarint(dst, uint64(t.Nanosecond()))
}

// decodeSession parses a record written by encodeSession. It copies what
// it keeps, so data may be reused afterwards. Key is left nil. Malformed
// input yields an error wrapping errMalformed, never a panic.
func decodeSession(data []byte) (Session, error) {
	var s Session
	d := decoder{buf: data}
	v := d.byte()
	if d.err == nil && v != sessionVersion1 && v != sessionVersion2 && v != sessionVersion3 && v != sessionVersion4 && v != sessionVersion5 && v != sessionVersion6 {
		return Session{}, fmt.Errorf("%w: unknown version %d", errMalformed, v)
	}
	s.Stage = Stage(d.byte())
	if d.err == nil && !validStage(s.Stage) {
		return Session{}, fmt.Errorf("%w: unknown stage %d", errMalformed, s.Stage)
	}
	s.User = string(d.bytes())
	s.Created = d.time()
	s.Seen = d.time()
	s.Expires = d.time()
	s.Next = string(d.bytes())
	if p := d.bytes(); len(p) > 0 {
		s.Pending = append([]byte(nil), p...)
	}
	s.PendingAt = d.time()
	if v >= sessionVersion2 {
		s.Origin = Origin(d.byte())
		if d.err == nil && s.Origin != OriginConfig && s.Origin != OriginStore {
			return Session{}, fmt.Errorf("%w: unknown origin %d", errMalformed, s.Origin)
		}
		s.Name = string(d.bytes())
	}
	if v >= sessionVersion3 {
		s.Gen = d.uvarint("generation")
		if c := d.bytes(); len(c) > 0 {
			s.Cred = append([]byte(nil), c...)
		}
	}
	if v >= sessionVersion4 {
		s.Notice = string(d.bytes())
		if c := d.bytes(); len(c) > 0 {
			s.Shown = append([]byte(nil), c...)
		}
	}
	if v >= sessionVersion5 {
		s.Agent = string(d.bytes())
		s.Addr = string(d.bytes())
	}
	if v >= sessionVersion6 {
		s.AuthTime = d.time()
		s.Methods = Methods(d.byte())
	}
	if d.err != nil {
		return Session{}, d.err
	}
	if len(d.buf) != 0 {
		return Session{}, fmt.Errorf("%w: %d trailing bytes", errMalformed, len(d.buf))
	}
	return s, nil
}

// validStage reports whether st is one of the defined stages.
func validStage(st Stage) bool {
	return st == StagePassword || st == StageEnrol || st == StageFull
}

// decoder reads the fields of a session record. After the first error every
// read returns a zero value and the error stays in err.
type decoder struct {
	buf []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: bad %s", errMalformed, what)
	}
	d.buf = nil
}

func (d *decoder) byte() byte {
	if len(d.buf) == 0 {
		d.fail("byte")
		return 0
	}
	b := d.buf[0]
	d.buf = d.buf[1:]
	return b
}

func (d *decoder) uvarint(what string) uint64 {
	v, n := binary.Uvarint(d.buf)
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

func (d *decoder) varint(what string) int64 {
	v, n := binary.Varint(d.buf)
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

// bytes returns a length-prefixed field; the result aliases the input.
func (d *decoder) bytes() []byte {
	n := d.uvarint("length")
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.buf)) {
		d.fail("length")
		return nil
	}
	b := d.buf[:n:n]
	d.buf = d.buf[n:]
	return b
}

func (d *decoder) time() time.Time {
	sec := d.varint("time")
	nsec := d.uvarint("time")
	if d.err != nil {
		return time.Time{}
	}
	if nsec >= uint64(time.Second) {
		d.fail("time")
		return time.Time{}
	}
	t := time.Unix(sec, int64(nsec))
	if t.IsZero() {
		return time.Time{}
	}
	return t
}
