// Package assert signs the identity assertion the gate adds to proxied
// requests: a compact JWT (RFC 7519) signed with ES256 or EdDSA, whose
// public keys are published as a JWKS (RFC 7517). The signing keys are
// kept in the store, sealed with the encryption key, so that every handler
// of a store signs with the same key; they are rotated on a schedule, the
// next key published an overlap before it signs and the previous one an
// overlap after. It imports no Caddy and no HTTP.
package assert

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/secrets"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store"
)

// The signing algorithms (JWS "alg" values).
const (
	ES256 = "ES256"
	EdDSA = "EdDSA"
)

// ValidAlgorithm reports whether alg is one this package signs with.
func ValidAlgorithm(alg string) bool { return alg == ES256 || alg == EdDSA }

// MaxLifetime bounds a token's life (exp - iat).
const MaxLifetime = 5 * time.Minute

// refreshEvery bounds how long the keys in memory go without a look at
// the store, where another handler of the same store may have rotated them.
const refreshEvery = time.Minute

// MetaName is the store's meta value holding the keys of alg.
func MetaName(alg string) string { return "assertion-keys/" + alg }

// Meta is the part of the store the keys live in.
type Meta interface {
	Meta(ctx context.Context, name string) ([]byte, error)
	PutMeta(ctx context.Context, name string, value []byte) error
}

// Config makes a Keyring.
type Config struct {
	// Algorithm is ES256 or EdDSA.
	Algorithm string
	// Rotation is how long a key signs; Overlap how long the next key is
	// published before it signs, and the previous one after.
	Rotation, Overlap time.Duration
	Store             Meta
	Sealer            *secrets.Sealer
	Now               func() time.Time
}

// Keyring signs tokens with the current key of an algorithm and publishes
// the keys. It is safe for concurrent use.
type Keyring struct {
	c     Config
	state atomic.Pointer[ringState]
	mu    sync.Mutex // one refresh at a time
}

// ringState is the keys as last read from the store.
type ringState struct {
	signer *key
	jwks   []byte
	until  time.Time // read the store again from then on
}

// key is one signing key.
type key struct {
	kid    string
	alg    string
	active time.Time // signs from then on (published before)
	priv   crypto.Signer
	header string // the JWS header, encoded
	jwk    map[string]string
}

// storedKeys is the meta value: the keys of one algorithm.
type storedKeys struct {
	Keys []storedKey `json:"keys"`
}

type storedKey struct {
	Kid    string `json:"kid"`
	Alg    string `json:"alg"`
	Active int64  `json:"active"` // Unix seconds
	Sealed []byte `json:"sealed"` // PKCS #8, sealed with the kid as associated data
}

// storeLocks serialises the read-rotate-write of each meta value between
// the keyrings of this process (handlers of one store, and a reload's old
// and new config); badger lets one process open a store.
var storeLocks sync.Map // meta name → *sync.Mutex

// NewKeyring returns a keyring; it reads the store at its first use.
func NewKeyring(c Config) (*Keyring, error) {
	if !ValidAlgorithm(c.Algorithm) {
		return nil, fmt.Errorf("assertion algorithm %q: want ES256 or EdDSA", c.Algorithm)
	}
	if c.Rotation <= 0 || c.Overlap <= 0 || c.Store == nil || c.Sealer == nil || c.Now == nil {
		return nil, errors.New("assertion keyring: rotation, overlap, store, sealer and clock are required")
	}
	return &Keyring{c: c}, nil
}

