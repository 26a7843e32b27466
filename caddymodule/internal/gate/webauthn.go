package gate

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/protocol/webauthncbor"
	"github.com/go-webauthn/webauthn/protocol/webauthncose"
	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/audit"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/ui"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/users"
)

// Security keys and passkeys (WebAuthn) as a second factor. The wire
// contract is in docs/webauthn.md: four JSON routes under the prefix, each
// a POST under the same cross-origin protection as the forms, and two
// forms on the Security page (rename, remove).

// metricKeys counts keys added and removed, and counter refusals;
// assertions are in metricCodes (method webauthn).
var metricKeys = prometheus.NewCounterVec(prometheus.CounterOpts{
	Namespace: "caddy", Subsystem: "two_factor", Name: "security_keys_total",
	Help: "Security keys and passkeys (WebAuthn) added and removed by their users, and assertions refused because the key's signature counter went backwards, by event (added, removed, sign_count_refused). Assertions themselves are counted in caddy_two_factor_codes_total with method webauthn.",
}, []string{"event"})

func init() {
	// Every series exists from the start, at zero.
	for _, e := range []string{"added", "removed", "sign_count_refused"} {
		metricKeys.WithLabelValues(e)
	}
	for _, o := range []string{"ok", "failed"} {
		metricCodes.WithLabelValues(string(factorKey), o)
	}
	metricThrottled.WithLabelValues(string(factorKey))
}

// factorKey is the attempt budget of security-key assertions.
const factorKey factor = store.FactorWebAuthn

// challengeLifetime is how long a ceremony's challenge stays good.
const challengeLifetime = 5 * time.Minute

// userHandleBytes is the length of a user's random WebAuthn user handle.
const userHandleBytes = 32

// WebAuthnConfig is the relying party: RPID "" means the host the request
// came to; Origins nil means the request's own origin (its scheme and
// host). UserVerification is "required", "preferred" or "discouraged".
type WebAuthnConfig struct {
	RPID             string
	Origins          []string
	UserVerification string
}

// waUser is a user as the WebAuthn library sees them.
type waUser struct {
	id    []byte
	name  string
	creds []webauthn.Credential
}

func (u waUser) WebAuthnID() []byte                         { return u.id }
func (u waUser) WebAuthnName() string                       { return u.name }
func (u waUser) WebAuthnDisplayName() string                { return u.name }
func (u waUser) WebAuthnCredentials() []webauthn.Credential { return u.creds }

// libUser is the account's user for the library.
func libUser(name string, a store.Account, handle []byte) waUser {
	u := waUser{id: handle, name: name}
	for _, c := range a.Credentials {
		tr := make([]protocol.AuthenticatorTransport, len(c.Transports))
		for i, t := range c.Transports {
			tr[i] = protocol.AuthenticatorTransport(t)
		}
		u.creds = append(u.creds, webauthn.Credential{
			ID: c.ID, PublicKey: c.PublicKey, AttestationType: c.AttestationType, Transport: tr,
			Flags: webauthn.CredentialFlags{
				UserPresent: true, UserVerified: c.UserVerified,
				BackupEligible: c.BackupEligible, BackupState: c.BackupState,
			},
			Authenticator: webauthn.Authenticator{AAGUID: c.AAGUID, SignCount: c.SignCount},
		})
	}
	return u
}

// requestOrigin is the origin the browser is on, as it sends it.
func requestOrigin(r *http.Request) string {
	scheme := "https"
	if r.TLS == nil {
		scheme = "http"
	}
	return scheme + "://" + strings.ToLower(r.Host)
}

