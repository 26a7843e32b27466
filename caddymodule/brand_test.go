package caddymodule

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddytest"
)

func TestBranding(t *testing.T) {
	g := newGate(t, gateOpts{extra: `product_name "Example Console"
		logo_url https://cdn.example.com/brand/logo.svg
		primary_color "#7b1fa2"`})
	b := g.browser()
	r := b.get("/.auth/login")
	for _, want := range []string{
		"<title>Log in · Example Console</title>",
		`<a class="brand brand-home brand-logo" href="/"><img src="https://cdn.example.com/brand/logo.svg" alt="" height="28">Example Console</a>`,
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("login page lacks %q", want)
		}
	}
	csp := r.header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "img-src 'self' data: https://cdn.example.com;") || !strings.Contains(csp, "script-src 'self';") {
		t.Errorf("CSP %q does not allow the logo's origin and the script", csp)
	}
	css := b.get("/.auth/assets/style.css")
	if !strings.Contains(css.body, "--primary: #7b1fa2;") || !strings.HasPrefix(css.body, "/* caddy two-factor") {
		t.Errorf("the stylesheet lacks the primary colour after the embedded rules")
	}
	// The authenticator app still shows the issuer; the pages the product.
	b.login("alice", testPassword, "/")
	if r := b.get("/.auth/security/enable"); !strings.Contains(r.body, "otpauth://totp/Test%20Cloud:alice") {
		t.Errorf("the issuer in the otpauth link changed with product_name")
	}
	file := downloadedText(t, b.enablePage())
	if !strings.HasPrefix(file, "Backup codes for alice at Example Console\n") {
		t.Errorf("backup codes file: got %q, want it to name the product", firstLine(file))
	}
}

func TestProductNameDefaultsToIssuer(t *testing.T) {
	g := newGate(t, gateOpts{})
	r := g.browser().get("/.auth/login")
	if !strings.Contains(r.body, "<title>Log in · Test Cloud</title>") || strings.Contains(r.body, "<img") {
		t.Errorf("without branding: want the issuer as the product and no logo: %.500s", r.body)
	}
	if csp := r.header.Get("Content-Security-Policy"); csp != "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'" {
		t.Errorf("CSP: got %q", csp)
	}
	js := g.browser().get("/.auth/assets/app.js")
	if js.status != 200 || js.header.Get("Content-Type") != "text/javascript; charset=utf-8" || js.header.Get("X-Content-Type-Options") != "nosniff" || !strings.Contains(js.body, "clipboard") {
		t.Errorf("app.js: got %d %q", js.status, js.header.Get("Content-Type"))
	}
}

func TestBrandingConfigErrors(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{"two_factor {\n\tprimary_color red\n}", "primary_color: want a hex colour such as \"#1d5fd1\", got 'red'"},
		{"two_factor {\n\tprimary_color #1d5fd1\n}", "(quoted: a # starts a comment)"},
		{"two_factor {\n\tprimary_color 1d5fd1 2\n}", "primary_color: want exactly one value"},
		{"two_factor {\n\tlanguages\n}", "languages: want one or more language tags"},
		{"two_factor {\n\tlanguages en\n\tlanguages ru\n}", "languages: set more than once"},
		{"two_factor {\n\tlogo_url\n}", "logo_url: want exactly one value"},
		{"two_factor {\n\tproduct_name a b\n}", "product_name: want exactly one value"},
	} {
		src := "localhost {\n" + tc.body + "\n}\n"
		_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src), map[string]any{"filename": "Caddyfile"})
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "Caddyfile:") {
			t.Errorf("%q: got %v, want an error naming the line and %q", tc.body, err, tc.want)
		}
	}
	dir := t.TempDir()
	for _, tc := range []struct{ extra, want string }{
		{"primary_color ffcc00", "primary_color #ffcc00: contrast 1.4:1"},
		{"logo_url javascript:alert(1)", "javascript:alert(1)"},
		{"product_name \"" + strings.Repeat("x", 101) + "\"", "product_name"},
		{"languages de", "is not one of the available languages [en ru]"},
		{"languages en EN", "is listed twice"},
		{"languages ru \"not a tag\"", "languages: entry 2"},
	} {
		caddytest.AssertLoadError(t, gateConfig(dir, tc.extra), "caddyfile", tc.want)
	}
}

// gateConfig is a minimal config with extra lines inside two_factor.
func gateConfig(dir, extra string) string {
	return `{
` + testGlobals + `}
localhost:9443 {
	two_factor {
		user alice ` + testHash + `
		storage_dir ` + dir + `/s
		` + extra + `
	}
}`
}

