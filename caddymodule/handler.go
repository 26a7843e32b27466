// Package caddymodule is the Caddy adapter of caddy two-factor: the HTTP
// handler http.handlers.two_factor, its Caddyfile directive, and the pages
// of the login and of the Security settings. The factors themselves (TOTP,
// backup codes, encryption at rest, storage, throttling) are plain Go in
// internal packages; this package holds configuration, lifecycle and HTTP.
package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/backupcodes"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/gate"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/otp"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/secrets"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/ui"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/users"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Defaults of the optional settings.
const (
	DefaultPrefix          = "/.auth"
	DefaultIssuer          = "Caddy"
	DefaultUserHeader      = "Remote-User"
	DefaultCookieName      = "__Host-two_factor"
	DefaultHomeURL         = "/"
	DefaultSessionIdle     = 30 * time.Minute
	DefaultSessionLifetime = 12 * time.Hour
	DefaultCodeTimeout     = 5 * time.Minute
	// MinRememberBrowser and MaxRememberBrowser bound remember_browser.
	MinRememberBrowser    = time.Hour
	MaxRememberBrowser    = 365 * 24 * time.Hour
	DefaultTOTPSkew       = 1
	DefaultFreeFailures   = 5
	DefaultMaxDelay       = 15 * time.Minute
	DefaultHashCPUPercent = 10
	// DefaultClockHintWindow is how far a wrong code is looked for in
	// time to tell a user their device's clock is off.
	DefaultClockHintWindow = 10 * time.Minute
	// MaxClockHintWindow is the widest clock_hint_window.
	MaxClockHintWindow = time.Hour
	// DefaultMaxSessionsPerUser caps each user's live sessions.
	DefaultMaxSessionsPerUser = store.DefaultMaxSessionsPerUser
	// MaxMaxSessionsPerUser is the highest cap max_sessions_per_user takes.
	MaxMaxSessionsPerUser = 1_000_000
)

