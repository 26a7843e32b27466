package ui

import (
	"fmt"
	"math"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"unicode"
)

// The operator's branding: a product name, a logo and a primary colour.
// The colour goes into the stylesheet, so it is checked strictly: a hex
// colour and nothing else, dark enough for white text and for links on
// the pages' light backgrounds (WCAG AA, 4.5:1). A lighter shade for dark
// mode is derived from it.

// hexColour is the only syntax primary_color accepts.
var hexColour = regexp.MustCompile(`^#[0-9a-fA-F]{6}$`)

// Backgrounds the primary colour must stand out against, light mode: the
// card and the page (a link also sits on the page colour inside the key
// disclosure), and dark mode's card (the darkest page is darker still).
const (
	lightCard = "#ffffff"
	lightPage = "#f2f4f8"
	darkCard  = "#161c26"
)

// minContrast is WCAG 2's AA ratio for normal text.
const minContrast = 4.5

type rgb struct{ r, g, b float64 } // 0..255

func parseHex(s string) (rgb, bool) {
	if !hexColour.MatchString(s) {
		return rgb{}, false
	}
	v, err := strconv.ParseUint(s[1:], 16, 32)
	if err != nil {
		return rgb{}, false
	}
	return rgb{float64(v >> 16 & 0xff), float64(v >> 8 & 0xff), float64(v & 0xff)}, true
}

func mustHex(s string) rgb {
	c, ok := parseHex(s)
	if !ok {
		panic("bad colour constant " + s)
	}
	return c
}

func (c rgb) String() string {
	return fmt.Sprintf("#%02x%02x%02x", int(math.Round(c.r)), int(math.Round(c.g)), int(math.Round(c.b)))
}

// mix moves c towards d by the fraction f.
func (c rgb) mix(d rgb, f float64) rgb {
	return rgb{c.r + (d.r-c.r)*f, c.g + (d.g-c.g)*f, c.b + (d.b-c.b)*f}
}

// luminance is WCAG 2's relative luminance.
func (c rgb) luminance() float64 {
	ch := func(v float64) float64 {
		v /= 255
		if v <= 0.04045 {
			return v / 12.92
		}
		return math.Pow((v+0.055)/1.055, 2.4)
	}
	return 0.2126*ch(c.r) + 0.7152*ch(c.g) + 0.0722*ch(c.b)
}

// contrast is WCAG 2's contrast ratio of two colours.
func contrast(a, b rgb) float64 {
	la, lb := a.luminance(), b.luminance()
	if la < lb {
		la, lb = lb, la
	}
	return (la + 0.05) / (lb + 0.05)
}

// brandStylesheet checks primary_color and returns the rules that put it in
// the stylesheet's custom properties, in light and dark mode.
func brandStylesheet(primary string) (string, error) {
	c, ok := parseHex(primary)
	if !ok {
		return "", fmt.Errorf("primary_color %q: want a hex colour such as #1d5fd1", primary)
	}
	white, page := mustHex(lightCard), mustHex(lightPage)
	if r := min(contrast(c, white), contrast(c, page)); r < minContrast {
		return "", fmt.Errorf("primary_color %s: contrast %.1f:1 against the pages' light backgrounds (%s, %s) is below WCAG AA's %.1f:1; choose a darker colour",
			primary, r, lightCard, lightPage, minContrast)
	}
	black := rgb{}
	hover := c.mix(black, 0.15)
	// Dark mode: the lightest needed step towards white that reads on the
	// dark card (dark text goes on dark-mode buttons).
	dark, darkBg := c, mustHex(darkCard)
	for f := 0.0; f <= 1.0 && contrast(dark, darkBg) < minContrast+0.3; f += 0.05 {
		dark = c.mix(rgb{255, 255, 255}, f)
	}
	darkHover := dark.mix(rgb{255, 255, 255}, 0.2)
	var b strings.Builder
	fmt.Fprintf(&b, "\n/* primary_color %s (generated) */\n", c)
	fmt.Fprintf(&b, ":root { --primary: %s; --primary-hover: %s; --focus: %s; --info-line: %s; }\n", c, hover, c, c)
	fmt.Fprintf(&b, "@media (prefers-color-scheme: dark) {\n  :root { --primary: %s; --primary-hover: %s; --focus: %s; --info-line: %s; }\n}\n", dark, darkHover, darkHover, dark)
	return b.String(), nil
}

// validHost is what a logo URL's host may be: a DNS name or IP, with an
// optional port. It goes into the Content-Security-Policy, so nothing else.
var validHost = regexp.MustCompile(`^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?)(:[0-9]{1,5})?$`)

// CheckLogoURL checks logo_url: a path on this site, or an https URL, and
// returns the origin to allow in the CSP's img-src ("" for a path here).
func CheckLogoURL(s string) (origin string, err error) {
	return checkSiteURL("logo_url", "/brand/logo.svg", s)
}

// CheckHomeURL checks home_url, where the brand in the pages' header
// leads: as logo_url, a path on this site or an https URL.
func CheckHomeURL(s string) error {
	_, err := checkSiteURL("home_url", "/", s)
	return err
}

// checkSiteURL checks the option called name: a path on this site (such
// as example), or an https URL, and returns the origin of an https URL.
func checkSiteURL(name, example, s string) (origin string, err error) {
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("%s %q: %s", name, s, why)
	}
	if len(s) > 2048 {
		return bad("longer than 2048 bytes")
	}
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) || strings.ContainsRune(`"'<>\;,`+"`", r) {
			return bad("contains a space, quote, control character or one of < > \\ ; ,")
		}
	}
	if strings.HasPrefix(s, "/") {
		if strings.HasPrefix(s, "//") {
			return bad("a path must start with a single /; for another host write https://")
		}
		if _, err := url.Parse(s); err != nil {
			return bad(err.Error())
		}
		return "", nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return bad(err.Error())
	}
	if u.Scheme != "https" || u.Host == "" || u.User != nil || u.Opaque != "" {
		return bad("want a path on this site (" + example + ") or an https:// URL without user info")
	}
	if !validHost.MatchString(u.Host) {
		return bad("the host is not a valid host name")
	}
	return "https://" + u.Host, nil
}

// CheckProductName checks product_name: shown on every page and in the
// backup codes file, so one line of reasonable length.
func CheckProductName(s string) error {
	if strings.TrimSpace(s) == "" || len(s) > 100 {
		return fmt.Errorf("product_name %q: must be non-empty and at most 100 bytes", s)
	}
	for _, r := range s {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return fmt.Errorf("product_name %q: contains a control character", s)
		}
	}
	return nil
}

// contentSecurityPolicy is the CSP of the gate's pages: script only from
// this site (the pages' one script file), styles only from it, images from
// it, data: (the QR code) and the logo's origin.
func contentSecurityPolicy(logoOrigin string) string {
	img := "img-src 'self' data:"
	if logoOrigin != "" {
		img += " " + logoOrigin
	}
	// connect-src: the pages' script speaks the WebAuthn JSON routes
	// (security keys) to the gate itself, and nothing else.
	return "default-src 'none'; script-src 'self'; style-src 'self'; " + img + "; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
}

// IsHexColour reports whether s is a colour as #rrggbb.
func IsHexColour(s string) bool { return hexColour.MatchString(s) }
