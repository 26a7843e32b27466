package secrets

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// testKeyBytes has bytes whose base64 uses "+" and "/", so that the
// standard and URL-safe encodings differ.
var testKeyBytes = func() []byte {
	b := make([]byte, KeySize)
	for i := range b {
		b[i] = byte(0xfb + 7*i)
	}
	return b
}()

func mustKey(t *testing.T, b []byte) Key {
	t.Helper()
	k, err := ParseKey(base64.StdEncoding.EncodeToString(b))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustSealer(t *testing.T, k Key) *Sealer {
	t.Helper()
	s, err := k.Sealer()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func otherKeyBytes() []byte { return bytes.Repeat([]byte{0x42}, KeySize) }

func TestParseKey(t *testing.T) {
	std := base64.StdEncoding.EncodeToString(testKeyBytes)
	url := base64.URLEncoding.EncodeToString(testKeyBytes)
	if std == url {
		t.Fatalf("test key encodes the same in std and URL base64 (%q); want a key that tells them apart", std)
	}
	zero := make([]byte, KeySize)
	tests := []struct {
		name    string
		in      string
		wantErr bool
	}{
		{"std base64", std, false},
		{"raw std base64", base64.RawStdEncoding.EncodeToString(testKeyBytes), false},
		{"url base64", url, false},
		{"raw url base64", base64.RawURLEncoding.EncodeToString(testKeyBytes), false},
		{"hex lower", hex.EncodeToString(testKeyBytes), false},
		{"hex upper", strings.ToUpper(hex.EncodeToString(testKeyBytes)), false},
		{"trailing newline", std + "\n", false},
		{"surrounding spaces", "  " + std + "\t\r\n", false},
		{"empty", "", true},
		{"white space", " \n", true},
		{"garbage", "not a key at all", true},
		{"31 bytes base64", base64.StdEncoding.EncodeToString(testKeyBytes[:31]), true},
		{"33 bytes base64", base64.StdEncoding.EncodeToString(append(testKeyBytes, 1)), true},
		{"16 bytes base64", base64.StdEncoding.EncodeToString(testKeyBytes[:16]), true},
		{"64 bytes base64", base64.StdEncoding.EncodeToString(append(testKeyBytes, testKeyBytes...)), true},
		{"31 bytes hex", hex.EncodeToString(testKeyBytes[:31]), true},
		{"33 bytes hex", hex.EncodeToString(append(testKeyBytes, 1)), true},
		{"hex with 0x", "0x" + hex.EncodeToString(testKeyBytes), true},
		{"hex with bad digit", "g" + hex.EncodeToString(testKeyBytes)[1:], true},
		{"mixed base64 alphabets", strings.Replace(std, "/", "_", 1), true},
		{"inner space", std[:10] + " " + std[10:], true},
		{"zero key base64", base64.StdEncoding.EncodeToString(zero), true},
		{"zero key hex", hex.EncodeToString(zero), true},
		{"very long", strings.Repeat(std, 1<<14), true},
	}
	for _, tt := range tests {
		k, err := ParseKey(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("%s: got error %v, want error: %v", tt.name, err, tt.wantErr)
			continue
		}
		if err != nil {
			if !errors.Is(err, ErrInvalidKey) {
				t.Errorf("%s: got error %v, want it to wrap ErrInvalidKey", tt.name, err)
			}
			if strings.TrimSpace(tt.in) != "" && strings.Contains(err.Error(), strings.TrimSpace(tt.in)) {
				t.Errorf("%s: got error %q containing the input, want the key kept out of errors", tt.name, err)
			}
			continue
		}
		if !bytes.Equal(k.b[:], testKeyBytes) {
			t.Errorf("%s: got key %x, want %x", tt.name, k.b, testKeyBytes)
		}
	}
}

func TestParseKeyErrorMessage(t *testing.T) {
	_, err := ParseKey("nope")
	for _, want := range []string{"32 bytes", "base64", "hex", "head -c 32 /dev/urandom | base64"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got error %v, want it to mention %q", err, want)
		}
	}
}

func TestKeyRedacted(t *testing.T) {
	k := mustKey(t, testKeyBytes)
	secretForms := []string{
		base64.StdEncoding.EncodeToString(testKeyBytes),
		hex.EncodeToString(testKeyBytes),
		fmt.Sprint(testKeyBytes),
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%q"} {
		got := fmt.Sprintf(verb, k)
		for _, s := range secretForms {
			if strings.Contains(got, s) {
				t.Errorf("Sprintf(%q, key): got %q, want no key material", verb, got)
			}
		}
	}
}

func TestNewKey(t *testing.T) {
	a, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Errorf("got two equal keys, want different ones")
	}
	if a.isZero() {
		t.Errorf("got the zero key, want a random one")
	}
	parsed, err := ParseKey(a.encode())
	if err != nil || parsed != a {
		t.Errorf("ParseKey(encode()): got (%v, %v), want the same key back", parsed == a, err)
	}
}

