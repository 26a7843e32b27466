package backupcodes

import (
	"bytes"
	"testing"
)

// BenchmarkHash is the CPU side of a backup-code check: the typed code
// normalised and its keyed hash computed (the store then looks it up).
func BenchmarkHash(b *testing.B) {
	h := NewHasher(bytes.Repeat([]byte{7}, KeySize))
	b.ReportAllocs()
	for b.Loop() {
		norm, ok := Normalize("abcde-fghjk")
		if !ok {
			b.Fatal("the code did not normalise")
		}
		if len(h.Hash("alice", norm)) != 32 {
			b.Fatal("hash is not 32 bytes")
		}
	}
}
