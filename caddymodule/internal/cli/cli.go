// Package cli is the command line of the gate's store: caddy two-factor
// user add|passwd|delete|list, status, reset, sessions revoke|list,
// browsers forget,
// unthrottle, backup, restore and migrate. Each command calls the admin API of the
// running server, or, when none answers, serves the same routes itself on
// the store folder (--storage-dir).
package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.uber.org/zap"
	"golang.org/x/term"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/ops"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/secrets"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/users"
)

// Env is what the commands need from the server whose store they manage.
type Env struct {
	// AdminAddress finds the admin endpoint's address from the flags
	// --address, --config and --adapter, as the server's own commands do.
	AdminAddress func(address, config, adapter string) (string, error)
	// AdminEndpoint reads an admin address: the network and address to
	// dial, and whether it is a socket (unix or file descriptor), which
	// takes no Origin header.
	AdminEndpoint func(addr string) (network, address string, socket bool, err error)
	// Log gets the store's errors while a command has it open itself.
	Log func(msg string)
	// ExitCode is the status a command exits with when it must stop at
	// once (an interrupt while reading a password).
	ExitCode int
}

// Build adds the subcommands (user, sessions, status, reset, unthrottle,
// backup, restore) and their flags to cmd.
func Build(cmd *cobra.Command, env Env) {
	pf := cmd.PersistentFlags()
	pf.String("address", "", "Address of Caddy's admin endpoint, if different from the config's (default localhost:2019)")
	pf.StringP("config", "c", "", "Config file to read the admin endpoint's address from")
	pf.StringP("adapter", "a", "", "Name of the adapter for --config")
	pf.String("storage-dir", "", "The two_factor storage_dir: which store, if Caddy has several open; the folder to open when Caddy is not running")
	pf.String("storage", "", "A store to work on directly: postgres:<connection string> (whether or not Caddy runs: the database is shared), or badger:<dir> (as --storage-dir)")
	pf.String("realm", "", "The realm of the user (the two_factor realm option); needed when the store serves several")
	pf.String("encryption-key", "", "For restore while Caddy is stopped: the store's encryption_key, to check the backup against")
	pf.String("key-file", "", "For restore while Caddy is stopped: the store's key file, to check the backup against")
	pf.Bool("json", false, "Print the answer as JSON")

	user := &cobra.Command{Use: "user", Short: "Adds, changes, deletes and lists the users kept in the store"}
	add := leaf("add <name>", "Adds a user to the store", `
Adds a user to the store. The password is read from the terminal (twice)
or from standard input; it must have at least 8 characters. Caddy hashes
it with argon2id, with the handler's argon2id settings. Instead of a
password, --password-hash takes a hash from caddy hash-password.

A user of the same name in the config wins: such a name is refused.`, cobra.ExactArgs(1), env, cliUserAdd)
	add.Flags().String("password-hash", "", "Use this hash (bcrypt or argon2id, from caddy hash-password) instead of reading a password")
	passwd := leaf("passwd <name>", "Changes the password of a user kept in the store", `
Sets a new password for a user kept in the store and ends all their
sessions. Users in the config have their hash in the config: change it
there.`, cobra.ExactArgs(1), env, cliUserPasswd)
	passwd.Flags().String("password-hash", "", "Use this hash (bcrypt or argon2id, from caddy hash-password) instead of reading a password")
	user.AddCommand(add, passwd,
		leaf("delete <name>", "Deletes a user kept in the store", `
Deletes a user kept in the store, with their second factor and all their
sessions, in one transaction.`, cobra.ExactArgs(1), env, cliUserDelete),
		leaf("list", "Lists the users", `
Lists the users in the config of the running Caddy and the users kept in
the store, with whether two-factor authentication is on for each.`, cobra.NoArgs, env, cliUserList),
	)
	sessions := &cobra.Command{Use: "sessions", Short: "Lists and ends sessions"}
	sessions.AddCommand(leaf("revoke <name>", "Ends every session of a user", `
Ends every session of the user, on the server: their cookies are worth
nothing afterwards.`, cobra.ExactArgs(1), env, cliRevoke),
		leaf("list <name>", "Lists a user's sessions and remembered browsers", `
Lists the user's live sessions (stage, browser and system from the
User-Agent, client address at sign-in, times) and the browsers that are
not asked for a code (remember_browser). Nothing printed lets anyone use
a session or a browser's token.`, cobra.ExactArgs(1), env, cliSessionsList))
	browsers := &cobra.Command{Use: "browsers", Short: "Forgets remembered browsers"}
	browsers.AddCommand(leaf("forget <name>", "Forgets every remembered browser of a user", `
Forgets every browser of the user that is not asked for a code
(remember_browser): each is asked for one at its next login. Sessions
are left as they are (sessions revoke ends them).`, cobra.ExactArgs(1), env, cliForgetBrowsers))
	cmd.AddCommand(migrateCommand(env))
	cmd.AddCommand(user, sessions, browsers,
		leaf("status <name>", "Shows a user's second factor, throttling and sessions", `
Shows whether two-factor authentication is on for the user, how many
backup codes are left, whether logging in is throttled, and the user's
sessions.`, cobra.ExactArgs(1), env, cliStatus),
		leaf("reset <name>", "Turns a user's second factor off and ends their sessions", `
For a user who lost both the authenticator app and the backup codes:
turns two-factor authentication off (the enrolment and the backup codes
go) and ends all the user's sessions. The user then logs in with the
password alone and can enable it again (or must, with
require_two_factor).`, cobra.ExactArgs(1), env, cliReset),
		leaf("unthrottle <name>", "Clears a user's count of failed attempts", `
Forgets the user's failed attempts (password, code, backup code), so a
throttled user can try again at once. Counts of client addresses are
left to fade (after an hour without failures).`, cobra.ExactArgs(1), env, cliUnthrottle),
		leaf("backup <file>", "Writes a backup of the store", `
Writes a consistent snapshot of the store (users, second factors, backup
code hashes; not the sessions) in badger's backup format to the file, or
to standard output for -. The TOTP secrets in it are encrypted with the
store's key, which is not in the backup: keep the key with it.`, cobra.ExactArgs(1), env, cliBackup),
		leaf("restore <file>", "Restores a backup into an empty store", `
Reads a backup (from the file, or standard input for -) into a store that
holds no users and no second factors yet, such as a new storage_dir, and
ends every session in it. The store must use the key the backup was made
with. When Caddy is stopped, --encryption-key or --key-file check that
before anything is written.`, cobra.ExactArgs(1), env, cliRestore),
	)
}