// relyingParty is the WebAuthn relying party of the request.
func (g *Gate) relyingParty(r *http.Request) (*webauthn.WebAuthn, error) {
	rpID, origins := g.webauthn.RPID, g.webauthn.Origins
	if rpID == "" {
		rpID = strings.ToLower(r.Host)
		if h, _, err := net.SplitHostPort(rpID); err == nil {
			rpID = h
		}
	}
	if len(origins) == 0 {
		origins = []string{requestOrigin(r)}
	}
	name := g.product
	if name == "" {
		name = g.issuer
	}
	uv := protocol.UserVerificationRequirement(g.webauthn.UserVerification)
	if uv == "" {
		uv = protocol.VerificationPreferred
	}
	return webauthn.New(&webauthn.Config{
		RPID: rpID, RPDisplayName: name, RPOrigins: origins,
		AttestationPreference: protocol.PreferNoAttestation,
		AuthenticatorSelection: protocol.AuthenticatorSelection{
			ResidentKey: protocol.ResidentKeyRequirementPreferred, UserVerification: uv,
		},
		Timeouts: webauthn.TimeoutsConfig{
			Login:        webauthn.TimeoutConfig{Timeout: challengeLifetime, TimeoutUVD: challengeLifetime},
			Registration: webauthn.TimeoutConfig{Timeout: challengeLifetime, TimeoutUVD: challengeLifetime},
		},
	})
}

// keyError is the JSON of a refused WebAuthn request: a stable code for
// programs, and a message in the page's language for people.
type keyError struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

// keyErrors are the codes and the catalogue keys of their messages.
var keyErrors = map[string]string{
	"bad_request":   "key.error_bad_request",
	"not_logged_in": "key.error_not_logged_in",
	"challenge":     "key.error_challenge",
	"failed":        "key.error_failed",
	"name":          "key.error_name",
	"exists":        "key.error_exists",
	"too_many":      "key.error_too_many",
	"no_keys":       "key.error_no_keys",
	"relying_party": "key.error_relying_party",
	"throttled":     "error.throttled_title",
}

func (g *Gate) writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

func (g *Gate) keyFail(w http.ResponseWriter, status int, code string) error {
	return g.writeJSON(w, status, keyError{Error: code, Message: g.ui.Locale(w).T(keyErrors[code])})
}

// keyUnavailable is the 503 of a store failure, or of a password check
// over the hashing budget (with Retry-After).
func (g *Gate) keyUnavailable(w http.ResponseWriter, err error) error {
	if wait, ok := users.OverBudget(err); ok {
		w.Header().Set("Retry-After", retryAfter(wait))
	} else {
		g.logRefusal(err)
	}
	loc := g.ui.Locale(w)
	return g.writeJSON(w, http.StatusServiceUnavailable, keyError{Error: "unavailable", Message: loc.T("error.unavailable_title") + ": " + loc.T("error.unavailable")})
}

// readJSON reads a JSON request body: the body limit of every POST
// (maxFormBytes), a JSON media type, one valid JSON object.
func readJSON(r *http.Request) ([]byte, bool) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return nil, false
	}
	body, err := io.ReadAll(r.Body)
	if err != nil || !json.Valid(body) || !bytes.HasPrefix(bytes.TrimSpace(body), []byte("{")) {
		return nil, false
	}
	return body, true
}

// keySession is the session of a JSON request, which must be at one of
// the stages; ok false means the answer is written.
func (g *Gate) keySession(w http.ResponseWriter, r *http.Request, stages ...store.Stage) (*store.Session, *users.Account, store.Account, bool, error) {
	rec, acct, err := g.current(r)
	if err != nil {
		return nil, nil, store.Account{}, false, g.keyUnavailable(w, err)
	}
	if rec == nil || !slices.Contains(stages, rec.Stage) {
		return nil, nil, store.Account{}, false, g.keyFail(w, http.StatusUnauthorized, "not_logged_in")
	}
	a, err := g.db.Account(r.Context(), rec.User)
	if err != nil {
		return nil, nil, store.Account{}, false, g.keyUnavailable(w, err)
	}
	return rec, acct, a, true, nil
}

// keepChallenge keeps a ceremony's state for the session, for
// challengeLifetime.
func (g *Gate) keepChallenge(r *http.Request, rec *store.Session, purpose string, sd *webauthn.SessionData) error {
	data, err := json.Marshal(sd)
	if err != nil {
		return err
	}
	return g.db.PutChallenge(r.Context(), rec.Key, store.Challenge{
		User: rec.User, Purpose: purpose, Data: data, Expires: g.now().Add(challengeLifetime),
	})
}

