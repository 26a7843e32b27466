package caddymodule

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-two-factor/caddy-two-factor/caddymodule/internal/gate"
	"github.com/caddyserver/caddy/v2/caddytest"
)

// mountTmpfs mounts a tmpfs of the given size (such as "300m") on a new
// temporary folder, or read-only when ro is set, and unmounts it when the
// test ends. It needs root (CI runs as root); elsewhere the test is skipped.
func mountTmpfs(t *testing.T, size string, ro bool) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "two-factor-mnt-")
	if err != nil {
		t.Fatal(err)
	}
	opts := "size=" + size + ",mode=0700"
	if ro {
		opts += ",ro"
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", opts, "tmpfs", dir).CombinedOutput(); err != nil {
		_ = os.Remove(dir)
		if os.Getenv("CI") != "" {
			t.Fatalf("mounting a tmpfs (CI runs as root and must be able to): %v %s", err, out)
		}
		t.Skipf("cannot mount a tmpfs (run as root to test a full or read-only disk): %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
			return
		}
		_ = os.Remove(dir)
	})
	return dir
}

// fill takes all but keep bytes of the file system dir is on, and returns
// a function that gives them back.
func fill(t *testing.T, dir string, keep int64) func() {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	free := int64(st.Bavail) * st.Bsize
	name := filepath.Join(dir, "filler")
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, free-keep); err != nil {
		t.Fatalf("fallocate: %v", err)
	}
	return func() {
		if err := os.Remove(name); err != nil {
			t.Error(err)
		}
	}
}

// TestFullDisk runs the gate on a small tmpfs, fills it, and checks that
// logins, codes and changes get 503 and change nothing, that a live
// session still reads, and that everything works again once there is
// room. Without the store's free-space guard badger writes into sparse
// memory-mapped files and the process dies of SIGBUS.
func TestFullDisk(t *testing.T) {
	mnt := mountTmpfs(t, "300m", false)
	g := newGate(t, gateOpts{dir: mnt})
	b := g.browser()
	b.login("alice", testPassword, "/")
	enr := b.enable()
	p := g.browser()
	p.login("alice", testPassword, "/.auth/code")
	nextStep()
	code := totpCode(t, enr.secret, testNow())

	release := fill(t, mnt, 0)
	time.Sleep(300 * time.Millisecond) // the store trusts a free-space reading for 250ms
	faults := 0
	for what, r := range map[string]response{
		"login":             g.browser().post("/.auth/login", formOf("username", "bob", "password", testPassword)),
		"right code":        p.post("/.auth/code", formOf("code", code)),
		"right backup code": p.post("/.auth/code", formOf("code", enr.codes[0])),
		"disable":           b.post("/.auth/security/disable", formOf("password", testPassword, "code", code)),
		"logout":            b.post("/.auth/logout", nil),
	} {
		faults++
		if r.status != http.StatusServiceUnavailable || r.header.Get("Set-Cookie") != "" {
			t.Errorf("%s on a full disk: got %d (Set-Cookie %q), want 503 and no cookie", what, r.status, r.header.Get("Set-Cookie"))
		}
		if !strings.Contains(r.body, "Temporarily unavailable") {
			t.Errorf("%s on a full disk: the page does not say so: %.200s", what, r.body)
		}
	}
	// Enough writes to go past the pages the log had already touched.
	for i := range 200 {
		faults++
		if r := g.browser().post("/.auth/login", formOf("username", "bob", "password", testPassword)); r.status != http.StatusServiceUnavailable {
			t.Fatalf("login %d on a full disk: got %d, want 503", i, r.status)
		}
	}
	if r := b.get("/app"); r.status != http.StatusOK {
		t.Errorf("a live session on a full disk: got %d, want 200 (reading needs no space)", r.status)
	}
	var me gate.MeInfo
	if err := json.Unmarshal([]byte(b.get("/.auth/me").body), &me); err != nil || !me.TwoFactor || me.BackupCodesLeft != 10 {
		t.Errorf("after the refused requests: %+v %v, want 2FA on with 10 codes", me, err)
	}

	release()
	time.Sleep(300 * time.Millisecond)
	if r := p.post("/.auth/code", formOf("code", code)); r.status != http.StatusSeeOther {
		t.Errorf("the code refused on the full disk, once there is room: got %d, want 303 (it must not have been used)", r.status)
	}
	g.browser().login("bob", testPassword, "/")
	t.Logf("%d requests refused on a full disk", faults)
}

// TestReadOnlyStorage: a storage_dir on a read-only file system, new or
// holding a store, stops the config from loading with an error that names
// the folder; nothing is served from it.
func TestReadOnlyStorage(t *testing.T) {
	ro := mountTmpfs(t, "1m", true)
	src := `{
` + testGlobals + `}
localhost:9443 {
	two_factor {
		user alice ` + testHash + `
		storage_dir ` + ro + `/store
	}
}`
	assertLoadError(t, src, "storage_dir "+ro+"/store", "read-only file system")

	// A store that was written, then its file system made read-only.
	rw := mountTmpfs(t, "300m", false)
	g := newGate(t, gateOpts{dir: rw})
	g.browser().login("alice", testPassword, "/")
	unload(t)
	if out, err := exec.Command("mount", "-o", "remount,ro", rw).CombinedOutput(); err != nil {
		t.Fatalf("remount read-only: %v %s", err, out)
	}
	assertLoadError(t, g.config, "storage_dir "+rw+"/store", "read-only file system")
}

// assertLoadError loads src and checks that the error holds every want.
func assertLoadError(t *testing.T, src string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		caddytest.AssertLoadError(t, src, "caddyfile", w)
	}
}