func TestDerive(t *testing.T) {
	k1 := mustKey(t, testKeyBytes)
	k2 := mustKey(t, otherKeyBytes())

	base := k1.Derive("backup codes")
	if len(base) != 32 {
		t.Fatalf("got %d-byte subkey, want 32", len(base))
	}
	if again := k1.Derive("backup codes"); !bytes.Equal(again, base) {
		t.Errorf("got %x then %x for the same purpose, want equal subkeys", base, again)
	}
	tests := []struct {
		name string
		got  []byte
	}{
		{"other purpose", k1.Derive("sessions")},
		{"empty purpose", k1.Derive("")},
		{"other key", k2.Derive("backup codes")},
		{"sealer subkey", k1.derive(infoSealer)},
		{"master key", k1.b[:]},
	}
	for _, tt := range tests {
		if bytes.Equal(tt.got, base) {
			t.Errorf("%s: got the same subkey %x, want a different one", tt.name, base)
		}
	}
}

func TestZeroKey(t *testing.T) {
	var k Key
	if _, err := k.Sealer(); err == nil {
		t.Errorf("zero Key Sealer(): got no error, want one")
	}
	defer func() {
		if recover() == nil {
			t.Errorf("zero Key Derive(): got no panic, want one")
		}
	}()
	k.Derive("x")
}

func TestSealOpenRoundTrip(t *testing.T) {
	s := mustSealer(t, mustKey(t, testKeyBytes))
	tests := []struct {
		name      string
		plaintext []byte
		aad       []byte
	}{
		{"empty", nil, nil},
		{"totp secret", []byte("12345678901234567890"), []byte("user:alice")},
		{"binary", []byte{0, 1, 2, 255}, []byte{0}},
		{"large", bytes.Repeat([]byte("x"), 1<<16), []byte("aad")},
	}
	for _, tt := range tests {
		sealed, err := s.Seal(tt.plaintext, tt.aad)
		if err != nil {
			t.Fatalf("%s: Seal: %v", tt.name, err)
		}
		if got, want := len(sealed), len(tt.plaintext)+Overhead; got != want {
			t.Errorf("%s: got %d sealed bytes, want %d", tt.name, got, want)
		}
		if len(tt.plaintext) > 4 && bytes.Contains(sealed, tt.plaintext) {
			t.Errorf("%s: got the plaintext inside the sealed value", tt.name)
		}
		got, err := s.Open(sealed, tt.aad)
		if err != nil {
			t.Fatalf("%s: Open: %v", tt.name, err)
		}
		if !bytes.Equal(got, tt.plaintext) {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.plaintext)
		}
		again := mustSealer(t, mustKey(t, testKeyBytes))
		if got, err := again.Open(sealed, tt.aad); err != nil || !bytes.Equal(got, tt.plaintext) {
			t.Errorf("%s: new Sealer from the same key: got (%q, %v), want the plaintext", tt.name, got, err)
		}
	}
}

func TestSealNonceIsFresh(t *testing.T) {
	s := mustSealer(t, mustKey(t, testKeyBytes))
	a, _ := s.Seal([]byte("same"), nil)
	b, _ := s.Seal([]byte("same"), nil)
	if bytes.Equal(a, b) {
		t.Errorf("got equal sealed values %x, want different nonces", a)
	}
}

