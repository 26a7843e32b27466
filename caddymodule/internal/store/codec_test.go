package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"
)

func fullSession() Session {
	t := time.Unix(1_800_000_000, 123_456_789)
	return Session{
		User:      "alice",
		Stage:     StagePassword,
		Created:   t,
		Seen:      t.Add(time.Minute),
		Expires:   t.Add(time.Hour),
		Next:      "/app?q=1",
		Pending:   []byte{0, 1, 2, 255},
		PendingAt: t.Add(2 * time.Minute),
		Origin:    OriginStore,
		Name:      "Alice",
		Gen:       7,
		Cred:      []byte{9, 8, 7, 0, 255},
		Notice:    "notice.enabled",
		Shown:     []byte{1, 2, 3, 0},
		Agent:     "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
		Addr:      "192.0.2.7",
		AuthTime:  t.Add(3 * time.Minute),
		Methods:   MethodPassword | MethodOTP,
	}
}

// encodeV5 writes s as the code before the authentication time and
// methods did.
func encodeV5(s *Session) []byte {
	rec := encodeSession(nil, s)
	rec = rec[:len(rec)-len(appendTime(nil, s.AuthTime))-1]
	rec[0] = sessionVersion5
	return rec
}

// encodeV2 writes s as version 2 did: no generation.
func encodeV2(s *Session) []byte {
	rec := encodeV3(s)
	rec = rec[:len(rec)-len(binary.AppendUvarint(nil, s.Gen))-len(appendBytes(nil, s.Cred))]
	rec[0] = sessionVersion2
	return rec
}

// encodeV4 writes s as the code before the User-Agent and the address did.
func encodeV4(s *Session) []byte {
	rec := encodeV5(s)
	rec = rec[:len(rec)-len(appendBytes(nil, s.Agent))-len(appendBytes(nil, s.Addr))]
	rec[0] = sessionVersion4
	return rec
}

// encodeV3 writes s as the code before notices and shown codes did.
func encodeV3(s *Session) []byte {
	rec := encodeV4(s)
	rec = rec[:len(rec)-len(appendBytes(nil, s.Notice))-len(appendBytes(nil, s.Shown))]
	rec[0] = sessionVersion3
	return rec
}

// TestDecodeSessionVersion3 reads a record as the code before notices and
// shown codes wrote it: it has neither.
func TestDecodeSessionVersion3(t *testing.T) {
	s := fullSession()
	got, err := decodeSession(encodeV3(&s))
	if err != nil {
		t.Fatalf("decoding a version 3 record: %v", err)
	}
	if got.Notice != "" || got.Shown != nil || got.Gen != s.Gen || !bytes.Equal(got.Cred, s.Cred) || got.User != s.User {
		t.Errorf("version 3 record: got %+v, want the fields of %+v without notice and shown codes", got, s)
	}
}

// TestDecodeSessionVersion4 reads a record as the code before the
// User-Agent and the address wrote it: it has neither, and the rest.
func TestDecodeSessionVersion4(t *testing.T) {
	s := fullSession()
	got, err := decodeSession(encodeV4(&s))
	if err != nil {
		t.Fatalf("decoding a version 4 record: %v", err)
	}
	if got.Agent != "" || got.Addr != "" || got.Notice != s.Notice || !bytes.Equal(got.Shown, s.Shown) ||
		got.Gen != s.Gen || got.User != s.User || got.Name != s.Name {
		t.Errorf("version 4 record: got %+v, want the fields of %+v without agent and address", got, s)
	}
	// Written again, it is a version 6 record.
	if rec := encodeSession(nil, &got); rec[0] != sessionVersion6 {
		t.Errorf("a record is written as version %d, want 6", rec[0])
	}
}

// TestDecodeSessionVersion5 reads a record as the code before the
// authentication time and methods wrote it: it has neither, so no step-up
// path takes it without a fresh code.
func TestDecodeSessionVersion5(t *testing.T) {
	s := fullSession()
	got, err := decodeSession(encodeV5(&s))
	if err != nil {
		t.Fatalf("decoding a version 5 record: %v", err)
	}
	if !got.AuthTime.IsZero() || got.Methods != 0 || got.Agent != s.Agent || got.Addr != s.Addr || got.User != s.User {
		t.Errorf("version 5 record: got %+v, want the fields of %+v without auth time and methods", got, s)
	}
}

