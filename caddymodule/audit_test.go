package caddymodule

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/audit"
)

// auditLog is the global option that writes the audit events to a file,
// as docs/operations.md tells operators to.
func auditLog(file string) string {
	return fmt.Sprintf(`log two_factor_audit {
		output file %s
		format json {
			time_format iso8601
		}
		include http.handlers.two_factor.audit
	}`, file)
}

// auditEvents reads the audit log: one JSON object per line.
func auditEvents(t *testing.T, file string) (lines []string, events []map[string]any) {
	t.Helper()
	// The file is written as the events happen; give the writer a moment
	// for the last line (bounded).
	var data []byte
	for range 50 {
		var err error
		if data, err = os.ReadFile(file); err == nil && len(data) > 0 && data[len(data)-1] == '\n' {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("audit log line is not one JSON object: %v: %s", err, sc.Text())
		}
		lines = append(lines, sc.Text())
		events = append(events, m)
	}
	return lines, events
}

// find returns the events of that name whose fields include want.
func find(events []map[string]any, name string, want map[string]any) []map[string]any {
	var out []map[string]any
	for _, e := range events {
		if e["event"] != name {
			continue
		}
		ok := true
		for k, v := range want {
			if fmt.Sprint(e[k]) != fmt.Sprint(v) {
				ok = false
			}
		}
		if ok {
			out = append(out, e)
		}
	}
	return out
}

// metricsText reads Caddy's /metrics on the admin endpoint.
func metricsText(t *testing.T) string {
	t.Helper()
	res, err := http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d %s", res.StatusCode, body)
	}
	return string(body)
}