// leaf makes a subcommand that runs f. An error is printed as one line,
// "error: ...", on standard error (not as a log line: these commands talk
// to a person), and makes the exit status 1.
func leaf(use, short, long string, args cobra.PositionalArgs, env Env, f func(*cli) error) *cobra.Command {
	return &cobra.Command{
		Use: use, Short: short, Long: long, Args: args,
		RunE: func(cmd *cobra.Command, args []string) error {
			c := &cli{env: env, fl: cmd.Flags(), args: args, in: cmd.InOrStdin(), out: cmd.OutOrStdout(), errOut: cmd.ErrOrStderr()}
			defer c.close()
			if err := f(c); err != nil {
				cmd.SilenceErrors, cmd.SilenceUsage = true, true
				fmt.Fprintf(cmd.ErrOrStderr(), "error: %v\n", err)
				return err
			}
			return nil
		},
	}
}

// cli is one run of a subcommand.
type cli struct {
	env    Env
	fl     *pflag.FlagSet
	args   []string
	in     io.Reader
	out    io.Writer
	errOut io.Writer

	offline store.Store // the store opened here when Caddy is not running
}

// flag is the value of a string flag ("" when unset).
func (c *cli) flag(name string) string {
	v, _ := c.fl.GetString(name)
	return v
}

// boolFlag is the value of a boolean flag.
func (c *cli) boolFlag(name string) bool {
	v, _ := c.fl.GetBool(name)
	return v
}

func (c *cli) close() {
	if c.offline != nil {
		_ = c.offline.Close()
	}
}

