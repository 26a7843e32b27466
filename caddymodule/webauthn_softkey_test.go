package caddymodule

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"testing"

	"github.com/go-webauthn/webauthn/protocol/webauthncbor"
)

// softKey is a software authenticator: what a security key does, written
// from the WebAuthn and CTAP2 specifications, so that the tests drive the
// JSON contract as any client would. It signs with ES256 (P-256) or EdDSA
// (Ed25519), keeps a signature counter, and can be made to lie: another
// origin or RP ID, a counter going backwards, a broken signature.
type softKey struct {
	t      *testing.T
	alg    int64 // -7 ES256, -8 EdDSA
	ec     *ecdsa.PrivateKey
	ed     ed25519.PrivateKey
	id     []byte
	handle []byte // the user handle it was registered with

	rpID, origin string
	count        uint32
	flags        byte // besides UP and AT: UV, BE, BS
}

const (
	flagUP = 0x01
	flagUV = 0x04
	flagBE = 0x08
	flagBS = 0x10
	flagAT = 0x40
)

func newSoftKey(t *testing.T, alg int64) *softKey {
	t.Helper()
	k := &softKey{t: t, alg: alg, id: make([]byte, 32), rpID: "localhost", origin: "https://localhost:9443", count: 1, flags: flagUV}
	if _, err := rand.Read(k.id); err != nil {
		t.Fatal(err)
	}
	var err error
	switch alg {
	case -7:
		k.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case -8:
		_, k.ed, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("softKey: algorithm %d", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func b64u(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func unb64u(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("not base64url: %q", s)
	}
	return b
}

// coseKey is the public key as COSE_Key (RFC 9053).
func (k *softKey) coseKey() []byte {
	var m map[int]any
	switch k.alg {
	case -7:
		pub, err := k.ec.PublicKey.Bytes() // 0x04 || X || Y
		if err != nil {
			k.t.Fatal(err)
		}
		m = map[int]any{1: 2, 3: -7, -1: 1, -2: pub[1:33], -3: pub[33:65]}
	case -8:
		m = map[int]any{1: 1, 3: -8, -1: 6, -2: []byte(k.ed.Public().(ed25519.PublicKey))}
	}
	b, err := webauthncbor.Marshal(m)
	if err != nil {
		k.t.Fatal(err)
	}
	return b
}

// authData is the authenticator data: RP ID hash, flags, counter, and the
// attested credential data when registering.
func (k *softKey) authData(attested bool) []byte {
	h := sha256.Sum256([]byte(k.rpID))
	out := append([]byte{}, h[:]...)
	flags := k.flags | flagUP
	if attested {
		flags |= flagAT
	}
	out = append(out, flags)
	out = binary.BigEndian.AppendUint32(out, k.count)
	if attested {
		out = append(out, make([]byte, 16)...) // AAGUID: none
		out = binary.BigEndian.AppendUint16(out, uint16(len(k.id)))
		out = append(out, k.id...)
		out = append(out, k.coseKey()...)
	}
	return out
}

func (k *softKey) clientData(typ, challenge string) []byte {
	b, _ := json.Marshal(map[string]any{"type": typ, "challenge": challenge, "origin": k.origin, "crossOrigin": false})
	return b
}

// creationOptions is what the tests read of P/webauthn/register/options.
type creationOptions struct {
	Challenge string `json:"challenge"`
	RP        struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"rp"`
	User struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"user"`
	PubKeyCredParams []struct {
		Alg int64 `json:"alg"`
	} `json:"pubKeyCredParams"`
	ExcludeCredentials []struct {
		ID string `json:"id"`
	} `json:"excludeCredentials"`
	Attestation            string `json:"attestation"`
	AuthenticatorSelection struct {
		UserVerification string `json:"userVerification"`
		ResidentKey      string `json:"residentKey"`
	} `json:"authenticatorSelection"`
	Timeout int `json:"timeout"`
}

// requestOptions is what the tests read of P/webauthn/login/options.
type requestOptions struct {
	Challenge        string `json:"challenge"`
	RPID             string `json:"rpId"`
	AllowCredentials []struct {
		ID string `json:"id"`
	} `json:"allowCredentials"`
	UserVerification string `json:"userVerification"`
}

// register makes the credential for the options: RegistrationResponseJSON,
// with extra members added (name, password, code).
func (k *softKey) register(o creationOptions, extra map[string]any) map[string]any {
	k.handle = unb64u(k.t, o.User.ID)
	att, err := webauthncbor.Marshal(map[string]any{"fmt": "none", "attStmt": map[string]any{}, "authData": k.authData(true)})
	if err != nil {
		k.t.Fatal(err)
	}
	out := map[string]any{
		"id": b64u(k.id), "rawId": b64u(k.id), "type": "public-key",
		"response": map[string]any{
			"clientDataJSON":    b64u(k.clientData("webauthn.create", o.Challenge)),
			"attestationObject": b64u(att),
			"transports":        []string{"usb"},
		},
		"clientExtensionResults": map[string]any{},
	}
	for n, v := range extra {
		out[n] = v
	}
	return out
}

// assert signs the challenge: AuthenticationResponseJSON. The counter goes
// up first, as a key's does.
func (k *softKey) assert(o requestOptions) map[string]any {
	k.count++
	return k.assertAt(o.Challenge)
}

// assertAt signs without moving the counter.
func (k *softKey) assertAt(challenge string) map[string]any {
	ad := k.authData(false)
	cd := k.clientData("webauthn.get", challenge)
	h := sha256.Sum256(cd)
	msg := append(append([]byte{}, ad...), h[:]...)
	var sig []byte
	switch k.alg {
	case -7:
		d := sha256.Sum256(msg)
		var err error
		if sig, err = ecdsa.SignASN1(rand.Reader, k.ec, d[:]); err != nil {
			k.t.Fatal(err)
		}
	case -8:
		sig = ed25519.Sign(k.ed, msg)
	}
	resp := map[string]any{"clientDataJSON": b64u(cd), "authenticatorData": b64u(ad), "signature": b64u(sig)}
	if k.handle != nil {
		resp["userHandle"] = b64u(k.handle)
	}
	return map[string]any{"id": b64u(k.id), "rawId": b64u(k.id), "type": "public-key", "response": resp, "clientExtensionResults": map[string]any{}}
}