// scrape reads Caddy's metrics from the admin endpoint: series → value.
func scrape(t *testing.T) map[string]float64 {
	t.Helper()
	m := map[string]float64{}
	for _, line := range strings.Split(metricsText(t), "\n") {
		if !strings.HasPrefix(line, "caddy_two_factor_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		m[line[:i]] = v
	}
	return m
}

// delta checks how much each series grew between two scrapes.
func delta(t *testing.T, before, after map[string]float64, want map[string]float64) {
	t.Helper()
	for series, w := range want {
		if _, ok := after[series]; !ok {
			t.Errorf("metric %s missing; have %v", series, after)
			continue
		}
		if got := after[series] - before[series]; got != w {
			t.Errorf("metric %s grew by %v, want %v", series, got, w)
		}
	}
}

func TestAuditEventsAndMetrics(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "audit.log")
	g := newGate(t, gateOpts{global: auditLog(logFile), extra: cheapArgon2})
	before := scrape(t)
	if v, ok := before["caddy_two_factor_enrolled_users"]; !ok || v != 0 {
		t.Fatalf("enrolled users on a new store: got %v (present: %v), want 0", v, ok)
	}

	// Password step: unknown user, wrong password, right password.
	anon := g.browser()
	anon.post("/.auth/login", url.Values{"username": {"nobody"}, "password": {"hunter2hunter2"}})
	anon.post("/.auth/login", url.Values{"username": {"alice"}, "password": {"wrong password"}})
	b := g.browser()
	b.login("alice", testPassword, "/")
	e := b.enable()
	if got := scrape(t)["caddy_two_factor_enrolled_users"]; got != 1 {
		t.Errorf("enrolled users after enabling: got %v, want 1", got)
	}

	// Code step: a wrong code, then a right one.
	b = g.browser()
	b.login("alice", testPassword, "/.auth/code")
	b.post("/.auth/code", url.Values{"code": {"000000"}})
	nextStep()
	if r := b.post("/.auth/code", url.Values{"code": {totpCode(t, e.secret, testNow())}}); r.status != http.StatusSeeOther {
		t.Fatalf("right code: got %d", r.status)
	}
	// A backup code at login.
	b2 := g.browser()
	b2.login("alice", testPassword, "/.auth/code")
	if r := b2.post("/.auth/code", url.Values{"code": {e.codes[0]}}); r.status != http.StatusSeeOther {
		t.Fatalf("backup code: got %d", r.status)
	}
	// New backup codes, then turn it off.
	nextStep()
	if r := b.postSeeOther("/.auth/security/backup-codes", url.Values{"password": {testPassword}, "code": {totpCode(t, e.secret, testNow())}}, codesPage); r.status != http.StatusOK {
		t.Fatalf("new backup codes: got %d", r.status)
	}
	nextStep()
	if r := b.postSeeOther("/.auth/security/disable", url.Values{"password": {testPassword}, "code": {totpCode(t, e.secret, testNow())}}, securityPage); r.status != http.StatusOK {
		t.Fatalf("disable: got %d", r.status)
	}
	if got := scrape(t)["caddy_two_factor_enrolled_users"]; got != 0 {
		t.Errorf("enrolled users after disabling: got %v, want 0", got)
	}
	// Throttled.
	for range 6 {
		anon.post("/.auth/login", url.Values{"username": {"bob"}, "password": {"wrong"}})
	}
	if r := anon.post("/.auth/login", url.Values{"username": {"bob"}, "password": {testPassword}}); r.status != http.StatusTooManyRequests {
		t.Fatalf("throttled login: got %d", r.status)
	}
	// The operator's commands.
	g.cli("a fine password\n", "user", "add", "carol")
	g.cli("another password\n", "user", "passwd", "carol")
	g.cli("", "sessions", "revoke", "alice")
	g.cli("", "reset", "alice")
	g.cli("", "unthrottle", "bob")
	g.cli("", "backup", filepath.Join(t.TempDir(), "b"))
	g.cli("", "user", "delete", "carol")

	after := scrape(t)
	delta(t, before, after, map[string]float64{
		`caddy_two_factor_logins_total{outcome="failed"}`:              8,
		`caddy_two_factor_logins_total{outcome="ok"}`:                  3,
		`caddy_two_factor_codes_total{method="totp",outcome="ok"}`:     4,
		`caddy_two_factor_codes_total{method="totp",outcome="failed"}`: 1,
		`caddy_two_factor_codes_total{method="backup",outcome="ok"}`:   1,
		`caddy_two_factor_backup_codes_used_total`:                     1,
		`caddy_two_factor_throttled_total{factor="password"}`:          1,
	})

	lines, events := auditEvents(t, logFile)
	const ip = "127.0.0.1"
	for _, c := range []struct {
		event string
		want  map[string]any
		n     int
	}{
		{audit.EvLoginFailed, map[string]any{"client_ip": ip, "reason": "unknown_user", "step": "login"}, 1},
		{audit.EvLoginFailed, map[string]any{"client_ip": ip, "reason": "wrong_password", "user": "alice"}, 1},
		{audit.EvLoginFailed, map[string]any{"client_ip": ip, "reason": "wrong_password", "user": "Bob"}, 6},
		{audit.EvLoginOK, map[string]any{"client_ip": ip, "user": "alice", "code_required": false}, 1},
		{audit.EvLoginOK, map[string]any{"client_ip": ip, "user": "alice", "code_required": true}, 2},
		{audit.EvCodeOK, map[string]any{"client_ip": ip, "user": "alice", "step": "enable", "method": "totp"}, 1},
		{audit.EvCodeOK, map[string]any{"client_ip": ip, "user": "alice", "step": "code", "method": "totp"}, 1},
		{audit.EvCodeFailed, map[string]any{"client_ip": ip, "user": "alice", "step": "code"}, 1},
		{audit.EvBackupCodeUsed, map[string]any{"client_ip": ip, "user": "alice", "backup_codes_left": 9}, 1},
		{audit.EvEnabled, map[string]any{"client_ip": ip, "user": "alice"}, 1},
		{audit.EvCodesRegenerated, map[string]any{"client_ip": ip, "user": "alice", "backup_codes": 10}, 1},
		{audit.EvDisabled, map[string]any{"client_ip": ip, "user": "alice"}, 1},
		{audit.EvThrottled, map[string]any{"client_ip": ip, "factor": "password"}, 1},
		{audit.EvUserAdded, map[string]any{"user": "carol", "by": "admin_api"}, 1},
		{audit.EvPasswordChanged, map[string]any{"user": "carol", "by": "admin_api"}, 1},
		{audit.EvSessionsRevoked, map[string]any{"user": "alice"}, 1},
		{audit.EvReset, map[string]any{"user": "alice", "two_factor_was_on": false}, 1},
		{audit.EvThrottleCleared, map[string]any{"user": "Bob", "failures_cleared": 6}, 1},
		{audit.EvBackedUp, map[string]any{"by": "admin_api"}, 1},
		{audit.EvUserDeleted, map[string]any{"user": "carol"}, 1},
	} {
		if got := find(events, c.event, c.want); len(got) != c.n {
			t.Errorf("audit log: %d events %s with %v, want %d", len(got), c.event, c.want, c.n)
		}
	}
	for _, e := range find(events, audit.EvLoginFailed, map[string]any{"reason": "unknown_user"}) {
		if _, has := e["user"]; has {
			t.Errorf("a failed login of an unknown name logs the name typed: %v", e)
		}
	}
	raw := strings.Join(lines, "\n")
	for _, e := range events {
		if e["logger"] != "http.handlers.two_factor.audit" {
			t.Errorf("event from logger %v, want http.handlers.two_factor.audit", e["logger"])
		}
	}
	// The event and the client address come first, in that order, where a
	// log filter finds them (see docs/fail2ban).
	if !strings.Contains(raw, `"event":"login.failed","client_ip":"127.0.0.1"`) {
		t.Errorf("login.failed lines do not start their fields with event then client_ip:\n%s", raw)
	}
	for _, secret := range append([]string{e.secret, testPassword, testHash, "hunter2hunter2", "wrong password", "a fine password", "another password", b.cookie(), b2.cookie()}, e.codes...) {
		if secret != "" && strings.Contains(raw, secret) {
			t.Errorf("the audit log holds a secret (%.6s...)", secret)
		}
	}
}