// parseStorage reads a store given as badger:<dir>, postgres:<connection
// string>, or a bare folder.
func parseStorage(spec string) (kind, where string, err error) {
	kind, where, ok := strings.Cut(spec, ":")
	switch {
	case ok && kind == "postgres" && where != "":
		return kind, where, nil
	case ok && kind == "badger" && where != "":
		abs, err := filepath.Abs(where)
		return kind, abs, err
	case ok && (kind == "postgres" || kind == "badger"):
		return "", "", fmt.Errorf("%s: where? (badger:<dir> or postgres:<connection string>)", spec)
	}
	return "", "", fmt.Errorf("%q: want badger:<dir> or postgres:<connection string>", spec)
}

// openStore opens the store of spec (badger:<dir>, postgres:<connection
// string>, or a folder) here, for a command that works on it directly.
func (c *cli) openStore(spec string, mayCreate bool, addr string) (store.Store, error) {
	logf := func(level, msg string) {
		if level == "error" {
			c.env.Log(msg)
		}
	}
	kind, where, err := parseStorage(spec)
	if err != nil {
		kind, where = "badger", spec // a folder, from --storage-dir
	}
	if kind == "postgres" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return store.OpenPostgres(ctx, where, store.Options{Logger: logf})
	}
	if _, err := os.Stat(where); errors.Is(err, os.ErrNotExist) && !mayCreate {
		if addr == addrNone {
			return nil, fmt.Errorf("there is no store in %s", where)
		}
		return nil, fmt.Errorf("there is no store in %s, and no Caddy at %s uses that folder", where, addr)
	}
	db, err := store.OpenBadger(where, store.Options{Logger: logf})
	if errors.Is(err, store.ErrLocked) {
		if addr == addrNone {
			return nil, fmt.Errorf("the store in %s is locked: a Caddy (or another command) has it open; stop it first", where)
		}
		return nil, fmt.Errorf("the store in %s is locked: a Caddy (or another command) has it open, but nothing answers at the admin endpoint %s; point --address at that Caddy's admin endpoint", where, addr)
	}
	return db, err
}

// errNoCaddy: nothing listens on the admin address.
var errNoCaddy = errors.New("no Caddy answers")

// request is a call to one admin route.
type request struct {
	method, path string
	query        url.Values
	json         any    // body, sent as JSON
	raw          []byte // body, sent as application/octet-stream
	// mayCreate lets the command open a store folder that does not exist
	// yet when Caddy is not running (user add, restore).
	mayCreate bool
}

// call sends the request to the running Caddy's admin API or, when none
// answers and --storage-dir is set, serves it here on that folder, with
// the same code. It returns the response of a success; an error response
// becomes an error with the API's message.
func (c *cli) call(req request) (*http.Response, error) {
	addr, err := c.env.AdminAddress(c.flag("address"), c.flag("config"), c.flag("adapter"))
	if err != nil {
		return nil, fmt.Errorf("finding the admin endpoint: %w", err)
	}
	dir := c.flag("storage-dir")
	var database string // a PostgreSQL store given by --storage
	spec := c.flag("storage")
	if spec != "" {
		kind, where, err := parseStorage(spec)
		if err != nil {
			return nil, fmt.Errorf("--storage: %w", err)
		}
		if dir != "" {
			return nil, errors.New("--storage and --storage-dir both set: use one")
		}
		if kind == "postgres" {
			database = where
		} else {
			dir = where
		}
	}
	q := url.Values{}
	for k, v := range req.query {
		q[k] = v
	}
	if realm := c.flag("realm"); realm != "" {
		if err := store.CheckRealm(realm); err != nil {
			return nil, fmt.Errorf("--realm: %w", err)
		}
		q.Set("realm", realm)
	}
	if dir != "" {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return nil, fmt.Errorf("--storage-dir %s: %w", dir, err)
		}
		dir = abs
		q.Set("storage_dir", dir)
	}
	build := func(origin string) (*http.Request, error) {
		var body io.Reader
		ct := ""
		switch {
		case req.json != nil:
			b, err := json.Marshal(req.json)
			if err != nil {
				return nil, err
			}
			body, ct = bytes.NewReader(b), "application/json"
		case req.raw != nil:
			body, ct = bytes.NewReader(req.raw), "application/octet-stream"
		}
		u := origin + req.path
		if len(q) > 0 {
			u += "?" + q.Encode()
		}
		r, err := http.NewRequest(req.method, u, body)
		if err != nil {
			return nil, err
		}
		if ct != "" {
			r.Header.Set("Content-Type", ct)
		}
		return r, nil
	}
	if database != "" {
		// A shared database: work on it here, as any instance does.
		return c.checkAnswer(c.serveOn(database, spec, addrNone, req.mayCreate, build))
	}
	res, err := c.adminDo(addr, build)
	if errors.Is(err, errNoCaddy) {
		if dir == "" {
			var cause error = err
			var op *net.OpError
			if errors.As(err, &op) {
				cause = op
			}
			return nil, fmt.Errorf("Caddy is not running: nothing answers at its admin endpoint %s (%v). Start Caddy, point --address at its admin endpoint, or give --storage-dir to work on a store folder directly while Caddy is stopped", addr, cause)
		}
		res, err = c.serveOffline(dir, addr, req.mayCreate, build)
	}
	if err == nil && dir != "" && res.StatusCode == http.StatusNotFound {
		// A Caddy answers, but none of its handlers uses that folder
		// (a restore into a new one, say): work on the folder directly,
		// as when no Caddy runs. A folder another process holds is
		// refused there as locked.
		b, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
		res.Body.Close()
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && strings.HasPrefix(e.Error, ops.StoreNotOpen) {
			res, err = c.serveOffline(dir, addr, req.mayCreate, build)
		} else {
			res.Body = io.NopCloser(bytes.NewReader(b))
		}
	}
	return c.checkAnswer(res, err)
}

