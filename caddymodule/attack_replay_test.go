package caddymodule

import (
	"net/http"
	"sync"
	"testing"
)

// submission is one form post in a concurrent race.
type submission struct {
	b    *browser
	path string
	form []string
}

// race posts every submission at once and returns how many were accepted:
// a redirect onwards from the code page, or a settings form's redirect to
// its result (POST-redirect-GET): the new backup codes, or, for turning
// off, Security with the session's new cookie (a form that finds 2FA
// already off is also sent to Security, with no new cookie). statuses
// reports a turn-off accepted as 200.
func race(t *testing.T, subs []submission) (wins int, statuses []int, bodies []string) {
	t.Helper()
	statuses = make([]int, len(subs))
	bodies = make([]string, len(subs))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, s := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			r := s.b.post(s.path, formOf(s.form...))
			statuses[i], bodies[i] = r.status, r.body
			loc := r.header.Get("Location")
			switch {
			case s.path == "/.auth/code" && r.status == http.StatusSeeOther && loc == "/.auth/login":
				// Two-factor authentication was turned off meanwhile (by
				// the racing "turn off"): the login starts over, no code
				// was checked. Not an acceptance.
				statuses[i] = http.StatusResetContent
			case s.path == "/.auth/security/backup-codes" && r.status == http.StatusSeeOther && loc == codesPage,
				s.path == "/.auth/security/disable" && r.status == http.StatusSeeOther && loc == securityPage && r.header.Get("Set-Cookie") != "":
				statuses[i] = http.StatusOK
				if loc == codesPage {
					bodies[i] = s.b.get(codesPage).body
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	for i, s := range subs {
		switch {
		case s.path == "/.auth/code" && statuses[i] == http.StatusSeeOther:
			wins++
		case s.path != "/.auth/code" && statuses[i] == http.StatusOK:
			wins++
		}
	}
	return wins, statuses, bodies
}

// fullSessions logs alice in n times with both factors, each with the
// code of a new time step.
func fullSessions(t *testing.T, g *testGate, secret string, n int) []*browser {
	t.Helper()
	out := make([]*browser, n)
	for i := range out {
		nextStep()
		b := g.browser()
		b.login("alice", testPassword, "/.auth/code")
		if r := b.post("/.auth/code", formOf("code", totpCode(t, secret, testNow()))); r.status != http.StatusSeeOther {
			t.Fatalf("login %d: got %d", i, r.status)
		}
		out[i] = b
	}
	return out
}

// TestConcurrentReplayOnSettingsForms: one TOTP code, or one backup code,
// sent at once from many sessions to the forms that take a code (new
// backup codes, turn off, and the login's code page, mixed) is accepted
// exactly once.
func TestConcurrentReplayOnSettingsForms(t *testing.T) {
	g := newGate(t, gateOpts{extra: "free_failures 50"})
	owner := g.browser()
	owner.login("alice", testPassword, "/")
	enr := owner.enable()
	const n = 8
	sessions := fullSessions(t, g, enr.secret, n)
	pw := testPassword

	// One TOTP code to "new backup codes" from n sessions.
	nextStep()
	code := totpCode(t, enr.secret, testNow())
	var subs []submission
	for _, b := range sessions {
		subs = append(subs, submission{b, "/.auth/security/backup-codes", []string{"password", pw, "code", code}})
	}
	wins, statuses, bodies := race(t, subs)
	if wins != 1 {
		t.Fatalf("one TOTP code to new backup codes from %d sessions: %d accepted (%v), want 1", n, wins, statuses)
	}
	var fresh []string
	for i, s := range statuses {
		if s == http.StatusOK {
			fresh = backupCodesOn(t, bodies[i])
		}
	}
	if len(fresh) != 10 {
		t.Fatalf("the winner's page shows %d codes", len(fresh))
	}

	// One backup code to "new backup codes" from n sessions.
	subs = subs[:0]
	for _, b := range sessions {
		subs = append(subs, submission{b, "/.auth/security/backup-codes", []string{"password", pw, "code", fresh[0]}})
	}
	if wins, statuses, _ := race(t, subs); wins != 1 {
		t.Fatalf("one backup code to new backup codes from %d sessions: %d accepted (%v), want 1", n, wins, statuses)
	}

	// One TOTP code to the code page, to "new backup codes" and to "turn
	// off", all at once.
	nextStep()
	code = totpCode(t, enr.secret, testNow())
	subs = subs[:0]
	for i := range 4 {
		p := g.browser()
		p.login("alice", testPassword, "/.auth/code")
		subs = append(subs, submission{p, "/.auth/code", []string{"code", code}},
			submission{sessions[i], "/.auth/security/backup-codes", []string{"password", pw, "code", code}})
	}
	subs = append(subs, submission{sessions[4], "/.auth/security/disable", []string{"password", pw, "code", code}})
	wins, statuses, bodies = race(t, subs)
	if wins != 1 {
		t.Fatalf("one TOTP code to three forms from %d sessions: %d accepted (%v), want 1", len(subs), wins, statuses)
	}
	disabled := statuses[len(statuses)-1] == http.StatusOK

	// One TOTP code to "turn off" from n sessions.
	if !disabled {
		alive := fullSessions(t, g, enr.secret, n)
		nextStep()
		code = totpCode(t, enr.secret, testNow())
		subs = subs[:0]
		for _, b := range alive {
			subs = append(subs, submission{b, "/.auth/security/disable", []string{"password", pw, "code", code}})
		}
		if wins, statuses, _ := race(t, subs); wins != 1 {
			t.Fatalf("one TOTP code to turn off from %d sessions: %d accepted (%v), want 1", n, wins, statuses)
		}
	}
	// Turned off exactly once: the password alone logs in now.
	g.browser().login("alice", testPassword, "/")
}