// takeChallenge takes the session's challenge of the purpose: ok false
// when there is none (never asked for, used, expired, another user's).
func (g *Gate) takeChallenge(r *http.Request, rec *store.Session, purpose string) (webauthn.SessionData, bool, error) {
	var sd webauthn.SessionData
	ch, err := g.db.TakeChallenge(r.Context(), rec.Key, purpose)
	if errors.Is(err, store.ErrNotFound) {
		return sd, false, nil
	}
	if err != nil {
		return sd, false, err
	}
	if ch.User != rec.User || json.Unmarshal(ch.Data, &sd) != nil {
		return sd, false, nil
	}
	// The store checked the expiry by the gate's clock; the library's
	// check would read the system's.
	sd.Expires = time.Time{}
	return sd, true, nil
}

// registerOptions starts adding a security key: the creation options.
func (g *Gate) registerOptions(w http.ResponseWriter, r *http.Request) error {
	rec, acct, a, ok, err := g.keySession(w, r, store.StageFull, store.StageEnrol)
	if !ok {
		return err
	}
	if len(a.Credentials) >= store.MaxCredentials {
		return g.keyFail(w, http.StatusConflict, "too_many")
	}
	rp, err := g.relyingParty(r)
	if err != nil {
		return g.keyFail(w, http.StatusBadRequest, "relying_party")
	}
	handle := a.UserHandle
	if len(handle) == 0 {
		handle = make([]byte, userHandleBytes)
		if _, err := rand.Read(handle); err != nil {
			return g.keyUnavailable(w, err)
		}
	}
	user := libUser(acct.Name, a, handle)
	creation, sd, err := rp.BeginRegistration(user,
		webauthn.WithExclusions(webauthn.Credentials(user.creds).CredentialDescriptors()))
	if err != nil {
		return g.keyFail(w, http.StatusBadRequest, "relying_party")
	}
	if err := g.keepChallenge(r, rec, store.PurposeRegister, sd); err != nil {
		return g.keyUnavailable(w, err)
	}
	return g.writeJSON(w, http.StatusOK, creation.Response)
}

// registerRequest is what P/webauthn/register takes beside the
// RegistrationResponseJSON's own members.
type registerRequest struct {
	Name     string `json:"name"`
	Password string `json:"password"`
	// Code (an app's code or a backup code) or Assertion (an
	// AuthenticationResponseJSON of an existing key) is the second
	// factor, needed when two-factor authentication is on.
	Code      string          `json:"code"`
	Assertion json.RawMessage `json:"assertion"`
}

// keyName checks and tidies a key's name.
func keyName(s string) (string, bool) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > store.MaxCredentialName || !utf8.ValidString(s) {
		return "", false
	}
	for _, c := range s {
		if unicode.IsControl(c) {
			return "", false
		}
	}
	return s, true
}

