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

// TestCodeJustUsedOnSecurityForms: the code a user has just logged in with,
// typed again within its time step on a Security form with the right
// password, is refused with "already used, wait for the next one" (in the
// page's language) instead of the generic failure; a wrong password or a
// wrong code still gets the generic failure, and the next code works.
func TestCodeJustUsedOnSecurityForms(t *testing.T) {
	const usedEN = "This code was already used. Wait for the next code"
	const usedRU = "Этот код уже использован."
	const generic = "The details you entered are not correct."
	g := newGate(t, gateOpts{extra: "free_failures 20"})
	enrolled := g.enrolAlice()
	s := g.browser()
	s.login("alice", testPassword, "/.auth/code")
	used := totpCode(t, enrolled.secret, testNow())
	if r := s.post("/.auth/code", url.Values{"code": {used}}); r.status != http.StatusSeeOther {
		t.Fatalf("logging in with the code: got %d, want 303", r.status)
	}
	for _, path := range []string{"/.auth/security/disable", "/.auth/security/backup-codes"} {
		r := s.post(path, url.Values{"password": {testPassword}, "code": {used}})
		if r.status != http.StatusUnauthorized || !strings.Contains(r.body, usedEN) || strings.Contains(r.body, generic) {
			t.Errorf("%s with the code just used: got %d, want 401 saying it was already used: %.400s", path, r.status, r.body)
		}
		r = s.post(path, url.Values{"password": {testPassword}, "code": {used}}, "Accept-Language", "ru")
		if r.status != http.StatusUnauthorized || !strings.Contains(r.body, usedRU) {
			t.Errorf("%s with the code just used, in Russian: got %d, want 401 saying it was already used: %.400s", path, r.status, r.body)
		}
		// Nothing more is told without the right password, or for a wrong code.
		r = s.post(path, url.Values{"password": {"wrong"}, "code": {used}})
		if r.status != http.StatusUnauthorized || !strings.Contains(r.body, generic) || strings.Contains(r.body, usedEN) {
			t.Errorf("%s with a wrong password and the used code: got %d, want 401 with the generic failure: %.400s", path, r.status, r.body)
		}
		wrong := "000000"
		if wrong == used {
			wrong = "000001"
		}
		r = s.post(path, url.Values{"password": {testPassword}, "code": {wrong}})
		if r.status != http.StatusUnauthorized || !strings.Contains(r.body, generic) || strings.Contains(r.body, usedEN) {
			t.Errorf("%s with a wrong code: got %d, want 401 with the generic failure: %.400s", path, r.status, r.body)
		}
	}
	// The next code turns 2FA off.
	nextStep()
	r := s.post("/.auth/security/disable", url.Values{"password": {testPassword}, "code": {totpCode(t, enrolled.secret, testNow())}})
	if r.status != http.StatusOK && r.status != http.StatusSeeOther {
		t.Fatalf("disable with the next code: got %d: %.300s", r.status, r.body)
	}
	if st := g.statusOf("alice"); st.TwoFactor {
		t.Errorf("2FA still on after disabling with the next code")
	}
}