// current returns the keys to use now, reading the store (and rotating)
// when the ones in memory are due for it.
func (k *Keyring) current(ctx context.Context) (*ringState, error) {
	now := k.c.Now()
	if st := k.state.Load(); st != nil && now.Before(st.until) {
		return st, nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if st := k.state.Load(); st != nil && now.Before(st.until) {
		return st, nil
	}
	st, err := k.refresh(ctx, now)
	if err != nil {
		return nil, err
	}
	k.state.Store(st)
	return st, nil
}

// refresh reads the keys, adds the next key when it is due, drops the
// retired ones, writes them back if anything changed, and returns them.
func (k *Keyring) refresh(ctx context.Context, now time.Time) (*ringState, error) {
	name := MetaName(k.c.Algorithm)
	l, _ := storeLocks.LoadOrStore(name, new(sync.Mutex))
	lock := l.(*sync.Mutex)
	lock.Lock()
	defer lock.Unlock()

	raw, err := k.c.Store.Meta(ctx, name)
	var stored storedKeys
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("reading the assertion keys: %w", err)
	default:
		if err := json.Unmarshal(raw, &stored); err != nil {
			return nil, fmt.Errorf("reading the assertion keys: %w", err)
		}
	}
	keys := make([]*key, 0, len(stored.Keys)+1)
	for _, s := range stored.Keys {
		kk, err := k.open(s)
		if err != nil {
			return nil, err
		}
		keys = append(keys, kk)
	}
	slices.SortFunc(keys, func(a, b *key) int { return a.active.Compare(b.active) })

	changed := false
	signer := signerAt(keys, now)
	var pending *key
	if len(keys) > 0 && keys[len(keys)-1].active.After(now) {
		pending = keys[len(keys)-1]
	}
	if signer == nil || pending == nil && !now.Before(signer.active.Add(k.c.Rotation-k.c.Overlap)) {
		// The first key signs at once; a next key is published an overlap
		// before it signs, or signs at once when its time has passed
		// (the server was down then).
		at := now
		if signer != nil && signer.active.Add(k.c.Rotation).After(now) {
			at = signer.active.Add(k.c.Rotation)
		}
		nk, err := k.generate(at)
		if err != nil {
			return nil, err
		}
		keys = append(keys, nk)
		changed = true
		signer = signerAt(keys, now)
	}
	// A key retires an overlap after the next one started signing.
	kept := keys[:0]
	for i, kk := range keys {
		if i+1 < len(keys) && !now.Before(keys[i+1].active.Add(k.c.Overlap)) {
			changed = true
			continue
		}
		kept = append(kept, kk)
	}
	keys = kept
	if changed {
		out := storedKeys{Keys: make([]storedKey, len(keys))}
		for i, kk := range keys {
			der, err := x509.MarshalPKCS8PrivateKey(kk.priv)
			if err != nil {
				return nil, err
			}
			sealed, err := k.c.Sealer.Seal(der, aad(kk.kid))
			clear(der)
			if err != nil {
				return nil, err
			}
			out.Keys[i] = storedKey{Kid: kk.kid, Alg: kk.alg, Active: kk.active.Unix(), Sealed: sealed}
		}
		b, err := json.Marshal(out)
		if err != nil {
			return nil, err
		}
		if err := k.c.Store.PutMeta(ctx, name, b); err != nil {
			return nil, fmt.Errorf("writing the assertion keys: %w", err)
		}
	}

	// Read the store again within a minute, and at the next change.
	until := now.Add(refreshEvery)
	for i, kk := range keys {
		if kk.active.After(now) && kk.active.Before(until) {
			until = kk.active
		}
		if i+1 < len(keys) {
			if t := keys[i+1].active.Add(k.c.Overlap); t.After(now) && t.Before(until) {
				until = t
			}
		}
	}
	if t := signer.active.Add(k.c.Rotation - k.c.Overlap); t.After(now) && t.Before(until) {
		until = t
	}
	set := struct {
		Keys []map[string]string `json:"keys"`
	}{Keys: make([]map[string]string, 0, len(keys))}
	for i := len(keys) - 1; i >= 0; i-- { // newest first
		set.Keys = append(set.Keys, keys[i].jwk)
	}
	jwks, err := json.Marshal(set)
	if err != nil {
		return nil, err
	}
	return &ringState{signer: signer, jwks: jwks, until: until}, nil
}

// signerAt is the key that signs at now: the newest already active.
func signerAt(keys []*key, now time.Time) *key {
	for i := len(keys) - 1; i >= 0; i-- {
		if !keys[i].active.After(now) {
			return keys[i]
		}
	}
	return nil
}

func aad(kid string) []byte { return []byte("caddy-two-factor assertion key " + kid) }

// generate makes a new key of the keyring's algorithm, signing from at.
func (k *Keyring) generate(at time.Time) (*key, error) {
	var priv crypto.Signer
	var err error
	switch k.c.Algorithm {
	case ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	}
	if err != nil {
		return nil, fmt.Errorf("generating an assertion key: %w", err)
	}
	return newKey(priv, k.c.Algorithm, at.Truncate(time.Second))
}

// open unseals a stored key.
func (k *Keyring) open(s storedKey) (*key, error) {
	der, err := k.c.Sealer.Open(s.Sealed, aad(s.Kid))
	if err != nil {
		return nil, fmt.Errorf("assertion key %s: %w", s.Kid, err)
	}
	p, err := x509.ParsePKCS8PrivateKey(der)
	clear(der)
	if err != nil {
		return nil, fmt.Errorf("assertion key %s: %w", s.Kid, err)
	}
	priv, ok := p.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("assertion key %s: not a signing key", s.Kid)
	}
	kk, err := newKey(priv, s.Alg, time.Unix(s.Active, 0))
	if err != nil {
		return nil, err
	}
	if kk.kid != s.Kid || s.Alg != k.c.Algorithm {
		return nil, fmt.Errorf("assertion key %s: does not match its record", s.Kid)
	}
	return kk, nil
}

