package caddymodule

import (
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// oathtool computes a TOTP code with oathtool (Debian package oathtool), an
// implementation independent of ours and of pquerna/otp.
func oathtool(t *testing.T, base32Key string, at time.Time) string {
	t.Helper()
	out, err := exec.Command("oathtool", "--totp", "--base32", "--now", "@"+strconv.FormatInt(at.Unix(), 10), base32Key).Output()
	if err != nil {
		t.Fatalf("oathtool: %v", err)
	}
	return strings.TrimSpace(string(out))
}

var manualKeyRe = regexp.MustCompile(`<code class="secret">([A-Z2-7 ]+)</code>`)

// TestManualKeyWithOathtool enrols the way a person without a camera does:
// reads the key for manual entry off the page and types codes an
// independent TOTP implementation computes from it.
func TestManualKeyWithOathtool(t *testing.T) {
	if _, err := exec.LookPath("oathtool"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("oathtool is missing; CI must install it (apt-get install -y oathtool)")
		}
		t.Skip("oathtool is not installed; run: apt-get install -y oathtool")
	}
	g := newGate(t, gateOpts{})
	b := g.browser()
	b.login("alice", testPassword, "/")
	r := b.get("/.auth/security/enable")
	m := manualKeyRe.FindStringSubmatch(r.body)
	if m == nil {
		t.Fatalf("enable page shows no key for manual entry")
	}
	key := strings.ReplaceAll(m[1], " ", "")
	if len(key) != 32 {
		t.Errorf("manual key %q: got %d Base32 characters, want 32 (a 20-byte secret)", key, len(key))
	}
	r = b.postSeeOther("/.auth/security/enable", url.Values{"code": {oathtool(t, key, testNow())}, "password": {testPassword}}, codesPage)
	if r.status != http.StatusOK || len(backupCodesOn(t, r.body)) != 10 {
		t.Fatalf("enable with an oathtool code: got %d", r.status)
	}
	nextStep()
	s := g.browser()
	s.login("alice", testPassword, "/.auth/code")
	if r := s.post("/.auth/code", url.Values{"code": {oathtool(t, key, testNow())}}); r.status != http.StatusSeeOther {
		t.Fatalf("login with an oathtool code: got %d, want 303", r.status)
	}
}
