package caddymodule

// Several Caddy instances on one PostgreSQL database: real `caddy run`
// processes (the binary of cmd/caddy, built once), each with its own
// admin and site port on 127.0.0.1 (12319.., 12380..: apart from the other
// tests' ports), all with storage postgres on one throwaway database.

import (
	"context"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pquerna/otp"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store"
	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/store/pgtest"
)

var (
	caddyOnce sync.Once
	caddyPath string
	caddyErr  error
)

// caddyBinary builds cmd/caddy once per test binary.
func caddyBinary(t *testing.T) string {
	t.Helper()
	caddyOnce.Do(func() {
		dir, err := os.MkdirTemp("", "two-factor-caddy-")
		if err != nil {
			caddyErr = err
			return
		}
		caddyPath = filepath.Join(dir, "caddy")
		out, err := exec.Command("go", "build", "-o", caddyPath, "../cmd/caddy").CombinedOutput()
		if err != nil {
			caddyErr = fmt.Errorf("building caddy: %v\n%s", err, out)
		}
	})
	if caddyErr != nil {
		t.Fatal(caddyErr)
	}
	return caddyPath
}

// instance is one `caddy run` process of a cluster of instances.
type instance struct {
	t      *testing.T
	name   string
	dir    string
	site   string // host:port
	config string
	cmd    *exec.Cmd
	log    *lockedBuffer
	exited chan struct{}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// newInstances writes the configs of n instances on the database and
// starts them.
func newInstances(t *testing.T, n int, dbURL, upstream string) []*instance {
	t.Helper()
	bin := caddyBinary(t)
	var more string // users u0 to u7, for tests that use one per round
	for i := range 8 {
		more += fmt.Sprintf("\t\tuser u%d %s\n", i, testHash)
	}
	var out []*instance
	for i := range n {
		dir := t.TempDir()
		site := fmt.Sprintf("127.0.0.1:%d", 12380+i)
		in := &instance{t: t, name: string(rune('A' + i)), dir: dir, site: site}
		in.config = fmt.Sprintf(`{
	admin 127.0.0.1:%d
	http_port %d
	auto_https off
	skip_install_trust
	persist_config off
	grace_period 1s
	storage file_system %s/caddydata
}
http://%s {
	two_factor {
		user alice %s
		user bob %s
%s		storage postgres "%s"
		encryption_key %s
		totp_skew 4
		free_failures 3
		max_delay 1h
	}
	reverse_proxy %s
}
`, 12319+i, 12380+i, dir, site, testHash, testHash, more, dbURL, pgKeyA, upstream)
		path := filepath.Join(dir, "Caddyfile")
		if err := os.WriteFile(path, []byte(in.config), 0o600); err != nil {
			t.Fatal(err)
		}
		in.start(bin)
		out = append(out, in)
	}
	return out
}

func (in *instance) start(bin string) {
	t := in.t
	t.Helper()
	in.log, in.exited = &lockedBuffer{}, make(chan struct{})
	in.cmd = exec.Command(bin, "run", "--config", filepath.Join(in.dir, "Caddyfile"), "--adapter", "caddyfile")
	in.cmd.Env = append(os.Environ(), "HOME="+in.dir, "XDG_DATA_HOME="+in.dir+"/data", "XDG_CONFIG_HOME="+in.dir+"/config")
	in.cmd.Stdout, in.cmd.Stderr = in.log, in.log
	if err := in.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := in.exited
	go func() { _ = in.cmd.Wait(); close(exited) }()
	t.Cleanup(in.kill)
	for range 400 {
		select {
		case <-exited:
			t.Fatalf("instance %s exited while starting: %s", in.name, in.log.String())
		default:
		}
		res, err := http.Get("http://" + in.site + "/.auth/assets/style.css")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("instance %s did not come up: %s", in.name, in.log.String())
}

// tail is the last n bytes of s.
func tail(s string, n int) string { return s[max(0, len(s)-n):] }

// kill ends the process with SIGKILL, at once, and waits for it.
func (in *instance) kill() {
	if in.cmd != nil && in.cmd.Process != nil {
		_ = in.cmd.Process.Signal(syscall.SIGKILL)
		<-in.exited
	}
}

// visitor is one browser whose cookie goes to whichever instance it asks
// (a load balancer without stickiness). It keeps the gate's cookie itself:
// the cookie is Secure, and the instances speak plain HTTP.
type visitor struct {
	t      *testing.T
	http   *http.Client
	cookie string
}

func newVisitor(t *testing.T) *visitor {
	return &visitor{t: t, http: &http.Client{
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport:     &http.Transport{DisableKeepAlives: true},
	}}
}

type answer struct {
	status   int
	location string
	body     string
}

func (v *visitor) do(in *instance, method, path string, form url.Values, accept string) (answer, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, "http://"+in.site+path, body)
	if err != nil {
		return answer{}, err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.Header.Set("Accept", accept)
	if v.cookie != "" {
		req.AddCookie(&http.Cookie{Name: DefaultCookieName, Value: v.cookie})
	}
	res, err := v.http.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return answer{}, err
	}
	for _, c := range res.Cookies() {
		if c.Name == DefaultCookieName {
			v.cookie = c.Value
		}
	}
	return answer{res.StatusCode, res.Header.Get("Location"), string(b)}, nil
}

// post sends a form and fails the test on a transport error.
func (v *visitor) post(in *instance, path string, kv ...string) answer {
	v.t.Helper()
	f := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		f.Set(kv[i], kv[i+1])
	}
	a, err := v.do(in, http.MethodPost, path, f, "text/html")
	if err != nil {
		v.t.Fatalf("%s %s: %v", in.name, path, err)
	}
	return a
}

