package caddymodule

import (
	"bytes"
	"encoding/json"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddytest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestCaddyfileAdapt adapts each testdata/adapt/*.caddyfile and compares the
// JSON with the .json file beside it (go test -run Adapt -update rewrites them).
func TestCaddyfileAdapt(t *testing.T) {
	files, _ := filepath.Glob("testdata/adapt/*.caddyfile")
	if len(files) == 0 {
		t.Fatal("no golden files")
	}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt(src, map[string]any{"filename": f})
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		var pretty bytes.Buffer
		_ = json.Indent(&pretty, out, "", "\t")
		pretty.WriteString("\n")
		golden := strings.TrimSuffix(f, ".caddyfile") + ".json"
		if *update {
			_ = os.WriteFile(golden, pretty.Bytes(), 0o644)
		}
		want, _ := os.ReadFile(golden)
		if !bytes.Equal(pretty.Bytes(), want) {
			t.Errorf("%s: adapted JSON differs from %s:\n%s", f, golden, pretty.String())
		}
	}
}

func TestCaddyfileErrorsNameTheLine(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{"two_factor {\n\tbogus 1\n}", "unrecognized subdirective 'bogus'"},
		{"two_factor {\n\tuser alice\n}", "user: want a name and a password hash"},
		{"two_factor {\n\ttotp_skew eleven\n}", "totp_skew: want a whole number from 0 to 10"},
		{"two_factor {\n\tsession_idle forever\n}", "session_idle: invalid duration"},
		{"two_factor {\n\tprefix\n}", "prefix: want exactly one value"},
		{"two_factor {\n\trequire_two_factor yes\n}", "require_two_factor takes no arguments"},
		{"two_factor extra {\n}", "takes no arguments"},
		{"two_factor {\n\targon2id_memory 512\n}", "argon2id_memory: want a whole number from 1024 to 4194304"},
		{"two_factor {\n\targon2id_time 0\n}", "argon2id_time: want a whole number from 1 to 100"},
		{"two_factor {\n\targon2id_threads 256\n}", "argon2id_threads: want a whole number from 1 to 255"},
		{"two_factor {\n\thash_cpu 0%\n}", "hash_cpu: want a share of the CPUs from more than 0% to 100%"},
		{"two_factor {\n\thash_cpu 150%\n}", "hash_cpu: want a share of the CPUs"},
		{"two_factor {\n\thash_cpu NaN\n}", "hash_cpu: want a share of the CPUs"},
		{"two_factor {\n\thash_cpu lots\n}", "hash_cpu: want a share of the CPUs"},
		{"two_factor {\n\thash_cpu_burst -5s\n}", "hash_cpu_burst: must be positive"},
	} {
		src := "localhost {\n" + tc.body + "\n}\n"
		_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src), map[string]any{"filename": "Caddyfile"})
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "Caddyfile:") {
			t.Errorf("%q: got %v, want an error naming the line and %q", tc.body, err, tc.want)
		}
	}
}

func TestProvisionRefusesBadConfig(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ extra, want string }{
		{"user carol plaintext", "user 2 (carol): password is not a bcrypt or argon2id hash"},
		{"user ALICE " + testHash, "user 2: username is not unique: ALICE (the same account as alice)"},
		{"prefix /auth/", "must be a clean absolute path"},
		{"prefix /", "must be a clean absolute path other than /"},
		{"totp_digits 7", "totp settings"},
		{"totp_algorithm MD5", "totp settings"},
		{"encryption_key short", "encryption_key"},
		{"encryption_key {env.TWO_FACTOR_TEST_UNSET_VARIABLE}", "is empty once expanded"},
		{"user_header \"Bad Header\"", "user_header"},
		{"session_idle 2h\n\t\tsession_lifetime 1h", "session_idle 2h0m0s is longer than session_lifetime"},
	} {
		src := `{
` + testGlobals + `}
localhost:9443 {
	two_factor {
		user alice ` + testHash + `
		user bob ` + testHash + `
		storage_dir ` + dir + `/s
		` + tc.extra + `
	}
}`
		caddytest.AssertLoadError(t, src, "caddyfile", tc.want)
	}
}

func TestEncryptionKeyMustMatchTheStore(t *testing.T) {
	dir := t.TempDir()
	g := newGate(t, gateOpts{dir: dir})
	b := g.browser()
	b.login("alice", testPassword, "/")
	b.enable()
	info, err := os.Stat(dir + "/store.key")
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("key file: got %v %v, want mode 0600", info.Mode(), err)
	}
	unload(t)
	// A store with secrets and no key file refuses to start.
	if err := os.Rename(dir+"/store.key", dir+"/saved.key"); err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(g.config, "issuer", "encryption_key_file "+dir+"/other.key\n\t\tissuer", 1)
	caddytest.AssertLoadError(t, cfg, "caddyfile", "is missing, but the store")
	// Another key refuses to start.
	cfg = strings.Replace(g.config, "issuer", "encryption_key AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE=\n\t\tissuer", 1)
	caddytest.AssertLoadError(t, cfg, "caddyfile", "does not match the store")
	// The right key works, and the enrolment is intact.
	if err := os.Rename(dir+"/saved.key", dir+"/store.key"); err != nil {
		t.Fatal(err)
	}
	g.tester.InitServer(g.config, "caddyfile")
	g.waitReady()
	g.browser().login("alice", testPassword, "/.auth/code")
}

func TestReloadWhileServing(t *testing.T) {
	g := newGate(t, gateOpts{})
	b := g.browser()
	b.login("alice", testPassword, "/")
	var stop atomic.Bool
	var failures, done, resent atomic.Int64
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Transport: caddytest.CreateTestingTransport(), Jar: b.jar,
				CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			for i := 0; i < 2000 && !stop.Load(); i++ {
				res, err := client.Get(g.base + "/x")
				if err != nil {
					// A reload with grace_period 1ns closes connections;
					// Caddy drops a brand-new one now and then, with or
					// without this module. Resend once: what must never
					// happen is an answer other than 200.
					resent.Add(1)
					res, err = client.Get(g.base + "/x")
				}
				if err == nil {
					res.Body.Close()
				}
				if err != nil || res.StatusCode != 200 {
					failures.Add(1)
				}
				done.Add(1)
			}
		}()
	}
	for done.Load() < 10 {
		runtime.Gosched()
	}
	const reloads = 10
	for i := range reloads {
		if i == reloads/2 {
			g.config = strings.Replace(g.config, "issuer \"Test Cloud\"", "issuer \"Changed Cloud\"", 1)
		}
		g.reload()
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d requests during %d reloads, %d failed, %d resent after a dropped connection", done.Load(), reloads, failures.Load(), resent.Load())
	if failures.Load() != 0 {
		t.Errorf("%d of %d requests failed during reloads", failures.Load(), done.Load())
	}
	// The session outlived the reloads, and logins work on the new config.
	if r := b.get("/x"); r.status != 200 {
		t.Errorf("session after reloads: got %d, want 200", r.status)
	}
	s := g.browser()
	s.login("alice", testPassword, "/")
	if r := s.get("/.auth/security/enable"); !strings.Contains(r.body, "Changed%20Cloud") {
		t.Errorf("the reloaded issuer is not in use")
	}
}