// Handler puts a password and a second factor (a TOTP code from an
// authenticator app, or a single-use backup code) in front of the routes
// that follow it, and serves the login and Security pages under Prefix.
// Requests without a complete session never reach the next handler.
type Handler struct {
	// Users are the accounts that may log in. Placeholders in their names
	// and hashes, such as {env.ALICE_HASH}, are expanded when the config
	// is loaded, as basic_auth does; one that expands to nothing is an
	// error.
	Users []User `json:"users,omitempty"`

	// Realm names the account system the handler belongs to: its users,
	// enrolments, sessions and attempt counts are the realm's, and a
	// session is accepted only by handlers of its realm. Handlers of one
	// Caddy that use the same store must each name a realm; they share one
	// only if they name the same (their configured users must then be the
	// same), else Caddy refuses to start. Default: "default", the realm of
	// every record written before realms existed.
	Realm string `json:"realm,omitempty"`

	// Label names the handler in errors that name two handlers; the
	// Caddyfile adapter sets it to the file and line of the block.
	Label string `json:"label,omitempty"`

	// StorageDir is the folder of the embedded store holding each user's
	// second-factor state and the sessions. Default: "two_factor" in
	// Caddy's data directory. Only one process may open it at a time.
	StorageDir string `json:"storage_dir,omitempty"`

	// Storage chooses where the state is kept: the embedded badger store
	// in a folder (the default, in StorageDir), or a PostgreSQL database,
	// which several Caddy instances can share. Set it, or StorageDir,
	// not both.
	Storage *Storage `json:"storage,omitempty"`

	// EncryptionKey encrypts the TOTP secrets at rest: 32 bytes, base64 or
	// hex encoded; placeholders such as {env.TWO_FACTOR_KEY} are expanded.
	// When it is empty, the key is read from EncryptionKeyFile.
	EncryptionKey string `json:"encryption_key,omitempty"`

	// EncryptionKeyFile is the file the key is kept in when EncryptionKey
	// is empty. Default: StorageDir with ".key" appended, outside the
	// store's folder. It is created (mode 0600) only together with a new,
	// empty store; a store that exists without its key refuses to start.
	EncryptionKeyFile string `json:"encryption_key_file,omitempty"`

	// Prefix is the path under which the gate's own pages are served.
	// Default: /.auth
	Prefix string `json:"prefix,omitempty"`

	// Issuer is the account label shown in authenticator apps and the
	// product name on the pages. Default: Caddy
	Issuer string `json:"issuer,omitempty"`

	// RequireTwoFactor makes users without a second factor enable one
	// before they can reach anything but the Security pages.
	RequireTwoFactor bool `json:"require_two_factor,omitempty"`

	// RequireTwoFactorPaths are path patterns (as in StepUp) on which users
	// without a second factor are sent to enable one (a 401 with the
	// reason two_factor_required for a request that is not a page
	// navigation); elsewhere they get in with the password alone.
	RequireTwoFactorPaths []string `json:"require_two_factor_paths,omitempty"`

	// StepUp are paths that ask for a fresh second factor: a session whose
	// last code is older than the rule's window gets the code step again
	// (not the password) and returns to the same URL; a request that is not
	// a page navigation gets 401 with the reason step_up_required. Users
	// without a second factor are sent to enable one. Where rules overlap,
	// the shortest window holds.
	StepUp []StepUpRule `json:"step_up,omitempty"`

	// AssertionHeader, when set, adds to every proxied request a JWT in
	// this header, signed with the current key published at
	// <prefix>/.well-known/jwks.json: iss, aud, sub, name, amr, auth_time,
	// iat, nbf, exp, jti and sid. A client's copy is removed, in any
	// spelling. See docs/assertion.md.
	AssertionHeader string `json:"assertion_header,omitempty"`

	// AssertionAlgorithm signs the assertion: ES256 (default) or EdDSA.
	AssertionAlgorithm string `json:"assertion_algorithm,omitempty"`

	// AssertionIssuer is the iss claim. Default: the request's origin,
	// such as https://example.com.
	AssertionIssuer string `json:"assertion_issuer,omitempty"`

	// AssertionAudience is the aud claim. Default: the request's host
	// (with its port when not the default one).
	AssertionAudience string `json:"assertion_audience,omitempty"`

	// AssertionLifetime is how long a token is valid (exp - iat); a
	// session's token is reused until half of it is left. Default: 2m;
	// from 2m to 5m.
	AssertionLifetime caddy.Duration `json:"assertion_lifetime,omitempty"`

	// AssertionKeyRotation is how long a signing key signs before the
	// next one takes over. Default: 720h (30 days); from 1h to 8760h.
	AssertionKeyRotation caddy.Duration `json:"assertion_key_rotation,omitempty"`

	// AssertionKeyOverlap is how long the next key is published before it
	// signs, and the previous one after. Default: 1h; from 10m to 720h,
	// and shorter than AssertionKeyRotation.
	AssertionKeyOverlap caddy.Duration `json:"assertion_key_overlap,omitempty"`

	// AuthHeaders adds Remote-Name (the user's name), Remote-Auth-Methods
	// (RFC 8176 values, space-separated, such as "pwd otp") and
	// Remote-Auth-Time (Unix seconds of the last factor check) to
	// proxied requests. Clients' copies are always removed.
	AuthHeaders bool `json:"auth_headers,omitempty"`

	// SessionIdle ends a session not used for this long. Default: 30m.
	SessionIdle caddy.Duration `json:"session_idle,omitempty"`

	// SessionLifetime ends every session this long after the login,
	// whatever its use. Default: 12h.
	SessionLifetime caddy.Duration `json:"session_lifetime,omitempty"`

	// MaxSessionsPerUser caps each user's live sessions (every browser or
	// device logged in is one): a login past it ends the user's oldest
	// session. Default: 100; at most 1000000. The store is shared by the
	// handlers using its folder; the cap of the one provisioned last holds.
	MaxSessionsPerUser int `json:"max_sessions_per_user,omitempty"`

	// CodeTimeout is how long the code step stays open after the
	// password. Default: 5m.
	CodeTimeout caddy.Duration `json:"code_timeout,omitempty"`

	// RememberBrowser, when set, offers a checkbox at the code step:
	// "Don't ask for a code on this browser" for this long. The browser
	// then keeps a token in a cookie of its own, and a later correct
	// password of the same user skips the code. Changing the user's
	// second factors or password forgets every remembered browser. Off
	// by default; from 1h to 365d (8760h).
	RememberBrowser caddy.Duration `json:"remember_browser,omitempty"`

	// TOTPPeriod is the time step, in seconds, of new enrolments.
	// Default: 30. Enrolled users keep the period they enrolled with.
	TOTPPeriod int `json:"totp_period,omitempty"`

	// TOTPDigits is the code length of new enrolments: 6 or 8. Default: 6.
	TOTPDigits int `json:"totp_digits,omitempty"`

	// TOTPAlgorithm is the HMAC of new enrolments: SHA1, SHA256 or SHA512.
	// Default: SHA1, the only one every authenticator app supports.
	TOTPAlgorithm string `json:"totp_algorithm,omitempty"`

	// TOTPSkew is how many time steps before and after the current one a
	// code is accepted for, to allow for clock drift. Default: 1.
	TOTPSkew *int `json:"totp_skew,omitempty"`

	// ClockHintWindow is how far before or after the current time a wrong
	// code is looked for: when it is the right code for a time outside
	// the accepted skew but within this window, it is refused all the same
	// (and counted as a failure), and the page tells the user that their
	// device's clock seems about so many minutes ahead or behind and how
	// to fix it. Only after the right password, within the code's attempt
	// budget. Default: 10m; 0 turns the hints off; at most 1h.
	ClockHintWindow *caddy.Duration `json:"clock_hint_window,omitempty"`

	// UserHeader is the request header that carries the user's name to
	// the next handler. Any copy sent by the client, in any letter case or
	// with "_" or "." for "-", is removed first. Default: Remote-User
	UserHeader string `json:"user_header,omitempty"`

	// StripHeaders names further request headers to delete before the
	// request goes on, in the same spellings as UserHeader (any letter
	// case, "_" or "." for "-"): headers the upstream trusts, such as
	// X-Email or X-Forwarded-Groups. Request trailers are always dropped.
	StripHeaders []string `json:"strip_headers,omitempty"`

	// WebAuthnRPID is the relying party ID of security keys and passkeys:
	// the domain they are made for. A key works on that domain and its
	// subdomains. Default: the host each request came to (a key made on
	// one name of the site does not work on another; set this to the
	// common parent domain to share them).
	WebAuthnRPID string `json:"webauthn_rp_id,omitempty"`

	// WebAuthnOrigins are the origins (https://host[:port]) the browser
	// may be on when it uses a key. Default: the origin each request came
	// to. With webauthn_rp_id, each must be that domain or a subdomain.
	WebAuthnOrigins []string `json:"webauthn_origins,omitempty"`

	// WebAuthnUserVerification asks keys to verify their user (PIN or
	// biometrics): required, preferred or discouraged. Default: preferred.
	WebAuthnUserVerification string `json:"webauthn_user_verification,omitempty"`

	// CookieName is the name of the session cookie. Default:
	// __Host-two_factor (the prefix binds it to this host, Secure, path /).
	CookieName string `json:"cookie_name,omitempty"`

	// TemplatesDir is a folder whose files replace the embedded page
	// templates, stylesheet and script of the same name; its locales
	// folder may change messages (locales/en.json) or add a language
	// (locales/<tag>.json).
	TemplatesDir string `json:"templates_dir,omitempty"`

	// ProductName is the name on the pages' header and in their titles.
	// Default: Issuer.
	ProductName string `json:"product_name,omitempty"`

	// LogoURL is an image shown beside the product name: a path on this
	// site, reachable without logging in, or an https:// URL (its origin
	// is added to the pages' Content-Security-Policy).
	LogoURL string `json:"logo_url,omitempty"`

	// HomeURL is where the product name (and logo) in the pages' header
	// leads: a path on this site or an https:// URL, so that users have a
	// way back to the site. Default: "/".
	HomeURL string `json:"home_url,omitempty"`

	// PrimaryColor is the colour of buttons, links and focus rings, as
	// #rrggbb. It must have a contrast of at least 4.5:1 with white (WCAG
	// AA); a lighter shade for dark mode is derived from it.
	PrimaryColor string `json:"primary_color,omitempty"`

	// Languages are the languages the pages are offered in, as BCP 47
	// tags, the default first: a user's choice on the page wins, then the
	// best match for the browser's Accept-Language, then the first. One
	// entry forces that language. Default: every language there is a
	// catalogue for (English first).
	Languages []string `json:"languages,omitempty"`

	// FreeFailures is how many consecutive failures of one factor an
	// account (or a client address) has before each further attempt must
	// wait. Default: 5. Client addresses get four times as many.
	FreeFailures int `json:"free_failures,omitempty"`

	// MaxDelay caps the wait between attempts, which doubles with each
	// failure past FreeFailures. Default: 15m. After 100 consecutive
	// failures an account waits a day.
	MaxDelay caddy.Duration `json:"max_delay,omitempty"`

	// MaxConcurrentHashes bounds how many password hashes are computed at
	// once, so that a flood of logins cannot take the CPUs from the proxied
	// traffic. Default: a quarter of the CPUs, at least 1.
	MaxConcurrentHashes int `json:"max_concurrent_hashes,omitempty"`

	// HashCPUPercent is the share of the CPUs (in percent of all of them)
	// that password hashing may take over time, so that a flood of
	// logins, wrong passwords included, leaves the rest to the proxied
	// traffic. A login that would wait more than 10 s for it is refused
	// with 503 and a Retry-After. Default: 10. 100 leaves only
	// MaxConcurrentHashes as a bound.
	HashCPUPercent float64 `json:"hash_cpu_percent,omitempty"`

	// HashCPUBurst is how much hashing CPU time is saved up for a burst of
	// logins. Default: a minute's worth of HashCPUPercent, at least 10s.
	HashCPUBurst caddy.Duration `json:"hash_cpu_burst,omitempty"`

	// Argon2idTime is the number of argon2id passes for the passwords of
	// users kept in the store (new and changed passwords, and older hashes
	// upgraded at the next login). Default: 1.
	Argon2idTime uint32 `json:"argon2id_time,omitempty"`

	// Argon2idMemory is the memory argon2id uses per hash, in KiB.
	// Default: 47104 (46 MiB), as `caddy hash-password` uses.
	Argon2idMemory uint32 `json:"argon2id_memory,omitempty"`

	// Argon2idThreads is argon2id's parallelism. Default: 1.
	Argon2idThreads uint8 `json:"argon2id_threads,omitempty"`

	// gate and openFlag are what the proxied path reads of the handler:
	// side by side, so that they usually share a cache line.
	gate *gate.Gate
	// openFlag is 1 once opened is closed: the proxied path's check, in
	// the handler's own memory rather than the channel's (a cache miss
	// per request under load). A plain integer with atomic loads, as the
	// handler is copied as a value (CaddyModule).
	openFlag uint32
	logger   *zap.Logger
	audit    *zap.Logger
	users    *users.Directory
	db       store.Store
	dbKey    string
	shared   *sharedStore
	// backend, connection, storeKey and storeLabel: see storage.
	backend, connection  string
	storeKey, storeLabel string
	sealer               *secrets.Sealer
	codes                *backupcodes.Hasher
	attempts             store.Attempts
	realm                string
	config               *App          // this config's two_factor app: which handlers are of one config
	opened               chan struct{} // closed once the store is open
	// wrapStore, when set (by tests, before Provision), wraps the realm's
	// view of the store that everything else goes through.
	wrapStore func(store.Store) store.Store
	// configText is the handler's configuration as given, in JSON.
	configText string
	params     otp.Params
	skew       int
	clockHint  time.Duration
	now        func() time.Time // the config's clock (App.ClockRaw)
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.two_factor",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision fills in defaults, checks the configuration, opens the store
// and loads the encryption key.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	h.audit = h.logger.Named("audit")
	app, err := configOf(ctx)
	if err != nil {
		return err
	}
	h.config = app
	if h.now == nil { // a test may have set it on a handler it provisions by hand
		h.now = app.now
	}
	// The configuration as given tells two copies of one block (a site
	// served on two servers) from two blocks.
	if b, err := json.Marshal(h); err == nil {
		h.configText = string(b)
	}
	repl := caddy.NewReplacer()
	if err := h.defaults(repl); err != nil {
		return err
	}
	if err := h.validateConfig(); err != nil {
		return err
	}
	if h.Users, err = expandUsers(h.Users, repl); err != nil {
		return err
	}
	hasher := users.Argon2id{Time: h.Argon2idTime, Memory: h.Argon2idMemory, Threads: h.Argon2idThreads}
	budget := users.NewBudget(h.HashCPUPercent, time.Duration(h.HashCPUBurst), h.now)
	if h.users, err = users.New(h.Users, h.MaxConcurrentHashes, hasher, budget); err != nil {
		return err
	}
	registerMetrics(ctx.GetMetricsRegistry())
	pages, err := ui.Load(ui.Config{
		TemplatesDir: h.TemplatesDir, LanguageCookie: h.CookieName + "_lang", Languages: h.Languages,
		PrimaryColor: h.PrimaryColor, Product: h.ProductName, Logo: h.LogoURL, Home: h.HomeURL,
		Prefix: h.Prefix, Digits: h.params.Digits, Logger: h.logger,
	})
	if err != nil {
		return err
	}
	pathRules, assertion := h.trustConfig()
	h.gate = gate.New(gate.Config{
		PathRules: pathRules, Assertion: assertion,
		Prefix: h.Prefix, Issuer: h.Issuer, Product: h.ProductName, Realm: h.realm,
		Cookie: h.CookieName, UserHeader: h.UserHeader, StripHeaders: h.StripHeaders,
		RequireTwoFactor: h.RequireTwoFactor, TOTP: h.params, Skew: h.skew, ClockHintWindow: h.clockHint,
		Idle: time.Duration(h.SessionIdle), Lifetime: time.Duration(h.SessionLifetime), CodeTimeout: time.Duration(h.CodeTimeout),
		RememberBrowser: time.Duration(h.RememberBrowser),
		WebAuthn:        gate.WebAuthnConfig{RPID: h.WebAuthnRPID, Origins: h.WebAuthnOrigins, UserVerification: h.WebAuthnUserVerification},
		Users:           h.users, Pages: pages, Now: h.now, ClientIP: clientIP, Logger: h.logger, Audit: h.audit,
	})
	h.opened = make(chan struct{})
	if h.config.standalone {
		// No config will start the app (a handler provisioned by hand):
		// open at once.
		return h.open(ctx)
	}
	h.config.add(h)
	return nil
}