// TestTemplatesDirOverride replaces a page, the stylesheet and some words,
// and adds a language, from a templates_dir.
func TestTemplatesDirOverride(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("login.html", `{{define "content"}}<div class="card"><h1>{{.Title}}</h1><p id="custom-login">{{t "login.lead"}}</p>
<form method="post" action="{{.Prefix}}/login"><label for="u">{{t "login.username"}}</label><input id="u" name="username">
<label for="p">{{t "login.password"}}</label><input id="p" type="password" name="password"><button>{{t "login.submit"}}</button></form></div>{{end}}`)
	write("style.css", "/* operator's stylesheet */ body { font-family: serif; }\n")
	write("locales/en.json", `{"login.title": "Sign in to the console"}`)
	write("locales/de.json", `{"language.name": "Deutsch", "login.title": "Anmelden", "login.lead": "Name und Passwort eingeben."}`)
	g := newGate(t, gateOpts{extra: "templates_dir " + dir})
	b := g.browser()
	r := b.get("/.auth/login")
	for _, want := range []string{`<p id="custom-login">Enter your username and password to continue.</p>`, "<h1>Sign in to the console</h1>", `value="de" lang="de">Deutsch</button>`} {
		if !strings.Contains(r.body, want) {
			t.Errorf("overridden login page lacks %q: %.1500s", want, r.body)
		}
	}
	if r := b.get("/.auth/login", "Accept-Language", "de-DE,de"); htmlLang(r.body) != "de" || !strings.Contains(r.body, "<h1>Anmelden</h1>") ||
		!strings.Contains(r.body, "Name und Passwort eingeben.") || !strings.Contains(r.body, ">Continue</button>") {
		t.Errorf("German from templates_dir/locales/de.json, English where it has no words: %.1500s", r.body)
	}
	if css := b.get("/.auth/assets/style.css"); css.body != "/* operator's stylesheet */ body { font-family: serif; }\n" {
		t.Errorf("stylesheet: got %q, want the operator's", css.body)
	}
	// The pages not in the folder stay embedded, and the override works.
	b.login("alice", testPassword, "/")
	if r := b.get("/.auth/security"); !strings.Contains(r.body, "Enable security") {
		t.Errorf("the embedded security page is gone")
	}
}

func TestTemplatesDirMistakesStopTheLoad(t *testing.T) {
	for _, tc := range []struct{ file, body, want string }{
		{"login.html", `{{define "content"}}{{t "login.titel"}}{{end}}`, `template login.html: unknown message key`},
		{"code.html", `{{define "content"}}{{t .Title}}{{end}}`, "code.html:1"},
		{"error.html", `{{define "content"}}{{if}}{{end}}`, "template error.html"},
		{"locales/ru.json", `{"login.title": "x", "no.such": "y"}`, `catalogue ru: unknown key`},
		{"locales/en.json", `{"error.retry": "Try again in {when}."}`, "placeholders"},
	} {
		dir := t.TempDir()
		p := filepath.Join(dir, tc.file)
		_ = os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(tc.body), 0o644); err != nil {
			t.Fatal(err)
		}
		caddytest.AssertLoadError(t, gateConfig(t.TempDir(), "templates_dir "+dir), "caddyfile", tc.want)
	}
}

// TestStylesheetAndScriptAreCacheable: the assets are cacheable, pages not.
func TestStylesheetAndScriptAreCacheable(t *testing.T) {
	g := newGate(t, gateOpts{})
	client := &http.Client{Transport: caddytest.CreateTestingTransport()}
	for _, p := range []string{"/.auth/assets/style.css", "/.auth/assets/app.js"} {
		res, err := client.Get(g.base + p)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if cc := res.Header.Get("Cache-Control"); cc != "public, max-age=3600" {
			t.Errorf("%s: Cache-Control %q", p, cc)
		}
	}
}

// TestLogoBesideTheGate is docs/customizing.md's recipe for a logo on the same
// site: the logo's path is handled outside the gate, so that the login
// page can show it to someone not yet logged in.
func TestLogoBesideTheGate(t *testing.T) {
	dir := t.TempDir()
	g := &testGate{t: t, base: "https://localhost:9443"}
	g.tester = caddytest.NewTester(t)
	g.tester.InitServer(`{
`+testGlobals+`}
localhost:9443 {
	tls internal
	handle /brand/* {
		header Content-Type image/svg+xml
		respond "<svg xmlns='http://www.w3.org/2000/svg'/>"
	}
	handle {
		two_factor {
			user alice `+testHash+`
			storage_dir `+dir+`/s
			logo_url /brand/logo.svg
		}
		respond "the site"
	}
}`, "caddyfile")
	t.Cleanup(func() { unload(t) })
	g.waitReady()
	b := g.browser()
	if r := b.get("/.auth/login"); !strings.Contains(r.body, `<img src="/brand/logo.svg"`) {
		t.Errorf("the login page does not show the logo")
	}
	if r := b.get("/brand/logo.svg", "Accept", "image/*"); r.status != http.StatusOK || !strings.HasPrefix(r.body, "<svg") {
		t.Errorf("the logo without a login: got %d %q, want 200 and the image", r.status, r.body)
	}
	if r := b.get("/anything"); r.status != http.StatusFound {
		t.Errorf("the site without a login: got %d, want 302 to the login", r.status)
	}
}