// register finishes adding a security key: the attestation, the password
// and, when two-factor authentication is on, a second factor.
func (g *Gate) register(w http.ResponseWriter, r *http.Request) error {
	rec, acct, a, ok, err := g.keySession(w, r, store.StageFull, store.StageEnrol)
	if !ok {
		return err
	}
	body, ok := readJSON(r)
	if !ok {
		return g.keyFail(w, http.StatusBadRequest, "bad_request")
	}
	var req registerRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return g.keyFail(w, http.StatusBadRequest, "bad_request")
	}
	name, ok := keyName(req.Name)
	if !ok {
		return g.keyFail(w, http.StatusBadRequest, "name")
	}
	parsed, err := protocol.ParseCredentialCreationResponseBytes(body)
	if err != nil {
		return g.keyFail(w, http.StatusBadRequest, "bad_request")
	}
	sd, ok, err := g.takeChallenge(r, rec, store.PurposeRegister)
	if err != nil {
		return g.keyUnavailable(w, err)
	}
	if !ok {
		return g.keyFail(w, http.StatusBadRequest, "challenge")
	}
	rp, err := g.relyingParty(r)
	if err != nil {
		return g.keyFail(w, http.StatusBadRequest, "relying_party")
	}
	cred, err := rp.CreateCredential(libUser(acct.Name, a, sd.UserID), sd, parsed)
	if err != nil {
		g.auditRequest(r, zapcore.WarnLevel, audit.EvCodeFailed, "security key registration refused",
			zap.String("user", acct.Name), zap.String("step", audit.StepKeys), zap.String("method", string(factorKey)), zap.String("reason", libReason(err)))
		return g.keyFail(w, http.StatusBadRequest, "failed")
	}
	// The password, and the second factor when there is one.
	var v verdict
	if a.Enabled() {
		v, err = g.confirmSecond(r, rec, audit.StepKeys, acct, a, req.Password, req.Code, req.Assertion)
	} else {
		v, err = g.confirmPassword(r, audit.StepKeys, acct, req.Password)
	}
	switch {
	case err != nil:
		if r.Context().Err() != nil {
			return err
		}
		return g.keyUnavailable(w, err)
	case v.wait > 0:
		w.Header().Set("Retry-After", retryAfter(v.wait))
		return g.keyFail(w, http.StatusTooManyRequests, "throttled")
	case !v.ok:
		return g.writeJSON(w, http.StatusUnauthorized, keyError{Error: "wrong_details", Message: g.ui.Locale(w).T(v.failure())})
	}
	sc := store.Credential{
		ID: cred.ID, PublicKey: cred.PublicKey, Algorithm: coseAlgorithm(cred.PublicKey),
		SignCount: cred.Authenticator.SignCount, AAGUID: cred.Authenticator.AAGUID,
		BackupEligible: cred.Flags.BackupEligible, BackupState: cred.Flags.BackupState,
		UserVerified: cred.Flags.UserVerified, AttestationType: cred.AttestationType,
		Name: name, Added: g.now(),
	}
	for _, t := range cred.Transport {
		if len(sc.Transports) < 8 && len(t) <= 32 {
			sc.Transports = append(sc.Transports, string(t))
		}
	}
	var codes []string
	var hashes [][]byte
	if !a.Enabled() {
		if codes, hashes, err = g.newCodes(acct.Key); err != nil {
			return g.keyUnavailable(w, err)
		}
	}
	first, err := g.db.AddCredential(r.Context(), acct.Key, sc, sd.UserID, hashes, nil)
	switch {
	case errors.Is(err, store.ErrCredentialExists):
		return g.keyFail(w, http.StatusConflict, "exists")
	case errors.Is(err, store.ErrHandleChanged):
		return g.keyFail(w, http.StatusConflict, "challenge")
	case err != nil:
		return g.keyUnavailable(w, err)
	}
	metricKeys.WithLabelValues("added").Inc()
	g.auditRequest(r, zapcore.InfoLevel, audit.EvKeyAdded, "security key added", zap.String("user", acct.Name),
		zap.String("key", name), zap.Bool("backup_eligible", sc.BackupEligible))
	g.event(r, acct.Key, store.Event{Kind: store.EventKeyAdded, By: store.ByUser, Method: name})
	target := g.prefix + "/security"
	if first {
		// As enabling the app: every session of the user ended in the
		// transaction; this one goes on under a new ID, and the backup
		// codes are shown once.
		g.auditRequest(r, zapcore.InfoLevel, audit.EvEnabled, "two-factor authentication enabled", zap.String("user", acct.Name), zap.String("method", string(factorKey)))
		g.event(r, acct.Key, store.Event{Kind: store.EventEnabled, By: store.ByUser})
		rec.Stage = store.StageFull
		if err := g.keepCodes(rec, codes, "notice.key_added_first"); err != nil {
			return g.keyUnavailable(w, err)
		}
		if err := g.sessions.Start(w, r, rec); err != nil {
			return g.keyUnavailable(w, err)
		}
		target = g.prefix + "/security/backup-codes"
	} else {
		rec.Notice = "notice.key_added"
		if err := g.sessions.Update(r.Context(), rec); err != nil {
			return g.keyUnavailable(w, err)
		}
	}
	return g.writeJSON(w, http.StatusOK, map[string]string{"redirect": target})
}

// coseAlgorithm is the COSE algorithm of a public key (0 when it does not
// say).
func coseAlgorithm(pk []byte) int64 {
	var d webauthncose.PublicKeyData
	if webauthncbor.Unmarshal(pk, &d) != nil {
		return 0
	}
	return d.Algorithm
}

// libReason is the library's short reason for a refusal, for the audit log.
func libReason(err error) string {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		if pe.Details != "" {
			return pe.Details
		}
		return pe.Type
	}
	return "invalid"
}

