package caddymodule

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/audit"
)

// fail2banFilter is the filter shipped in the docs.
var fail2banFilter, _ = filepath.Abs("../docs/fail2ban/filter.d/caddy-two-factor.conf")

// TestFail2banFilter runs fail2ban's own fail2ban-regex with the shipped
// filter over an audit log written by a real Caddy: every failure event,
// and nothing else, matches, with the client's address; a user name made
// to look like another address does not move the ban.
func TestFail2banFilter(t *testing.T) {
	tool, err := exec.LookPath("fail2ban-regex")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("fail2ban-regex is missing; .ci/run installs it (apt-get install fail2ban)")
		}
		t.Skip("fail2ban-regex is missing; install it with: apt-get install fail2ban")
	}
	logFile := filepath.Join(t.TempDir(), "audit.log")
	g := newGate(t, gateOpts{global: auditLog(logFile), extra: cheapArgon2})
	const evil = `x","client_ip":"6.6.6.6","event":"login.failed`
	g.cli("a fine password\n", "user", "add", evil)

	b := g.browser()
	b.post("/.auth/login", url.Values{"username": {"nobody"}, "password": {"wrong"}})
	b.post("/.auth/login", url.Values{"username": {evil}, "password": {"wrong"}})
	b.login(evil, "a fine password", "/")
	b.login("alice", testPassword, "/")
	b.enable()
	b.post("/.auth/logout", nil)
	b.login("alice", testPassword, "/.auth/code")
	b.post("/.auth/code", url.Values{"code": {"000000"}})
	b.post("/.auth/code", url.Values{"code": {"aaaaa-bbbbb"}})
	for range 6 {
		b.post("/.auth/login", url.Values{"username": {"Bob"}, "password": {"wrong"}})
	}
	if r := b.post("/.auth/login", url.Values{"username": {"Bob"}, "password": {"wrong"}}); r.status != http.StatusTooManyRequests {
		t.Fatalf("throttled attempt: got %d, want 429", r.status)
	}

	lines, events := auditEvents(t, logFile)
	failures := 0
	for _, e := range events {
		switch e["event"] {
		case audit.EvLoginFailed, audit.EvCodeFailed, audit.EvThrottled:
			failures++
		}
	}
	if failures != 11 {
		t.Fatalf("the log has %d failure events, want 11 (2 logins, 2 codes, 6 of Bob, 1 throttled):\n%s", failures, strings.Join(lines, "\n"))
	}
	out, err := exec.Command(tool, "-o", "ip", logFile, fail2banFilter).CombinedOutput()
	if err != nil {
		t.Fatalf("fail2ban-regex: %v\n%s", err, out)
	}
	ips := strings.Fields(string(out))
	if len(ips) != failures {
		t.Errorf("fail2ban-regex matched %d lines, want the %d failure events; got %q\nlog:\n%s", len(ips), failures, out, strings.Join(lines, "\n"))
	}
	for _, ip := range ips {
		if ip != "127.0.0.1" {
			t.Errorf("fail2ban-regex found the address %q, want only the client's 127.0.0.1", ip)
		}
	}
	// The summary agrees: no line ignored, the others missed.
	out, err = exec.Command(tool, logFile, fail2banFilter).CombinedOutput()
	if err != nil {
		t.Fatalf("fail2ban-regex: %v\n%s", err, out)
	}
	want := fmt.Sprintf("Lines: %d lines, 0 ignored, %d matched, %d missed", len(lines), failures, len(lines)-failures)
	if !strings.Contains(string(out), want) {
		t.Errorf("fail2ban-regex summary lacks %q:\n%s", want, out)
	}
}
