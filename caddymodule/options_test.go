package caddymodule

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/pquerna/otp"
	"golang.org/x/net/html"
)

// TestUserPlaceholdersExpanded loads user lines whose name and hash come
// from the environment, as with basic_auth: the user logs in; a variable
// that is not set is an error naming the user, not an empty hash.
func TestUserPlaceholdersExpanded(t *testing.T) {
	t.Setenv("TWO_FACTOR_TEST_CAROL", "carol")
	t.Setenv("TWO_FACTOR_TEST_CAROL_HASH", testHash)
	g := newGate(t, gateOpts{extra: "user {env.TWO_FACTOR_TEST_CAROL} {env.TWO_FACTOR_TEST_CAROL_HASH}"})
	b := g.browser()
	b.login("carol", testPassword, "/")
	if r := b.get("/x"); r.status != http.StatusOK || !strings.Contains(r.body, `"Remote-User":["carol"]`) {
		t.Errorf("carol's request: got %d %.300s, want 200 with Remote-User carol", r.status, r.body)
	}
	g.browser().login("alice", testPassword, "/") // the plain lines still work
	unload(t)

	cfg := strings.Replace(g.config, "{env.TWO_FACTOR_TEST_CAROL_HASH}", "{env.TWO_FACTOR_TEST_UNSET_HASH}", 1)
	caddytest.AssertLoadError(t, cfg, "caddyfile", "user 2 (carol): the password hash")
	caddytest.AssertLoadError(t, cfg, "caddyfile", "{env.TWO_FACTOR_TEST_UNSET_HASH}\\\" is empty once expanded: set the variable")
	cfg = strings.Replace(g.config, "{env.TWO_FACTOR_TEST_CAROL}", "{env.TWO_FACTOR_TEST_UNSET_NAME}", 1)
	caddytest.AssertLoadError(t, cfg, "caddyfile", "user 2: the name \\\"{env.TWO_FACTOR_TEST_UNSET_NAME}\\\" is empty once expanded")
}

// brandLink returns the href of the header's brand link, and whether
// there is one.
func brandLink(t *testing.T, body string) (string, bool) {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var href string
	var found bool
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == "a" {
			var class, h string
			for _, a := range n.Attr {
				switch a.Key {
				case "class":
					class = a.Val
				case "href":
					h = a.Val
				}
			}
			if strings.Contains(" "+class+" ", " brand ") {
				href, found = h, true
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	return href, found
}

// TestHomeURL checks that the brand in the pages' header leads back to
// the site: to / by default, to home_url when set, escaped in the HTML.
func TestHomeURL(t *testing.T) {
	g := newGate(t, gateOpts{})
	r := g.browser().get("/.auth/login")
	if href, ok := brandLink(t, r.body); !ok || href != "/" {
		t.Errorf("default: brand link %q (%v), want /: %.800s", href, ok, r.body)
	}
	if !strings.Contains(r.body, `<a class="brand brand-home" href="/">Test Cloud</a>`) {
		t.Errorf("default: the product name is not the link's text: %.800s", r.body)
	}
	unload(t)

	const home = "https://example.com/portal?a=1&b=2"
	g = newGate(t, gateOpts{extra: "home_url " + home + "\n\t\tlogo_url /logo.svg"})
	b := g.browser()
	r = b.get("/.auth/login")
	if href, ok := brandLink(t, r.body); !ok || href != home {
		t.Errorf("home_url: brand link %q (%v), want %q", href, ok, home)
	}
	if !strings.Contains(r.body, `href="https://example.com/portal?a=1&amp;b=2"><img src="/logo.svg"`) {
		t.Errorf("home_url: want the link escaped around the logo: %.800s", r.body)
	}
	// The backup codes page leaves no way off it but its own.
	b.login("alice", testPassword, "/")
	r = b.get("/.auth/security/enable")
	m := otpauthRe.FindStringSubmatch(r.body)
	if m == nil {
		t.Fatalf("enable page has no otpauth link: %.500s", r.body)
	}
	key, err := otp.NewKeyFromURL(html.UnescapeString(m[1]))
	if err != nil {
		t.Fatal(err)
	}
	r = b.post("/.auth/security/enable", url.Values{"code": {totpCode(t, key.Secret(), testNow())}, "password": {testPassword}})
	if loc := r.header.Get("Location"); r.status/100 == 3 && loc != "" {
		r = b.get(loc)
	}
	if len(backupCodesOn(t, r.body)) != 10 {
		t.Fatalf("want the backup codes page: %d %.500s", r.status, r.body)
	}
	if href, ok := brandLink(t, r.body); ok {
		t.Errorf("backup codes page: the brand links to %q, want no way off the page", href)
	}
}

// TestHomeURLErrors checks home_url's values like logo_url's: a bad one is
// a Caddyfile error naming the line.
func TestHomeURLErrors(t *testing.T) {
	for _, tc := range []struct{ line, want string }{
		{"home_url javascript:alert(1)", `home_url "javascript:alert(1)": want a path on this site (/) or an https:// URL`},
		{"home_url http://example.com/", `home_url "http://example.com/": want a path on this site (/) or an https:// URL`},
		{"home_url //evil.example/", "a path must start with a single /"},
		{"home_url \"/a b\"", "contains a space"},
		{"home_url", "home_url: want exactly one value"},
		{"logo_url data:image/png", `logo_url "data:image/png": want a path on this site (/brand/logo.svg)`},
	} {
		err := adaptError(t, "\t\tissuer X\n\t\t"+tc.line)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "Caddyfile:4") {
			t.Errorf("%s: got %v, want an error naming Caddyfile:4 and %q", tc.line, err, tc.want)
		}
	}
}
