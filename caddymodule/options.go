package caddymodule

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/otp"
)

// The numeric options, each named and bounded once: the Caddyfile parser
// checks a value against its entry and names the line; validateConfig
// checks a JSON config (where a zero means "the default") against the
// same entry. Options that are not numbers (names, paths, URLs, headers)
// are checked where they are parsed and in validateConfig by one shared
// function each.

// optionKind is how a numeric option is written.
type optionKind int

const (
	wholeNumber optionKind = iota // 5
	duration                      // 15m, as caddy.ParseDuration reads it
	percent                       // 12.5%, the % optional
)

// numericOption is one numeric option and its bounds.
type numericOption struct {
	name string // as in the Caddyfile and in errors
	kind optionKind
	// lo and hi bound the value (nanoseconds for a duration). A whole
	// number is from lo to hi; a percentage is more than lo and at most
	// hi; a duration is positive, at least lo and at most hi, and a
	// duration's hi of 0 means no upper bound.
	lo, hi float64
	// only, when set, lists the whole numbers allowed between lo and hi.
	only []int
	// zero, for a duration, allows 0 too (it turns the option off); its
	// field is then a **caddy.Duration, nil for the default.
	zero bool
	// note follows the bounds in validateConfig's error (the unit).
	note string
	// field points at the option's field in h: *int, **int, *uint32,
	// *uint8, *caddy.Duration or *float64.
	field func(h *Handler) any
}

// numericOptions is the table of the numeric options.
var numericOptions = []numericOption{
	{name: "session_idle", kind: duration, field: func(h *Handler) any { return &h.SessionIdle }},
	{name: "session_lifetime", kind: duration, field: func(h *Handler) any { return &h.SessionLifetime }},
	{name: "code_timeout", kind: duration, field: func(h *Handler) any { return &h.CodeTimeout }},
	{name: "remember_browser", kind: duration, lo: float64(MinRememberBrowser), hi: float64(MaxRememberBrowser), field: func(h *Handler) any { return &h.RememberBrowser }},
	{name: "max_delay", kind: duration, field: func(h *Handler) any { return &h.MaxDelay }},
	{name: "hash_cpu_burst", kind: duration, hi: float64(24 * time.Hour), field: func(h *Handler) any { return &h.HashCPUBurst }},
	{name: "max_sessions_per_user", lo: 1, hi: MaxMaxSessionsPerUser, field: func(h *Handler) any { return &h.MaxSessionsPerUser }},
	{name: "totp_period", lo: otp.MinPeriod, hi: otp.MaxPeriod, note: " (seconds)", field: func(h *Handler) any { return &h.TOTPPeriod }},
	{name: "totp_digits", lo: 6, hi: 8, only: []int{6, 8}, field: func(h *Handler) any { return &h.TOTPDigits }},
	{name: "totp_skew", lo: 0, hi: 10, field: func(h *Handler) any { return &h.TOTPSkew }},
	{name: "clock_hint_window", kind: duration, hi: float64(MaxClockHintWindow), zero: true, field: func(h *Handler) any { return &h.ClockHintWindow }},
	{name: "assertion_lifetime", kind: duration, lo: float64(MinAssertionLifetime), hi: float64(MaxAssertionLifetime), field: func(h *Handler) any { return &h.AssertionLifetime }},
	{name: "assertion_key_rotation", kind: duration, lo: float64(MinAssertionKeyRotation), hi: float64(MaxAssertionKeyRotation), field: func(h *Handler) any { return &h.AssertionKeyRotation }},
	{name: "assertion_key_overlap", kind: duration, lo: float64(MinAssertionKeyOverlap), hi: float64(MaxAssertionKeyOverlap), field: func(h *Handler) any { return &h.AssertionKeyOverlap }},
	{name: "free_failures", lo: 1, hi: 50, field: func(h *Handler) any { return &h.FreeFailures }},
	{name: "max_concurrent_hashes", lo: 1, hi: 1024, field: func(h *Handler) any { return &h.MaxConcurrentHashes }},
	{name: "hash_cpu", kind: percent, lo: 0, hi: 100, field: func(h *Handler) any { return &h.HashCPUPercent }},
	{name: "argon2id_time", lo: 1, hi: 100, field: func(h *Handler) any { return &h.Argon2idTime }},
	{name: "argon2id_memory", lo: 1024, hi: 4 << 20, note: " (KiB, that is 1 MiB to 4 GiB)", field: func(h *Handler) any { return &h.Argon2idMemory }},
	{name: "argon2id_threads", lo: 1, hi: 255, field: func(h *Handler) any { return &h.Argon2idThreads }},
}

// numericOptionNamed returns the entry of the option called name, or nil.
func numericOptionNamed(name string) *numericOption {
	for i := range numericOptions {
		if numericOptions[i].name == name {
			return &numericOptions[i]
		}
	}
	return nil
}

// allows reports whether v is within the option's bounds.
func (o *numericOption) allows(v float64) bool {
	switch o.kind {
	case wholeNumber:
		if v < o.lo || v > o.hi || v != math.Trunc(v) {
			return false
		}
		if o.only == nil {
			return true
		}
		for _, n := range o.only {
			if float64(n) == v {
				return true
			}
		}
		return false
	case duration: // a NaN fails the comparisons
		if o.zero && v == 0 {
			return true
		}
		return v > 0 && v >= o.lo && (o.hi == 0 || v <= o.hi)
	default:
		return v > o.lo && v <= o.hi
	}
}

