package caddymodule

import (
	"fmt"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/assert"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/gate"
)

// The options of upstream trust: the signed identity assertion, the
// further identity headers, and the paths that ask for more (step_up,
// require_two_factor with paths). Their numbers are in the options table
// (options.go); this file reads and checks the rest.

// Defaults and bounds of the assertion's options.
const (
	DefaultAssertionAlgorithm = assert.ES256
	// DefaultAssertionLifetime is exp - iat; a token is reused until half
	// of it is left, so a session costs at most one signature a minute.
	DefaultAssertionLifetime = 2 * time.Minute
	MinAssertionLifetime     = 2 * time.Minute
	MaxAssertionLifetime     = assert.MaxLifetime
	// DefaultAssertionKeyRotation is how long a signing key signs.
	DefaultAssertionKeyRotation = 30 * 24 * time.Hour
	MinAssertionKeyRotation     = time.Hour
	MaxAssertionKeyRotation     = 365 * 24 * time.Hour
	// DefaultAssertionKeyOverlap is how long the next key is published
	// before it signs, and the previous one after.
	DefaultAssertionKeyOverlap = time.Hour
	MinAssertionKeyOverlap     = 10 * time.Minute
	MaxAssertionKeyOverlap     = 30 * 24 * time.Hour
	// MinStepUp and MaxStepUp bound a step_up path's window.
	MinStepUp = time.Minute
	MaxStepUp = 30 * 24 * time.Hour
)

// StepUpRule is a step_up path: a full session whose last second-factor
// check is older than MaxAge gets the code step again there.
type StepUpRule struct {
	// Path is a path pattern: * (every path), /prefix/* or /prefix*, *suffix,
	// or an exact /path; letter case does not count.
	Path string `json:"path"`
	// MaxAge is the window, from 1m to 720h.
	MaxAge caddy.Duration `json:"max_age"`
}

// forbiddenAssertionHeaders may not carry the assertion: the request
// needs them as they are.
var forbiddenAssertionHeaders = []string{
	"Authorization", "Cookie", "Host", "Connection", "Content-Length", "Content-Type",
	"Transfer-Encoding", "Te", "Trailer", "Upgrade", "Keep-Alive", "Proxy-Authorization",
}

// checkTrust checks the options of this file, with defaults filled in.
func (h *Handler) checkTrust() error {
	if h.AssertionHeader == "" {
		for _, o := range []struct {
			name string
			set  bool
		}{
			{"assertion_algorithm", h.AssertionAlgorithm != ""}, {"assertion_issuer", h.AssertionIssuer != ""},
			{"assertion_audience", h.AssertionAudience != ""}, {"assertion_lifetime", h.AssertionLifetime != 0},
			{"assertion_key_rotation", h.AssertionKeyRotation != 0}, {"assertion_key_overlap", h.AssertionKeyOverlap != 0},
		} {
			if o.set {
				return fmt.Errorf("%s: set assertion_header too, the header that carries the assertion", o.name)
			}
		}
	} else {
		if err := checkAssertionHeader(h.AssertionHeader, h.UserHeader); err != nil {
			return err
		}
		if h.AssertionAlgorithm != "" && !assert.ValidAlgorithm(h.AssertionAlgorithm) {
			return fmt.Errorf("assertion_algorithm %q: want ES256 or EdDSA", h.AssertionAlgorithm)
		}
		for _, c := range []struct{ name, v string }{{"assertion_issuer", h.AssertionIssuer}, {"assertion_audience", h.AssertionAudience}} {
			if err := checkClaimText(c.name, c.v); err != nil {
				return err
			}
		}
		rot, ovl := time.Duration(h.AssertionKeyRotation), time.Duration(h.AssertionKeyOverlap)
		if rot == 0 {
			rot = DefaultAssertionKeyRotation
		}
		if ovl == 0 {
			ovl = DefaultAssertionKeyOverlap
		}
		if ovl >= rot {
			return fmt.Errorf("assertion_key_overlap %s: must be shorter than assertion_key_rotation %s", shortDuration(ovl), shortDuration(rot))
		}
	}
	for i, r := range h.StepUp {
		if _, err := gate.ParsePathPattern(r.Path); err != nil {
			return fmt.Errorf("step_up %d: %w", i+1, err)
		}
		if d := time.Duration(r.MaxAge); d < MinStepUp || d > MaxStepUp {
			return fmt.Errorf("step_up %d (%s): the window %s must be from %s to %s", i+1, r.Path, d, shortDuration(MinStepUp), shortDuration(MaxStepUp))
		}
	}
	for i, p := range h.RequireTwoFactorPaths {
		if _, err := gate.ParsePathPattern(p); err != nil {
			return fmt.Errorf("require_two_factor_paths %d: %w", i+1, err)
		}
	}
	return nil
}

// checkAssertionHeader checks the assertion_header option.
func checkAssertionHeader(name, userHeader string) error {
	if !gate.ValidHeaderName(name) {
		return fmt.Errorf("assertion_header %q: not a valid header name", name)
	}
	fold := func(s string) string { return strings.NewReplacer("_", "-", ".", "-").Replace(strings.ToLower(s)) }
	if fold(name) == fold(userHeader) {
		return fmt.Errorf("assertion_header %q: the user header has that name", name)
	}
	for _, f := range append(forbiddenAssertionHeaders, gate.HeaderName, gate.HeaderAuthMethods, gate.HeaderAuthTime) {
		if fold(name) == fold(f) {
			return fmt.Errorf("assertion_header %q: a request needs that header for itself; choose another, such as X-Two-Factor-Assertion", name)
		}
	}
	return nil
}