func (v *visitor) get(in *instance, path, accept string) answer {
	v.t.Helper()
	a, err := v.do(in, http.MethodGet, path, nil, accept)
	if err != nil {
		v.t.Fatalf("%s %s: %v", in.name, path, err)
	}
	return a
}

// login does the password step on in and checks where it leads.
func (v *visitor) login(in *instance, user, want string) {
	v.t.Helper()
	if a := v.post(in, "/.auth/login", "username", user, "password", testPassword); a.status != http.StatusSeeOther || a.location != want {
		v.t.Fatalf("login %s on %s: got %d to %q, want 303 to %q: %.300s", user, in.name, a.status, a.location, want, a.body)
	}
}

// realCode is the code of secret for the real clock's step plus offset
// steps (the instances run on the real clock).
func realCode(t *testing.T, secret string, offset int) string {
	return totpCode(t, secret, time.Now().Add(time.Duration(offset)*30*time.Second))
}

// enableOn turns 2FA on for user: the enable page read on one instance,
// the form sent to another. It returns the secret and the backup codes.
func enableOn(t *testing.T, page, form *instance, user string) (string, []string) {
	t.Helper()
	v := newVisitor(t)
	v.login(page, user, "/")
	a := v.get(page, "/.auth/security/enable", "text/html")
	m := otpauthRe.FindStringSubmatch(a.body)
	if m == nil {
		t.Fatalf("no otpauth link on %s's enable page: %.300s", page.name, a.body)
	}
	key, err := otp.NewKeyFromURL(html.UnescapeString(m[1]))
	if err != nil {
		t.Fatal(err)
	}
	a = v.post(form, "/.auth/security/enable", "password", testPassword, "code", realCode(t, key.Secret(), -2))
	if a.status != http.StatusSeeOther {
		t.Fatalf("enable on %s: got %d: %.300s", form.name, a.status, a.body)
	}
	a = v.get(form, a.location, "text/html")
	codes := backupCodesOn(t, a.body)
	if len(codes) != 10 {
		t.Fatalf("enable: %d backup codes on %s", len(codes), form.name)
	}
	return key.Secret(), codes
}

