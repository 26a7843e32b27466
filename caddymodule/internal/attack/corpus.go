// Package attack holds the hostile inputs the tests of several packages
// share: request targets that try to get past the gate, redirect
// payloads, and the oracle that says where a browser would go.
package attack

import (
	"net/url"
	"strings"
)

// ForcedTargets are request targets, written as they go on the wire, that
// try to reach the site past the gate: repeated and encoded slashes, dot
// segments in every encoding, backslashes, case, path parameters, NUL,
// overlong and invalid UTF-8, query and fragment tricks, absolute and
// asterisk forms.
var ForcedTargets = []string{
	"/", "/secret", "//secret", "///secret", "/./secret", "/secret/", "/secret/.",
	"/.auth/../secret", "/.auth/..%2fsecret", "/.auth%2f..%2fsecret", "/.auth/%2e%2e/secret",
	"/.auth/%2E%2E/secret", "/.auth/.%2e/secret", "/%2e%2e/secret", "/%2e/secret",
	"/.auth/%252e%252e/secret", "/%252e%252e%252fsecret", "/.auth/..%5csecret", "/.auth/..\\secret",
	"/.auth\\..\\secret", "/%5c%5csecret", "/.auth/login/../../secret", "/.auth/login/..%2f..%2fsecret",
	"/.auth/%c0%ae%c0%ae/secret", "/%c0%afsecret", "/.auth/%ff/../secret", "/secret%00", "/secret%00.css",
	"/.auth/login%00/../../secret", "/secret;.css", "/.auth;/../secret", "/.auth/login;x/../../secret",
	"/secret;jsessionid=1", "/.AUTH/login", "/.Auth/security", "/.auth./login", "/.auth%20/login",
	"/secret?/.auth/login", "/secret?next=/.auth/login", "/secret#/.auth/login", "/secret%23/.auth/login",
	"/secret%3f/.auth/login", "/.auth/assets/../../secret", "/.auth/assets/style.css/../../../secret",
	"https://localhost:9443/secret", "https://localhost:9443//secret", "https://localhost:9443/.auth/../secret",
	"http://localhost:9443/secret", "https://evil.example/secret", "//localhost:9443/secret",
	"*", "/*", "/secret/*",
}

// RedirectPayloads try to turn `next` into a trip to another site. Our own
// list, written from the families of bypass that open-redirect advisories
// and corpora describe: scheme-relative and backslash forms, whitespace
// and control characters browsers strip, schemes, user-info and look-alike
// hosts, encodings and IP spellings.
var RedirectPayloads = []string{
	// scheme-relative and slash/backslash mixes
	"//evil.example", "///evil.example", "////evil.example", "//evil.example/", "//evil.example/%2f..",
	"/\\evil.example", "\\/evil.example", "\\\\evil.example", "/\\/evil.example", "/\\\\evil.example",
	"//\\evil.example", "\\//evil.example", "/.\\evil.example", "//evil.example\\@localhost",
	// whitespace and control characters (browsers drop tab, CR, LF anywhere)
	"/\t/evil.example", "/\n/evil.example", "/\r/evil.example", "/\r\n/evil.example", "\t//evil.example",
	" //evil.example", "/ /evil.example", "/\x00/evil.example", "/\x0b/evil.example", "/\x0c/evil.example",
	"/\x1f/evil.example", "/\x7f/evil.example", "//evil.example\x00.localhost", "/\t\\evil.example",
	// schemes
	"https://evil.example", "http://evil.example", "HTTPS://evil.example", "hTTp://evil.example",
	"http:evil.example", "https:evil.example", "http:/evil.example", "https:/\\evil.example",
	"http:\\\\evil.example", "javascript:alert(1)", "JaVaScRiPt:alert(1)", "java\tscript:alert(1)",
	"javascript://%0aalert(1)", "data:text/html,<script>alert(1)</script>", "vbscript:msgbox(1)",
	"ftp://evil.example", "//javascript:alert(1)",
	// user-info and look-alike hosts
	"//evil.example@localhost", "https://localhost:9443@evil.example", "//localhost:9443@evil.example",
	"@evil.example", "evil.example", ".evil.example", "//evil%2eexample", "//evil\u3002example",
	"//evil\uff0eexample", "//\uff45\uff56\uff49\uff4c.example", "https://localhost:9443.evil.example/",
	"//evil.example%23.localhost", "//evil.example?.localhost", "//localhost.evil.example",
	// IP spellings
	"//127.0.0.1", "//0x7f.1", "//2130706433", "//[::1]", "//0177.0.0.1", "http://[::ffff:7f00:1]",
	// encodings that must not be decoded into a host
	"%2F%2Fevil.example", "%2f%5cevil.example", "/%2F/evil.example", "/%5C/evil.example", "/%09/evil.example",
	"//%65vil.example", "\u2215\u2215evil.example", "\uff0f\uff0fevil.example",
	// header injection
	"/\r\nSet-Cookie: planted=1", "/x\r\nLocation: //evil.example", "/%0d%0aSet-Cookie:planted=1",
	// too long
	"/" + strings.Repeat("a", 3000),
}

// OnThisSite reports whether a browser at https://localhost:9443/ that
// follows Location loc stays on this site. It reads loc the way the URL
// standard does: leading and trailing C0 controls and spaces trimmed, tab
// and newlines dropped everywhere, backslash taken for slash.
func OnThisSite(loc string) bool {
	loc = strings.TrimFunc(loc, func(r rune) bool { return r <= ' ' })
	loc = strings.NewReplacer("\t", "", "\n", "", "\r", "", "\\", "/").Replace(loc)
	base, _ := url.Parse("https://localhost:9443/")
	u, err := url.Parse(loc)
	if err != nil {
		return false
	}
	abs := base.ResolveReference(u)
	return abs.Scheme == "https" && abs.Host == "localhost:9443" && strings.HasPrefix(loc, "/") && !strings.HasPrefix(loc, "//")
}

// FuzzPaths are paths of the gate and the site, as fuzz seeds.
var FuzzPaths = []string{
	"/.auth/login", "/.auth/code", "/.auth/security", "/.auth/security/enable", "/.auth/security/disable",
	"/.auth/security/backup-codes", "/.auth/me", "/.auth/", "/app", "/.auth/assets/style.css",
}
