package caddymodule

import (
	"context"
	"net/http"
	"testing"

	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/ui"
)

// virtualAuthenticator gives the tab a DevTools virtual authenticator: a
// CTAP2 platform authenticator with resident keys (passkeys) and user
// verification, whose user is always present and verified.
func (tb *tab) virtualAuthenticator() webauthn.AuthenticatorID {
	tb.t.Helper()
	send(tb, "WebAuthn.enable", webauthn.Enable, webauthn.EnableParams{EnableUI: ptrTo(false)})
	ctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
	defer cancel()
	res, err := chromedp.Call(ctx, webauthn.AddVirtualAuthenticator, webauthn.AddVirtualAuthenticatorParams{
		Options: &webauthn.VirtualAuthenticatorOptions{
			Protocol: webauthn.AuthenticatorProtocolCtap2, Ctap2version: webauthn.Ctap2versionCtap21,
			Transport: webauthn.AuthenticatorTransportInternal, HasResidentKey: true,
			HasUserVerification: true, IsUserVerified: true, AutomaticPresenceSimulation: true,
		},
	})
	if err != nil {
		tb.t.Fatalf("adding a virtual authenticator: %v", err)
	}
	return res.AuthenticatorID
}

// credentials are what the virtual authenticator holds.
func (tb *tab) credentials(id webauthn.AuthenticatorID) []*webauthn.Credential {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
	defer cancel()
	res, err := chromedp.Call(ctx, webauthn.GetCredentials, webauthn.GetCredentialsParams{AuthenticatorID: id})
	if err != nil {
		tb.t.Fatalf("reading the virtual authenticator: %v", err)
	}
	return res.Credentials
}

