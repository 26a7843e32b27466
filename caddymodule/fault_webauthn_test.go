package caddymodule

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store"
)

// The store methods of security keys, made to fail like the others.
func init() {
	wrappedMethods = append(wrappedMethods, "AddCredential", "UseCredential", "RenameCredential", "RemoveCredential", "AddTOTP", "PutChallenge", "TakeChallenge")
}

func (f *faultyStore) AddCredential(ctx context.Context, u string, c store.Credential, handle []byte, codes [][]byte, keep []byte) (bool, error) {
	if err := f.call("AddCredential"); err != nil {
		return false, err
	}
	return f.Store.AddCredential(ctx, u, c, handle, codes, keep)
}

func (f *faultyStore) UseCredential(ctx context.Context, u string, id []byte, use store.CredentialUse) error {
	if err := f.call("UseCredential"); err != nil {
		return err
	}
	return f.Store.UseCredential(ctx, u, id, use)
}

func (f *faultyStore) RenameCredential(ctx context.Context, u string, id []byte, name string) error {
	if err := f.call("RenameCredential"); err != nil {
		return err
	}
	return f.Store.RenameCredential(ctx, u, id, name)
}

func (f *faultyStore) RemoveCredential(ctx context.Context, u string, id []byte, keep []byte) (bool, error) {
	if err := f.call("RemoveCredential"); err != nil {
		return false, err
	}
	return f.Store.RemoveCredential(ctx, u, id, keep)
}

func (f *faultyStore) PutChallenge(ctx context.Context, key []byte, c store.Challenge) error {
	if err := f.call("PutChallenge"); err != nil {
		return err
	}
	return f.Store.PutChallenge(ctx, key, c)
}

func (f *faultyStore) TakeChallenge(ctx context.Context, key []byte, purpose string) (store.Challenge, error) {
	if err := f.call("TakeChallenge"); err != nil {
		return store.Challenge{}, err
	}
	return f.Store.TakeChallenge(ctx, key, purpose)
}

func (f *faultyStore) AddTOTP(ctx context.Context, u string, t store.TOTP) error {
	if err := f.call("AddTOTP"); err != nil {
		return err
	}
	return f.Store.AddTOTP(ctx, u, t)
}

// The requests of security keys in the fault matrix, with a software
// authenticator for the handler's origin (httptest's http://example.com).
func init() {
	committing["AddCredential"], committing["RemoveCredential"], committing["UseCredential"] = true, true, true
	faultScenarios = append(faultScenarios,
		faultScenario{"add the first security key", false, func(e *faultEnv) (func() result, *http.Cookie) {
			c := e.login()
			other := e.login()
			k := e.softKey()
			o := e.keyOptions("/.auth/webauthn/register/options", c)
			var opts creationOptions
			if err := json.Unmarshal(o, &opts); err != nil {
				e.t.Fatal(err)
			}
			body := k.register(opts, map[string]any{"name": "Key", "password": testPassword})
			return func() result {
				res := e.postJSON("/.auth/webauthn/register", c, body)
				res.others = []*http.Cookie{other}
				return res
			}, c
		}},
		faultScenario{"log in with a security key", false, func(e *faultEnv) (func() result, *http.Cookie) {
			k, _, _ := e.withKey()
			p := e.login()
			var opts requestOptions
			if err := json.Unmarshal(e.keyOptions("/.auth/webauthn/login/options", p), &opts); err != nil {
				e.t.Fatal(err)
			}
			body := k.assert(opts)
			return func() result { return e.postJSON("/.auth/webauthn/login", p, body) }, p
		}},
		faultScenario{"remove the last security key", false, func(e *faultEnv) (func() result, *http.Cookie) {
			k, c, codes := e.withKey()
			return func() result {
				return e.post("/.auth/security/keys/remove", c, "id", b64u(k.id), "password", testPassword, "code", codes[0])
			}, c
		}},
	)
}

func (e *faultEnv) softKey() *softKey {
	k := newSoftKey(e.t, -7)
	k.rpID, k.origin = "example.com", "http://example.com"
	return k
}

func (e *faultEnv) postJSON(path string, c *http.Cookie, body any) result {
	raw, err := json.Marshal(body)
	if err != nil {
		e.t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(raw))
	r.Header.Set("Content-Type", "application/json")
	return e.do(r, c)
}

// keyOptions asks a JSON options route, which must answer 200.
func (e *faultEnv) keyOptions(path string, c *http.Cookie) []byte {
	e.t.Helper()
	return e.must(e.postJSON(path, c, map[string]any{}), http.StatusOK).w.Body.Bytes()
}

// withKey gives alice a security key (2FA on) and returns it, the
// session's new cookie and the backup codes.
func (e *faultEnv) withKey() (*softKey, *http.Cookie, []string) {
	e.t.Helper()
	c := e.login()
	k := e.softKey()
	var opts creationOptions
	if err := json.Unmarshal(e.keyOptions("/.auth/webauthn/register/options", c), &opts); err != nil {
		e.t.Fatal(err)
	}
	c = e.must(e.postJSON("/.auth/webauthn/register", c, k.register(opts, map[string]any{"name": "Key", "password": testPassword})), http.StatusOK).cookie()
	r := e.must(e.get("/.auth/security/backup-codes", c), http.StatusOK)
	return k, c, backupCodesOn(e.t, r.w.Body.String())
}
