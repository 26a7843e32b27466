package caddymodule

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
)

// TestBackupCodesLeftWarning: the Security page counts the backup codes
// left and warns from two down, in the page's language.
func TestBackupCodesLeftWarning(t *testing.T) {
	g := newGate(t, gateOpts{})
	b := g.browser()
	b.login("alice", testPassword, "/")
	enrolled := b.enable()
	low, none := catalogueText(t, "en", "security.codes_low"), catalogueText(t, "en", "security.codes_none")
	for used, c := range enrolled.codes {
		left := len(enrolled.codes) - used
		r := b.get("/.auth/security")
		if !strings.Contains(r.body, "Backup codes left: <strong>"+strconv.Itoa(left)+"</strong>") {
			t.Errorf("%d left: the page does not say so", left)
		}
		if got, want := strings.Contains(r.body, low), left <= 2 && left > 0; got != want {
			t.Errorf("%d left: running-out warning shown %v, want %v", left, got, want)
		}
		if strings.Contains(r.body, none) {
			t.Errorf("%d left: the page says none are left", left)
		}
		s := g.browser()
		s.login("alice", testPassword, "/.auth/code")
		if r := s.post("/.auth/code", url.Values{"code": {c}}); r.status != http.StatusSeeOther {
			t.Fatalf("backup code %d: got %d", used, r.status)
		}
	}
	r := b.get("/.auth/security", "Accept-Language", "ru")
	if !strings.Contains(r.body, "Осталось резервных кодов: <strong>0</strong>") || !strings.Contains(r.body, catalogueText(t, "ru", "security.codes_none")) {
		t.Errorf("no codes left, in Russian: the page does not warn: %.2000s", r.body)
	}
}