// TestMethodsAMR: the RFC 8176 names, in a fixed order.
func TestMethodsAMR(t *testing.T) {
	for m, want := range map[Methods]string{
		0: "", MethodPassword: "pwd", MethodPassword | MethodOTP: "pwd otp",
		MethodSoftwareKey | MethodPassword | MethodHardwareKey: "pwd hwk swk",
	} {
		if got := strings.Join(m.AMR(), " "); got != want {
			t.Errorf("%08b: AMR %q, want %q", m, got, want)
		}
		if m.SecondFactor() != (m&^MethodPassword != 0) {
			t.Errorf("%08b: SecondFactor %v", m, m.SecondFactor())
		}
	}
}

// TestSessionAgentClipped: a long User-Agent is kept cut, on a character
// boundary, and so is an address.
func TestSessionAgentClipped(t *testing.T) {
	s := fullSession()
	s.Agent = strings.Repeat("a", MaxAgentLen-1) + "ж" + strings.Repeat("b", 1000)
	s.Addr = strings.Repeat("1", 500)
	got, err := decodeSession(encodeSession(nil, &s))
	if err != nil {
		t.Fatal(err)
	}
	if got.Agent != strings.Repeat("a", MaxAgentLen-1) {
		t.Errorf("agent kept as %q (%d bytes)", got.Agent, len(got.Agent))
	}
	if len(got.Addr) != MaxAddrLen {
		t.Errorf("address kept with %d bytes, want %d", len(got.Addr), MaxAddrLen)
	}
}

func TestSessionCodecRoundTrip(t *testing.T) {
	for name, s := range map[string]Session{
		"full":    fullSession(),
		"minimal": {User: "u", Stage: StageFull, Expires: time.Unix(1, 0)},
		"odd user": {User: "al/\x00ice\xff", Stage: StageEnrol,
			Created: time.Unix(-5, 999_999_999), Expires: time.Unix(1<<40, 1)},
	} {
		got, err := decodeSession(encodeSession(nil, &s))
		if err != nil {
			t.Fatalf("%s: decode: %v", name, err)
		}
		if got.User != s.User || got.Stage != s.Stage || got.Next != s.Next ||
			!bytes.Equal(got.Pending, s.Pending) ||
			!got.Created.Equal(s.Created) || !got.Seen.Equal(s.Seen) ||
			!got.Expires.Equal(s.Expires) || !got.PendingAt.Equal(s.PendingAt) ||
			got.Origin != s.Origin || got.Name != s.Name || got.Gen != s.Gen ||
			got.Agent != s.Agent || got.Addr != s.Addr ||
			!got.AuthTime.Equal(s.AuthTime) || got.Methods != s.Methods {
			t.Errorf("%s: got %+v, want %+v", name, got, s)
		}
		// Zero times stay zero (not 1970, not a different zone).
		if s.Seen.IsZero() && got.Seen != (time.Time{}) {
			t.Errorf("%s: zero Seen decoded as %v", name, got.Seen)
		}
	}
}

func TestDecodeSessionCopies(t *testing.T) {
	s := fullSession()
	rec := encodeSession(nil, &s)
	got, err := decodeSession(rec)
	if err != nil {
		t.Fatal(err)
	}
	for i := range rec {
		rec[i] = 0xAA
	}
	if got.User != s.User || got.Next != s.Next || !bytes.Equal(got.Pending, s.Pending) {
		t.Errorf("decoded session aliases its input: %+v", got)
	}
}

// TestDecodeSessionVersion1 reads a record as the first layout wrote it
// (no origin, no name): it is a configured user's session.
func TestDecodeSessionVersion1(t *testing.T) {
	s := fullSession()
	v2 := encodeV2(&s)
	v1 := append([]byte{sessionVersion1}, v2[1:len(v2)-len(s.Name)-2]...)
	got, err := decodeSession(v1)
	if err != nil {
		t.Fatalf("decoding a version 1 record: %v", err)
	}
	if got.Origin != OriginConfig || got.Name != "" || got.Gen != 0 || got.User != s.User || !got.PendingAt.Equal(s.PendingAt) {
		t.Errorf("version 1 record: got %+v, want the fields of %+v with origin config and no name", got, s)
	}
}