// newKey describes priv: its public JWK, its kid (the RFC 7638
// thumbprint) and its JWS header.
func newKey(priv crypto.Signer, alg string, active time.Time) (*key, error) {
	b64 := base64.RawURLEncoding.EncodeToString
	var thumb string
	jwk := map[string]string{"alg": alg, "use": "sig"}
	switch p := priv.(type) {
	case *ecdsa.PrivateKey:
		if alg != ES256 || p.Curve != elliptic.P256() {
			return nil, errors.New("assertion key: not a P-256 key for ES256")
		}
		pub, err := p.PublicKey.ECDH()
		if err != nil {
			return nil, err
		}
		b := pub.Bytes() // 0x04 || X || Y
		x, y := b64(b[1:33]), b64(b[33:65])
		jwk["kty"], jwk["crv"], jwk["x"], jwk["y"] = "EC", "P-256", x, y
		thumb = `{"crv":"P-256","kty":"EC","x":"` + x + `","y":"` + y + `"}`
	case ed25519.PrivateKey:
		if alg != EdDSA {
			return nil, errors.New("assertion key: not an Ed25519 key for EdDSA")
		}
		x := b64(p.Public().(ed25519.PublicKey))
		jwk["kty"], jwk["crv"], jwk["x"] = "OKP", "Ed25519", x
		thumb = `{"crv":"Ed25519","kty":"OKP","x":"` + x + `"}`
	default:
		return nil, fmt.Errorf("assertion key: unsupported key type %T", priv)
	}
	sum := sha256.Sum256([]byte(thumb))
	kid := b64(sum[:])
	jwk["kid"] = kid
	h, err := json.Marshal(map[string]string{"alg": alg, "kid": kid, "typ": "JWT"})
	if err != nil {
		return nil, err
	}
	return &key{kid: kid, alg: alg, active: active, priv: priv, header: b64(h), jwk: jwk}, nil
}

// Claims are what a token says.
type Claims struct {
	Issuer   string    // iss
	Audience string    // aud
	Subject  string    // sub: the user's canonical name
	Name     string    // name: the name the upstream gets in the user header
	AMR      []string  // amr: RFC 8176 method values
	AuthTime time.Time // auth_time; omitted when zero
	IssuedAt time.Time // iat
	Expires  time.Time // exp
	Session  string    // sid
}

// payload is the JSON of the claims.
type payload struct {
	Iss      string   `json:"iss"`
	Sub      string   `json:"sub"`
	Aud      string   `json:"aud"`
	Exp      int64    `json:"exp"`
	Nbf      int64    `json:"nbf"`
	Iat      int64    `json:"iat"`
	AuthTime int64    `json:"auth_time,omitempty"`
	Jti      string   `json:"jti"`
	Sid      string   `json:"sid"`
	Name     string   `json:"name,omitempty"`
	AMR      []string `json:"amr"`
}

// Sign returns the claims as a compact JWS signed with the current key,
// with a new random jti.
func (k *Keyring) Sign(ctx context.Context, c Claims) (string, error) {
	st, err := k.current(ctx)
	if err != nil {
		return "", err
	}
	if c.Expires.Sub(c.IssuedAt) > MaxLifetime || !c.Expires.After(c.IssuedAt) {
		return "", errors.New("assertion: lifetime out of bounds")
	}
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", err
	}
	p := payload{
		Iss: c.Issuer, Sub: c.Subject, Aud: c.Audience, Exp: c.Expires.Unix(), Nbf: c.IssuedAt.Unix(),
		Iat: c.IssuedAt.Unix(), Jti: base64.RawURLEncoding.EncodeToString(jti[:]), Sid: c.Session,
		Name: c.Name, AMR: c.AMR,
	}
	if p.AMR == nil {
		p.AMR = []string{}
	}
	if !c.AuthTime.IsZero() {
		p.AuthTime = c.AuthTime.Unix()
	}
	body, err := json.Marshal(p)
	if err != nil {
		return "", err
	}
	s := st.signer
	input := s.header + "." + base64.RawURLEncoding.EncodeToString(body)
	sig, err := sign(s.priv, input)
	if err != nil {
		return "", err
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// sign makes a JWS signature: for ES256 the fixed-size R || S of
// RFC 7518 section 3.4, not ASN.1.
func sign(priv crypto.Signer, input string) ([]byte, error) {
	switch p := priv.(type) {
	case *ecdsa.PrivateKey:
		sum := sha256.Sum256([]byte(input))
		r, s, err := ecdsa.Sign(rand.Reader, p, sum[:])
		if err != nil {
			return nil, err
		}
		sig := make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
		return sig, nil
	case ed25519.PrivateKey:
		return ed25519.Sign(p, []byte(input)), nil
	}
	return nil, errors.New("assertion: unsupported key")
}

// JWKS returns the published keys as a JWK Set: the signing key, the next
// one once it is published, and the previous one until it retires.
func (k *Keyring) JWKS(ctx context.Context) ([]byte, error) {
	st, err := k.current(ctx)
	if err != nil {
		return nil, err
	}
	return st.jwks, nil
}

// SessionID is the sid of a session: derived from its store key (itself
// the SHA-256 of the cookie's ID), so that it names the session without
// revealing anything that opens it.
func SessionID(storeKey []byte) string {
	h := sha256.New()
	h.Write([]byte("caddy-two-factor sid\x00"))
	h.Write(storeKey)
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:16])
}