func TestOpenRefuses(t *testing.T) {
	k := mustKey(t, testKeyBytes)
	s := mustSealer(t, k)
	other := mustSealer(t, mustKey(t, otherKeyBytes()))
	sealed, err := s.Seal([]byte("secret"), []byte("alice"))
	if err != nil {
		t.Fatal(err)
	}
	badVersion := append([]byte(nil), sealed...)
	badVersion[0] = 2
	tests := []struct {
		name   string
		sealer *Sealer
		sealed []byte
		aad    []byte
	}{
		{"wrong key", other, sealed, []byte("alice")},
		{"wrong aad", s, sealed, []byte("bob")},
		{"aad prefix", s, sealed, []byte("alic")},
		{"aad extended", s, sealed, []byte("alice2")},
		{"missing aad", s, sealed, nil},
		{"unknown version", s, badVersion, []byte("alice")},
		{"extra byte", s, append(append([]byte(nil), sealed...), 0), []byte("alice")},
		{"nil", s, nil, nil},
		{"overhead of zeros", s, make([]byte, Overhead), nil},
		{"garbage", s, bytes.Repeat([]byte{1}, 100), nil},
	}
	for _, tt := range tests {
		got, err := tt.sealer.Open(tt.sealed, tt.aad)
		if !errors.Is(err, ErrDecrypt) || got != nil {
			t.Errorf("%s: got (%q, %v), want (nil, ErrDecrypt)", tt.name, got, err)
		}
	}
}

func TestOpenTamperedEveryByte(t *testing.T) {
	s := mustSealer(t, mustKey(t, testKeyBytes))
	aad := []byte("alice")
	sealed, err := s.Seal([]byte("12345678901234567890"), aad)
	if err != nil {
		t.Fatal(err)
	}
	for i := range sealed {
		for _, flip := range []byte{0x01, 0x80} {
			tampered := append([]byte(nil), sealed...)
			tampered[i] ^= flip
			if got, err := s.Open(tampered, aad); !errors.Is(err, ErrDecrypt) {
				t.Errorf("byte %d ^ %#x: got (%q, %v), want ErrDecrypt", i, flip, got, err)
			}
		}
	}
}

func TestOpenTruncatedEveryLength(t *testing.T) {
	s := mustSealer(t, mustKey(t, testKeyBytes))
	sealed, err := s.Seal([]byte("12345678901234567890"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for n := 0; n < len(sealed); n++ {
		if got, err := s.Open(sealed[:n], nil); !errors.Is(err, ErrDecrypt) {
			t.Errorf("first %d bytes: got (%q, %v), want ErrDecrypt", n, got, err)
		}
		if got, err := s.Open(sealed[len(sealed)-n:], nil); !errors.Is(err, ErrDecrypt) {
			t.Errorf("last %d bytes: got (%q, %v), want ErrDecrypt", n, got, err)
		}
	}
}

func TestCheck(t *testing.T) {
	s := mustSealer(t, mustKey(t, testKeyBytes))
	other := mustSealer(t, mustKey(t, otherKeyBytes()))
	check := s.Check()
	if err := s.VerifyCheck(check); err != nil {
		t.Fatalf("VerifyCheck(Check()): got %v, want nil", err)
	}
	if err := mustSealer(t, mustKey(t, testKeyBytes)).VerifyCheck(check); err != nil {
		t.Errorf("VerifyCheck with a new Sealer from the same key: got %v, want nil", err)
	}
	otherPlaintext, _ := s.Seal([]byte("something else"), checkAAD)
	otherAAD, _ := s.Seal(checkPlaintext, []byte("not the check"))
	tests := []struct {
		name   string
		sealer *Sealer
		v      []byte
	}{
		{"wrong key", other, check},
		{"other plaintext", s, otherPlaintext},
		{"other aad", s, otherAAD},
		{"nil", s, nil},
		{"truncated", s, check[:len(check)-1]},
	}
	for _, tt := range tests {
		if err := tt.sealer.VerifyCheck(tt.v); !errors.Is(err, ErrWrongKey) {
			t.Errorf("%s: got %v, want ErrWrongKey", tt.name, err)
		}
	}
}

func TestSealerConcurrent(t *testing.T) {
	s := mustSealer(t, mustKey(t, testKeyBytes))
	done := make(chan error)
	for i := 0; i < 4; i++ {
		go func() {
			var err error
			for j := 0; j < 50 && err == nil; j++ {
				err = s.VerifyCheck(s.Check())
			}
			done <- err
		}()
	}
	for i := 0; i < 4; i++ {
		if err := <-done; err != nil {
			t.Errorf("got %v, want nil", err)
		}
	}
}