// addrNone stands for the admin endpoint when the command does not use it.
const addrNone = ""

// checkAnswer turns an error response of the admin routes into an error.
func (c *cli) checkAnswer(res *http.Response, err error) (*http.Response, error) {
	if err != nil {
		return nil, err
	}
	if res.StatusCode >= 400 {
		defer res.Body.Close()
		var e struct {
			Error string `json:"error"`
		}
		b, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			if res.StatusCode == http.StatusNotFound {
				return nil, errors.New("the Caddy answering has no two-factor admin routes: is it built with this module?")
			}
			e.Error = fmt.Sprintf("HTTP %d: %s", res.StatusCode, strings.TrimSpace(string(b)))
		}
		return nil, errors.New(e.Error)
	}
	return res, nil
}

// adminDo sends a request to the admin endpoint at addr, which may be a
// TCP address or a unix socket, as the server's own commands do.
func (c *cli) adminDo(addr string, build func(origin string) (*http.Request, error)) (*http.Response, error) {
	network, address, socket, err := c.env.AdminEndpoint(addr)
	if err != nil {
		return nil, fmt.Errorf("invalid admin address %s: %v", addr, err)
	}
	origin := "http://" + address
	if socket {
		origin = "http://127.0.0.1"
	}
	req, err := build(origin)
	if err != nil {
		return nil, err
	}
	if !socket {
		req.Header.Set("Origin", origin)
	}
	client := http.Client{
		Timeout: 10 * time.Minute,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			conn, err := d.DialContext(ctx, network, address)
			if err != nil {
				return nil, fmt.Errorf("%w: %w", errNoCaddy, err)
			}
			return conn, nil
		}},
	}
	return client.Do(req)
}

// serveOffline opens the store folder itself (Caddy is not running) and
// serves the request with the admin routes' own code.
func (c *cli) serveOffline(dir, addr string, mayCreate bool, build func(origin string) (*http.Request, error)) (*http.Response, error) {
	return c.serveOn(dir, dir, addr, mayCreate, build)
}