// open opens (or shares) the store, once the config starts: the two_factor
// app calls it from Start, which `caddy validate` does not run, so that
// validating a config neither creates a store nor trips over the lock of
// the Caddy that runs it. Requests that arrive before wait for it.
func (h *Handler) open(ctx context.Context) error {
	if err := h.openStore(ctx); err != nil {
		return err
	}
	if err := h.gate.Open(gate.State{DB: h.db, Attempts: h.attempts, Sealer: h.sealer, Codes: h.codes}); err != nil {
		return err
	}
	atomic.StoreUint32(&h.openFlag, 1)
	close(h.opened)
	return nil
}

// waitOpen holds a request that arrives before the store is open (Caddy
// may start serving before the two_factor app has started) for at most
// 10 s; the error fails the request closed.
func (h *Handler) waitOpen(r *http.Request) error {
	if atomic.LoadUint32(&h.openFlag) == 1 {
		return nil
	}
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	select {
	case <-h.opened:
		return nil
	case <-r.Context().Done():
		return r.Context().Err()
	case <-t.C:
		return errors.New("the store is not open yet")
	}
}

// defaults fills the unset options and expands placeholders.
func (h *Handler) defaults(repl *caddy.Replacer) error {
	h.realm = h.Realm
	if h.realm == "" {
		h.realm = store.DefaultRealm
	}
	if err := h.storage(repl); err != nil {
		return err
	}
	if raw := h.EncryptionKey; raw != "" {
		h.EncryptionKey = repl.ReplaceKnown(raw, "")
		if strings.TrimSpace(h.EncryptionKey) == "" {
			return fmt.Errorf("encryption_key %q is empty once expanded: set the variable, or drop encryption_key to use a key file", raw)
		}
	}
	h.EncryptionKeyFile = repl.ReplaceKnown(h.EncryptionKeyFile, "")
	if h.EncryptionKeyFile == "" && h.backend == backendBadger {
		h.EncryptionKeyFile = h.StorageDir + ".key"
	}
	if h.Prefix == "" {
		h.Prefix = DefaultPrefix
	}
	if h.Issuer == "" {
		h.Issuer = DefaultIssuer
	}
	if h.ProductName == "" {
		h.ProductName = h.Issuer
	}
	if h.HomeURL == "" {
		h.HomeURL = DefaultHomeURL
	}
	if h.SessionIdle == 0 {
		h.SessionIdle = caddy.Duration(DefaultSessionIdle)
	}
	if h.SessionLifetime == 0 {
		h.SessionLifetime = caddy.Duration(DefaultSessionLifetime)
	}
	if h.CodeTimeout == 0 {
		h.CodeTimeout = caddy.Duration(DefaultCodeTimeout)
	}
	if h.MaxSessionsPerUser == 0 {
		h.MaxSessionsPerUser = DefaultMaxSessionsPerUser
	}
	if h.TOTPPeriod == 0 {
		h.TOTPPeriod = otp.Default.Period
	}
	if h.TOTPDigits == 0 {
		h.TOTPDigits = otp.Default.Digits
	}
	if h.TOTPAlgorithm == "" {
		h.TOTPAlgorithm = otp.Default.Algorithm
	}
	h.TOTPAlgorithm = strings.ToUpper(h.TOTPAlgorithm)
	h.skew = DefaultTOTPSkew
	if h.TOTPSkew != nil {
		h.skew = *h.TOTPSkew
	}
	h.clockHint = DefaultClockHintWindow
	if h.ClockHintWindow != nil {
		h.clockHint = time.Duration(*h.ClockHintWindow)
	}
	if h.UserHeader == "" {
		h.UserHeader = DefaultUserHeader
	}
	if h.CookieName == "" {
		h.CookieName = DefaultCookieName
	}
	if h.FreeFailures == 0 {
		h.FreeFailures = DefaultFreeFailures
	}
	if h.MaxDelay == 0 {
		h.MaxDelay = caddy.Duration(DefaultMaxDelay)
	}
	if h.MaxConcurrentHashes == 0 {
		h.MaxConcurrentHashes = defaultMaxHashes()
	}
	if h.HashCPUPercent == 0 {
		h.HashCPUPercent = DefaultHashCPUPercent
	}
	if h.Argon2idTime == 0 {
		h.Argon2idTime = users.DefaultArgon2idTime
	}
	if h.Argon2idMemory == 0 {
		h.Argon2idMemory = users.DefaultArgon2idMemory
	}
	if h.Argon2idThreads == 0 {
		h.Argon2idThreads = users.DefaultArgon2idThreads
	}
	h.params = otp.Params{Algorithm: h.TOTPAlgorithm, Digits: h.TOTPDigits, Period: h.TOTPPeriod}
	h.trustDefaults()
	return nil
}

