package assert

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/secrets"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store"
)

// memMeta is a store's meta values in memory.
type memMeta struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (m *memMeta) Meta(_ context.Context, name string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.m[name]
	if !ok {
		return nil, store.ErrNotFound
	}
	return append([]byte(nil), v...), nil
}

func (m *memMeta) PutMeta(_ context.Context, name string, v []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil {
		m.m = map[string][]byte{}
	}
	m.m[name] = append([]byte(nil), v...)
	return nil
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newRing(t *testing.T, alg string, meta Meta, c *clock, sealer *secrets.Sealer) *Keyring {
	t.Helper()
	if sealer == nil {
		k, err := secrets.NewKey()
		if err != nil {
			t.Fatal(err)
		}
		if sealer, err = k.Sealer(); err != nil {
			t.Fatal(err)
		}
	}
	r, err := NewKeyring(Config{Algorithm: alg, Rotation: 24 * time.Hour, Overlap: time.Hour, Store: meta, Sealer: sealer, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// verify checks a token with go-jose against a JWKS, as an upstream would.
func verify(t *testing.T, token string, jwks []byte, alg string, now time.Time, aud string) (map[string]any, error) {
	t.Helper()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(jwks, &set); err != nil {
		t.Fatalf("JWKS: %v", err)
	}
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
	if err != nil {
		return nil, err
	}
	var std jwt.Claims
	var all map[string]any
	if err := tok.Claims(set, &std, &all); err != nil {
		return nil, err
	}
	if err := std.ValidateWithLeeway(jwt.Expected{AnyAudience: jwt.Audience{aud}, Time: now}, 0); err != nil {
		return nil, err
	}
	return all, nil
}

func claimsAt(now time.Time) Claims {
	return Claims{
		Issuer: "https://example.com", Audience: "example.com", Subject: "alice", Name: "Alice",
		AMR: []string{"pwd", "otp"}, AuthTime: now.Add(-time.Minute), IssuedAt: now, Expires: now.Add(2 * time.Minute),
		Session: SessionID([]byte("key")),
	}
}

// TestSignVerifies: a token of each algorithm verifies with go-jose
// against the JWKS and says what was signed; a changed byte does not.
func TestSignVerifies(t *testing.T) {
	for _, alg := range []string{ES256, EdDSA} {
		t.Run(alg, func(t *testing.T) {
			c := &clock{time.Unix(1_900_000_000, 0)}
			r := newRing(t, alg, &memMeta{}, c, nil)
			token, err := r.Sign(context.Background(), claimsAt(c.t))
			if err != nil {
				t.Fatal(err)
			}
			jwks, err := r.JWKS(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			got, err := verify(t, token, jwks, alg, c.t, "example.com")
			if err != nil {
				t.Fatalf("a fresh token does not verify: %v", err)
			}
			if got["sub"] != "alice" || got["name"] != "Alice" || got["iss"] != "https://example.com" ||
				got["auth_time"] != float64(c.t.Unix()-60) || got["sid"] != SessionID([]byte("key")) || got["jti"] == "" {
				t.Errorf("claims %v", got)
			}
			if amr, _ := got["amr"].([]any); len(amr) != 2 || amr[0] != "pwd" || amr[1] != "otp" {
				t.Errorf("amr %v", got["amr"])
			}
			parts := strings.Split(token, ".")
			tampered := parts[0] + "." + strings.Replace(parts[1], parts[1][4:8], "AAAA", 1) + "." + parts[2]
			if tampered == token {
				t.Fatal("tampering changed nothing")
			}
			if _, err := verify(t, tampered, jwks, alg, c.t, "example.com"); err == nil {
				t.Error("a tampered token verifies")
			}
			if _, err := verify(t, token, jwks, alg, c.t, "other.example"); err == nil {
				t.Error("a token verifies for another audience")
			}
			if _, err := verify(t, token, jwks, alg, c.t.Add(3*time.Minute), "example.com"); err == nil {
				t.Error("an expired token verifies")
			}
			// Two tokens never share a jti.
			again, _ := r.Sign(context.Background(), claimsAt(c.t))
			g2, _ := verify(t, again, jwks, alg, c.t, "example.com")
			if g2["jti"] == got["jti"] {
				t.Error("two tokens with one jti")
			}
		})
	}
}

// TestRotation: the next key is published an overlap before it signs,
// the previous one is published an overlap after, then dropped; another
// keyring on the same store signs with the same keys.
func TestRotation(t *testing.T) {
	ctx := context.Background()
	c := &clock{time.Unix(1_900_000_000, 0)}
	meta := &memMeta{}
	k, _ := secrets.NewKey()
	sealer, _ := k.Sealer()
	r := newRing(t, ES256, meta, c, sealer)
	other := newRing(t, ES256, meta, c, sealer)
	kids := func(r *Keyring) []string {
		b, err := r.JWKS(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(b, &set); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, k := range set.Keys {
			out = append(out, k.KeyID)
		}
		return out
	}
	first := kids(r)
	if len(first) != 1 {
		t.Fatalf("keys at first: %v", first)
	}
	if o := kids(other); len(o) != 1 || o[0] != first[0] {
		t.Fatalf("another keyring of the store publishes %v, want %v", o, first)
	}
	old, _ := r.Sign(ctx, claimsAt(c.t))
	// An overlap before the rotation, the next key is published.
	c.t = c.t.Add(23*time.Hour + time.Second)
	two := kids(r)
	if len(two) != 2 || two[1] != first[0] {
		t.Fatalf("keys before the rotation: %v", two)
	}
	// It signs from the rotation on; the old one still verifies.
	c.t = c.t.Add(time.Hour)
	tok, _ := r.Sign(ctx, claimsAt(c.t))
	jwks, _ := r.JWKS(ctx)
	if _, err := verify(t, old, jwks, ES256, c.t.Add(-24*time.Hour), "example.com"); err != nil {
		t.Errorf("the old key's token does not verify during the overlap: %v", err)
	}
	got, err := verify(t, tok, jwks, ES256, c.t, "example.com")
	if err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	_ = json.Unmarshal(jwks, &set)
	if len(set.Key(first[0])) != 1 || len(set.Keys) != 2 {
		t.Fatalf("after the rotation: %v", kids(r))
	}
	_ = got
	// An overlap later, the old key is gone, and its tokens with it.
	c.t = c.t.Add(time.Hour)
	jwks, _ = r.JWKS(ctx)
	if _, err := verify(t, old, jwks, ES256, c.t.Add(-25*time.Hour), "example.com"); err == nil {
		t.Error("the old key's token verifies after the overlap")
	}
	if ks := kids(r); len(ks) != 1 || ks[0] == first[0] {
		t.Errorf("after the overlap: %v", ks)
	}
	if o := kids(other); len(o) != 1 || o[0] != kids(r)[0] {
		t.Errorf("the other keyring publishes %v", o)
	}
}

// TestKeysSealed: the store holds the keys sealed; another encryption key
// cannot use them, and the keyring fails rather than make new ones.
func TestKeysSealed(t *testing.T) {
	ctx := context.Background()
	c := &clock{time.Unix(1_900_000_000, 0)}
	meta := &memMeta{}
	r := newRing(t, EdDSA, meta, c, nil)
	if _, err := r.Sign(ctx, claimsAt(c.t)); err != nil {
		t.Fatal(err)
	}
	raw := meta.m[MetaName(EdDSA)]
	var s storedKeys
	if err := json.Unmarshal(raw, &s); err != nil || len(s.Keys) != 1 {
		t.Fatalf("stored %s (%v)", raw, err)
	}
	priv := r.state.Load().signer.priv
	if bytes.Contains(raw, priv.(interface{ Seed() []byte }).Seed()) {
		t.Error("the private key is stored in the clear")
	}
	stranger := newRing(t, EdDSA, meta, c, nil)
	if _, err := stranger.Sign(ctx, claimsAt(c.t)); err == nil {
		t.Error("signed with keys sealed under another encryption key")
	}
	if _, err := r.Sign(ctx, Claims{IssuedAt: c.t, Expires: c.t.Add(6 * time.Minute)}); err == nil {
		t.Error("signed a token that lives longer than 5 minutes")
	}
}