// TestDecodeSessionVersion2 reads a record as the code before session
// generations wrote it: it is of generation 0.
func TestDecodeSessionVersion2(t *testing.T) {
	s := fullSession()
	got, err := decodeSession(encodeV2(&s))
	if err != nil {
		t.Fatalf("decoding a version 2 record: %v", err)
	}
	want := s
	want.Gen = 0
	if got.Gen != 0 || got.Origin != s.Origin || got.Name != s.Name || got.User != s.User || !got.PendingAt.Equal(s.PendingAt) {
		t.Errorf("version 2 record: got %+v, want %+v", got, want)
	}
}

func TestIndexCodec(t *testing.T) {
	s := fullSession()
	gen, created, err := decodeIndex(encodeIndex(&s))
	if err != nil || gen != s.Gen || !created.Equal(s.Created) {
		t.Errorf("index entry round trip: got %d %v %v, want %d %v", gen, created, err, s.Gen, s.Created)
	}
	v := encodeIndex(&s)
	for n := range len(v) {
		if _, _, err := decodeIndex(v[:n]); !errors.Is(err, errMalformed) {
			t.Errorf("prefix of %d bytes: err = %v, want errMalformed", n, err)
		}
	}
	if _, _, err := decodeIndex(append(v, 0)); !errors.Is(err, errMalformed) {
		t.Errorf("trailing byte: err = %v, want errMalformed", err)
	}
}

func TestDecodeSessionMalformed(t *testing.T) {
	s := fullSession()
	s.Gen = 0
	rec := encodeV2(&s)
	// Every strict prefix is malformed.
	for n := range len(rec) {
		if _, err := decodeSession(rec[:n]); !errors.Is(err, errMalformed) {
			t.Errorf("prefix of %d bytes: err = %v, want errMalformed", n, err)
		}
	}
	bad := map[string][]byte{
		"version 0":       append([]byte{0}, rec[1:]...),
		"version 4":       append([]byte{4}, rec[1:]...),
		"v3 without gen":  append([]byte{3}, rec[1:]...),
		"stage 0":         append([]byte{2, 0}, rec[2:]...),
		"stage 4":         append([]byte{2, 4}, rec[2:]...),
		"origin 2":        append(bytes.Clone(rec[:len(rec)-len("Alice")-2]), 2, 5, 'A', 'l', 'i', 'c', 'e'),
		"v1 with v2 tail": append([]byte{1}, rec[1:]...),
		"trailing":        append(bytes.Clone(rec), 0),
		"huge length":     {1, 3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"varint overflow": {1, 3, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"nanos too big":   binary.AppendUvarint([]byte{1, 3, 0, 0}, uint64(time.Second)),
	}
	for name, data := range bad {
		if _, err := decodeSession(data); !errors.Is(err, errMalformed) {
			t.Errorf("%s: err = %v, want errMalformed", name, err)
		}
	}
}

func FuzzDecodeSession(f *testing.F) {
	s := fullSession()
	f.Add(encodeSession(nil, &s))
	small := Session{User: "u", Stage: StageFull, Expires: time.Unix(1, 0)}
	f.Add(encodeSession(nil, &small))
	f.Add([]byte{})
	f.Add([]byte{1})
	f.Add([]byte{1, 3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := decodeSession(data)
		if err != nil {
			if !errors.Is(err, errMalformed) {
				t.Fatalf("error does not wrap errMalformed: %v", err)
			}
			return
		}
		// What decodes must re-encode to something that decodes the same.
		again, err := decodeSession(encodeSession(nil, &got))
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if again.User != got.User || again.Stage != got.Stage || again.Next != got.Next ||
			!bytes.Equal(again.Pending, got.Pending) ||
			!again.Created.Equal(got.Created) || !again.Seen.Equal(got.Seen) ||
			!again.Expires.Equal(got.Expires) || !again.PendingAt.Equal(got.PendingAt) ||
			again.Origin != got.Origin || again.Name != got.Name || again.Gen != got.Gen {
			t.Fatalf("round trip changed %+v into %+v", got, again)
		}
	})
}
