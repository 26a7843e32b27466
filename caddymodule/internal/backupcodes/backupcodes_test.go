package backupcodes

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestAlphabet(t *testing.T) {
	if got := len(Alphabet); got != 32 {
		t.Fatalf("got %d symbols, want 32", got)
	}
	for _, c := range "iluo" {
		if strings.ContainsRune(Alphabet, c) {
			t.Errorf("got %q in the alphabet, want it left out", c)
		}
	}
}

func TestGenerate(t *testing.T) {
	const n = MaxGenerate
	codes, err := Generate(n)
	if err != nil {
		t.Fatal(err)
	}
	if len(codes) != n {
		t.Fatalf("got %d codes, want %d", len(codes), n)
	}
	seen := map[string]bool{}
	symbols := map[rune]int{}
	for _, c := range codes {
		if len(c) != 11 || c[5] != '-' {
			t.Errorf("got code %q, want form xxxxx-xxxxx", c)
		}
		norm, ok := Normalize(c)
		if !ok {
			t.Errorf("Normalize(%q): got not ok, want ok", c)
		}
		if Display(norm) != c {
			t.Errorf("Display(Normalize(%q)): got %q, want the code back", c, Display(norm))
		}
		for _, r := range strings.ReplaceAll(c, "-", "") {
			if !strings.ContainsRune(Alphabet, r) {
				t.Errorf("code %q: got symbol %q, want only alphabet symbols", c, r)
			}
			symbols[r]++
		}
		if seen[c] {
			t.Errorf("got code %q twice, want distinct codes", c)
		}
		seen[c] = true
	}
	// 1000 uniform symbols over 32 values: each is missing with
	// probability (31/32)^1000 < 2^-45.
	if len(symbols) != len(Alphabet) {
		t.Errorf("got %d distinct symbols in %d codes, want all %d", len(symbols), n, len(Alphabet))
	}
}

func TestGenerateCount(t *testing.T) {
	tests := []struct {
		n       int
		wantErr bool
	}{
		{-1, true},
		{0, true},
		{1, false},
		{Count, false},
		{MaxGenerate, false},
		{MaxGenerate + 1, true},
	}
	for _, tt := range tests {
		codes, err := Generate(tt.n)
		if (err != nil) != tt.wantErr {
			t.Errorf("Generate(%d): got error %v, want error: %v", tt.n, err, tt.wantErr)
		}
		if err != nil && !errors.Is(err, ErrInvalidCount) {
			t.Errorf("Generate(%d): got error %v, want it to wrap ErrInvalidCount", tt.n, err)
		}
		if err == nil && len(codes) != tt.n {
			t.Errorf("Generate(%d): got %d codes, want %d", tt.n, len(codes), tt.n)
		}
	}
}

func TestNormalize(t *testing.T) {
	tests := []struct {
		in     string
		want   string
		wantOK bool
	}{
		{"abcde-fghjk", "abcdefghjk", true},
		{"abcdefghjk", "abcdefghjk", true},
		{"ABCDE-FGHJK", "abcdefghjk", true},
		{"  abcde fghjk \n", "abcdefghjk", true},
		{"ab-cd-ef-gh-jk", "abcdefghjk", true},
		{"abcde\tfghjk\r\n", "abcdefghjk", true},
		{"0123456789", "0123456789", true},
		{"iIlLo-O2345", "1111002345", true},
		{"mnpqr-stvwx", "mnpqrstvwx", true},
		{"yz012-34567", "yz01234567", true},
		{"", "", false},
		{"-----", "", false},
		{"abcd-efghj", "", false},
		{"abcde-fghjkm", "", false},
		{"abcde-fghju", "", false},
		{"abcde-fghj!", "", false},
		{"abcde_fghjk", "", false},
		{"abcde.fghjk", "", false},
		{"abcdé-fghjk", "", false},
		{"abcde-fghj\u212a", "", false}, // Kelvin sign, which Unicode lower-cases to k
		{"abcde\u00a0fghjk", "", false}, // no-break space
		{"abcde\x00fghjk", "", false},
		{"abcde" + strings.Repeat(" ", 60) + "fghjk", "", false},
		{strings.Repeat("a", 1<<20), "", false},
		{strings.Repeat("-", 1<<20) + "abcdefghjk", "", false},
	}
	for _, tt := range tests {
		got, ok := Normalize(tt.in)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("Normalize(%.40q): got (%q, %v), want (%q, %v)", tt.in, got, ok, tt.want, tt.wantOK)
		}
		if lb := LooksLikeBackupCode(tt.in); lb != tt.wantOK {
			t.Errorf("LooksLikeBackupCode(%.40q): got %v, want %v", tt.in, lb, tt.wantOK)
		}
	}
}