// echoUpstream answers with the Remote-User it was sent.
func echoUpstream(t *testing.T) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "user=%s", r.Header.Get("Remote-User"))
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// TestInstancesOneTruth: three Caddy instances on one PostgreSQL database
// behave as one gate: a login started on A finishes on B and browses on C;
// a logout on C is a logout on A and B; the same TOTP code sent to A and
// B at once wins once, a backup code sent to A, B and C at once wins once;
// wrong passwords spent on A, B and C come out of one budget.
func TestInstancesOneTruth(t *testing.T) {
	dbURL := pgtest.URL(t)
	in := newInstances(t, 3, dbURL, echoUpstream(t))
	a, b, c := in[0], in[1], in[2]
	secret, codes := enableOn(t, a, b, "alice")

	// Password on A, code on B, the site on C.
	v := newVisitor(t)
	v.login(a, "alice", "/.auth/code")
	if r := v.post(b, "/.auth/code", "code", realCode(t, secret, -1)); r.status != http.StatusSeeOther {
		t.Fatalf("code on B: got %d: %.300s", r.status, r.body)
	}
	if r := v.get(c, "/app", "text/html"); r.status != http.StatusOK || r.body != "user=alice" {
		t.Fatalf("the site on C: got %d %q", r.status, r.body)
	}
	for _, x := range []*instance{a, b} {
		if r := v.get(x, "/app", "application/json"); r.status != http.StatusOK {
			t.Fatalf("the site on %s: got %d", x.name, r.status)
		}
	}
	// Log out on C: dead on A and B, at once or within the bound.
	start := time.Now()
	if r := v.post(c, "/.auth/logout"); r.status != http.StatusSeeOther {
		t.Fatalf("logout on C: got %d", r.status)
	}
	for _, x := range []*instance{a, b} {
		for {
			r := v.get(x, "/app", "application/json")
			if r.status == http.StatusUnauthorized {
				t.Logf("logout on C: refused on %s after %v", x.name, time.Since(start))
				break
			}
			if r.status != http.StatusOK || time.Since(start) > store.StalenessBound {
				t.Fatalf("after the logout on C, %s answered %d after %v", x.name, r.status, time.Since(start))
			}
			time.Sleep(2 * time.Millisecond)
		}
	}

	// The same TOTP code at once on A and B.
	race := func(what string, targets []*instance, code string) {
		t.Helper()
		vs := make([]*visitor, len(targets))
		for i := range vs {
			vs[i] = newVisitor(t)
			vs[i].login(targets[i], "alice", "/.auth/code")
		}
		var wins atomic.Int32
		var wg sync.WaitGroup
		begin := make(chan struct{})
		for i := range vs {
			wg.Go(func() {
				<-begin
				r, err := vs[i].do(targets[i], http.MethodPost, "/.auth/code", url.Values{"code": {code}}, "text/html")
				if err != nil {
					t.Error(err)
					return
				}
				switch r.status {
				case http.StatusSeeOther:
					wins.Add(1)
				case http.StatusUnauthorized:
				default:
					t.Errorf("%s on %s: got %d; the end of its log:\n%s", what, targets[i].name, r.status, tail(targets[i].log.String(), 3000))
				}
			})
		}
		close(begin)
		wg.Wait()
		if n := wins.Load(); n != 1 {
			t.Errorf("%s sent at once to %d instances: %d won, want exactly 1", what, len(targets), n)
		}
	}
	race("one TOTP code", []*instance{a, b}, realCode(t, secret, 0))
	race("one backup code", []*instance{a, b, c}, codes[0])

	// One attempt budget: free_failures 3, spent on A, B and C; the next
	// guess, even the right password, waits on every instance.
	for i, x := range []*instance{a, b, c} {
		if r := newVisitor(t).post(x, "/.auth/login", "username", "bob", "password", "wrong"); r.status != http.StatusUnauthorized {
			t.Fatalf("wrong password %d on %s: got %d", i+1, x.name, r.status)
		}
	}
	newVisitor(t).post(a, "/.auth/login", "username", "bob", "password", "wrong")
	for _, x := range []*instance{a, b, c} {
		if r := newVisitor(t).post(x, "/.auth/login", "username", "bob", "password", testPassword); r.status != http.StatusTooManyRequests {
			t.Errorf("bob's right password on %s after 4 failures spread over A, B and C: got %d, want 429", x.name, r.status)
		}
	}
}