// loginOptions starts an assertion: for the login's second step, or to
// confirm a change on the Security pages.
func (g *Gate) loginOptions(w http.ResponseWriter, r *http.Request) error {
	rec, acct, a, ok, err := g.keySession(w, r, store.StagePassword, store.StageFull, store.StageEnrol)
	if !ok {
		return err
	}
	if len(a.Credentials) == 0 {
		return g.keyFail(w, http.StatusConflict, "no_keys")
	}
	rp, err := g.relyingParty(r)
	if err != nil {
		return g.keyFail(w, http.StatusBadRequest, "relying_party")
	}
	assertion, sd, err := rp.BeginLogin(libUser(acct.Name, a, a.UserHandle))
	if err != nil {
		return g.keyFail(w, http.StatusBadRequest, "relying_party")
	}
	if err := g.keepChallenge(r, rec, store.PurposeAssert, sd); err != nil {
		return g.keyUnavailable(w, err)
	}
	return g.writeJSON(w, http.StatusOK, assertion.Response)
}

// keyLogin is the login's second step with a security key, or a step-up's
// fresh factor (step_up true, for a full session: see stepup.go).
func (g *Gate) keyLogin(w http.ResponseWriter, r *http.Request) error {
	rec, _, _, ok, err := g.keySession(w, r, store.StagePassword, store.StageFull)
	if !ok {
		return err
	}
	body, ok := readJSON(r)
	if !ok {
		return g.keyFail(w, http.StatusBadRequest, "bad_request")
	}
	var extra struct {
		Remember bool   `json:"remember"`
		StepUp   bool   `json:"step_up"`
		Next     string `json:"next"`
	}
	if json.Unmarshal(body, &extra) != nil {
		return g.keyFail(w, http.StatusBadRequest, "bad_request")
	}
	if extra.StepUp != (rec.Stage == store.StageFull) {
		// A step-up is for a full session, the login's step for one at
		// the code step; nothing else.
		return g.keyFail(w, http.StatusUnauthorized, "not_logged_in")
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes(body)
	if err != nil {
		return g.keyFail(w, http.StatusBadRequest, "bad_request")
	}
	name, _, _ := g.sessionName(rec.User, rec)
	attempt, wait, err := g.reserve(r, factorKey, rec.User)
	if err != nil {
		return g.keyUnavailable(w, err)
	}
	if wait > 0 {
		g.auditThrottled(r, factorKey, name, wait)
		w.Header().Set("Retry-After", retryAfter(wait))
		return g.keyFail(w, http.StatusTooManyRequests, "throttled")
	}
	a, err := g.db.Account(r.Context(), rec.User)
	if err != nil {
		g.settle(r, attempt, store.Unchecked)
		return g.keyUnavailable(w, err)
	}
	if !a.Enabled() {
		// Turned off meanwhile: start over.
		g.settle(r, attempt, store.Unchecked)
		if err := g.sessions.End(w, r); err != nil {
			return g.keyUnavailable(w, err)
		}
		return g.writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "not_logged_in", "redirect": g.prefix + "/login"})
	}
	res, err := g.checkAssertion(r, rec, name, a, parsed)
	if err != nil {
		g.settle(r, attempt, store.Unchecked)
		return g.keyUnavailable(w, err)
	}
	step := audit.StepCode
	if extra.StepUp {
		step = audit.StepStepUp
	}
	g.recordCode(r, step, &users.Account{Name: name, Key: rec.User}, res)
	if !res.ok {
		if extra.StepUp {
			metricStepUp.WithLabelValues("failed").Inc()
		}
		return g.keyFail(w, http.StatusUnauthorized, "failed")
	}
	g.settle(r, attempt, store.Succeeded)
	if extra.StepUp {
		return g.stepUpKey(w, r, rec, name, extra.Next, res)
	}
	rec.Stage = store.StageFull
	rec.AuthTime, rec.Methods = g.now(), rec.Methods|store.MethodPassword|res.key
	target := g.afterLogin(rec)
	rec.Next = ""
	var token string
	if g.remember > 0 && extra.Remember {
		if token, err = g.rememberBrowser(r, rec); err != nil {
			return g.keyUnavailable(w, err)
		}
	}
	if err := g.sessions.Start(w, r, rec); err != nil {
		return g.keyUnavailable(w, err)
	}
	g.event(r, rec.User, store.Event{Kind: store.EventLogin, Method: string(factorKey)})
	if token != "" {
		g.setRememberCookie(w, token)
		g.auditRequest(r, zapcore.InfoLevel, audit.EvBrowserRemembered, "browser remembered", zap.String("user", name), zap.Duration("for", g.remember))
	}
	return g.writeJSON(w, http.StatusOK, map[string]string{"redirect": target})
}