// defaultMaxHashes leaves most of the CPUs to the proxied traffic while
// wrong-password logins flood in: with a hash on every CPU, proxied
// throughput fell to 40% on 2 CPUs; with one, it kept about 90% (see
// docs/benchmarks.md).
func defaultMaxHashes() int { return max(1, runtime.NumCPU()/4) }

// validateConfig checks every option and names the one that is wrong.
func (h *Handler) validateConfig() error {
	if !strings.HasPrefix(h.Prefix, "/") || h.Prefix == "/" || strings.HasSuffix(h.Prefix, "/") ||
		path.Clean(h.Prefix) != h.Prefix || strings.ContainsAny(h.Prefix, "?#%\\ \t") {
		return fmt.Errorf("prefix %q: must be a clean absolute path other than /, without a trailing slash, such as %s", h.Prefix, DefaultPrefix)
	}
	if err := store.CheckRealm(h.realm); err != nil {
		return err
	}
	// Every number against the table the Caddyfile parser uses.
	if err := h.checkNumericOptions(); err != nil {
		return err
	}
	if err := h.params.Validate(); err != nil {
		return fmt.Errorf("totp settings: %w", err)
	}
	if h.SessionIdle > h.SessionLifetime {
		return fmt.Errorf("session_idle %s is longer than session_lifetime %s", time.Duration(h.SessionIdle), time.Duration(h.SessionLifetime))
	}
	if !gate.ValidHeaderName(h.UserHeader) {
		return fmt.Errorf("user_header %q: not a valid header name", h.UserHeader)
	}
	if err := gate.CheckStripHeaders(h.StripHeaders); err != nil {
		return err
	}
	if err := h.checkTrust(); err != nil {
		return err
	}
	if !gate.ValidCookieName(h.CookieName) {
		return fmt.Errorf("cookie_name %q: not a valid cookie name", h.CookieName)
	}
	if strings.TrimSpace(h.Issuer) == "" || strings.Contains(h.Issuer, ":") || len(h.Issuer) > 100 {
		return fmt.Errorf("issuer %q: must be non-empty, at most 100 bytes, without ':' (authenticator apps use it as the separator)", h.Issuer)
	}
	if err := ui.CheckHomeURL(h.HomeURL); err != nil {
		return err
	}
	if err := h.checkWebAuthn(); err != nil {
		return err
	}
	return ui.CheckProductName(h.ProductName)
}

