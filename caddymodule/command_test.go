package caddymodule

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/ops"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

// adminAddr is the test Caddy's admin endpoint.
const adminAddr = "localhost:2999"

// cliResult is what one run of `caddy two-factor ...` gave.
type cliResult struct {
	code        int    // exit status, as caddy's main would exit
	out, errOut string // standard output and error
	err         string // the error message Caddy would log
}

// runCLI runs `caddy two-factor args...` in this process through the
// command registered with Caddy, with stdin as standard input.
func runCLI(t *testing.T, stdin string, args ...string) cliResult {
	t.Helper()
	def, ok := caddycmd.Commands()["two-factor"]
	if !ok {
		t.Fatal("the two-factor command is not registered")
	}
	root := &cobra.Command{Use: "two-factor", SilenceUsage: true}
	def.CobraFunc(root)
	var out, errOut bytes.Buffer
	root.SetArgs(args)
	root.SetIn(strings.NewReader(stdin))
	root.SetOut(&out)
	root.SetErr(&errOut)
	err := root.Execute()
	res := cliResult{out: out.String(), errOut: errOut.String()}
	if err != nil {
		// caddy's main exits 1 for an error without its own status, and
		// the subcommands have none other.
		res.code, res.err = 1, err.Error()
	}
	return res
}

// cli runs a command against the test Caddy and fails the test unless it
// succeeds.
func (g *testGate) cli(stdin string, args ...string) cliResult {
	g.t.Helper()
	r := runCLI(g.t, stdin, append(args, "--address", adminAddr)...)
	if r.code != 0 {
		g.t.Fatalf("caddy two-factor %s: exit %d: %s", strings.Join(args, " "), r.code, r.err)
	}
	return r
}

// cliFails runs a command against the test Caddy and fails the test unless
// it exits 1 with an error containing want.
func (g *testGate) cliFails(want, stdin string, args ...string) cliResult {
	g.t.Helper()
	r := runCLI(g.t, stdin, append(args, "--address", adminAddr)...)
	if r.code != 1 || !strings.Contains(r.err, want) {
		g.t.Fatalf("caddy two-factor %s: got exit %d error %q, want exit 1 with %q", strings.Join(args, " "), r.code, r.err, want)
	}
	return r
}

// statusOf is `caddy two-factor status --json` of a user.
func (g *testGate) statusOf(user string) ops.StatusInfo {
	g.t.Helper()
	r := g.cli("", "status", user, "--json")
	var st ops.StatusInfo
	if err := json.Unmarshal([]byte(r.out), &st); err != nil {
		g.t.Fatalf("status --json: %v: %s", err, r.out)
	}
	return st
}

// nowhere is an admin address nothing listens on: a unix socket that does
// not exist, so that the commands work on the store directly.
func nowhere(t *testing.T) string {
	return "unix/" + filepath.Join(t.TempDir(), "no-caddy.sock")
}

func TestCLIRegisteredWithHelp(t *testing.T) {
	def, ok := caddycmd.Commands()["two-factor"]
	if !ok || def.Short == "" {
		t.Fatal("caddy two-factor is not registered")
	}
	r := runCLI(t, "", "--help")
	for _, verb := range []string{"user", "status", "reset", "sessions", "unthrottle", "backup", "restore"} {
		if !strings.Contains(r.out, verb) {
			t.Errorf("caddy two-factor --help does not list %q:\n%s", verb, r.out)
		}
	}
	r = runCLI(t, "", "user", "--help")
	for _, verb := range []string{"add", "passwd", "delete", "list"} {
		if !strings.Contains(r.out, verb) {
			t.Errorf("caddy two-factor user --help does not list %q:\n%s", verb, r.out)
		}
	}
}

func TestCLIArgumentErrors(t *testing.T) {
	for _, args := range [][]string{
		{"status"}, {"status", "a", "b"}, {"reset"}, {"user", "add"}, {"user", "list", "x"},
		{"sessions", "revoke"}, {"backup"}, {"restore"}, {"status", "alice", "--no-such-flag"},
	} {
		if r := runCLI(t, "", args...); r.code != 1 {
			t.Errorf("caddy two-factor %v: got exit %d, want 1", args, r.code)
		}
	}
}