// wholeNumbers says which whole numbers the option takes: "6 or 8", or
// "from 1 to 50".
func (o *numericOption) wholeNumbers() string {
	if len(o.only) > 0 {
		s := make([]string, len(o.only))
		for i, n := range o.only {
			s[i] = strconv.Itoa(n)
		}
		return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
	}
	return fmt.Sprintf("from %d to %d", int64(o.lo), int64(o.hi))
}

// parse reads the option's one value from the Caddyfile into h; an error
// names the line.
func (o *numericOption) parse(d *caddyfile.Dispenser, h *Handler) error {
	var s string
	if err := oneArg(d, &s); err != nil {
		return err
	}
	var v float64
	switch o.kind {
	case wholeNumber:
		n, err := strconv.Atoi(s)
		if err != nil || !o.allows(float64(n)) {
			if o.only != nil {
				return d.Errf("%s: want %s, got '%s'", o.name, o.wholeNumbers(), s)
			}
			return d.Errf("%s: want a whole number %s, got '%s'", o.name, o.wholeNumbers(), s)
		}
		v = float64(n)
	case duration:
		dur, err := caddy.ParseDuration(s)
		if err != nil {
			return d.Errf("%s: invalid duration '%s': %v", o.name, s, err)
		}
		if dur < 0 || dur == 0 && !o.zero {
			return d.Errf("%s: must be positive, got '%s'", o.name, s)
		}
		if !o.allows(float64(dur)) {
			if o.lo > 0 {
				return d.Errf("%s: must be from %s to %s, got '%s'", o.name, shortDuration(time.Duration(o.lo)), shortDuration(time.Duration(o.hi)), s)
			}
			return d.Errf("%s: must be at most %s, got '%s'", o.name, shortDuration(time.Duration(o.hi)), s)
		}
		v = float64(dur)
	case percent:
		f, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
		if err != nil || !o.allows(f) {
			return d.Errf("%s: want a share of the CPUs from more than %g%% to %g%%, such as 10%%; got '%s'", o.name, o.lo, o.hi, s)
		}
		v = f
	}
	o.set(h, v)
	return nil
}

// set stores v, already within bounds, in h's field.
func (o *numericOption) set(h *Handler, v float64) {
	switch p := o.field(h).(type) {
	case *int:
		*p = int(v)
	case **int:
		n := int(v)
		*p = &n
	case *uint32:
		*p = uint32(v)
	case *uint8:
		*p = uint8(v)
	case *caddy.Duration:
		*p = caddy.Duration(v)
	case **caddy.Duration:
		d := caddy.Duration(v)
		*p = &d
	case *float64:
		*p = v
	}
}

// value returns the option's value in h, and whether it is set: a zero
// (or a nil pointer) leaves it to the default.
func (o *numericOption) value(h *Handler) (float64, bool) {
	switch p := o.field(h).(type) {
	case *int:
		return float64(*p), *p != 0
	case **int:
		if *p == nil {
			return 0, false
		}
		return float64(**p), true
	case *uint32:
		return float64(*p), *p != 0
	case *uint8:
		return float64(*p), *p != 0
	case *caddy.Duration:
		return float64(*p), *p != 0
	case **caddy.Duration:
		if *p == nil {
			return 0, false
		}
		return float64(**p), true
	case *float64:
		return *p, *p != 0
	}
	return 0, false
}

// check returns an error naming the option when its value in h is set and
// out of bounds.
func (o *numericOption) check(h *Handler) error {
	v, set := o.value(h)
	if !set || o.allows(v) {
		return nil
	}
	switch o.kind {
	case duration:
		if o.hi == 0 {
			return fmt.Errorf("%s %s: must be positive", o.name, time.Duration(v))
		}
		if o.zero {
			return fmt.Errorf("%s %s: must be between 0 (off) and %s", o.name, time.Duration(v), shortDuration(time.Duration(o.hi)))
		}
		if o.lo > 0 {
			return fmt.Errorf("%s %s: must be from %s to %s", o.name, time.Duration(v), shortDuration(time.Duration(o.lo)), shortDuration(time.Duration(o.hi)))
		}
		return fmt.Errorf("%s %s: must be between 0 and %s", o.name, time.Duration(v), shortDuration(time.Duration(o.hi)))
	case percent:
		return fmt.Errorf("%s %g%%: must be more than %g and at most %g", o.name, v, o.lo, o.hi)
	}
	if o.only != nil {
		return fmt.Errorf("%s %d: must be %s", o.name, int64(v), o.wholeNumbers())
	}
	return fmt.Errorf("%s %d: must be between %d and %d%s", o.name, int64(v), int64(o.lo), int64(o.hi), o.note)
}

// checkNumericOptions checks every numeric option of h against the table.
func (h *Handler) checkNumericOptions() error {
	for i := range numericOptions {
		if err := numericOptions[i].check(h); err != nil {
			return err
		}
	}
	return nil
}

// shortDuration writes d as a person would: 24h, not 24h0m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