// expandUsers returns the users with the placeholders in their names and
// hashes expanded, as basic_auth does (user alice {env.ALICE_HASH}). A
// name or hash that expands to nothing is an error, not an account with
// an empty hash.
func expandUsers(users []User, repl *caddy.Replacer) ([]User, error) {
	if len(users) == 0 {
		return users, nil
	}
	out := make([]User, len(users))
	for i, u := range users {
		out[i] = User{Username: repl.ReplaceKnown(u.Username, ""), Password: repl.ReplaceKnown(u.Password, "")}
		if out[i].Username != u.Username && strings.TrimSpace(out[i].Username) == "" {
			return nil, fmt.Errorf("user %d: the name %q is empty once expanded: set the variable", i, u.Username)
		}
		if out[i].Password != u.Password && strings.TrimSpace(out[i].Password) == "" {
			return nil, fmt.Errorf("user %d (%s): the password hash %q is empty once expanded: set the variable", i, out[i].Username, u.Password)
		}
	}
	return out, nil
}

// label names the handler in an error that names two of them.
func (h *Handler) label() string {
	if h.Label != "" {
		return "the two_factor block at " + h.Label
	}
	return fmt.Sprintf("a two_factor handler (prefix %s, issuer %q)", h.Prefix, h.Issuer)
}