// serveOn opens a store itself (a badger folder when where is a folder, a
// PostgreSQL database when spec starts with postgres:) and serves the
// request with the admin routes' own code.
func (c *cli) serveOn(where, spec, addr string, mayCreate bool, build func(origin string) (*http.Request, error)) (*http.Response, error) {
	db, err := c.openStore(spec, mayCreate, addr)
	if err != nil {
		return nil, err
	}
	c.offline = db
	dir := where
	if strings.HasPrefix(spec, "postgres:") {
		dir = "the database"
	}
	keyCheck, err := c.offlineKeyCheck()
	if err != nil {
		return nil, err
	}
	realm := c.flag("realm")
	if realm == "" {
		realm = store.DefaultRealm
	}
	view, err := store.InRealm(c.offline, realm)
	if err != nil {
		return nil, fmt.Errorf("--realm: %w", err)
	}
	t := &ops.Target{
		DB: view, Realm: realm, Dir: dir, KeyCheck: keyCheck, Now: time.Now,
		Hash: func(_ context.Context, password string) (string, error) {
			return users.Argon2id{Time: users.DefaultArgon2idTime, Memory: users.DefaultArgon2idMemory, Threads: users.DefaultArgon2idThreads}.Hash(password)
		},
	}
	api := ops.API{Resolve: func(*http.Request) (*ops.Target, *zap.Logger, func(), error) {
		return t, nil, func() {}, nil
	}}
	req, err := build("http://localhost")
	if err != nil {
		return nil, err
	}
	rec := httptest.NewRecorder()
	if err := api.Serve(rec, req); err != nil {
		status, msg := http.StatusInternalServerError, err.Error()
		var oe *ops.Error
		if errors.As(err, &oe) {
			status, msg = oe.Status, oe.Msg
		}
		rec = httptest.NewRecorder()
		_ = ops.WriteJSON(rec, status, map[string]string{"error": msg})
	}
	return rec.Result(), nil
}

// offlineKeyCheck loads the key given by --encryption-key or --key-file,
// if any, to check a backup against.
func (c *cli) offlineKeyCheck() (func([]byte) error, error) {
	raw, file := c.flag("encryption-key"), c.flag("key-file")
	var key secrets.Key
	var err error
	switch {
	case raw != "" && file != "":
		return nil, errors.New("give --encryption-key or --key-file, not both")
	case raw != "":
		key, err = secrets.ParseKey(raw)
	case file != "":
		key, _, err = secrets.LoadOrCreateKeyFile(file, false)
	default:
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("the encryption key: %w", err)
	}
	sealer, err := key.Sealer()
	if err != nil {
		return nil, fmt.Errorf("the encryption key: %w", err)
	}
	return sealer.VerifyCheck, nil
}

// callJSON calls a route and decodes its JSON answer into out, printing
// the answer as it came when --json is set.
func (c *cli) callJSON(req request, out any) (printed bool, err error) {
	res, err := c.call(req)
	if err != nil {
		return false, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil {
		return false, fmt.Errorf("reading the answer: %w", err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return false, fmt.Errorf("reading the answer: %w", err)
	}
	if c.boolFlag("json") {
		var pretty bytes.Buffer
		if json.Indent(&pretty, b, "", "  ") == nil {
			b = pretty.Bytes()
		}
		_, err := fmt.Fprintln(c.out, strings.TrimSpace(string(b)))
		return true, err
	}
	return false, nil
}

// readPassword reads a new password: from the terminal, twice, without
// echo; or one line of standard input when it is not a terminal.
func (c *cli) readPassword(user string) (string, error) {
	var pw string
	if f, ok := c.in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fd := int(f.Fd())
		// Put the terminal back if the user presses Ctrl-C at the prompt.
		state, _ := term.GetState(fd)
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt)
		done := make(chan struct{})
		defer func() { signal.Stop(sig); close(done) }()
		go func() {
			select {
			case <-sig:
				if state != nil {
					_ = term.Restore(fd, state)
				}
				os.Exit(c.env.ExitCode)
			case <-done:
			}
		}()
		fmt.Fprintf(c.errOut, "New password for %s: ", user)
		first, err := term.ReadPassword(fd)
		fmt.Fprintln(c.errOut)
		if err != nil {
			return "", fmt.Errorf("reading the password: %w", err)
		}
		if err := users.CheckNewPassword(string(first)); err != nil {
			return "", err
		}
		fmt.Fprint(c.errOut, "Confirm password: ")
		again, err := term.ReadPassword(fd)
		fmt.Fprintln(c.errOut)
		if err != nil {
			return "", fmt.Errorf("reading the password: %w", err)
		}
		if !bytes.Equal(first, again) {
			return "", errors.New("the passwords do not match; nothing was changed")
		}
		pw = string(first)
	} else {
		line, err := bufio.NewReader(io.LimitReader(c.in, users.MaxPasswordBytes+3)).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("reading the password from standard input: %w", err)
		}
		if !strings.HasSuffix(line, "\n") && len(line) > users.MaxPasswordBytes {
			return "", users.ErrPasswordLong
		}
		line = strings.TrimSuffix(line, "\n")
		pw = strings.TrimSuffix(line, "\r")
		if pw == "" {
			return "", errors.New("no password on standard input (one line is read)")
		}
	}
	if err := users.CheckNewPassword(pw); err != nil {
		return "", err
	}
	return pw, nil
}

