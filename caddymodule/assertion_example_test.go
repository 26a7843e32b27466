package caddymodule

// The code of docs/assertion.md, "Verifying in Go", as the tests run it:
// TestAssertionDocGo checks that the page shows exactly the lines between
// the doc markers.

// doc:begin
import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// AssertionClaims are the claims of the gate's assertion.
type AssertionClaims struct {
	jwt.Claims          // iss, sub, aud, exp, nbf, iat, jti
	Name       string   `json:"name"`
	AMR        []string `json:"amr"`       // RFC 8176: pwd, otp, ...
	AuthTime   int64    `json:"auth_time"` // Unix seconds of the last factor check
	SessionID  string   `json:"sid"`
}

// FetchKeys reads the gate's public keys from its JWKS URL, such as
// https://example.com/.auth/.well-known/jwks.json. Fetch them again when a
// token names a key you do not have (after a rotation).
func FetchKeys(ctx context.Context, client *http.Client, jwksURL string) (jose.JSONWebKeySet, error) {
	var keys jose.JSONWebKeySet
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, jwksURL, nil)
	if err != nil {
		return keys, err
	}
	res, err := client.Do(req)
	if err != nil {
		return keys, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return keys, fmt.Errorf("JWKS: %s", res.Status)
	}
	err = json.NewDecoder(res.Body).Decode(&keys)
	return keys, err
}

// VerifyAssertion checks the token of the assertion header against the
// keys, the issuer and the audience at the time now (time.Now()), and
// returns its claims.
func VerifyAssertion(token string, keys jose.JSONWebKeySet, issuer, audience string, now time.Time) (*AssertionClaims, error) {
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA})
	if err != nil {
		return nil, err
	}
	var c AssertionClaims
	if err := tok.Claims(keys, &c); err != nil { // the key named by kid
		return nil, err
	}
	err = c.ValidateWithLeeway(jwt.Expected{Issuer: issuer, AnyAudience: jwt.Audience{audience}, Time: now}, 5*time.Second)
	if err != nil || c.Subject == "" {
		return nil, fmt.Errorf("assertion refused: %v", err)
	}
	return &c, nil
}

// doc:end
