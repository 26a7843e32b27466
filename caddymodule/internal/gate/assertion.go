package gate

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/assert"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store"
)

// Assertion configures the signed identity assertion (assertion_header)
// and the further identity headers (auth_headers).
type Assertion struct {
	// Header carries the JWT; empty for none.
	Header string
	// Algorithm is ES256 or EdDSA; Issuer and Audience the iss and aud
	// claims, empty for the request's origin and host.
	Algorithm, Issuer, Audience string
	// Lifetime is exp - iat; a token is reused until half of it is left.
	Lifetime time.Duration
	// Rotation and Overlap schedule the signing keys (see package assert).
	Rotation, Overlap time.Duration
	// AuthHeaders adds Remote-Name, Remote-Auth-Methods and
	// Remote-Auth-Time.
	AuthHeaders bool
}

// The further identity headers of auth_headers. They are in
// CommonIdentityHeaders, so a client's copies go whether or not they are on.
const (
	HeaderName        = "Remote-Name"
	HeaderAuthMethods = "Remote-Auth-Methods"
	HeaderAuthTime    = "Remote-Auth-Time"
)

// amrText is Remote-Auth-Methods of each set of methods.
var amrText = func() (t [16]string) {
	for m := range t {
		t[m] = strings.Join(store.Methods(m).AMR(), " ")
	}
	return t
}()

// asserter adds the identity headers of Assertion to a proxied request.
type asserter struct {
	c    Assertion
	keys *assert.Keyring // nil without Header
	// tokens are the tokens signed, by session store key, reused while
	// the session says the same and more than half their life is left.
	mu        sync.RWMutex
	tokens    map[string]*cachedToken
	sweepFrom int // sweep the expired tokens when the map is this big
}

type cachedToken struct {
	token    string
	iat      time.Time
	reuse    time.Time // until then
	expires  time.Time
	host     string // the request's Host it was made for
	name     string
	authTime time.Time
	methods  store.Methods
}

// minSweep is the least size of the token map at which expired tokens are
// swept out.
const minSweep = 1024

func newAsserter(c Assertion, s State, now func() time.Time) (*asserter, error) {
	a := &asserter{c: c, tokens: map[string]*cachedToken{}, sweepFrom: minSweep}
	if c.Header != "" {
		k, err := assert.NewKeyring(assert.Config{
			Algorithm: c.Algorithm, Rotation: c.Rotation, Overlap: c.Overlap,
			Store: s.DB, Sealer: s.Sealer, Now: now,
		})
		if err != nil {
			return nil, err
		}
		a.keys = k
	}
	return a, nil
}

// assertIdentity sets the headers for the admitted session's user, whose
// name (as in the user header) is name, at now (the request's reading of
// the clock). The client's copies were stripped before.
func (g *Gate) assertIdentity(r *http.Request, adm store.Admission, name string, now time.Time) error {
	a, rec := g.assertion, adm.Rec
	if a.c.AuthHeaders {
		// One backing array for the three values; the names are in
		// canonical form already.
		v := make([]string, 3)
		v[0], v[1] = name, amrText[rec.Methods&0xf]
		r.Header[HeaderName], r.Header[HeaderAuthMethods] = v[0:1:1], v[1:2:2]
		if !rec.AuthTime.IsZero() {
			v[2] = strconv.FormatInt(rec.AuthTime.Unix(), 10)
			r.Header[HeaderAuthTime] = v[2:3:3]
		}
	}
	if a.keys == nil {
		return nil
	}
	tok, err := a.token(r.Context(), r, adm, name, now)
	if err != nil {
		return err
	}
	r.Header.Set(a.c.Header, tok)
	return nil
}

// token returns the session's token: the one signed before while it says
// the same and has more than half its life left, else a new one.
func (a *asserter) token(ctx context.Context, r *http.Request, adm store.Admission, name string, now time.Time) (string, error) {
	rec := adm.Rec
	if len(rec.Key) == 0 {
		// Every session read from the store has its key; without one,
		// sessions would share a token and a sid.
		return "", errors.New("assertion: a session without its store key")
	}
	a.mu.RLock()
	t := a.tokens[string(rec.Key)]
	a.mu.RUnlock()
	if t != nil && now.Before(t.reuse) && !now.Before(t.iat) && t.host == r.Host &&
		t.name == name && t.methods == rec.Methods && t.authTime.Equal(rec.AuthTime) {
		return t.token, nil
	}
	iss, aud := a.c.Issuer, a.c.Audience
	if iss == "" {
		iss = "https://" + r.Host
		if r.TLS == nil {
			iss = "http://" + r.Host
		}
	}
	if aud == "" {
		aud = r.Host
	}
	iat := now.Truncate(time.Second)
	exp := iat.Add(a.c.Lifetime)
	tok, err := a.keys.Sign(ctx, assert.Claims{
		Issuer: iss, Audience: aud, Subject: adm.User, Name: name, AMR: rec.Methods.AMR(),
		AuthTime: rec.AuthTime, IssuedAt: iat, Expires: exp, Session: assert.SessionID(rec.Key),
	})
	if err != nil {
		return "", err
	}
	t = &cachedToken{token: tok, iat: iat, reuse: iat.Add(a.c.Lifetime / 2), expires: exp, host: r.Host, name: name,
		authTime: rec.AuthTime, methods: rec.Methods}
	a.mu.Lock()
	a.tokens[string(rec.Key)] = t
	if len(a.tokens) >= a.sweepFrom {
		for k, v := range a.tokens {
			if !now.Before(v.expires) {
				delete(a.tokens, k)
			}
		}
		a.sweepFrom = max(minSweep, 2*len(a.tokens))
	}
	a.mu.Unlock()
	return tok, nil
}

// jwks serves the public keys of the assertion at P/.well-known/jwks.json.
func (g *Gate) jwks(w http.ResponseWriter, r *http.Request) error {
	if g.assertion == nil || g.assertion.keys == nil {
		return g.errorPage(w, http.StatusNotFound, "error.not_found_title", "error.not_found")
	}
	b, err := g.assertion.keys.JWKS(r.Context())
	if err != nil {
		return g.unavailable(w, err)
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	// Short: a new key is published an overlap before it signs.
	w.Header().Set("Cache-Control", "public, max-age=60")
	if r.Method == http.MethodHead {
		return nil
	}
	_, err = w.Write(b)
	return err
}