// Validate is called after Provision; the checks are all done there.
func (h *Handler) Validate() error { return nil }

// Cleanup lets go of the store; the last handler using it closes it.
func (h *Handler) Cleanup() error {
	if h.shared != nil {
		h.shared.detach(h)
	}
	if h.dbKey != "" {
		_, err := stores.Delete(h.dbKey)
		return err
	}
	return nil
}

// ServeHTTP serves the gate's own pages under the prefix, and lets any
// other request through only with a complete session.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if err := h.waitOpen(r); err != nil {
		h.logger.Error("store not open; refusing the request", zap.Error(err))
		return caddyhttp.Error(http.StatusServiceUnavailable, fmt.Errorf("two_factor store: %w", err))
	}
	user, err := h.gate.Admit(w, r)
	if err != nil {
		if se, ok := err.(*gate.StatusError); ok { // Admit returns it as is
			return refused(se)
		}
		return err
	}
	if user == nil {
		return nil // answered
	}
	caddyhttp.SetVar(r.Context(), "two_factor.user", user)
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Set("http.auth.user.id", user)
	}
	return next.ServeHTTP(w, r)
}

// refused is a refusal of the gate as Caddy's error, for its error routes.
// Caddy's error records where it was made by walking the stack, which is
// cheaper from this small function than from ServeHTTP: made there, the
// 401 of BenchmarkAnonymous took about 20% longer.
//
//go:noinline
func refused(se *gate.StatusError) error { return caddyhttp.Error(se.Code, se.Err) }

// clientIP is the client address as Caddy resolved it (honouring
// trusted_proxies), never a raw X-Forwarded-For.
func clientIP(r *http.Request) string {
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok && ip != "" {
		return ip
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)

// User is an account configured in the Caddyfile or JSON: Username is the
// login name (letter case and Unicode variants of it are the same
// account), Password the hash printed by `caddy hash-password`, bcrypt
// ($2a$/$2b$/$2y$) or argon2id ($argon2id$).
type User = users.User

// checkWebAuthn checks the relying party options (gate.CheckRPID and the
// others, which the Caddyfile parser calls too).
func (h *Handler) checkWebAuthn() error {
	if h.WebAuthnRPID != "" {
		if err := gate.CheckRPID(h.WebAuthnRPID); err != nil {
			return err
		}
	}
	if err := gate.CheckOrigins(h.WebAuthnOrigins, h.WebAuthnRPID); err != nil {
		return err
	}
	if h.WebAuthnUserVerification != "" {
		return gate.CheckUserVerification(h.WebAuthnUserVerification)
	}
	return nil
}
