package caddymodule

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/creack/pty"
	"github.com/spf13/cobra"
)

// terminal is a pseudo-terminal that a command reads its password from.
type terminal struct {
	t      *testing.T
	master *os.File
	tty    *os.File
	mu     sync.Mutex
	seen   bytes.Buffer // everything the command wrote to the terminal
}

func newTerminal(t *testing.T) *terminal {
	master, tty, err := pty.Open()
	if err != nil {
		t.Fatalf("opening a pseudo-terminal: %v", err)
	}
	term := &terminal{t: t, master: master, tty: tty}
	go func() {
		buf := make([]byte, 256)
		for {
			n, err := master.Read(buf)
			term.mu.Lock()
			term.seen.Write(buf[:n])
			term.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { tty.Close(); master.Close() })
	return term
}

// answer waits (bounded) for the prompt, then types the line.
func (term *terminal) answer(prompt, line string) {
	term.t.Helper()
	for range 500 {
		term.mu.Lock()
		ok := strings.Contains(term.seen.String(), prompt)
		if ok {
			term.seen.Reset()
		}
		term.mu.Unlock()
		if ok {
			if _, err := io.WriteString(term.master, line+"\n"); err != nil {
				term.t.Fatal(err)
			}
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	term.mu.Lock()
	defer term.mu.Unlock()
	term.t.Fatalf("no prompt %q on the terminal; it shows %q", prompt, term.seen.String())
}

func (term *terminal) shown() string {
	term.mu.Lock()
	defer term.mu.Unlock()
	return term.seen.String()
}

// runOnTerminal runs `caddy two-factor args...` with the terminal as its
// standard input and error.
func runOnTerminal(term *terminal, args ...string) chan error {
	def := caddycmd.Commands()["two-factor"]
	root := &cobra.Command{Use: "two-factor", SilenceUsage: true}
	def.CobraFunc(root)
	root.SetArgs(args)
	root.SetIn(term.tty)
	root.SetErr(term.tty)
	root.SetOut(io.Discard)
	done := make(chan error, 1)
	go func() { done <- root.Execute() }()
	return done
}

func wait(t *testing.T, done chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("the command did not end")
		return nil
	}
}

func TestCLIPasswordFromTerminal(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	addr := nowhere(t)
	const pw = "typed password 1"

	term := newTerminal(t)
	done := runOnTerminal(term, "user", "add", "carol", "--address", addr, "--storage-dir", dir)
	term.answer("New password for carol: ", pw)
	term.answer("Confirm password: ", pw)
	if err := wait(t, done); err != nil {
		t.Fatalf("user add on a terminal: %v", err)
	}
	if strings.Contains(term.shown(), pw) {
		t.Error("the password was echoed on the terminal")
	}

	// A confirmation that differs changes nothing.
	term = newTerminal(t)
	done = runOnTerminal(term, "user", "passwd", "carol", "--address", addr, "--storage-dir", dir)
	term.answer("New password for carol: ", "another password")
	term.answer("Confirm password: ", "another passwort")
	if err := wait(t, done); err == nil || !strings.Contains(err.Error(), "do not match") {
		t.Fatalf("passwd with a different confirmation: got %v, want an error saying they do not match", err)
	}
	// A password too short is refused before the confirmation.
	term = newTerminal(t)
	done = runOnTerminal(term, "user", "passwd", "carol", "--address", addr, "--storage-dir", dir)
	term.answer("New password for carol: ", "short")
	if err := wait(t, done); err == nil || !strings.Contains(err.Error(), "at least 8") {
		t.Fatalf("passwd with a short password: got %v", err)
	}
	if r := runCLI(t, "", "user", "list", "--address", addr, "--storage-dir", dir); !strings.Contains(r.out, "carol") {
		t.Errorf("user list: %q", r.out)
	}
}
