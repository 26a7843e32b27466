package ui

import (
	"regexp"
	"strings"
	"testing"
)

func TestBrandStylesheet(t *testing.T) {
	for _, tc := range []struct {
		colour, wantErr string
	}{
		{"#1d5fd1", ""},
		{"#7B1FA2", ""},
		{"#000000", ""},
		{"#0b6e4f", ""},
		{"#ffcc00", "below WCAG AA"},  // yellow: white text unreadable
		{"#6ea2ff", "below WCAG AA"},  // too light for links on white
		{"red", "want a hex colour"},  // names are not accepted
		{"#fff", "want a hex colour"}, // nor the short form
		{"#1d5fd1; } body { display: none", "want a hex colour"},
		{"#1d5fd1\n", "want a hex colour"},
		{"", "want a hex colour"},
	} {
		css, err := brandStylesheet(tc.colour)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: got %v, want an error containing %q", tc.colour, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.colour, err)
			continue
		}
		if want := "--primary: " + strings.ToLower(tc.colour) + ";"; !strings.Contains(css, want) {
			t.Errorf("%q: stylesheet %q lacks %q", tc.colour, css, want)
		}
		// The dark-mode shade reads on the dark card, and the dark page.
		m := regexp.MustCompile(`prefers-color-scheme: dark\) \{\n  :root \{ --primary: (#[0-9a-f]{6});`).FindStringSubmatch(css)
		if m == nil {
			t.Fatalf("%q: no dark shade in %q", tc.colour, css)
		}
		dark, _ := parseHex(m[1])
		for _, bg := range []string{darkCard, "#0e131a"} {
			if c := contrast(dark, mustHex(bg)); c < minContrast {
				t.Errorf("%q: dark shade %s has contrast %.2f on %s, want at least %.1f", tc.colour, m[1], c, bg, minContrast)
			}
		}
	}
	// WCAG's own examples: black on white is 21:1, white on white 1:1.
	if c := contrast(mustHex("#000000"), mustHex("#ffffff")); c < 20.99 || c > 21.01 {
		t.Errorf("contrast black/white: got %.3f, want 21", c)
	}
	if c := contrast(mustHex("#777777"), mustHex("#ffffff")); c < 4.47 || c > 4.49 {
		t.Errorf("contrast #777/white: got %.3f, want 4.48", c)
	}
}

func TestCheckLogoURL(t *testing.T) {
	for _, tc := range []struct {
		url, origin, wantErr string
	}{
		{"/brand/logo.svg", "", ""},
		{"/brand/logo.png?v=2", "", ""},
		{"https://cdn.example.com/logo.svg", "https://cdn.example.com", ""},
		{"https://cdn.example.com:8443/a/logo.png", "https://cdn.example.com:8443", ""},
		{"https://[2001:db8::1]/logo.png", "https://[2001:db8::1]", ""},
		{"http://cdn.example.com/logo.svg", "", "https:// URL"},
		{"//cdn.example.com/logo.svg", "", "single /"},
		{"javascript:alert(1)", "", "https:// URL"},
		{"data:image/svg+xml;base64,PHN2Zz4=", "", "one of"},
		{"https://user:pw@cdn.example.com/logo.svg", "", "without user info"},
		{"https://cdn.example.com/logo.svg; script-src *", "", "space"},
		{"https://cdn.example.com/logo.svg;script-src", "", "one of"},
		{`https://cdn.example.com/"onerror="x`, "", "quote"},
		{"https://cdn.example.com\\logo.svg", "", "one of"},
		{"https://cdn_example.com/logo.svg", "", "host name"},
		{"logo.svg", "", "https:// URL"},
		{"/" + strings.Repeat("a", 2048), "", "2048"},
	} {
		origin, err := CheckLogoURL(tc.url)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: got %q, %v; want an error containing %q", tc.url, origin, err, tc.wantErr)
			}
			continue
		}
		if err != nil || origin != tc.origin {
			t.Errorf("%q: got %q, %v; want %q", tc.url, origin, err, tc.origin)
		}
	}
}

// TestBranding serves the pages with a product name, a logo from another
// host and a primary colour.
