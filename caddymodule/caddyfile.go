package caddymodule

import (
	"fmt"
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/gate"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/ui"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("two_factor", parseCaddyfile)
	httpcaddyfile.RegisterDirectiveOrder("two_factor", httpcaddyfile.Before, "basic_auth")
}

// parseCaddyfile sets up the handler from Caddyfile tokens.
func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var t Handler
	err := t.UnmarshalCaddyfile(h.Dispenser)
	return &t, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	two_factor {
//		user <name> <hash>                  # repeatable; hash from `caddy hash-password`; placeholders expanded
//		realm <name>                        # default "default"; one account system shared by the blocks that name it
//		storage_dir <path>
//		storage badger <path>               # the same as storage_dir
//		storage postgres <connection>       # e.g. {env.TWO_FACTOR_DATABASE_URL}; needs encryption_key or encryption_key_file
//		encryption_key <key>                # 32 bytes, base64 or hex; e.g. {env.TWO_FACTOR_KEY}
//		encryption_key_file <path>
//		prefix <path>                       # default /.auth
//		issuer <name>
//		require_two_factor [<path>...]      # no path: everywhere; with paths: there only (repeatable)
//		step_up <path> <duration>           # repeatable; e.g. step_up /admin/* 10m: a code at most 10m old
//		assertion_header <name>             # a signed JWT of the user; JWKS at <prefix>/.well-known/jwks.json
//		assertion_algorithm <ES256|EdDSA>   # default ES256
//		assertion_issuer <iss>              # default: the request's origin
//		assertion_audience <aud>            # default: the request's host
//		assertion_lifetime <duration>       # default 2m; 2m to 5m
//		assertion_key_rotation <duration>   # default 720h
//		assertion_key_overlap <duration>    # default 1h
//		auth_headers                        # adds Remote-Name, Remote-Auth-Methods, Remote-Auth-Time
//		session_idle <duration>             # default 30m
//		session_lifetime <duration>         # default 12h
//		max_sessions_per_user <n>           # default 100; the oldest end first
//		code_timeout <duration>             # default 5m
//		totp_period <seconds>               # default 30
//		totp_digits <6|8>                   # default 6
//		totp_algorithm <SHA1|SHA256|SHA512> # default SHA1
//		totp_skew <steps>                   # default 1
//		clock_hint_window <duration>        # default 10m; 0 turns clock hints off
//		user_header <name>                  # default Remote-User
//		strip_header <name>...              # repeatable; more headers to delete, any spelling
//		webauthn_rp_id <domain>             # default: the request's host; security keys' relying party
//		webauthn_origins <origin>...        # default: the request's origin
//		webauthn_user_verification <required|preferred|discouraged> # default preferred
//		cookie_name <name>                  # default __Host-two_factor
//		templates_dir <path>
//		product_name <name>                 # default: the issuer
//		logo_url <path or https URL>
//		home_url <path or https URL>        # default /; where the brand in the header leads
//		primary_color "#rrggbb"             # quoted, or without the #
//		languages <tag>...                  # default: all (en ru); one forces it
//		free_failures <n>                   # default 5
//		max_delay <duration>                # default 15m
//		max_concurrent_hashes <n>           # default: a quarter of the CPUs, at least 1
//		hash_cpu <percent>%                 # default 10%: hashing's share of the CPUs over time
//		hash_cpu_burst <duration>           # default: a minute's worth, at least 10s
//		argon2id_time <n>                   # default 1; for store users' passwords
//		argon2id_memory <KiB>               # default 47104
//		argon2id_threads <n>                # default 1
//	}
//
// Only user, strip_header, step_up and require_two_factor with paths may
// be given more than once; any other option given twice is an error
// naming the line of each.
func (t *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive's name
	// Where the block is labels the handler in errors that name two
	// blocks (two sites sharing a store, see Handler.Realm).
	t.Label = fmt.Sprintf("%s:%d", d.File(), d.Line())
	if d.NextArg() {
		return d.Errf("two_factor takes no arguments on its first line, only a block; got '%s'", d.Val())
	}
	first := map[string]string{} // single-valued option -> where it is set
	for d.NextBlock(0) {
		opt := d.Val()
		if !repeatableOptions[opt] && !(opt == "require_two_factor" && d.CountRemainingArgs() > 0) {
			if at, twice := first[opt]; twice {
				return d.Errf("%s: set more than once (first at %s)", opt, at)
			}
			first[opt] = fmt.Sprintf("%s:%d", d.File(), d.Line())
		}
		if o := numericOptionNamed(opt); o != nil {
			if err := o.parse(d, t); err != nil {
				return err
			}
			continue
		}
		if ok, err := t.parseTrustOption(d, opt); ok {
			if err != nil {
				return err
			}
			continue
		}
		switch opt {
		case "user":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return d.Errf("user: want a name and a password hash (from caddy hash-password), got %d arguments", len(args))
			}
			t.Users = append(t.Users, User{Username: args[0], Password: args[1]})
		case "realm":
			if err := oneArg(d, &t.Realm); err != nil {
				return err
			}
			if err := store.CheckRealm(t.Realm); err != nil {
				return d.Errf("%v", err)
			}
		case "storage":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return d.Errf("storage: want a backend and where (storage badger <dir>, or storage postgres <connection string>), got %d arguments", len(args))
			}
			switch args[0] {
			case backendBadger:
				t.Storage = &Storage{Backend: backendBadger, Dir: args[1]}
			case backendPostgres:
				t.Storage = &Storage{Backend: backendPostgres, Connection: args[1]}
			default:
				return d.Errf("storage: unknown backend %q (badger or postgres)", args[0])
			}
		case "storage_dir":
			if err := oneArg(d, &t.StorageDir); err != nil {
				return err
			}
		case "encryption_key":
			if err := oneArg(d, &t.EncryptionKey); err != nil {
				return err
			}
		case "encryption_key_file":
			if err := oneArg(d, &t.EncryptionKeyFile); err != nil {
				return err
			}
		case "prefix":
			if err := oneArg(d, &t.Prefix); err != nil {
				return err
			}
		case "issuer":
			if err := oneArg(d, &t.Issuer); err != nil {
				return err
			}
		case "totp_algorithm":
			if err := oneArg(d, &t.TOTPAlgorithm); err != nil {
				return err
			}
		case "user_header":
			if err := oneArg(d, &t.UserHeader); err != nil {
				return err
			}
		case "strip_header":
			names := d.RemainingArgs()
			if len(names) == 0 {
				return d.Errf("strip_header: want one or more header names, such as X-Email")
			}
			for _, n := range names {
				if !gate.ValidHeaderName(n) {
					return d.Errf("strip_header: not a valid header name: '%s'", n)
				}
			}
			t.StripHeaders = append(t.StripHeaders, names...)
		case "webauthn_rp_id":
			if err := oneArg(d, &t.WebAuthnRPID); err != nil {
				return err
			}
			if err := gate.CheckRPID(t.WebAuthnRPID); err != nil {
				return d.Err(err.Error())
			}
		case "webauthn_origins":
			t.WebAuthnOrigins = d.RemainingArgs()
			if len(t.WebAuthnOrigins) == 0 {
				return d.Errf("webauthn_origins: want one or more origins, such as https://example.com")
			}
			if err := gate.CheckOrigins(t.WebAuthnOrigins, ""); err != nil {
				return d.Err(err.Error())
			}
		case "webauthn_user_verification":
			if err := oneArg(d, &t.WebAuthnUserVerification); err != nil {
				return err
			}
			if err := gate.CheckUserVerification(t.WebAuthnUserVerification); err != nil {
				return d.Err(err.Error())
			}
		case "cookie_name":
			if err := oneArg(d, &t.CookieName); err != nil {
				return err
			}
		case "templates_dir":
			if err := oneArg(d, &t.TemplatesDir); err != nil {
				return err
			}
		case "product_name":
			if err := oneArg(d, &t.ProductName); err != nil {
				return err
			}
		case "logo_url":
			if err := oneArg(d, &t.LogoURL); err != nil {
				return err
			}
			if _, err := ui.CheckLogoURL(t.LogoURL); err != nil {
				return d.Err(err.Error())
			}
		case "home_url":
			if err := oneArg(d, &t.HomeURL); err != nil {
				return err
			}
			if err := ui.CheckHomeURL(t.HomeURL); err != nil {
				return d.Err(err.Error())
			}
		case "primary_color":
			// A # starts a comment in a Caddyfile, so the colour is
			// written quoted ("#1d5fd1") or without its # (1d5fd1).
			if !d.NextArg() {
				return d.Errf(`primary_color: want a colour such as "#1d5fd1" (quoted: a # starts a comment) or 1d5fd1`)
			}
			c := d.Val()
			if !strings.HasPrefix(c, "#") {
				c = "#" + c
			}
			if d.NextArg() {
				return d.Errf("primary_color: want exactly one value")
			}
			if !ui.IsHexColour(c) {
				return d.Errf("primary_color: want a hex colour such as \"#1d5fd1\", got '%s'", d.Val())
			}
			t.PrimaryColor = c
		case "languages":
			t.Languages = d.RemainingArgs()
			if len(t.Languages) == 0 {
				return d.Errf("languages: want one or more language tags, such as en ru")
			}
		default:
			return d.Errf("unrecognized subdirective '%s'", opt)
		}
	}
	return nil
}

// oneArg reads the single argument of the current option.
func oneArg(d *caddyfile.Dispenser, dst *string) error {
	opt := d.Val()
	args := d.RemainingArgs()
	if len(args) != 1 {
		return d.Errf("%s: want exactly one value, got %d", opt, len(args))
	}
	*dst = args[0]
	return nil
}

// repeatableOptions may be given more than once, each adding to a list;
// any other option given twice is an error naming both lines.
var repeatableOptions = map[string]bool{"user": true, "strip_header": true, "step_up": true}

// Interface guard
var _ caddyfile.Unmarshaler = (*Handler)(nil)