// checkAssertion verifies an assertion of one of the account's keys
// against the session's challenge and, when it is good, records its use
// (counter, backup state, time) in one store operation. A counter that
// does not go up is refused and logged. The error is for a store failure
// only.
func (g *Gate) checkAssertion(r *http.Request, rec *store.Session, name string, a store.Account, parsed *protocol.ParsedCredentialAssertionData) (codeResult, error) {
	res := codeResult{method: factorKey}
	sd, ok, err := g.takeChallenge(r, rec, store.PurposeAssert)
	if err != nil || !ok {
		res.reason = "no_challenge"
		return res, err
	}
	rp, err := g.relyingParty(r)
	if err != nil {
		res.reason = "relying_party"
		return res, nil
	}
	cred, err := rp.ValidateLogin(libUser(name, a, a.UserHandle), sd, parsed)
	if err != nil {
		res.reason = libReason(err)
		return res, nil
	}
	signCount := func(stored uint32) {
		res.reason = "sign_count"
		metricKeys.WithLabelValues("sign_count_refused").Inc()
		g.auditRequest(r, zapcore.ErrorLevel, audit.EvKeySignCount, "security key refused: its signature counter did not go up (a cloned key?)",
			zap.String("user", name), zap.String("key", keyNameOf(a, cred.ID)),
			zap.Uint32("sign_count", parsed.Response.AuthenticatorData.Counter), zap.Uint32("stored_sign_count", stored))
	}
	if cred.Authenticator.CloneWarning {
		signCount(cred.Authenticator.SignCount)
		return res, nil
	}
	err = g.db.UseCredential(r.Context(), rec.User, cred.ID, store.CredentialUse{
		SignCount: cred.Authenticator.SignCount, BackupState: cred.Flags.BackupState,
		UserVerified: parsed.Response.AuthenticatorData.Flags.HasUserVerified(), At: g.now(),
	})
	switch {
	case errors.Is(err, store.ErrSignCount):
		signCount(cred.Authenticator.SignCount)
		return res, nil
	case errors.Is(err, store.ErrNoCredential), errors.Is(err, store.ErrNotEnabled):
		res.reason = "removed"
		return res, nil
	case err != nil:
		return res, err
	}
	res.ok = true
	res.key = store.MethodHardwareKey
	if cred.Flags.BackupEligible {
		res.key = store.MethodSoftwareKey
	}
	return res, nil
}

func keyNameOf(a store.Account, id []byte) string {
	for _, c := range a.Credentials {
		if bytes.Equal(c.ID, id) {
			return c.Name
		}
	}
	return ""
}

// confirmSecond checks the password and then a second factor for a
// change: a code (app or backup) or, when code is empty and assertion is
// not, an assertion of one of the user's keys.
func (g *Gate) confirmSecond(r *http.Request, rec *store.Session, step string, acct *users.Account, a store.Account, password, code string, assertion []byte) (verdict, error) {
	if code != "" || len(bytes.TrimSpace(assertion)) == 0 || bytes.Equal(bytes.TrimSpace(assertion), []byte("null")) {
		return g.confirmBoth(r, step, acct, a, password, code)
	}
	return g.confirm(r, step, acct, password, factorKey, func() (codeResult, error) {
		parsed, err := protocol.ParseCredentialRequestResponseBytes(assertion)
		if err != nil {
			return codeResult{method: factorKey, reason: "malformed"}, nil
		}
		return g.checkAssertion(r, rec, acct.Name, a, parsed)
	})
}