// TestInstancesKilledMidChange: an instance killed (SIGKILL) in the middle
// of enable or disable leaves no half state: seen from another instance,
// 2FA is either on with the secret of that enable (its codes work) or off.
// Each round has a user of its own, so that its TOTP steps (at most four:
// -2, -1, 0 and +1 steps from now, within totp_skew 4) are its own.
func TestInstancesKilledMidChange(t *testing.T) {
	dbURL := pgtest.URL(t)
	in := newInstances(t, 2, dbURL, echoUpstream(t))
	a, b := in[0], in[1]
	bin := caddyBinary(t)
	outcomes := map[string]int{}
	// sendAndKill sends the form to A and kills A after delay, racing it.
	sendAndKill := func(v *visitor, path string, form url.Values, delay time.Duration) {
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, _ = v.do(a, http.MethodPost, path, form, "text/html")
		}()
		time.Sleep(delay)
		a.kill()
		<-done
		a.start(bin)
	}
	// From before the request is read to after the answer.
	delays := []time.Duration{0, 2, 5, 10, 20, 40, 80, 160}
	for round, delay := range delays {
		user := fmt.Sprintf("u%d", round)
		delay *= time.Millisecond
		// Enable, killed.
		v := newVisitor(t)
		v.login(b, user, "/")
		page := v.get(b, "/.auth/security/enable", "text/html")
		m := otpauthRe.FindStringSubmatch(page.body)
		if m == nil {
			t.Fatalf("%s: no enable page: %.200s", user, page.body)
		}
		key, err := otp.NewKeyFromURL(html.UnescapeString(m[1]))
		if err != nil {
			t.Fatal(err)
		}
		secret := key.Secret()
		sendAndKill(v, "/.auth/security/enable", url.Values{"password": {testPassword}, "code": {realCode(t, secret, -2)}}, delay)
		w := newVisitor(t)
		switch r := w.post(b, "/.auth/login", "username", user, "password", testPassword); r.location {
		case "/":
			outcomes["enable lost"]++
			secret, _ = enableOn(t, b, b, user) // its code is the step -2
		case "/.auth/code":
			outcomes["enable landed"]++
		default:
			t.Fatalf("%s: login after the killed enable: got %d to %q", user, r.status, r.location)
		}
		if r := w.post(b, "/.auth/code", "code", realCode(t, secret, -1)); r.status != http.StatusSeeOther {
			t.Fatalf("%s: the code of the enabled secret is refused (%d): a half enable", user, r.status)
		}
		// Disable, killed.
		sendAndKill(w, "/.auth/security/disable", url.Values{"password": {testPassword}, "code": {realCode(t, secret, 0)}}, delay)
		x := newVisitor(t)
		switch r := x.post(b, "/.auth/login", "username", user, "password", testPassword); r.location {
		case "/":
			outcomes["disable landed"]++
		case "/.auth/code":
			outcomes["disable lost"]++
			if r := x.post(b, "/.auth/code", "code", realCode(t, secret, 1)); r.status != http.StatusSeeOther {
				t.Fatalf("%s: 2FA still on after the killed disable, but its code is refused (%d)", user, r.status)
			}
		default:
			t.Fatalf("%s: login after the killed disable: got %d to %q", user, r.status, r.location)
		}
	}
	t.Logf("kills in the middle of a change, outcomes seen from the other instance: %v", outcomes)
}

// TestInstancesDatabaseRestart: PostgreSQL stopped under traffic: every
// instance answers 503 (never a session from memory for long, never a
// 500, never a login), and serves again once it is back, without a
// restart of Caddy.
func TestInstancesDatabaseRestart(t *testing.T) {
	cl, err := pgtest.Start()
	if err != nil {
		pgtest.Shared(t)
		t.Fatal(err)
	}
	defer cl.Stop()
	in := newInstances(t, 2, cl.URL("postgres"), echoUpstream(t))
	v := newVisitor(t)
	v.login(in[0], "alice", "/")
	if r := v.get(in[1], "/app", "application/json"); r.status != http.StatusOK {
		t.Fatalf("before: got %d", r.status)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	seen := map[int]int{}
	var wg sync.WaitGroup
	for _, x := range in {
		wg.Go(func() {
			for ctx.Err() == nil {
				r, err := v.do(x, http.MethodGet, "/app", nil, "application/json")
				if err != nil {
					continue
				}
				mu.Lock()
				seen[r.status]++
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	if err := cl.StopServer(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	// Within the bound, every instance refuses.
	time.Sleep(store.StalenessBound + 500*time.Millisecond)
	for _, x := range in {
		if r := v.get(x, "/app", "application/json"); r.status != http.StatusServiceUnavailable {
			t.Errorf("%s with the database down for %v: got %d, want 503", x.name, time.Since(stopped), r.status)
		}
		if r := newVisitor(t).post(x, "/.auth/login", "username", "alice", "password", testPassword); r.status != http.StatusServiceUnavailable {
			t.Errorf("a login on %s with the database down: got %d, want 503", x.name, r.status)
		}
	}
	if err := cl.StartServer(); err != nil {
		t.Fatal(err)
	}
	for _, x := range in {
		deadline := time.Now().Add(30 * time.Second)
		for {
			r := v.get(x, "/app", "application/json")
			if r.status == http.StatusOK {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s with the database back: still %d", x.name, r.status)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	cancel()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	for status, n := range seen {
		if status != http.StatusOK && status != http.StatusServiceUnavailable {
			t.Errorf("under traffic: %d answers with status %d", n, status)
		}
	}
	t.Logf("answers under traffic while the database stopped and started: %v", seen)
}

// TestMultiInstanceExample runs the example of docs/multi-instance.md as
// written: PostgreSQL, three instances and a load balancer on localhost,
// one login through it served by all three, one logout refused by all
// three.
func TestMultiInstanceExample(t *testing.T) {
	pgtest.Shared(t) // skipped without PostgreSQL, failing in CI, as the others
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "bash", "../docs/multi-instance/run.sh", "--check").CombinedOutput()
	if err != nil {
		t.Fatalf("docs/multi-instance/run.sh --check: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "logged out once, refused by all three") {
		t.Fatalf("the example's check did not finish:\n%s", out)
	}
}