func TestKind(t *testing.T) {
	tests := []struct {
		in   string
		want CodeKind
	}{
		{"123456", KindTOTP},
		{"12345678", KindTOTP},
		{" 123456\n", KindTOTP},
		{"00000000", KindTOTP},
		{"1234567", KindInvalid},
		{"12345", KindInvalid},
		{"123 456", KindInvalid},
		{"١٢٣٤٥٦", KindInvalid},
		{"0123456789", KindBackup},
		{"01234-56789", KindBackup},
		{"abcde-fghjk", KindBackup},
		{"ABCDE FGHJK", KindBackup},
		{"abcde-fghju", KindInvalid},
		{"", KindInvalid},
		{"      ", KindInvalid},
		{strings.Repeat("1", 1<<20), KindInvalid},
	}
	for _, tt := range tests {
		if got := Kind(tt.in); got != tt.want {
			t.Errorf("Kind(%.40q): got %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestCodeKindString(t *testing.T) {
	tests := []struct {
		k    CodeKind
		want string
	}{
		{KindTOTP, "totp"},
		{KindBackup, "backup"},
		{KindInvalid, "invalid"},
		{CodeKind(42), "invalid"},
	}
	for _, tt := range tests {
		if got := tt.k.String(); got != tt.want {
			t.Errorf("CodeKind(%d).String(): got %q, want %q", int(tt.k), got, tt.want)
		}
	}
}

func TestHash(t *testing.T) {
	key1 := bytes.Repeat([]byte{1}, KeySize)
	key2 := bytes.Repeat([]byte{2}, KeySize)
	h1, h2 := NewHasher(key1), NewHasher(key2)

	base := h1.Hash("alice", "abcdefghjk")
	if len(base) != 32 {
		t.Fatalf("got %d-byte hash, want 32", len(base))
	}
	if again := NewHasher(key1).Hash("alice", "abcdefghjk"); !bytes.Equal(again, base) {
		t.Errorf("got %x then %x for the same input, want equal hashes", base, again)
	}
	tests := []struct {
		name string
		got  []byte
	}{
		{"other user", h1.Hash("bob", "abcdefghjk")},
		{"other code", h1.Hash("alice", "abcdefghjm")},
		{"other key", h2.Hash("alice", "abcdefghjk")},
		{"user/code boundary moved", h1.Hash("alicea", "bcdefghjk")},
		{"empty user", h1.Hash("", "abcdefghjk")},
	}
	for _, tt := range tests {
		if bytes.Equal(tt.got, base) {
			t.Errorf("%s: got the same hash %x, want a different one", tt.name, base)
		}
	}
	if a, b := h1.Hash("ab", "c"), h1.Hash("a", "bc"); bytes.Equal(a, b) {
		t.Errorf("got equal hashes for (ab, c) and (a, bc), want different")
	}
}

func TestNewHasherCopiesKey(t *testing.T) {
	key := bytes.Repeat([]byte{7}, KeySize)
	h := NewHasher(key)
	before := h.Hash("alice", "abcdefghjk")
	key[0] ^= 0xff
	if after := h.Hash("alice", "abcdefghjk"); !bytes.Equal(before, after) {
		t.Errorf("got hash %x after changing the caller's key slice, want %x", after, before)
	}
}

func TestNewHasherShortKey(t *testing.T) {
	for _, n := range []int{0, 16, KeySize - 1} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("NewHasher(%d bytes): got no panic, want one", n)
				}
			}()
			NewHasher(make([]byte, n))
		}()
	}
}

func TestText(t *testing.T) {
	codes := []string{"abcde-fghjk", "mnpqr-stvwx"}
	got := Text([]string{"Backup codes for alice at Example", "Generated 2025-03-05 01:30 UTC"}, codes,
		[]string{"Each code works only once.", "Keep this file safe."})
	want := "Backup codes for alice at Example\nGenerated 2025-03-05 01:30 UTC\n\nabcde-fghjk\nmnpqr-stvwx\n\nEach code works only once.\nKeep this file safe.\n"
	if got != want {
		t.Errorf("got text %q, want %q", got, want)
	}
}

func TestTextControlCharacters(t *testing.T) {
	got := Text([]string{"Codes for bob\r\nx at Evil\nabcde-fghjk"}, nil, []string{"a\u2028b"})
	if want := "Codes for bob  x at Evil abcde-fghjk\n\n\na b\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