// TestBrowserSecurityKeys walks security keys in Chromium with a virtual
// authenticator, in English and in Russian: add a passkey on the Security
// page (2FA comes on, backup codes shown), log out, log in with it
// ("Use your security key" at the code step), remove it confirming with the
// key itself; axe-core on each page and screenshots (keys-<lang>-*.png).
func TestBrowserSecurityKeys(t *testing.T) {
	g := newGate(t, gateOpts{})
	for _, tc := range []struct{ lang, accept, user string }{
		{"en", "en-US,en", "alice"},
		{"ru", "ru-RU,ru", "Bob"},
	} {
		t.Run(tc.lang, func(t *testing.T) {
			loc, err := ui.Embedded(tc.lang)
			if err != nil {
				t.Fatal(err)
			}
			T := loc.T
			tb := newTab(t, g, tabOptions{run: "keys-" + tc.lang, acceptLanguage: tc.accept})
			tb.loc, tb.product = loc, "Test Cloud"
			auth := tb.virtualAuthenticator()
			login := func() {
				tb.open("/.auth/login")
				tb.navigating("password", tb.keys("#username", tc.user), tb.keys("#password", testPassword+"\r"))
			}

			// Add a passkey: 2FA is off, so the password is enough.
			login()
			tb.want("logged in", tb.location(), g.base+"/")
			tb.open("/.auth/security")
			tb.want("the add form is shown", eval[string](tb, `String(document.getElementById('key-add').hidden)`), "false")
			tb.want("no JavaScript note hidden", eval[string](tb, `String(document.querySelector('[data-key-nojs]').hidden)`), "true")
			tb.page("security-no-keys", T("security.title"))
			tb.do("name the key", tb.keys("#key-name", "Laptop passkey"), tb.keys("#key-password", testPassword))
			tb.navigating("add the key", tb.click(`#key-add button[type=submit]`))
			tb.want("backup codes after the first key", tb.location(), g.base+codesPage)
			tb.want("notice", tb.text(".message-success"), T("notice.key_added_first"))
			if n := len(tb.credentials(auth)); n != 1 {
				t.Fatalf("the virtual authenticator holds %d credentials, want 1", n)
			}
			if c := tb.credentials(auth)[0]; !c.IsResidentCredential || c.RpID != "localhost" {
				t.Errorf("credential: resident %v, RP ID %q", c.IsResidentCredential, c.RpID)
			}
			tb.do("saved", tb.click("#saved"))
			tb.navigating("continue", tb.click(`form.confirm-saved button`))
			tb.want("the key listed", tb.text(".key-item .key-name"), "Laptop passkey")
			tb.want("2FA on", tb.text(".badge-on"), T("security.badge_on"))
			tb.do("open rename and remove", chromedp.Evaluate[chromedp.Void](`document.querySelectorAll('.key-item details').forEach(d => d.open = true)`))
			tb.page("security-key", T("security.title"))

			// Log out, log in with the key.
			tb.navigating("log out", tb.click(`form[action$="/logout"] button`))
			login()
			tb.want("code step", tb.location(), g.base+"/.auth/code")
			tb.want("the key offered", tb.text(".key-login button"), T("code.key_button"))
			tb.page("code-key", T("code.heading"))
			tb.navigating("use the key", tb.click(".key-login button"))
			tb.want("logged in with the key", tb.location(), g.base+"/")

			// Remove it, confirming with the key.
			tb.open("/.auth/security")
			tb.want("last used", eval[string](tb, `String(!!document.querySelector('.key-item .activity-meta time + * , .key-item .activity-meta time ~ time'))`), "true")
			tb.do("open remove", chromedp.Evaluate[chromedp.Void](`document.querySelectorAll('.key-item details')[1].open = true`))
			tb.do("password", tb.keys(`.key-item form[action$="/keys/remove"] input[name=password]`, testPassword))
			tb.navigating("remove with the key", tb.click(`.key-item .key-confirm button`))
			tb.want("back on Security", tb.location(), g.base+"/.auth/security")
			tb.want("notice", tb.text(".message-success"), T("notice.disabled"))
			if n := eval[int](tb, `document.querySelectorAll('.key-item').length`); n != 0 {
				t.Errorf("%d keys listed after removing the only one", n)
			}
			tb.want("2FA off", tb.text(".badge-off"), T("security.badge_off"))
			tb.page("security-key-removed", T("security.title"))
		})
	}

	// With JavaScript off, a user with a key (and no app) logs in with a
	// backup code; the key's button and the add form stay hidden.
	t.Run("no-script", func(t *testing.T) {
		loc, err := ui.Embedded("en")
		if err != nil {
			t.Fatal(err)
		}
		T := loc.T
		b := g.browser()
		b.t = t
		b.login("alice", testPassword, "/")
		jsonOf[keyAnswer](t, b.addKey(newSoftKey(t, -7), "Soft key", nil), http.StatusOK)
		codes := backupCodesOn(t, b.get(codesPage).body)
		tb := newTab(t, g, tabOptions{run: "keys-noscript", acceptLanguage: "en-US,en", noScript: true})
		tb.loc, tb.product = loc, "Test Cloud"
		tb.open("/.auth/login")
		tb.navigating("password", tb.keys("#username", "alice"), tb.keys("#password", testPassword+"\r"))
		tb.want("code step", tb.location(), g.base+"/.auth/code")
		tb.want("the key button hidden", eval[string](tb, `String(document.querySelector('.key-login').hidden)`), "true")
		tb.want("the backup code open", eval[string](tb, `String(document.querySelector('details.disclosure').open)`), "true")
		tb.page("code-key-noscript", T("code.heading"))
		tb.navigating("backup code", tb.keys("#backup-code", codes[0]+"\r"))
		tb.want("logged in with a backup code", tb.location(), g.base+"/")
		tb.open("/.auth/security")
		tb.want("add form hidden", eval[string](tb, `String(document.getElementById('key-add').hidden)`), "true")
		tb.want("the note", tb.text("[data-key-nojs]"), T("keys.needs_js"))
		tb.page("security-key-noscript", T("security.title"))
	})
}