// checkClaimText checks assertion_issuer and assertion_audience.
func checkClaimText(option, v string) error {
	if v == "" {
		return nil
	}
	if len(v) > 256 || strings.TrimSpace(v) != v {
		return fmt.Errorf("%s %q: at most 256 bytes, without spaces around", option, v)
	}
	for _, c := range v {
		if c < 0x20 || c == 0x7f {
			return fmt.Errorf("%s %q: has a control character", option, v)
		}
	}
	return nil
}

// trustDefaults fills the unset assertion options.
func (h *Handler) trustDefaults() {
	if h.AssertionHeader == "" {
		return
	}
	if h.AssertionAlgorithm == "" {
		h.AssertionAlgorithm = DefaultAssertionAlgorithm
	}
	if h.AssertionLifetime == 0 {
		h.AssertionLifetime = caddy.Duration(DefaultAssertionLifetime)
	}
	if h.AssertionKeyRotation == 0 {
		h.AssertionKeyRotation = caddy.Duration(DefaultAssertionKeyRotation)
	}
	if h.AssertionKeyOverlap == 0 {
		h.AssertionKeyOverlap = caddy.Duration(DefaultAssertionKeyOverlap)
	}
}

// trustConfig is the gate's part of these options: the path rules and the
// assertion (nil when off).
func (h *Handler) trustConfig() ([]gate.PathRule, *gate.Assertion) {
	var rules []gate.PathRule
	for _, p := range h.RequireTwoFactorPaths {
		rules = append(rules, gate.PathRule{Pattern: p})
	}
	for _, r := range h.StepUp {
		rules = append(rules, gate.PathRule{Pattern: r.Path, MaxAge: time.Duration(r.MaxAge)})
	}
	if h.AssertionHeader == "" && !h.AuthHeaders {
		return rules, nil
	}
	return rules, &gate.Assertion{
		Header: h.AssertionHeader, Algorithm: h.AssertionAlgorithm, Issuer: h.AssertionIssuer, Audience: h.AssertionAudience,
		Lifetime: time.Duration(h.AssertionLifetime), Rotation: time.Duration(h.AssertionKeyRotation),
		Overlap: time.Duration(h.AssertionKeyOverlap), AuthHeaders: h.AuthHeaders,
	}
}

// parseTrustOption reads one of these options from the Caddyfile; ok is
// false for an option of another file.
func (h *Handler) parseTrustOption(d *caddyfile.Dispenser, opt string) (ok bool, err error) {
	switch opt {
	case "assertion_header":
		if err := oneArg(d, &h.AssertionHeader); err != nil {
			return true, err
		}
		if err := checkAssertionHeader(h.AssertionHeader, ""); err != nil {
			return true, d.Err(err.Error())
		}
	case "assertion_algorithm":
		if err := oneArg(d, &h.AssertionAlgorithm); err != nil {
			return true, err
		}
		if !assert.ValidAlgorithm(h.AssertionAlgorithm) {
			return true, d.Errf("assertion_algorithm: want ES256 or EdDSA, got '%s'", h.AssertionAlgorithm)
		}
	case "assertion_issuer", "assertion_audience":
		dst := &h.AssertionIssuer
		if opt == "assertion_audience" {
			dst = &h.AssertionAudience
		}
		if err := oneArg(d, dst); err != nil {
			return true, err
		}
		if err := checkClaimText(opt, *dst); err != nil {
			return true, d.Err(err.Error())
		}
	case "auth_headers":
		if d.NextArg() {
			return true, d.Errf("auth_headers takes no arguments, got '%s'", d.Val())
		}
		h.AuthHeaders = true
	case "step_up":
		args := d.RemainingArgs()
		if len(args) != 2 {
			return true, d.Errf("step_up: want a path and a duration, such as step_up /admin/* 10m; got %d arguments", len(args))
		}
		if _, err := gate.ParsePathPattern(args[0]); err != nil {
			return true, d.Errf("step_up: %v", err)
		}
		dur, err := caddy.ParseDuration(args[1])
		if err != nil {
			return true, d.Errf("step_up: invalid duration '%s': %v", args[1], err)
		}
		if dur < MinStepUp || dur > MaxStepUp {
			return true, d.Errf("step_up: the duration must be from %s to %s, got '%s'", shortDuration(MinStepUp), shortDuration(MaxStepUp), args[1])
		}
		h.StepUp = append(h.StepUp, StepUpRule{Path: args[0], MaxAge: caddy.Duration(dur)})
	case "require_two_factor":
		paths := d.RemainingArgs()
		if len(paths) == 0 {
			h.RequireTwoFactor = true
			return true, nil
		}
		for _, p := range paths {
			if _, err := gate.ParsePathPattern(p); err != nil {
				return true, d.Errf("require_two_factor: %v", err)
			}
		}
		h.RequireTwoFactorPaths = append(h.RequireTwoFactorPaths, paths...)
	default:
		return false, nil
	}
	return true, nil
}