// passwordBody reads the password, or takes --password-hash, for user add
// and user passwd.
func (c *cli) passwordBody(name string) (ops.UserRequest, error) {
	req := ops.UserRequest{User: name}
	if h := c.flag("password-hash"); h != "" {
		if err := users.CheckHash(h); err != nil {
			return req, fmt.Errorf("--password-hash: %w", err)
		}
		req.PasswordHash = h
		return req, nil
	}
	pw, err := c.readPassword(name)
	if err != nil {
		return req, err
	}
	req.Password = pw
	return req, nil
}

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

func countNoun(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

func cliUserAdd(c *cli) error {
	body, err := c.passwordBody(c.args[0])
	if err != nil {
		return err
	}
	var info ops.UserInfo
	printed, err := c.callJSON(request{method: http.MethodPost, path: "/two-factor/users/add", json: body, mayCreate: true}, &info)
	if err != nil || printed {
		return err
	}
	_, err = fmt.Fprintf(c.out, "Added %s to the store. Two-factor authentication is off until they enable it on the Security page.\n", info.User)
	return err
}

func cliUserPasswd(c *cli) error {
	body, err := c.passwordBody(c.args[0])
	if err != nil {
		return err
	}
	var res ops.ChangeResult
	printed, err := c.callJSON(request{method: http.MethodPost, path: "/two-factor/users/passwd", json: body}, &res)
	if err != nil || printed {
		return err
	}
	_, err = fmt.Fprintf(c.out, "Changed the password of %s and ended %s.\n", res.User, countNoun(res.SessionsEnded, "session", "sessions"))
	return err
}

func cliUserDelete(c *cli) error {
	var res ops.ChangeResult
	printed, err := c.callJSON(request{method: http.MethodPost, path: "/two-factor/users/delete", json: ops.UserRequest{User: c.args[0]}}, &res)
	if err != nil || printed {
		return err
	}
	what := ""
	if res.TwoFactorWasOn != nil && *res.TwoFactorWasOn {
		what = " with their second factor"
	}
	_, err = fmt.Fprintf(c.out, "Deleted %s from the store%s, and ended %s.\n", res.User, what, countNoun(res.SessionsEnded, "session", "sessions"))
	return err
}

func cliUserList(c *cli) error {
	var list ops.UserList
	printed, err := c.callJSON(request{method: http.MethodGet, path: "/two-factor/users"}, &list)
	if err != nil || printed {
		return err
	}
	tw := tabwriter.NewWriter(c.out, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tSOURCE\t2FA\tNOTE")
	for _, u := range list.Users {
		note := ""
		if u.Shadowed {
			note = "hidden by the config user of the same name"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", u.User, u.Source, onOff(u.TwoFactor), note)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if list.Note != "" {
		fmt.Fprintf(c.out, "(%s)\n", list.Note)
	}
	return nil
}

func cliStatus(c *cli) error {
	var st ops.StatusInfo
	printed, err := c.callJSON(request{method: http.MethodGet, path: "/two-factor/status", query: url.Values{"user": {c.args[0]}}}, &st)
	if err != nil || printed {
		return err
	}
	var b strings.Builder
	source := map[string]string{ops.SourceConfig: "in the Caddy config", ops.SourceStore: "kept in the store", "": "not a user any more; state is left in the store"}[st.Source]
	fmt.Fprintf(&b, "User:                       %s (%s)\n", st.User, source)
	fmt.Fprintf(&b, "Two-factor authentication:  %s", onOff(st.TwoFactor))
	if st.EnabledAt != nil {
		fmt.Fprintf(&b, " (since %s)", st.EnabledAt.UTC().Format(time.RFC3339))
	}
	b.WriteString("\n")
	if st.TwoFactor {
		fmt.Fprintf(&b, "Authenticator app:          %s\n", map[bool]string{true: "yes", false: "no"}[st.App])
		fmt.Fprintf(&b, "Security keys:              %d\n", st.SecurityKeys)
		fmt.Fprintf(&b, "Backup codes left:          %d\n", st.BackupCodesLeft)
	}
	if st.Throttle != nil {
		th := "no"
		if st.Throttle.Throttled {
			th = "yes"
		}
		fmt.Fprintf(&b, "Throttled:                  %s", th)
		var parts []string
		for _, f := range store.Factors {
			ft := st.Throttle.Factors[string(f)]
			if ft.Failures > 0 || ft.RetryAfterSeconds > 0 {
				p := fmt.Sprintf("%s: %s", f, countNoun(ft.Failures, "failure", "failures"))
				if ft.RetryAfterSeconds > 0 {
					p += fmt.Sprintf(", wait %ds", ft.RetryAfterSeconds)
				}
				parts = append(parts, p)
			}
		}
		if len(parts) > 0 {
			fmt.Fprintf(&b, " (%s)", strings.Join(parts, "; "))
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "Sessions:                   %d\n", len(st.Sessions))
	for _, s := range st.Sessions {
		fmt.Fprintf(&b, "  %-19s since %s, last seen %s, ends by %s\n", s.Stage,
			s.Created.UTC().Format(time.RFC3339), s.LastSeen.UTC().Format(time.RFC3339), s.Expires.UTC().Format(time.RFC3339))
	}
	if st.Note != "" {
		fmt.Fprintf(&b, "(%s)\n", st.Note)
	}
	_, err = io.WriteString(c.out, b.String())
	return err
}

func cliReset(c *cli) error {
	var res ops.ChangeResult
	printed, err := c.callJSON(request{method: http.MethodPost, path: "/two-factor/reset", json: ops.UserRequest{User: c.args[0]}}, &res)
	if err != nil || printed {
		return err
	}
	was := "it was already off"
	if res.TwoFactorWasOn != nil && *res.TwoFactorWasOn {
		was = "its enrolment and backup codes are gone"
	}
	_, err = fmt.Fprintf(c.out, "Two-factor authentication of %s is off (%s); ended %s. %s logs in with the password alone and can enable it again.\n",
		res.User, was, countNoun(res.SessionsEnded, "session", "sessions"), res.User)
	return err
}

func cliSessionsList(c *cli) error {
	var list ops.SessionList
	printed, err := c.callJSON(request{method: http.MethodGet, path: "/two-factor/sessions", query: url.Values{"user": {c.args[0]}}}, &list)
	if err != nil || printed {
		return err
	}
	var b strings.Builder
	orUnknown := func(s, unknown string) string {
		if s == "" {
			return unknown
		}
		return s
	}
	fmt.Fprintf(&b, "Sessions of %s: %d\n", list.User, len(list.Sessions))
	for _, s := range list.Sessions {
		fmt.Fprintf(&b, "  %-19s %s on %s from %s; since %s, last seen %s, ends by %s\n", s.Stage,
			orUnknown(s.Browser, "unknown browser"), orUnknown(s.System, "unknown system"), orUnknown(s.Address, "unknown address"),
			s.Created.UTC().Format(time.RFC3339), s.LastSeen.UTC().Format(time.RFC3339), s.Expires.UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(&b, "Remembered browsers: %d\n", len(list.Browsers))
	for _, rb := range list.Browsers {
		fmt.Fprintf(&b, "  %s on %s from %s; since %s, until %s\n",
			orUnknown(rb.Browser, "unknown browser"), orUnknown(rb.System, "unknown system"), orUnknown(rb.Address, "unknown address"),
			rb.Created.UTC().Format(time.RFC3339), rb.Expires.UTC().Format(time.RFC3339))
	}
	if list.Note != "" {
		fmt.Fprintf(&b, "(%s)\n", list.Note)
	}
	_, err = io.WriteString(c.out, b.String())
	return err
}

func cliForgetBrowsers(c *cli) error {
	var res ops.ChangeResult
	printed, err := c.callJSON(request{method: http.MethodPost, path: "/two-factor/browsers/forget", json: ops.UserRequest{User: c.args[0]}}, &res)
	if err != nil || printed {
		return err
	}
	n := 0
	if res.BrowsersForgotten != nil {
		n = *res.BrowsersForgotten
	}
	_, err = fmt.Fprintf(c.out, "Forgot %s of %s: each is asked for a code at its next login.\n", countNoun(n, "remembered browser", "remembered browsers"), res.User)
	return err
}

func cliRevoke(c *cli) error {
	var res ops.ChangeResult
	printed, err := c.callJSON(request{method: http.MethodPost, path: "/two-factor/sessions/revoke", json: ops.UserRequest{User: c.args[0]}}, &res)
	if err != nil || printed {
		return err
	}
	_, err = fmt.Fprintf(c.out, "Ended %s of %s.\n", countNoun(res.SessionsEnded, "session", "sessions"), res.User)
	return err
}

func cliUnthrottle(c *cli) error {
	var res ops.ChangeResult
	printed, err := c.callJSON(request{method: http.MethodPost, path: "/two-factor/unthrottle", json: ops.UserRequest{User: c.args[0]}}, &res)
	if err != nil || printed {
		return err
	}
	n := 0
	if res.FailuresCleared != nil {
		n = *res.FailuresCleared
	}
	_, err = fmt.Fprintf(c.out, "Cleared %s of %s.\n", countNoun(n, "failed attempt", "failed attempts"), res.User)
	if err == nil && res.Note != "" {
		_, err = fmt.Fprintf(c.out, "(%s)\n", res.Note)
	}
	return err
}

// cliBackup downloads the snapshot, checks it is whole and readable, and
// only then puts it where asked.
func cliBackup(c *cli) error {
	file := c.args[0]
	res, err := c.call(request{method: http.MethodGet, path: "/two-factor/backup"})
	if err != nil {
		return err
	}
	defer res.Body.Close()
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, io.LimitReader(res.Body, ops.MaxRestoreBytes+1)); err != nil {
		return fmt.Errorf("receiving the backup: %w", err)
	}
	if res.Trailer.Get(ops.BackupTrailer) != "complete" {
		return errors.New("the backup was cut short (see Caddy's log); nothing was written")
	}
	snap, err := store.CheckBackup(bytes.NewReader(buf.Bytes()))
	if err != nil {
		return fmt.Errorf("the backup received does not read back: %w; nothing was written", err)
	}
	if file == "-" {
		_, err := c.out.Write(buf.Bytes())
		return err
	}
	if err := writeFileAtomic(file, buf.Bytes()); err != nil {
		return err
	}
	fmt.Fprintf(c.errOut, "Wrote the backup to %s: %s and %s (sessions are not backed up). The TOTP secrets in it are encrypted: keep the store's encryption key with it, in another place.\n",
		file, countNoun(snap.Users, "store user", "store users"), countNoun(snap.Accounts, "second factor", "second factors"))
	return nil
}

// writeFileAtomic writes data to a new file beside path (mode 0600),
// syncs it and renames it over path.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("writing the backup: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("writing the backup: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("writing the backup: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing the backup: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing the backup: %w", err)
	}
	return nil
}

func cliRestore(c *cli) error {
	file := c.args[0]
	var r io.Reader = c.in
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return fmt.Errorf("reading the backup: %w", err)
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, ops.MaxRestoreBytes+1))
	if err != nil {
		return fmt.Errorf("reading the backup: %w", err)
	}
	if len(data) > ops.MaxRestoreBytes {
		return fmt.Errorf("the backup is larger than %d bytes", ops.MaxRestoreBytes)
	}
	var res ops.RestoreResult
	printed, err := c.callJSON(request{method: http.MethodPost, path: "/two-factor/restore", raw: data, mayCreate: true}, &res)
	if err != nil || printed {
		return err
	}
	_, err = fmt.Fprintf(c.out, "Restored %s and %s; every session in the store ended.\n",
		countNoun(res.Users, "store user", "store users"), countNoun(res.Enrolments, "second factor", "second factors"))
	return err
}