func TestCLIWithoutCaddy(t *testing.T) {
	addr := nowhere(t)
	r := runCLI(t, "", "status", "alice", "--address", addr)
	if r.code != 1 || !strings.Contains(r.err, "Caddy is not running") || !strings.Contains(r.err, "--storage-dir") {
		t.Errorf("status with no Caddy and no --storage-dir: got exit %d %q, want exit 1 saying Caddy is not running and how to go on", r.code, r.err)
	}
	missing := filepath.Join(t.TempDir(), "none")
	r = runCLI(t, "", "status", "alice", "--address", addr, "--storage-dir", missing)
	if r.code != 1 || !strings.Contains(r.err, "no store in") {
		t.Errorf("status on a folder that does not exist: got exit %d %q, want exit 1 saying there is no store", r.code, r.err)
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("status created the store folder %s", missing)
	}
}

func TestCLIPasswordFromStdin(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	addr := nowhere(t)
	for _, tc := range []struct {
		stdin, want string
	}{
		{"", "no password on standard input"},
		{"\n", "no password on standard input"},
		{"short\n", "at least 8 characters"},
		{strings.Repeat("x", 1100) + "\n", "at most 1024 bytes"},
		{"\xff\xfe\xfdpassword\n", "not valid UTF-8"},
	} {
		r := runCLI(t, tc.stdin, "user", "add", "carol", "--address", addr, "--storage-dir", dir)
		if r.code != 1 || !strings.Contains(r.err, tc.want) {
			t.Errorf("user add with stdin %.20q: got exit %d %q, want exit 1 with %q", tc.stdin, r.code, r.err, tc.want)
		}
	}
	// A line ending in \r\n loses both; the password is what remains.
	if r := runCLI(t, "good password\r\n", "user", "add", "carol", "--address", addr, "--storage-dir", dir); r.code != 0 {
		t.Fatalf("user add: exit %d: %s", r.code, r.err)
	}
	if r := runCLI(t, "", "user", "list", "--address", addr, "--storage-dir", dir); !strings.Contains(r.out, "carol") {
		t.Errorf("user list after user add: %q", r.out)
	}
	if r := runCLI(t, "", "user", "add", "dave", "--address", addr, "--storage-dir", dir, "--password-hash", "plaintext"); r.code != 1 || !strings.Contains(r.err, "not a bcrypt or argon2id hash") {
		t.Errorf("user add --password-hash plaintext: got exit %d %q", r.code, r.err)
	}
	if r := runCLI(t, "", "user", "add", "dave", "--address", addr, "--storage-dir", dir, "--password-hash", testHash); r.code != 0 {
		t.Errorf("user add --password-hash: exit %d %q", r.code, r.err)
	}
	if r := runCLI(t, "", "user", "add", "bad name", "--address", addr, "--storage-dir", dir, "--password-hash", testHash); r.code != 1 || !strings.Contains(r.err, "invalid user name") {
		t.Errorf("user add with a space in the name: got exit %d %q", r.code, r.err)
	}
}

func TestCLIOutputHasNoSecrets(t *testing.T) {
	g := newGate(t, gateOpts{})
	b := g.browser()
	b.login("alice", testPassword, "/")
	e := b.enable()
	var outputs []string
	for _, args := range [][]string{
		{"status", "alice"}, {"status", "alice", "--json"}, {"user", "list"}, {"user", "list", "--json"},
		{"sessions", "revoke", "alice", "--json"}, {"reset", "alice", "--json"},
	} {
		r := g.cli("", args...)
		outputs = append(outputs, r.out, r.errOut)
	}
	all := strings.Join(outputs, "\n")
	for _, secret := range append([]string{e.secret, strings.ToLower(e.secret), testPassword, testHash, b.cookie()}, e.codes...) {
		if secret != "" && strings.Contains(all, secret) {
			t.Errorf("command output holds a secret (%.8s...)", secret)
		}
	}
}

// TestCLIErrorsArePlainLines: a failing command prints one line
// "error: ..." on standard error, as a person reads it, not a JSON log
// line, and exits 1.
func TestCLIErrorsArePlainLines(t *testing.T) {
	g := newGate(t, gateOpts{})
	r := runCLI(t, "", "status", "no such user!", "--address", adminAddr)
	if r.code != 1 {
		t.Fatalf("exit %d, want 1", r.code)
	}
	want := "error: " + r.err + "\n"
	if r.errOut != want || strings.Contains(r.errOut, `"level"`) {
		t.Fatalf("standard error: got %q, want %q", r.errOut, want)
	}
	_ = g
}