// keyRows lists the account's keys for the Security page.
func keyRows(a store.Account) []ui.KeyRow {
	rows := make([]ui.KeyRow, 0, len(a.Credentials))
	for _, c := range a.Credentials {
		row := ui.KeyRow{
			ID: base64.RawURLEncoding.EncodeToString(c.ID), Name: c.Name,
			Added: ui.NewTimeText(c.Added), Synced: c.BackupState,
		}
		if !c.LastUsed.IsZero() {
			row.LastUsed = ui.NewTimeText(c.LastUsed)
		}
		rows = append(rows, row)
	}
	return rows
}

// formKeyID reads the key a Security form names.
func formKeyID(r *http.Request) ([]byte, bool) {
	id, err := base64.RawURLEncoding.DecodeString(r.PostForm.Get("id"))
	return id, err == nil && len(id) > 0
}

// renameKey renames one of the user's keys (no factor needed: a name
// changes nothing of what the key can do).
func (g *Gate) renameKey(w http.ResponseWriter, r *http.Request) error {
	rec, acct, a, ok, err := g.settingsSession(w, r)
	if !ok {
		return err
	}
	id, okID := formKeyID(r)
	name, okName := keyName(r.PostForm.Get("name"))
	if !okID || !okName {
		p, err := g.securityPageOf(w, r, rec, acct, a)
		if err != nil {
			return g.unavailable(w, err)
		}
		p.Error = "key.error_name"
		return g.ui.Render(w, http.StatusBadRequest, "security", p)
	}
	switch err := g.db.RenameCredential(r.Context(), acct.Key, id, name); {
	case errors.Is(err, store.ErrNoCredential):
		return g.seeOther(w, r, g.prefix+"/security")
	case err != nil:
		return g.unavailable(w, err)
	}
	g.auditRequest(r, zapcore.InfoLevel, audit.EvKeyRenamed, "security key renamed", zap.String("user", acct.Name), zap.String("key", name))
	rec.Notice = "notice.key_renamed"
	if err := g.sessions.Update(r.Context(), rec); err != nil {
		return g.unavailable(w, err)
	}
	return g.seeOther(w, r, g.prefix+"/security#keys-heading")
}

// removeKey removes one of the user's keys: it needs the password and a
// second factor (a code, a backup code or a key). Every other session of
// the user ends, as at a password change, in the same transaction; when it
// was the last second factor, two-factor authentication is off.
func (g *Gate) removeKey(w http.ResponseWriter, r *http.Request) error {
	rec, acct, a, ok, err := g.confirmedChange(w, r, audit.StepKeys, func(rec *store.Session, acct *users.Account, a store.Account, v verdict) error {
		p, err := g.securityPageOf(w, r, rec, acct, a)
		if err != nil {
			return g.unavailable(w, err)
		}
		p.Error = v.failure()
		p.KeyError = r.PostForm.Get("id")
		clockHintOn(&p, v.driftSeconds)
		return g.ui.Render(w, http.StatusUnauthorized, "security", p)
	})
	if !ok {
		return err
	}
	id, okID := formKeyID(r)
	if !okID {
		return g.seeOther(w, r, g.prefix+"/security")
	}
	name := keyNameOf(a, id)
	on, err := g.db.RemoveCredential(r.Context(), acct.Key, id, nil)
	switch {
	case errors.Is(err, store.ErrNoCredential):
		return g.seeOther(w, r, g.prefix+"/security")
	case err != nil:
		return g.unavailable(w, err)
	}
	metricKeys.WithLabelValues("removed").Inc()
	g.auditRequest(r, zapcore.InfoLevel, audit.EvKeyRemoved, "security key removed", zap.String("user", acct.Name), zap.String("key", name))
	g.event(r, acct.Key, store.Event{Kind: store.EventKeyRemoved, By: store.ByUser, Method: name})
	rec.Notice, rec.Shown = "notice.key_removed", nil
	if !on {
		g.auditRequest(r, zapcore.InfoLevel, audit.EvDisabled, "two-factor authentication disabled", zap.String("user", acct.Name), zap.String("reason", "last_key_removed"))
		g.event(r, acct.Key, store.Event{Kind: store.EventDisabled, By: store.ByUser})
		rec.Notice = "notice.disabled"
		if g.requireTwoFactor {
			rec.Stage = store.StageEnrol
		}
	}
	// Every session of the user ended in the transaction; this one goes
	// on under a new ID.
	if err := g.sessions.Start(w, r, rec); err != nil {
		return g.unavailable(w, err)
	}
	return g.seeOther(w, r, g.prefix+"/security")
}

