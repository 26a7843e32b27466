package store

import "crypto/subtle"

// removeCode returns codes without the one equal to hash, and whether there
// was one. It compares with every code in constant time, so the time taken
// does not tell which one (if any) matched.
func removeCode(codes [][]byte, hash []byte) ([][]byte, bool) {
	found := -1
	for i, c := range codes {
		if subtle.ConstantTimeCompare(c, hash) == 1 && len(hash) > 0 {
			found = i
		}
	}
	if found < 0 {
		return codes, false
	}
	return append(codes[:found], codes[found+1:]...), true
}