// offerKey offers the user's security keys on the code page: "Use your
// security key" beside the code field (with JavaScript only; the code
// fields work without it).
func (g *Gate) offerKey(r *http.Request, rec *store.Session, p *ui.Page) error {
	a, err := g.db.Account(r.Context(), rec.User)
	if err != nil {
		return err
	}
	p.KeyLogin, p.HasApp, p.Script = len(a.Credentials) > 0, a.TOTP != nil, len(a.Credentials) > 0
	return nil
}

// CheckRPID returns an error saying what a relying party ID must be when
// id (an option's value) is not one: a domain name, without scheme or
// port.
func CheckRPID(id string) error {
	if id == "" || id != strings.ToLower(id) || strings.ContainsAny(id, ":/") || net.ParseIP(id) != nil || protocol.ValidateRPID(id) != nil {
		return fmt.Errorf("webauthn_rp_id %q: want a domain name in lower case, without scheme or port, such as example.com", id)
	}
	return nil
}

// CheckOrigins returns an error naming the first of origins that is not a
// web origin (https://host[:port], or http:// for localhost), or that is
// not rpID or a subdomain of it when rpID is set.
func CheckOrigins(origins []string, rpID string) error {
	for _, o := range origins {
		u, err := url.Parse(o)
		ok := err == nil && (u.Scheme == "https" || u.Scheme == "http" && u.Hostname() == "localhost") &&
			u.Host != "" && u.User == nil && (u.Path == "" || u.Path == "/") && u.RawQuery == "" && u.Fragment == "" && o == strings.ToLower(o)
		if !ok {
			return fmt.Errorf("webauthn_origins %q: want an origin in lower case such as https://example.com or https://login.example.com:8443", o)
		}
		if h := u.Hostname(); rpID != "" && h != rpID && !strings.HasSuffix(h, "."+rpID) {
			return fmt.Errorf("webauthn_origins %q: its host is not %s nor a subdomain of it (webauthn_rp_id)", o, rpID)
		}
	}
	return nil
}

// CheckUserVerification returns an error when s is not a user
// verification requirement.
func CheckUserVerification(s string) error {
	switch protocol.UserVerificationRequirement(s) {
	case protocol.VerificationRequired, protocol.VerificationPreferred, protocol.VerificationDiscouraged:
		return nil
	}
	return fmt.Errorf("webauthn_user_verification %q: want required, preferred or discouraged", s)
}

// addApp adds the authenticator app to an account that has security keys
// (two-factor authentication is on already): its backup codes stay, and
// no session ends.
func (g *Gate) addApp(w http.ResponseWriter, r *http.Request, rec *store.Session, acct *users.Account, secret []byte, step int64) error {
	sealed, err := g.sealer.Seal(secret, secretAAD("totp", acct.Key))
	if err != nil {
		return g.unavailable(w, err)
	}
	err = g.db.AddTOTP(r.Context(), acct.Key, store.TOTP{
		SealedSecret: sealed, Algorithm: g.params.Algorithm, Digits: g.params.Digits,
		Period: g.params.Period, LastStep: step, EnabledAt: g.now(),
	})
	if err != nil && !errors.Is(err, store.ErrAlreadyEnabled) {
		return g.unavailable(w, err)
	}
	g.auditRequest(r, zapcore.InfoLevel, audit.EvEnabled, "authenticator app added", zap.String("user", acct.Name), zap.String("method", string(factorTOTP)))
	g.event(r, acct.Key, store.Event{Kind: store.EventEnabled, By: store.ByUser, Method: string(factorTOTP)})
	rec.Pending, rec.PendingAt = nil, time.Time{}
	rec.Notice = "notice.app_added"
	if err := g.sessions.Update(r.Context(), rec); err != nil {
		return g.unavailable(w, err)
	}
	return g.seeOther(w, r, g.prefix+"/security")
}
